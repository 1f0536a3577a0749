//! Periodic INFO lines for long work that would otherwise be silent where no terminal shows a progress
//! line (systemd, containers, CI): an export that takes an hour says so every minute, with how far it got.

use std::time::Duration;

use tokio::time::Instant;

use crate::human::human_bytes;

/// How often a long operation reports.
pub const EVERY: Duration = Duration::from_secs(60);

/// Counts bytes of one operation and logs an INFO line at most every [`EVERY`] (from inside the
/// caller's span, so the line carries its database and backup id).
#[derive(Debug)]
pub struct ProgressLog {
    /// What is being done, as the log message: "backing up", "restoring".
    what: &'static str,
    /// The expected total, when known.
    total: Option<u64>,
    started: Instant,
    next: Instant,
    done: u64,
}

impl ProgressLog {
    /// Starts counting now; the first line comes after [`EVERY`].
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        let started = Instant::now();
        ProgressLog {
            what,
            total,
            started,
            next: started + EVERY,
            done: 0,
        }
    }

    /// Adds `bytes` done, logging when a line is due.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.set(self.done);
    }

    /// Records `done` bytes in all (and a new total, for stages that announce theirs), logging when due.
    pub fn set_done(&mut self, done: u64, total: Option<u64>) {
        self.total = total;
        self.done = done;
        self.set(done);
    }

    fn set(&mut self, done: u64) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + EVERY;
        let elapsed = now - self.started;
        let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
        let of = match self.total {
            Some(total) if total > 0 => format!(
                " of {} ({:.0}%)",
                human_bytes(total),
                done as f64 * 100.0 / total as f64
            ),
            _ => String::new(),
        };
        tracing::info!(
            elapsed_seconds = elapsed.as_secs(),
            bytes = done,
            "{} still running: {}{of} so far, {}/s",
            self.what,
            human_bytes(done),
            human_bytes(rate as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_line_is_due_once_a_minute_not_per_chunk() {
        // Proves the clock, not the byte count, decides: chunks within a minute log nothing, and the
        // next line is a full minute after the last one.
        let mut log = ProgressLog::new("backing up", Some(1000));
        log.advance(10);
        assert_eq!(log.next, log.started + EVERY);
        tokio::time::advance(EVERY).await;
        log.advance(10);
        let after_first = log.next;
        assert_eq!(after_first, log.started + EVERY * 2);
        tokio::time::advance(Duration::from_secs(30)).await;
        log.advance(10);
        assert_eq!(
            log.next, after_first,
            "a line was logged within a minute of the last"
        );
        assert_eq!(log.done, 30);
    }
}
