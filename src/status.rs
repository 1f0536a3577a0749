//! What `d1vault status` reports, as typed rows: per database, the last success, the last failure with
//! its reason, the last run that found it unchanged (`skip_unchanged`), the latest skipped due time and
//! the next scheduled run, read from the catalog (works whether or not the daemon runs), and the
//! [`Condition`] an on-call engineer sorts by. A fleet of thousands is summarised ([`summarise`]): the
//! presentation names only the members that need attention.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::catalog::{Catalog, CatalogError, RunState};
use crate::config::{Config, DatabaseConfig};
use crate::fleet::Entry;
use crate::schedule::{self, PlannedRun};

/// How many of a database's newest catalog rows are searched for its latest skip.
const RECENT_ROWS: usize = 500;

/// Where a database in the status comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Configured, or a fleet member: the entry that governs it.
    Governed(Entry),
    /// Gone from the account: its directory is in storage, no entry names it and the (complete) listing
    /// of the account does not hold it. Its backups are kept; it is never an error.
    Gone,
}

/// One database's state for an on-call glance, judged by the freshness rule of `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Its newest backup, or a later run that found it unchanged, is within the freshness limit, and its
    /// latest run succeeded.
    Fresh,
    /// Fresh, and its latest run found it unchanged since its newest backup (no export).
    Unchanged,
    /// It has a backup, but neither it nor a later unchanged run is within the freshness limit.
    Stale,
    /// Its latest run failed (whatever it has in storage).
    Failing,
    /// No run has ever backed it up or failed (a new member waiting for its first due time).
    Never,
    /// Gone from the account: nothing is expected of it.
    Gone,
}

impl Condition {
    /// Whether an on-call engineer should look at it: a failing or stale database.
    pub fn needs_attention(self) -> bool {
        matches!(self, Condition::Failing | Condition::Stale)
    }
}

/// One database's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseStatus {
    /// The database name (its directory in storage).
    pub database: String,
    /// The entry that governs it, or that it is gone.
    pub origin: Origin,
    /// Its state, from the runs below and its schedule at `now`.
    pub condition: Condition,
    /// When the newest successful run finished.
    pub last_success: Option<DateTime<Utc>>,
    /// The backup that run made.
    pub last_success_backup_id: Option<String>,
    /// When the newest failed run finished (its start when it never finished).
    pub last_failure: Option<DateTime<Utc>>,
    /// Why it failed, as logged.
    pub last_failure_reason: Option<String>,
    /// When the newest run that found the database unchanged (no export) finished.
    pub last_unchanged: Option<DateTime<Utc>>,
    /// The backup that run found still current.
    pub last_unchanged_backup_id: Option<String>,
    /// The latest due time that was skipped (outside its window, or no free slot before the window closed).
    pub last_skipped: Option<DateTime<Utc>>,
    /// Why that due time was skipped.
    pub last_skipped_reason: Option<String>,
    /// The next due time on the schedule (`None` for a gone database).
    pub next_run: Option<DateTime<Utc>>,
}

/// What the catalog knows of one database's runs, as [`condition`] needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runs {
    /// When the newest successful run started and finished.
    pub success: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// When the newest failed run started.
    pub failure: Option<DateTime<Utc>>,
    /// When the newest unchanged run started and finished.
    pub unchanged: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The condition of a database with `runs`, judged at `now` against its schedule's freshness limit (as
/// `/healthz` does). Pure.
pub fn condition(db: &DatabaseConfig, runs: &Runs, tz: Tz, now: DateTime<Utc>) -> Condition {
    let latest_good = std::cmp::max(runs.success.map(|s| s.0), runs.unchanged.map(|u| u.0));
    if runs
        .failure
        .is_some_and(|f| latest_good.is_none_or(|g| f > g))
    {
        return Condition::Failing;
    }
    let Some(as_of) = latest_good else {
        return Condition::Never;
    };
    // A success counts from the time its backup started (the state it holds), an unchanged run from its
    // start too (the database was checked then).
    let limit = schedule::freshness_limit(&db.schedule, db.window, tz, now);
    if now - as_of > limit {
        Condition::Stale
    } else if runs.unchanged.is_some_and(|u| Some(u.0) == latest_good)
        && runs.success.is_none_or(|s| s.0 < as_of)
    {
        Condition::Unchanged
    } else {
        Condition::Fresh
    }
}

/// The status of each of `databases` (with the entry governing it) then of each `gone` database, in
/// that order, read from `catalog` and judged at `now`.
pub async fn statuses(
    config: &Config,
    catalog: &Catalog,
    databases: &[(DatabaseConfig, Entry)],
    gone: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<DatabaseStatus>, CatalogError> {
    let tz = config.daemon.timezone;
    let mut rows = Vec::with_capacity(databases.len() + gone.len());
    for (db, entry) in databases {
        let (mut row, runs) =
            from_catalog(catalog, &db.name, Origin::Governed(entry.clone())).await?;
        row.condition = condition(db, &runs, tz, now);
        row.next_run = schedule::next_runs(&db.schedule, db.window, tz, now, 1)
            .into_iter()
            .find_map(|p| match p {
                PlannedRun::Run { start, .. } => Some(start),
                PlannedRun::Skipped { .. } => None,
            });
        rows.push(row);
    }
    for name in gone {
        rows.push(from_catalog(catalog, name, Origin::Gone).await?.0);
    }
    Ok(rows)
}

/// A row with what the catalog holds for `name` (condition `Gone` or, until judged, `Never`; no next
/// run), and the runs to judge it by.
async fn from_catalog(
    catalog: &Catalog,
    name: &str,
    origin: Origin,
) -> Result<(DatabaseStatus, Runs), CatalogError> {
    let success = catalog.last_success(name).await?;
    let failure = catalog.last_failure(name).await?;
    let unchanged = catalog.last_unchanged(name).await?;
    // Skips are rows like runs; the newest one among the recent rows is enough for an on-call glance.
    let skipped = catalog
        .recent_runs(name, RECENT_ROWS)
        .await?
        .into_iter()
        .find(|r| r.outcome == RunState::Skipped);
    let runs = Runs {
        success: success
            .as_ref()
            .map(|r| (r.started_at, r.finished_at.unwrap_or(r.started_at))),
        failure: failure.as_ref().map(|r| r.started_at),
        unchanged: unchanged
            .as_ref()
            .map(|r| (r.started_at, r.finished_at.unwrap_or(r.started_at))),
    };
    let row = DatabaseStatus {
        database: name.to_string(),
        condition: match origin {
            Origin::Gone => Condition::Gone,
            Origin::Governed(_) => Condition::Never,
        },
        origin,
        last_success: success.as_ref().and_then(|r| r.finished_at),
        last_success_backup_id: success.as_ref().and_then(|r| r.backup_id.clone()),
        last_failure: failure
            .as_ref()
            .and_then(|r| r.finished_at.or(Some(r.started_at))),
        last_failure_reason: failure.and_then(|r| r.error),
        last_unchanged: unchanged.as_ref().and_then(|r| r.finished_at),
        last_unchanged_backup_id: unchanged.and_then(|r| r.backup_id),
        last_skipped: skipped.as_ref().and_then(|r| r.scheduled_for),
        last_skipped_reason: skipped.and_then(|r| r.error),
        next_run: None,
    };
    Ok((row, runs))
}

/// One fleet's line in `status`: how many members it governs and how they stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSummary {
    /// The fleet's position among the `[[fleet]]` tables (from 0).
    pub index: usize,
    /// Its `match` glob, as written.
    pub pattern: String,
    /// Members it governs now.
    pub members: usize,
    /// Members whose newest backup is fresh (not counting `unchanged`).
    pub fresh: usize,
    /// Members fresh because their latest run found them unchanged.
    pub unchanged: usize,
    /// Members with a backup that is no longer fresh.
    pub stale: usize,
    /// Members whose latest run failed.
    pub failing: usize,
    /// Members never backed up yet.
    pub never: usize,
}

/// One summary per fleet in `config` (file order, also a fleet with no member), counting the fleet
/// members among `rows`. Pure.
pub fn summarise(config: &Config, rows: &[DatabaseStatus]) -> Vec<FleetSummary> {
    let mut summaries: Vec<FleetSummary> = config
        .fleets
        .iter()
        .map(|f| FleetSummary {
            index: f.index,
            pattern: f.pattern.as_str().to_string(),
            ..FleetSummary::default()
        })
        .collect();
    for row in rows {
        let Origin::Governed(Entry::Fleet { index, .. }) = &row.origin else {
            continue;
        };
        let Some(s) = summaries.iter_mut().find(|s| s.index == *index) else {
            continue;
        };
        s.members += 1;
        match row.condition {
            Condition::Fresh => s.fresh += 1,
            Condition::Unchanged => s.unchanged += 1,
            Condition::Stale => s.stale += 1,
            Condition::Failing => s.failing += 1,
            Condition::Never => s.never += 1,
            Condition::Gone => {}
        }
    }
    summaries
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::test_time::utc;

    fn daily() -> DatabaseConfig {
        let text = "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n\n[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\n[[database]]\nname = \"blog\"\nschedule = \"0 3 * * *\"\n";
        crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
            .unwrap()
            .databases
            .remove(0)
    }

    #[test]
    fn the_condition_follows_the_latest_run_and_the_freshness_limit() {
        // Proves each condition: a failure after the last success is failing, a success within twice the
        // daily interval is fresh and one past it stale, a later unchanged run makes an old backup fresh
        // as `unchanged`, and no run at all is `never`.
        let db = daily();
        let now = utc("2026-01-10T12:00:00Z");
        let at = |s: &str| (utc(s), utc(s));
        let tz = chrono_tz::UTC;
        let judge = |runs: Runs| condition(&db, &runs, tz, now);
        assert_eq!(judge(Runs::default()), Condition::Never);
        let fresh = Runs {
            success: Some(at("2026-01-10T03:00:00Z")),
            ..Runs::default()
        };
        assert_eq!(judge(fresh), Condition::Fresh);
        let old = Runs {
            success: Some(at("2026-01-07T03:00:00Z")),
            ..Runs::default()
        };
        assert_eq!(judge(old), Condition::Stale);
        assert_eq!(
            judge(Runs {
                unchanged: Some(at("2026-01-10T03:00:00Z")),
                ..old
            }),
            Condition::Unchanged
        );
        assert_eq!(
            judge(Runs {
                failure: Some(utc("2026-01-10T09:00:00Z")),
                ..fresh
            }),
            Condition::Failing
        );
        assert_eq!(
            judge(Runs {
                failure: Some(utc("2026-01-09T09:00:00Z")),
                ..fresh
            }),
            Condition::Fresh,
            "a failure before the last success is over"
        );
        assert_eq!(
            judge(Runs {
                failure: Some(utc("2026-01-09T09:00:00Z")),
                ..Runs::default()
            }),
            Condition::Failing,
            "only failures: failing, with its reason, rather than never"
        );
        assert!(Condition::Stale.needs_attention() && !Condition::Never.needs_attention());
    }
}
