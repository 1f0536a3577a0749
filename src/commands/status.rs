//! `d1vault status [--json]`: per database, the last success, the last failure with its reason, the last
//! run that found the database unchanged since its newest backup (`skip_unchanged`), and the next
//! scheduled run, read from the catalog in `state_dir` (works whether or not the daemon runs).

use chrono::Utc;
use serde::Serialize;

use super::Failure;
use crate::catalog::{Catalog, RunState};
use crate::cli::StatusArgs;
use crate::config::Config;
use crate::schedule::{self, PlannedRun};

/// How many of a database's newest catalog rows are searched for its latest skip.
const RECENT_ROWS: usize = 500;

/// One database's status.
#[derive(Debug, Serialize)]
pub struct DatabaseStatus {
    /// The configured database name.
    pub database: String,
    /// When the newest successful run finished (RFC 3339).
    pub last_success: Option<String>,
    /// The backup that run made.
    pub last_success_backup_id: Option<String>,
    /// When the newest failed run finished (RFC 3339).
    pub last_failure: Option<String>,
    /// Why it failed, as logged.
    pub last_failure_reason: Option<String>,
    /// When the newest run that found the database unchanged (no export) finished (RFC 3339).
    pub last_unchanged: Option<String>,
    /// The backup that run found still current.
    pub last_unchanged_backup_id: Option<String>,
    /// The latest due time that was skipped (outside its window, or no free slot before the window closed).
    pub last_skipped: Option<String>,
    /// Why that due time was skipped.
    pub last_skipped_reason: Option<String>,
    /// The next due time on the schedule (RFC 3339).
    pub next_run: Option<String>,
}

/// Prints the status table or JSON.
pub async fn run(config: &Config, args: &StatusArgs) -> Result<(), Failure> {
    let catalog = Catalog::open(&config.daemon.state_dir).await.map_err(|e| {
        Failure::failed(format!(
            "opening the catalog in {}: {e}",
            config.daemon.state_dir.display()
        ))
    })?;
    let now = Utc::now();
    let tz = config.daemon.timezone;
    let mut rows = Vec::new();
    for db in &config.databases {
        let success = catalog
            .last_success(&db.name)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        let failure = catalog
            .last_failure(&db.name)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        let unchanged = catalog
            .last_unchanged(&db.name)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        // Skips are rows like runs; the newest one among the recent rows is enough for an on-call glance.
        let skipped = catalog
            .recent_runs(&db.name, RECENT_ROWS)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?
            .into_iter()
            .find(|r| r.outcome == RunState::Skipped);
        let next = schedule::next_runs(&db.schedule, db.window, tz, now, 1)
            .into_iter()
            .find_map(|p| match p {
                PlannedRun::Run { start, .. } => Some(start),
                PlannedRun::Skipped { .. } => None,
            });
        rows.push(DatabaseStatus {
            database: db.name.clone(),
            last_success: success
                .as_ref()
                .and_then(|r| r.finished_at)
                .map(|t| t.with_timezone(&tz).to_rfc3339()),
            last_success_backup_id: success.as_ref().and_then(|r| r.backup_id.clone()),
            last_failure: failure
                .as_ref()
                .and_then(|r| r.finished_at.or(Some(r.started_at)))
                .map(|t| t.with_timezone(&tz).to_rfc3339()),
            last_failure_reason: failure.and_then(|r| r.error),
            last_unchanged: unchanged
                .as_ref()
                .and_then(|r| r.finished_at)
                .map(|t| t.with_timezone(&tz).to_rfc3339()),
            last_unchanged_backup_id: unchanged.and_then(|r| r.backup_id),
            last_skipped: skipped
                .as_ref()
                .and_then(|r| r.scheduled_for)
                .map(|t| t.with_timezone(&tz).to_rfc3339()),
            last_skipped_reason: skipped.and_then(|r| r.error),
            next_run: next.map(|t| t.with_timezone(&tz).to_rfc3339()),
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("status serializes")
        );
        return Ok(());
    }
    for r in &rows {
        println!("{}", r.database);
        println!(
            "  last success: {}",
            r.last_success
                .as_deref()
                .map(|t| format!(
                    "{t} ({})",
                    r.last_success_backup_id.as_deref().unwrap_or("?")
                ))
                .unwrap_or_else(|| "never".into())
        );
        match (&r.last_failure, &r.last_failure_reason) {
            (Some(t), reason) => println!(
                "  last failure: {t}: {}",
                reason.as_deref().unwrap_or("no reason recorded")
            ),
            (None, _) => println!("  last failure: none"),
        }
        if let Some(t) = &r.last_unchanged {
            println!(
                "  unchanged:    {t} (newest backup {} still current)",
                r.last_unchanged_backup_id.as_deref().unwrap_or("?")
            );
        }
        if let Some(t) = &r.last_skipped {
            println!(
                "  last skipped: {t}: {}",
                r.last_skipped_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            );
        }
        println!(
            "  next run:     {}",
            r.next_run.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}
