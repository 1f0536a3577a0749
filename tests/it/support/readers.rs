//! Bodies that break on purpose, for the storage contract's upload cases: one that fails half-way, one
//! that stalls for ever.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A body that yields `data` and then breaks instead of reaching EOF, counting how far the consumer
/// read, so a test can drop the consuming future at a known point.
pub(crate) struct BrokenBody {
    data: Vec<u8>,
    pos: usize,
    end: End,
    /// Set when every byte of `data` has been handed out.
    pub(crate) drained: Arc<AtomicBool>,
}

/// How a [`BrokenBody`] breaks after its data.
enum End {
    /// With an I/O error: a download that broke half-way.
    Fail,
    /// By staying pending for ever: a stalled download.
    Stall,
}

impl BrokenBody {
    /// Yields `data`, then fails with an I/O error.
    pub(crate) fn failing(data: Vec<u8>) -> Self {
        BrokenBody::new(data, End::Fail)
    }

    /// Yields `data`, then stays pending for ever (never woken: the test drops the future instead).
    pub(crate) fn stalling(data: Vec<u8>) -> Self {
        BrokenBody::new(data, End::Stall)
    }

    fn new(data: Vec<u8>, end: End) -> Self {
        BrokenBody {
            data,
            pos: 0,
            end,
            drained: Default::default(),
        }
    }
}

impl AsyncRead for BrokenBody {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.data.len() {
            let n = buf.remaining().min(this.data.len() - this.pos);
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        this.drained.store(true, Ordering::SeqCst);
        match this.end {
            End::Fail => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "test body failed half-way",
            ))),
            End::Stall => Poll::Pending,
        }
    }
}
