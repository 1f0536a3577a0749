//! The daemon's counters and gauges, rendered in Prometheus' text format for `GET /metrics`. Configured
//! databases get the contract's per-database series. Fleet members are summarised per fleet
//! (`d1vault_fleet_*`), and only a member that needs attention (stale, or its latest run failed) is named
//! too: a fleet of 100,000 databases would otherwise cost Prometheus 100,000 series of each kind.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use super::health::Freshness;
use crate::budget::Assessment;

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
    /// Every result, in the order the series are written.
    const ALL: [RunResult; 4] = [
        RunResult::Success,
        RunResult::Failure,
        RunResult::Skipped,
        RunResult::Unchanged,
    ];

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
    /// The latest run's result, skipped due times aside: a member whose latest run failed is named.
    last_result: Option<RunResult>,
    totals: BTreeMap<RunResult, u64>,
    last_duration: Option<f64>,
    raw_bytes: Option<u64>,
    stored_bytes: Option<u64>,
    /// Scheduled verifications (`verify_schedule`): the latest success, and counts by result.
    last_verify_success: Option<f64>,
    verifications: BTreeMap<VerifyResult, u64>,
}

/// How a scheduled verification ended, as the `result` label of `d1vault_verifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VerifyResult {
    /// The newest backup restored and matched its manifest.
    Success,
    /// It did not, or could not be checked.
    Failure,
}

impl VerifyResult {
    fn label(self) -> &'static str {
        match self {
            VerifyResult::Success => "success",
            VerifyResult::Failure => "failure",
        }
    }
}

/// Shared metrics of every database; cheap to lock (updated once per run).
#[derive(Debug, Default)]
pub struct Metrics {
    databases: Mutex<BTreeMap<String, DatabaseMetrics>>,
    /// The latest [`crate::budget::assess`] of the configuration in force.
    budget: Mutex<Option<Assessment>>,
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

    /// Keeps the latest budget assessment for the `d1vault_api_budget_*` gauges.
    pub fn set_budget(&self, assessment: &Assessment) {
        *self.budget.lock().expect("metrics lock") = Some(assessment.clone());
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
        if result != RunResult::Skipped {
            m.last_result = Some(result);
        }
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

    /// Records a finished scheduled verification (`finished_unix`: when it ended).
    pub fn record_verify(&self, database: &str, result: VerifyResult, finished_unix: f64) {
        let mut dbs = self.databases.lock().expect("metrics lock");
        let m = dbs.entry(database.to_string()).or_default();
        *m.verifications.entry(result).or_default() += 1;
        if result == VerifyResult::Success {
            m.last_verify_success = Some(finished_unix);
        }
    }

    /// The Prometheus text exposition of the databases in force (`standing`): configured databases and
    /// fleet members that need attention by name, every fleet as a summary.
    pub fn render(&self, standing: &Standing) -> String {
        let all = self.databases.lock().expect("metrics lock").clone();
        let mut named: Vec<(&String, &DatabaseMetrics)> = Vec::new();
        let mut fleets: BTreeMap<usize, FleetSummary> = standing
            .fleets
            .iter()
            .map(|(index, pattern)| (*index, FleetSummary::new(pattern)))
            .collect();
        for (db, m) in &all {
            let Some(&(fleet, state)) = standing.databases.get(db) else {
                continue; // no longer in force (removed by a reload, or gone from the account)
            };
            let failing = m.last_result == Some(RunResult::Failure);
            if let Some(summary) = fleet.and_then(|index| fleets.get_mut(&index)) {
                summary.add(m, state, failing);
                if state.is_healthy() && !failing {
                    continue;
                }
            }
            named.push((db, m));
        }
        let mut out = String::new();
        render_named(&mut out, &named);
        render_fleets(&mut out, &fleets);
        if let Some(assessment) = self.budget.lock().expect("metrics lock").as_ref() {
            render_budget(&mut out, assessment);
        }
        out
    }
}

/// What `/metrics` needs to know beside the counters: each fleet, and each database in force with the
/// fleet that found it and its `/healthz` state. Built per scrape from the configuration in force.
#[derive(Debug, Default)]
pub struct Standing {
    /// Every `[[fleet]]`: its position in the file and its `match`, as written.
    pub fleets: Vec<(usize, String)>,
    /// Every database in force: its fleet (`None` for a `[[database]]`) and its freshness.
    pub databases: HashMap<String, (Option<usize>, Freshness)>,
}

#[cfg(test)]
impl Standing {
    /// Configured, fresh databases named `names` and no fleet.
    pub(crate) fn configured<const N: usize>(names: [&str; N]) -> Standing {
        Standing {
            fleets: Vec::new(),
            databases: names
                .iter()
                .map(|n| (n.to_string(), (None, Freshness::Fresh)))
                .collect(),
        }
    }
}

/// One fleet's members added up, for the `d1vault_fleet_*` series.
#[derive(Debug)]
struct FleetSummary {
    pattern: String,
    by_state: BTreeMap<&'static str, u64>,
    failing: u64,
    totals: BTreeMap<RunResult, u64>,
    oldest_success: Option<f64>,
}

impl FleetSummary {
    fn new(pattern: &str) -> FleetSummary {
        FleetSummary {
            pattern: pattern.to_string(),
            by_state: ["fresh", "pending", "stale", "verify_failed"]
                .map(|s| (s, 0))
                .into(),
            failing: 0,
            totals: BTreeMap::new(),
            oldest_success: None,
        }
    }

    fn add(&mut self, m: &DatabaseMetrics, state: Freshness, failing: bool) {
        *self.by_state.entry(state.as_str()).or_default() += 1;
        self.failing += u64::from(failing);
        for (result, n) in &m.totals {
            *self.totals.entry(*result).or_default() += n;
        }
        if let Some(t) = m.last_success {
            self.oldest_success = Some(self.oldest_success.map_or(t, |o| o.min(t)));
        }
    }
}

/// A label value with Prometheus' escapes.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The contract's per-database series, for the databases named.
fn render_named(out: &mut String, dbs: &[(&String, &DatabaseMetrics)]) {
    out.push_str(
        "# HELP d1vault_last_success_timestamp_seconds Unix time of the newest complete backup.\n",
    );
    out.push_str("# TYPE d1vault_last_success_timestamp_seconds gauge\n");
    for (db, m) in dbs {
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
    for (db, m) in dbs {
        if let Some(t) = m.last_unchanged {
            let _ = writeln!(
                out,
                "d1vault_last_unchanged_timestamp_seconds{{database=\"{}\"}} {t}",
                label(db)
            );
        }
    }
    out.push_str("# HELP d1vault_backups_total Backup runs since the daemon started, by result.\n");
    out.push_str("# TYPE d1vault_backups_total counter\n");
    for (db, m) in dbs {
        for result in RunResult::ALL {
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
    for (db, m) in dbs {
        if let Some(d) = m.last_duration {
            let _ = writeln!(
                out,
                "d1vault_backup_duration_seconds{{database=\"{}\"}} {d}",
                label(db)
            );
        }
    }
    out.push_str("# HELP d1vault_last_verify_success_timestamp_seconds Unix time of the latest scheduled verification (verify_schedule) that succeeded.\n");
    out.push_str("# TYPE d1vault_last_verify_success_timestamp_seconds gauge\n");
    for (db, m) in dbs {
        if let Some(t) = m.last_verify_success {
            let _ = writeln!(
                out,
                "d1vault_last_verify_success_timestamp_seconds{{database=\"{}\"}} {t}",
                label(db)
            );
        }
    }
    out.push_str("# HELP d1vault_verifications_total Scheduled verifications (verify_schedule) since the daemon started, by result.\n");
    out.push_str("# TYPE d1vault_verifications_total counter\n");
    for (db, m) in dbs {
        for (result, n) in &m.verifications {
            let _ = writeln!(
                out,
                "d1vault_verifications_total{{database=\"{}\",result=\"{}\"}} {n}",
                label(db),
                result.label()
            );
        }
    }
    out.push_str("# HELP d1vault_backup_bytes Size of the last successful backup: raw SQL or stored bytes.\n");
    out.push_str("# TYPE d1vault_backup_bytes gauge\n");
    for (db, m) in dbs {
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
}

/// The `d1vault_api_budget_*` gauges: the budget and what the schedules need of it.
fn render_budget(out: &mut String, a: &Assessment) {
    out.push_str("# HELP d1vault_api_budget_requests_per_5min The API budget (need=\"limit\") and what the schedules in force need of it: fleet discovery, and every due database if all changed (\"worst\") or none did (\"unchanged\"), added up over groups.\n");
    out.push_str("# TYPE d1vault_api_budget_requests_per_5min gauge\n");
    for (need, value) in [
        ("limit", f64::from(a.limit)),
        ("discovery", a.discovery),
        ("worst", a.worst_total()),
        ("unchanged", a.unchanged_total()),
    ] {
        let _ = writeln!(
            out,
            "d1vault_api_budget_requests_per_5min{{need=\"{need}\"}} {:.1}",
            value
        );
    }
    out.push_str("# HELP d1vault_api_budget_groups_over Groups of databases due together that the budget cannot all export within their window even alone (see the WARN line at start).\n");
    out.push_str("# TYPE d1vault_api_budget_groups_over gauge\n");
    let _ = writeln!(
        out,
        "d1vault_api_budget_groups_over {}",
        a.over_budget().count()
    );
}

/// The `d1vault_fleet_*` series: a fleet of 100,000 members costs a handful of series, not 100,000.
fn render_fleets(out: &mut String, fleets: &BTreeMap<usize, FleetSummary>) {
    if fleets.is_empty() {
        return;
    }
    let id = |index: &usize, f: &FleetSummary| {
        format!("fleet=\"{index}\",match=\"{}\"", label(&f.pattern))
    };
    out.push_str("# HELP d1vault_fleet_databases Members of each fleet by /healthz state (a stale member is also named in the per-database series).\n");
    out.push_str("# TYPE d1vault_fleet_databases gauge\n");
    for (index, f) in fleets {
        for (state, n) in &f.by_state {
            let _ = writeln!(
                out,
                "d1vault_fleet_databases{{{},state=\"{state}\"}} {n}",
                id(index, f)
            );
        }
    }
    out.push_str("# HELP d1vault_fleet_failing_databases Members of each fleet whose latest run failed (each is also named in the per-database series).\n");
    out.push_str("# TYPE d1vault_fleet_failing_databases gauge\n");
    for (index, f) in fleets {
        let _ = writeln!(
            out,
            "d1vault_fleet_failing_databases{{{}}} {}",
            id(index, f),
            f.failing
        );
    }
    out.push_str("# HELP d1vault_fleet_backups_total Backup runs of each fleet's current members since the daemon started, by result.\n");
    out.push_str("# TYPE d1vault_fleet_backups_total counter\n");
    for (index, f) in fleets {
        for result in RunResult::ALL {
            let n = f.totals.get(&result).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "d1vault_fleet_backups_total{{{},result=\"{}\"}} {n}",
                id(index, f),
                result.label()
            );
        }
    }
    out.push_str("# HELP d1vault_fleet_oldest_success_timestamp_seconds Unix time of the oldest among the newest complete backups of a fleet's members (members without one are counted as pending or stale).\n");
    out.push_str("# TYPE d1vault_fleet_oldest_success_timestamp_seconds gauge\n");
    for (index, f) in fleets {
        if let Some(t) = f.oldest_success {
            let _ = writeln!(
                out,
                "d1vault_fleet_oldest_success_timestamp_seconds{{{}}} {t}",
                id(index, f)
            );
        }
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
        let text = m.render(&Standing::configured(["blog"]));
        assert!(
            text.contains("d1vault_last_success_timestamp_seconds{database=\"blog\"} 1700000000")
        );
        assert!(text.contains("d1vault_backups_total{database=\"blog\",result=\"success\"} 1"));
        assert!(text.contains("d1vault_backups_total{database=\"blog\",result=\"failure\"} 1"));
        assert!(text.contains("d1vault_backup_duration_seconds{database=\"blog\"} 1"));
        assert!(text.contains("d1vault_backup_bytes{database=\"blog\",kind=\"raw\"} 100"));
        assert!(text.contains("d1vault_backup_bytes{database=\"blog\",kind=\"stored\"} 40"));
    }

    #[test]
    fn a_fleet_is_summarised_and_only_its_members_needing_attention_are_named() {
        // Proves the fleet series: three members (fresh, stale, latest run failed) and a configured
        // database; the configured one and the two members needing attention are named, the fresh member
        // is only counted; the summary counts states, failures and runs and keeps the oldest success; a
        // database no longer in force is left out.
        let m = Metrics::default();
        for db in ["blog", "tenant-a", "tenant-b", "tenant-c", "removed"] {
            m.record(db, RunResult::Success, 1.0, Some((10, 5)), 1_700_000_000.0);
        }
        m.record(
            "tenant-a",
            RunResult::Success,
            1.0,
            Some((10, 5)),
            1_700_000_500.0,
        );
        m.record("tenant-c", RunResult::Failure, 1.0, None, 1_700_000_600.0);
        let mut standing = Standing::configured(["blog"]);
        standing.fleets.push((0, "tenant-*".into()));
        for (db, state) in [
            ("tenant-a", Freshness::Fresh),
            ("tenant-b", Freshness::Stale),
            ("tenant-c", Freshness::Fresh),
        ] {
            standing.databases.insert(db.into(), (Some(0), state));
        }
        let text = m.render(&standing);
        let named = |db: &str| {
            text.contains(&format!(
                "d1vault_backups_total{{database=\"{db}\",result=\"success\"}}"
            ))
        };
        assert!(
            named("blog") && named("tenant-b") && named("tenant-c"),
            "{text}"
        );
        assert!(!named("tenant-a") && !named("removed"), "{text}");
        let fleet = "fleet=\"0\",match=\"tenant-*\"";
        for line in [
            format!("d1vault_fleet_databases{{{fleet},state=\"fresh\"}} 2"),
            format!("d1vault_fleet_databases{{{fleet},state=\"stale\"}} 1"),
            format!("d1vault_fleet_databases{{{fleet},state=\"pending\"}} 0"),
            format!("d1vault_fleet_failing_databases{{{fleet}}} 1"),
            format!("d1vault_fleet_backups_total{{{fleet},result=\"success\"}} 4"),
            format!("d1vault_fleet_backups_total{{{fleet},result=\"failure\"}} 1"),
            format!("d1vault_fleet_oldest_success_timestamp_seconds{{{fleet}}} 1700000000"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("d1vault_api_budget"),
            "no budget before an assessment: {text}"
        );
        m.set_budget(&Assessment {
            limit: 1000,
            discovery: 5.0,
            groups: vec![crate::budget::GroupNeed {
                label: "fleet[0] match \"tenant-*\"".into(),
                databases: 3,
                span: chrono::Duration::minutes(1),
                worst: 1200.0,
                unchanged: 300.0,
            }],
        });
        let text = m.render(&standing);
        for line in [
            "d1vault_api_budget_requests_per_5min{need=\"limit\"} 1000.0",
            "d1vault_api_budget_requests_per_5min{need=\"worst\"} 1200.0",
            "d1vault_api_budget_requests_per_5min{need=\"unchanged\"} 300.0",
            "d1vault_api_budget_groups_over 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        m.record(
            "tenant-c",
            RunResult::Success,
            1.0,
            Some((10, 5)),
            1_700_000_700.0,
        );
        assert!(
            !m.render(&standing).contains("database=\"tenant-c\""),
            "a member whose latest run succeeded is no longer named"
        );
    }
}
