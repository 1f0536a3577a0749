//! Idle timeouts for byte streams: a peer that sends part of a body and then goes silent must end in an
//! error, not a read that waits forever (and, in the daemon, a `max_concurrent` slot held forever).
//!
//! [`IdleTimeout`] counts only the time its reader is actually waiting for bytes: while the consumer is
//! busy elsewhere (compressing, uploading, loading SQLite) and does not poll, the clock does not run, so a
//! slow consumer is never mistaken for a stalled peer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error inside the `io::Error` (kind [`io::ErrorKind::TimedOut`]) that an [`IdleTimeout`] returns, so
/// that callers can tell a stalled peer from other read failures.
#[derive(Debug, thiserror::Error)]
#[error("no data from {what} for {}: the other side stalled; try again", humantime::format_duration(*.limit))]
pub struct Stalled {
    /// What was being read, for the message (`the export download`, `storage object KEY`).
    pub what: String,
    /// How long the reader waited without a byte.
    pub limit: Duration,
}

/// Wraps a reader so that a read waiting longer than `limit` without a byte fails with [`Stalled`].
pub struct IdleTimeout<R> {
    inner: R,
    limit: Duration,
    what: String,
    sleep: Pin<Box<Sleep>>,
    /// Whether the last poll returned `Pending`: only then does the running timer belong to this wait.
    waiting: bool,
}

impl<R> IdleTimeout<R> {
    /// `inner`, failing any read that waits more than `limit` for data; `what` names the stream in the error.
    pub fn new(inner: R, limit: Duration, what: impl Into<String>) -> Self {
        IdleTimeout {
            inner,
            limit,
            what: what.into(),
            sleep: Box::pin(tokio::time::sleep(limit)),
            waiting: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleTimeout<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.waiting {
            // A new wait starts now: time spent while nobody polled is the consumer's, not the peer's.
            this.sleep.as_mut().reset(Instant::now() + this.limit);
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.waiting = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.waiting = false;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        Stalled {
                            what: this.what.clone(),
                            limit: this.limit,
                        },
                    )));
                }
                this.waiting = true;
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_fails_after_the_limit_with_a_timed_out_error() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut reader = IdleTimeout::new(reader, Duration::from_secs(5), "the test stream");
        writer.write_all(b"half").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 4);
        let started = Instant::now();
        let err = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.get_ref().unwrap().is::<Stalled>());
        assert!(err.to_string().contains("the test stream"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(writer);
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_consumer_spends_elsewhere_does_not_count() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut reader = IdleTimeout::new(reader, Duration::from_secs(5), "the test stream");
        writer.write_all(b"a").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 1);
        // The consumer is busy for longer than the limit; the data waiting meanwhile is still read.
        tokio::time::sleep(Duration::from_secs(60)).await;
        writer.write_all(b"b").await.unwrap();
        assert_eq!(reader.read(&mut buf).await.unwrap(), 1);
        // A peer that answers within the limit each time never times out.
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                writer.write_all(b"c").await.unwrap();
            }
        });
        for _ in 0..5 {
            assert_eq!(reader.read(&mut buf).await.unwrap(), 1);
        }
        feeder.await.unwrap();
        assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
    }
}
