//! The daemon's named events: one type per thing that happened to a scheduled run, built once when it
//! happens. The catalog row, the `/metrics` update and the log line are each derived from the event, so the
//! three cannot disagree about what happened.

use chrono::{DateTime, Utc};
use tracing::{debug, error, info, warn};

use super::metrics::{Metrics, RunResult};
use crate::catalog::{Catalog, CatalogError, RunId, RunOutcome, RunState};
use crate::notify::{Event, EventKind};

/// Sizes of a complete backup: the SQL as exported and the bytes as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackupSizes {
    /// The dump's SQL, before compression.
    pub(crate) raw: u64,
    /// The dump object as stored.
    pub(crate) stored: u64,
}

/// A scheduled run ended: the backup succeeded, failed, was aborted at shutdown, or was not needed
/// (unchanged since the newest backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunFinished {
    /// The configured database name.
    pub(crate) database: String,
    /// The due time this run served.
    pub(crate) due: DateTime<Utc>,
    /// The run's catalog row; `None` when the catalog could not record its start.
    pub(crate) run: Option<RunId>,
    /// The backup id in use at the end (it moves on when another writer held the first second's id); for an
    /// unchanged run, the newest backup, which holds the current data.
    pub(crate) backup_id: String,
    /// When the run started, on the daemon's clock.
    pub(crate) started_at: DateTime<Utc>,
    /// When the run ended, on the daemon's clock.
    pub(crate) finished_at: DateTime<Utc>,
    /// How it ended.
    pub(crate) outcome: RunOutcome,
    /// The backup's sizes, for a success.
    pub(crate) sizes: Option<BackupSizes>,
    /// Why it failed or was aborted.
    pub(crate) error: Option<String>,
}

impl RunFinished {
    /// How long the run took, in seconds (`d1vault_backup_duration_seconds`).
    pub(crate) fn duration_seconds(&self) -> f64 {
        (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0
    }

    /// The run's `result` label in `d1vault_backups_total`: an abort counts as a failure.
    pub(crate) fn result(&self) -> RunResult {
        match self.outcome {
            RunOutcome::Success => RunResult::Success,
            RunOutcome::Unchanged => RunResult::Unchanged,
            RunOutcome::Failed | RunOutcome::Aborted => RunResult::Failure,
        }
    }

    /// The log line. The backup itself already logged its success inside its own span; a failure is final
    /// only here (the run is over, the next try is the next due time), so it is the one told at ERROR, where
    /// alerting on error level (journald priority `err`) sees it; an abort at shutdown is told at WARN.
    pub(crate) fn log(&self) {
        match self.outcome {
            RunOutcome::Aborted => {
                warn!(database = %self.database, backup_id = %self.backup_id, "backup aborted at shutdown")
            }
            RunOutcome::Failed => error!(
                database = %self.database,
                backup_id = %self.backup_id,
                error = self.error.as_deref().unwrap_or("unknown"),
                duration_seconds = self.duration_seconds(),
                "backup failed"
            ),
            RunOutcome::Success | RunOutcome::Unchanged => debug!(
                database = %self.database,
                backup_id = %self.backup_id,
                outcome = RunState::Finished(self.outcome).as_str(),
                duration_seconds = self.duration_seconds(),
                "run finished"
            ),
        }
    }

    /// Finishes the run's catalog row (nothing to do when its start was not recorded).
    pub(crate) async fn record(&self, catalog: &Catalog) -> Result<(), CatalogError> {
        let Some(run) = self.run else {
            return Ok(());
        };
        catalog
            .finish_run(
                run,
                self.outcome,
                self.error.clone(),
                self.sizes.map(|s| s.raw),
                self.sizes.map(|s| s.stored),
                self.finished_at,
            )
            .await
    }

    /// The `[[notify]]` event: `success`, `unchanged`, or `failure` (an abort too).
    pub(crate) fn notification(&self) -> Event {
        let kind = match self.outcome {
            RunOutcome::Success => EventKind::Success,
            RunOutcome::Unchanged => EventKind::Unchanged,
            RunOutcome::Failed | RunOutcome::Aborted => EventKind::Failure,
        };
        let mut event = Event::new(kind, &self.database, self.finished_at)
            .with_backup(&self.backup_id)
            .with_duration_since(self.started_at);
        if let Some(sizes) = self.sizes {
            event = event.with_sizes(sizes.raw, sizes.stored);
        }
        if let Some(error) = &self.error {
            event = event.with_error(error);
        }
        event
    }

    /// Counts the run in `/metrics`.
    pub(crate) fn update(&self, metrics: &Metrics) {
        metrics.record(
            &self.database,
            self.result(),
            self.duration_seconds(),
            self.sizes.map(|s| (s.raw, s.stored)),
            self.finished_at.timestamp() as f64,
        );
    }
}

/// A due time was not run (outside its window, or no free slot before the window closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSkipped {
    /// The configured database name.
    pub(crate) database: String,
    /// The due time that was skipped.
    pub(crate) due: DateTime<Utc>,
    /// When the skip was decided, on the daemon's clock.
    pub(crate) at: DateTime<Utc>,
    /// Why, as `status` shows it.
    pub(crate) reason: String,
}

impl RunSkipped {
    /// The log line.
    pub(crate) fn log(&self) {
        info!(database = %self.database, due = %self.due, reason = self.reason.as_str(), "run skipped");
    }

    /// Records the skip as a catalog row (catch-up counts it as dealt with).
    pub(crate) async fn record(&self, catalog: &Catalog) -> Result<(), CatalogError> {
        catalog
            .record_skipped(&self.database, self.due, self.at, &self.reason)
            .await
            .map(|_| ())
    }

    /// Counts the skip in `/metrics`.
    pub(crate) fn update(&self, metrics: &Metrics) {
        metrics.record(
            &self.database,
            RunResult::Skipped,
            0.0,
            None,
            self.at.timestamp() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::metrics::Standing;
    use crate::test_time::utc;

    fn finished(outcome: RunOutcome) -> RunFinished {
        RunFinished {
            database: "blog".into(),
            due: utc("2025-01-05T03:00:00Z"),
            run: None,
            backup_id: "20250105T030000Z".into(),
            started_at: utc("2025-01-05T03:00:00Z"),
            finished_at: utc("2025-01-05T03:00:02.500Z"),
            outcome,
            sizes: (outcome == RunOutcome::Success).then_some(BackupSizes {
                raw: 100,
                stored: 40,
            }),
            error: None,
        }
    }

    /// The JSON lines `f` logs at any level.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
        use std::sync::{Arc, Mutex};
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Writer(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A writer into a shared buffer, for [`logged`].
    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_run_is_an_error_event_and_a_success_is_not() {
        // Proves a failed scheduled run is logged at ERROR with its reason (alerting on error level sees
        // it), and a success or an unchanged run logs nothing at WARN or above.
        let mut failed = finished(RunOutcome::Failed);
        failed.error = Some("export failed: boom".into());
        let lines = logged(|| failed.log());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["message"], "backup failed");
        assert_eq!(lines[0]["error"], "export failed: boom");
        assert_eq!(lines[0]["database"], "blog");
        for outcome in [RunOutcome::Success, RunOutcome::Unchanged] {
            let lines = logged(|| finished(outcome).log());
            assert!(
                lines
                    .iter()
                    .all(|l| l["level"] == "DEBUG" || l["level"] == "INFO"),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn metrics_are_derived_from_the_event() {
        // Proves a success sets the duration, sizes and last-success time, an abort counts as a failure,
        // and an unchanged run is counted as `unchanged` without touching the success time or duration.
        let metrics = Metrics::default();
        finished(RunOutcome::Success).update(&metrics);
        finished(RunOutcome::Aborted).update(&metrics);
        let mut unchanged = finished(RunOutcome::Unchanged);
        unchanged.finished_at = utc("2025-01-06T03:00:01Z");
        unchanged.started_at = utc("2025-01-06T03:00:00Z");
        unchanged.update(&metrics);
        RunSkipped {
            database: "blog".into(),
            due: utc("2025-01-06T03:00:00Z"),
            at: utc("2025-01-06T03:00:00Z"),
            reason: "window closed".into(),
        }
        .update(&metrics);
        let text = metrics.render(&Standing::configured(["blog"]));
        for line in [
            "d1vault_last_success_timestamp_seconds{database=\"blog\"} 1736046002",
            "d1vault_backups_total{database=\"blog\",result=\"success\"} 1",
            "d1vault_backups_total{database=\"blog\",result=\"failure\"} 1",
            "d1vault_backups_total{database=\"blog\",result=\"skipped\"} 1",
            "d1vault_backups_total{database=\"blog\",result=\"unchanged\"} 1",
            "d1vault_last_unchanged_timestamp_seconds{database=\"blog\"} 1736132401",
            "d1vault_backup_duration_seconds{database=\"blog\"} 2.5",
            "d1vault_backup_bytes{database=\"blog\",kind=\"raw\"} 100",
            "d1vault_backup_bytes{database=\"blog\",kind=\"stored\"} 40",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
