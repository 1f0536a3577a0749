//! The daemon's counters and gauges, rendered in Prometheus' text format for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// How a run ended, as the `result` label of `d1vault_backups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunResult {
    /// The backup is complete.
    Success,
    /// The backup failed or was aborted at shutdown.
    Failure,
    /// The due time was not run.
    Skipped,
    /// No export: the database had not changed since its newest backup (`skip_unchanged`).
    Unchanged,
}

impl RunResult {
    fn label(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Skipped => "skipped",
            RunResult::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct DatabaseMetrics {
    last_success: Option<f64>,
    last_unchanged: Option<f64>,
    totals: BTreeMap<RunResult, u64>,
    last_duration: Option<f64>,
    raw_bytes: Option<u64>,
    stored_bytes: Option<u64>,
}

/// Shared metrics of every database; cheap to lock (updated once per run).
#[derive(Debug, Default)]
pub struct Metrics {
    databases: Mutex<BTreeMap<String, DatabaseMetrics>>,
}

impl Metrics {
    /// Makes a database appear in the output before its first run.
    pub fn register(&self, database: &str) {
        self.databases
            .lock()
            .expect("metrics lock")
            .entry(database.to_string())
            .or_default();
    }

    /// Seeds the last success time from storage at start-up (unix seconds).
    pub fn set_last_success(&self, database: &str, unix_seconds: f64) {
        let mut dbs = self.databases.lock().expect("metrics lock");
        let m = dbs.entry(database.to_string()).or_default();
        if m.last_success.is_none_or(|t| t < unix_seconds) {
            m.last_success = Some(unix_seconds);
        }
    }

    /// Seeds the latest unchanged run from the catalog at start-up (unix seconds).
    pub fn set_last_unchanged(&self, database: &str, unix_seconds: f64) {
        let mut dbs = self.databases.lock().expect("metrics lock");
        let m = dbs.entry(database.to_string()).or_default();
        if m.last_unchanged.is_none_or(|t| t < unix_seconds) {
            m.last_unchanged = Some(unix_seconds);
        }
    }

    /// Records a finished run.
    pub fn record(
        &self,
        database: &str,
        result: RunResult,
        duration_seconds: f64,
        bytes: Option<(u64, u64)>,
        finished_unix: f64,
    ) {
        let mut dbs = self.databases.lock().expect("metrics lock");
        let m = dbs.entry(database.to_string()).or_default();
        *m.totals.entry(result).or_default() += 1;
        match result {
            RunResult::Skipped => return,
            // Not a backup: neither its duration nor a success time; the newest backup stays current.
            RunResult::Unchanged => {
                m.last_unchanged = Some(finished_unix);
                return;
            }
            RunResult::Success | RunResult::Failure => {}
        }
        m.last_duration = Some(duration_seconds);
        if result == RunResult::Success {
            m.last_success = Some(finished_unix);
            if let Some((raw, stored)) = bytes {
                m.raw_bytes = Some(raw);
                m.stored_bytes = Some(stored);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let dbs = self.databases.lock().expect("metrics lock").clone();
        let mut out = String::new();
        let label = |db: &str| db.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP d1vault_last_success_timestamp_seconds Unix time of the newest complete backup.\n");
        out.push_str("# TYPE d1vault_last_success_timestamp_seconds gauge\n");
        for (db, m) in &dbs {
            if let Some(t) = m.last_success {
                let _ = writeln!(
                    out,
                    "d1vault_last_success_timestamp_seconds{{database=\"{}\"}} {t}",
                    label(db)
                );
            }
        }
        out.push_str("# HELP d1vault_last_unchanged_timestamp_seconds Unix time of the latest run that found the database unchanged since its newest backup (no export; that backup still holds the current data).\n");
        out.push_str("# TYPE d1vault_last_unchanged_timestamp_seconds gauge\n");
        for (db, m) in &dbs {
            if let Some(t) = m.last_unchanged {
                let _ = writeln!(
                    out,
                    "d1vault_last_unchanged_timestamp_seconds{{database=\"{}\"}} {t}",
                    label(db)
                );
            }
        }
        out.push_str(
            "# HELP d1vault_backups_total Backup runs since the daemon started, by result.\n",
        );
        out.push_str("# TYPE d1vault_backups_total counter\n");
        for (db, m) in &dbs {
            for result in [
                RunResult::Success,
                RunResult::Failure,
                RunResult::Skipped,
                RunResult::Unchanged,
            ] {
                let n = m.totals.get(&result).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "d1vault_backups_total{{database=\"{}\",result=\"{}\"}} {n}",
                    label(db),
                    result.label()
                );
            }
        }
        out.push_str("# HELP d1vault_backup_duration_seconds Duration of the last backup run.\n");
        out.push_str("# TYPE d1vault_backup_duration_seconds gauge\n");
        for (db, m) in &dbs {
            if let Some(d) = m.last_duration {
                let _ = writeln!(
                    out,
                    "d1vault_backup_duration_seconds{{database=\"{}\"}} {d}",
                    label(db)
                );
            }
        }
        out.push_str("# HELP d1vault_backup_bytes Size of the last successful backup: raw SQL or stored bytes.\n");
        out.push_str("# TYPE d1vault_backup_bytes gauge\n");
        for (db, m) in &dbs {
            if let (Some(raw), Some(stored)) = (m.raw_bytes, m.stored_bytes) {
                let _ = writeln!(
                    out,
                    "d1vault_backup_bytes{{database=\"{}\",kind=\"raw\"}} {raw}",
                    label(db)
                );
                let _ = writeln!(
                    out,
                    "d1vault_backup_bytes{{database=\"{}\",kind=\"stored\"}} {stored}",
                    label(db)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_contract_metric_names() {
        let m = Metrics::default();
        m.register("blog");
        m.record(
            "blog",
            RunResult::Success,
            2.5,
            Some((100, 40)),
            1_700_000_000.0,
        );
        m.record("blog", RunResult::Failure, 1.0, None, 1_700_000_100.0);
        let text = m.render();
        assert!(
            text.contains("d1vault_last_success_timestamp_seconds{database=\"blog\"} 1700000000")
        );
        assert!(text.contains("d1vault_backups_total{database=\"blog\",result=\"success\"} 1"));
        assert!(text.contains("d1vault_backups_total{database=\"blog\",result=\"failure\"} 1"));
        assert!(text.contains("d1vault_backup_duration_seconds{database=\"blog\"} 1"));
        assert!(text.contains("d1vault_backup_bytes{database=\"blog\",kind=\"raw\"} 100"));
        assert!(text.contains("d1vault_backup_bytes{database=\"blog\",kind=\"stored\"} 40"));
    }
}
