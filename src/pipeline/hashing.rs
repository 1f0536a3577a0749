//! An `AsyncRead` that counts and hashes (sha256) the bytes passing through it: restore and verify check
//! an object's size and digest against its manifest while they stream it, instead of reading it twice.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// Passes bytes through unchanged while counting and hashing them.
pub struct HashingReader<R> {
    inner: R,
    sha256: Sha256,
    bytes: u64,
}

impl<R: AsyncRead + Unpin> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            sha256: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes read so far and the hex sha256 of them.
    pub fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.sha256.finalize()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        this.sha256.update(new);
        this.bytes += new.len() as u64;
        Poll::Ready(Ok(()))
    }
}
