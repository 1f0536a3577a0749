//! One client-side limiter shared by every job, so that the whole process stays under Cloudflare's account
//! limit (1,200 requests per 5 minutes; exceeding it blocks every API call for 5 minutes).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The window Cloudflare counts requests in.
pub const WINDOW: Duration = Duration::from_secs(300);

/// A sliding-window limiter: at most `limit` requests start within any `window`. It remembers the start
/// time of the last `limit` requests (at most 1,200 instants), which makes the guarantee exact, unlike a
/// token bucket that admits up to twice its capacity in one window.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    starts: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// A limiter admitting `limit` requests per `window` (use [`WINDOW`] for Cloudflare).
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = limit.max(1) as usize;
        RateLimiter {
            limit,
            window,
            // Grown on demand: a loopback budget may be far larger than any 5 minutes hold.
            starts: Mutex::new(VecDeque::with_capacity(limit.min(1200))),
        }
    }

    /// Waits until one more request may start, then records it. Fair in arrival order (tokio's Mutex
    /// queues waiters FIFO), so one busy job cannot starve another.
    pub async fn acquire(&self) {
        let mut starts = self.starts.lock().await;
        loop {
            let now = Instant::now();
            while starts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                starts.pop_front();
            }
            if starts.len() < self.limit {
                starts.push_back(now);
                return;
            }
            let oldest = *starts.front().expect("full deque has a front");
            tokio::time::sleep_until(oldest + self.window).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No window of the configured length ever holds more than `limit` starts, and waiting is no longer
    /// than needed.
    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_limit_in_any_window() {
        let limiter = RateLimiter::new(5, Duration::from_secs(10));
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..12 {
            limiter.acquire().await;
            starts.push(Instant::now().duration_since(t0));
        }
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..]
                .iter()
                .filter(|t| **t - *s < Duration::from_secs(10))
                .count();
            assert!(in_window <= 5, "window starting at {s:?} holds {in_window}");
        }
        assert_eq!(starts[4], Duration::ZERO);
        assert_eq!(starts[5], Duration::from_secs(10));
        assert_eq!(starts[11], Duration::from_secs(20));
    }
}
