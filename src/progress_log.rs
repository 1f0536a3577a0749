//! Periodic INFO lines for long work that would otherwise be silent where no terminal shows a progress
//! line (systemd, containers, CI): an export that takes an hour says so every minute, with how far it got.
//! A command run on a terminal ([`draw_on_terminal`]) gets one redrawn line instead.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::human::{human_bytes, rate_and_time_left};

/// How often a long operation reports.
pub const EVERY: Duration = Duration::from_secs(60);

/// How often the terminal line is redrawn.
const REDRAW: Duration = Duration::from_millis(500);

/// Whether progress is drawn as a line on stderr rather than logged (see [`draw_on_terminal`]).
static TERMINAL: AtomicBool = AtomicBool::new(false);

/// Draws progress as one line redrawn on stderr, with rate and time left, instead of an INFO line a
/// minute. `d1vault backup` turns it on when stderr is a terminal and one database is backed up (two
/// lines drawn at once would overwrite each other); the daemon never does.
pub fn draw_on_terminal(on: bool) {
    TERMINAL.store(on, Ordering::Relaxed);
}

/// Counts bytes of one operation and logs an INFO line at most every [`EVERY`] (from inside the
/// caller's span, so the line carries its database and backup id).
#[derive(Debug)]
pub struct ProgressLog {
    /// What is being done, as the log message says it: "backup", "restoring", "verifying".
    what: &'static str,
    /// The expected total, when known.
    total: Option<u64>,
    started: Instant,
    next: Instant,
    done: u64,
    /// Whether a terminal line was drawn (and must be cleared at the end).
    drawn: bool,
}

impl ProgressLog {
    /// Starts counting now; the first line comes after [`EVERY`] (the first terminal line sooner).
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        let started = Instant::now();
        ProgressLog {
            what,
            total,
            started,
            next: started
                + if TERMINAL.load(Ordering::Relaxed) {
                    REDRAW
                } else {
                    EVERY
                },
            done: 0,
            drawn: false,
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
        let terminal = TERMINAL.load(Ordering::Relaxed);
        self.next = now + if terminal { REDRAW } else { EVERY };
        let elapsed = now - self.started;
        if terminal {
            self.draw(done, elapsed);
            return;
        }
        let of = self.of_total(done);
        tracing::info!(
            elapsed_seconds = elapsed.as_secs(),
            bytes = done,
            "{} still running: {}{of} so far, {}",
            self.what,
            human_bytes(done),
            rate_and_time_left(done, None, elapsed)
        );
    }

    /// `" of 1.0 GiB (12%)"` when the total is known, else nothing.
    fn of_total(&self, done: u64) -> String {
        match self.total {
            Some(total) if total > 0 => format!(
                " of {} ({:.0}%)",
                human_bytes(total),
                done as f64 * 100.0 / total as f64
            ),
            _ => String::new(),
        }
    }

    /// The terminal line: "backup: 120.0 MiB of 1.0 GiB (12%), 40.0 MiB/s, 22s left".
    fn draw(&mut self, done: u64, elapsed: Duration) {
        let total = self.total.filter(|t| *t > 0);
        let mut line = format!(
            "\r{}: {}{}",
            self.what,
            human_bytes(done),
            self.of_total(done)
        );
        line.push_str(", ");
        line.push_str(&rate_and_time_left(done, total, elapsed));
        line.push_str("   ");
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{line}");
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Drop for ProgressLog {
    /// Clears the terminal line, so that the next output starts on a clean line.
    fn drop(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
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
