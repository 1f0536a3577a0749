//! Counting the API requests the emulator saw, so tests can assert a client's request budget.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// API requests seen since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// All `/client/v4` requests, including refused and faulted ones.
    pub total: u64,
    /// Requests per route kind (`list`, `get`, `create`, `delete`, `query`, `raw`, `export`, `import`,
    /// `bookmark`, `restore`, `other`).
    pub by_route: BTreeMap<String, u64>,
    /// Most requests seen within any one second.
    pub peak_per_second: u64,
    /// Most requests seen within any 300 seconds (Cloudflare allows 1200).
    pub peak_per_300_seconds: u64,
    /// Exports refused because the database has virtual tables (D1's "cannot export databases with
    /// Virtual Tables"): a client that reads the schema first never causes one.
    pub refused_exports: u64,
}

#[derive(Debug, Default)]
struct Recorder {
    stats: RequestStats,
    last_second: VecDeque<Instant>,
    last_300_seconds: VecDeque<Instant>,
}

/// Thread-safe request counter with sliding windows.
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<Recorder>,
}

fn slide(window: &mut VecDeque<Instant>, now: Instant, width: Duration) -> u64 {
    window.push_back(now);
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= width)
    {
        window.pop_front();
    }
    window.len() as u64
}

impl StatsRecorder {
    /// Records one request of the given route kind at `now`.
    pub(crate) fn record(&self, route: &str, now: Instant) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.stats.total += 1;
        *r.stats.by_route.entry(route.to_owned()).or_default() += 1;
        let in_second = slide(&mut r.last_second, now, Duration::from_secs(1));
        let in_300 = slide(&mut r.last_300_seconds, now, Duration::from_secs(300));
        r.stats.peak_per_second = r.stats.peak_per_second.max(in_second);
        r.stats.peak_per_300_seconds = r.stats.peak_per_300_seconds.max(in_300);
    }

    /// Records an export refused for virtual tables.
    pub(crate) fn record_refused_export(&self) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.stats.refused_exports += 1;
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> RequestStats {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_use_sliding_windows() {
        // Proves requests more than a second apart do not add up in the per-second peak.
        let recorder = StatsRecorder::default();
        let start = Instant::now();
        for ms in [0, 100, 900, 1500, 1600, 2950] {
            recorder.record("query", start + Duration::from_millis(ms));
        }
        let stats = recorder.snapshot();
        assert_eq!(stats.total, 6);
        assert_eq!(stats.peak_per_second, 3);
        assert_eq!(stats.peak_per_300_seconds, 6);
        assert_eq!(stats.by_route["query"], 6);
    }
}
