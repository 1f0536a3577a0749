//! The daemon's notion of "now". Production uses the wall clock; tests use a clock driven by tokio's
//! (pausable) time, so that schedules are tested with `tokio::time::pause()` and `advance()`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// How long an idle wait may last before the wall clock is checked again (keeps long sleeps honest across
/// suspend and clock changes, at one wake-up a minute).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A source of the current UTC time that the daemon can also sleep against.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// `base` plus the tokio time elapsed since `anchor`: follows paused time in tests.
    Tokio {
        /// What the clock read at `anchor`.
        base: DateTime<Utc>,
        /// The tokio instant the clock was created at.
        anchor: Instant,
    },
}

impl Clock {
    /// A tokio-driven clock that reads `base` now.
    pub fn tokio_at(base: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            base,
            anchor: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, anchor } => {
                *base
                    + chrono::Duration::from_std(anchor.elapsed())
                        .unwrap_or(chrono::Duration::zero())
            }
        }
    }

    /// Sleeps until the clock reads `target`, waking at least every [`MAX_SLEEP`] to re-read it.
    pub async fn sleep_until(&self, target: DateTime<Utc>) {
        loop {
            let now = self.now();
            if now >= target {
                return;
            }
            let left = (target - now).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(left.min(MAX_SLEEP)).await;
        }
    }
}
