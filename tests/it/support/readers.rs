//! Bodies that break on purpose, for the storage contract's upload cases: one that fails half-way, one
//! that stalls for ever.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A body that yields `data` and then fails with an I/O error instead of reaching EOF: a download that
/// broke half-way.
pub struct FailingReader {
    data: Vec<u8>,
    pos: usize,
}

impl FailingReader {
    /// Yields `data`, then the error.
    pub fn new(data: Vec<u8>) -> Self {
        FailingReader { data, pos: 0 }
    }
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.data.len() {
            let n = buf.remaining().min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "test body failed half-way",
            )))
        }
    }
}

/// A body that yields `data` and then never produces another byte (a stalled download), counting how far
/// the consumer read, so a test can drop the consuming future at a known point.
pub struct StallingReader {
    data: Vec<u8>,
    pos: usize,
    /// Set when every byte of `data` has been handed out.
    pub drained: Arc<AtomicBool>,
}

impl StallingReader {
    /// Yields `data`, then stays pending forever.
    pub fn new(data: Vec<u8>) -> Self {
        StallingReader {
            data,
            pos: 0,
            drained: Default::default(),
        }
    }
}

impl AsyncRead for StallingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.data.len() {
            let n = buf.remaining().min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        } else {
            self.drained.store(true, Ordering::SeqCst);
            // Never woken: the test drops the future instead.
            Poll::Pending
        }
    }
}
