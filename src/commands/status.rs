//! `d1vault status [--json]`: per database, the last success, the last failure with its reason, the last
//! run that found the database unchanged since its newest backup (`skip_unchanged`), and the next
//! scheduled run, read from the catalog in `state_dir` (works whether or not the daemon runs).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::Failure;
use crate::catalog::Catalog;
use crate::cli::StatusArgs;
use crate::config::Config;
use crate::fleet::Entry;
use crate::status::{self as engine};

/// One database's status as `status --json` prints it (times RFC 3339 in `daemon.timezone`).
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

impl DatabaseStatus {
    /// The printed form of a library row.
    fn from_row(row: &engine::DatabaseStatus, tz: Tz) -> Self {
        let time = |t: &Option<DateTime<Utc>>| t.map(|t| t.with_timezone(&tz).to_rfc3339());
        DatabaseStatus {
            database: row.database.clone(),
            last_success: time(&row.last_success),
            last_success_backup_id: row.last_success_backup_id.clone(),
            last_failure: time(&row.last_failure),
            last_failure_reason: row.last_failure_reason.clone(),
            last_unchanged: time(&row.last_unchanged),
            last_unchanged_backup_id: row.last_unchanged_backup_id.clone(),
            last_skipped: time(&row.last_skipped),
            last_skipped_reason: row.last_skipped_reason.clone(),
            next_run: time(&row.next_run),
        }
    }
}

/// Prints the status table or JSON.
pub async fn run(config: &Config, args: &StatusArgs) -> Result<(), Failure> {
    let catalog = Catalog::open(&config.daemon.state_dir).await.map_err(|e| {
        Failure::failed(format!(
            "opening the catalog in {}: {e}",
            config.daemon.state_dir.display()
        ))
    })?;
    let databases: Vec<_> = config
        .databases
        .iter()
        .enumerate()
        .map(|(index, db)| (db.clone(), Entry::Database { index }))
        .collect();
    let tz = config.daemon.timezone;
    let rows: Vec<DatabaseStatus> = engine::statuses(config, &catalog, &databases, &[], Utc::now())
        .await
        .map_err(|e| Failure::failed(e.to_string()))?
        .iter()
        .map(|r| DatabaseStatus::from_row(r, tz))
        .collect();
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
