//! Capped exponential backoff with full jitter, and `Retry-After` parsing: the one retry arithmetic used
//! by every client in d1vault.

use std::time::{Duration, SystemTime};

/// How often and how patiently to retry a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// Upper bound of the first backoff.
    pub base: Duration,
    /// No single wait is longer than this (a `Retry-After` is honoured up to `max_retry_after`).
    pub cap: Duration,
    /// Longest `Retry-After` the client agrees to wait; a longer one fails the request instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts, 1 s base, 60 s cap: about two minutes of trying before a failure is reported.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry), given a uniform `fraction` in [0, 1):
    /// "full jitter", a random point in [0, min(cap, base * 2^retry)). Spreads retries of many clients so
    /// that they do not come back in lockstep.
    pub fn backoff(&self, retry: u32, fraction: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX));
        let ceiling = ceiling.min(self.cap);
        ceiling.mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// The wait before retry number `retry`, with a random jitter.
    pub fn backoff_random(&self, retry: u32) -> Duration {
        self.backoff(retry, rand::random::<f64>())
    }
}

/// Parses a `Retry-After` header value: delta-seconds (`"120"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(date.timestamp().max(0) as u64);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
            ..Default::default()
        };
        assert_eq!(
            p.backoff(0, 0.999_999),
            Duration::from_secs(1).mul_f64(0.999_999)
        );
        assert_eq!(p.backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(p.backoff(10, 0.5), Duration::from_secs(5));
        assert_eq!(p.backoff(40, 1.0), Duration::from_secs(10));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
