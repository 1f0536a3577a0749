//! `d1vault status [--json]`: per database, the last success, the last failure with its reason, the last
//! run that found the database unchanged since its newest backup (`skip_unchanged`), and the next
//! scheduled run, read from the catalog in `state_dir` (works whether or not the daemon runs); the rows
//! come from [`crate::status`]. Configured databases print as blocks; each fleet prints one summary line
//! and a line per member that is failing or stale; a database gone from the account prints as gone.
//! `--json` has every row: a member's adds `entry` and `condition`, a gone one's `"gone": true`. A
//! failed listing of the account still prints the configured databases, then exits 1.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{Failure, open_sources};
use crate::catalog::Catalog;
use crate::cli::StatusArgs;
use crate::config::Config;
use crate::fleet::{self, Entry};
use crate::repository::backups;
use crate::status::{self as engine, Condition, Origin};

/// How `--json` and the text name a condition.
fn condition_name(c: Condition) -> &'static str {
    match c {
        Condition::Fresh => "fresh",
        Condition::Unchanged => "unchanged",
        Condition::Stale => "stale",
        Condition::Failing => "failing",
        Condition::Never => "never",
        Condition::Gone => "gone",
    }
}

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
    /// For a fleet member: `{"kind": "fleet", "index": N, "match": "GLOB"}` (absent for a configured
    /// database, so that its row reads as before fleets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
    /// For a fleet member or a gone database: `fresh`, `unchanged`, `stale`, `failing`, `never` or `gone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<&'static str>,
    /// `true` for a database gone from the account (its backups are kept); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
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
            entry: match &row.origin {
                Origin::Governed(e @ Entry::Fleet { .. }) => Some(e.clone()),
                _ => None,
            },
            condition: match &row.origin {
                Origin::Governed(Entry::Database { .. }) => None,
                _ => Some(condition_name(row.condition)),
            },
            gone: row.origin == Origin::Gone,
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
    let mut failures = Vec::new();
    let (databases, gone) = if config.fleets.is_empty() {
        let configured: Vec<_> = config
            .databases
            .iter()
            .enumerate()
            .map(|(index, db)| (db.clone(), Entry::Database { index }))
            .collect();
        (configured, Vec::new())
    } else {
        let sources = open_sources(config).await?;
        let selection = fleet::select(config, &sources, &[]).await;
        for warning in &selection.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(e) = &selection.discovery {
            failures.push(format!("fleet members were not covered: {e}"));
        }
        let gone = if selection.listed.is_some() {
            match backups::database_names(sources.storage.as_ref(), &sources.prefix).await {
                Ok(stored) => selection.gone(config, &stored),
                Err(e) => {
                    failures.push(format!(
                        "listing storage failed, gone databases are not shown: {e}"
                    ));
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let databases = selection
            .databases
            .into_iter()
            .zip(selection.entries)
            .collect();
        (databases, gone)
    };
    let tz = config.daemon.timezone;
    let engine_rows = engine::statuses(config, &catalog, &databases, &gone, Utc::now())
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    let rows: Vec<DatabaseStatus> = engine_rows
        .iter()
        .map(|r| DatabaseStatus::from_row(r, tz))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("status serializes")
        );
        return finish(failures);
    }
    for r in rows.iter().filter(|r| r.condition.is_none()) {
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
    print_fleets(config, &engine_rows, &rows);
    for r in rows.iter().filter(|r| r.gone) {
        println!(
            "{}\n  gone from the account: its backups are kept (prune never deletes them); last success: {}",
            r.database,
            r.last_success.as_deref().unwrap_or("never")
        );
    }
    finish(failures)
}

/// Exit 1 with every reason when something was not covered.
fn finish(failures: Vec<String>) -> Result<(), Failure> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}

/// One summary line per fleet, then a line for each member that needs attention (failing or stale).
fn print_fleets(config: &Config, engine_rows: &[engine::DatabaseStatus], rows: &[DatabaseStatus]) {
    for s in engine::summarise(config, engine_rows) {
        println!(
            "fleet[{}] match {:?}: {} members: {} fresh, {} unchanged, {} stale, {} failing, {} never backed up",
            s.index, s.pattern, s.members, s.fresh, s.unchanged, s.stale, s.failing, s.never
        );
        for (row, r) in engine_rows.iter().zip(rows) {
            let Origin::Governed(Entry::Fleet { index, .. }) = &row.origin else {
                continue;
            };
            if *index != s.index || !row.condition.needs_attention() {
                continue;
            }
            match row.condition {
                Condition::Failing => println!(
                    "  failing {}: last failure {}: {}",
                    r.database,
                    r.last_failure.as_deref().unwrap_or("?"),
                    r.last_failure_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
                _ => println!(
                    "  stale   {}: last success {}",
                    r.database,
                    r.last_success.as_deref().unwrap_or("never")
                ),
            }
        }
    }
}
