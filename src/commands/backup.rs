//! `d1vault backup [DB...] [--force] [--dry-run] [--json]`: back up now, once. Prints `<backup id>
//! <database>` on stdout for each new backup, `unchanged <database> (newest backup <id>)` for a D1 database
//! whose data has not changed since its newest backup (`skip_unchanged`; `--force` exports anyway), or with
//! `--json` one array of results; failures go to stderr and make the exit status 1. Each run is recorded
//! in the catalog (`status` shows it; the daemon counts it). `--dry-run` says what each database would
//! get and changes nothing.

use std::io::IsTerminal;

use futures_util::StreamExt;

use super::{Failure, open_sources, unknown_databases};
use crate::catalog::{Catalog, RunId, RunOutcome};
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::fleet;
use crate::notify::{Event, EventKind, Notifier};
use crate::pipeline::unchanged::{self, BackupRun, Decision, backup_unless_unchanged};

/// Runs the backups, up to `daemon.max_concurrent` at once: the named databases, or every configured
/// database and every fleet member found in the account.
pub async fn run(config: &Config, args: &BackupArgs) -> Result<(), Failure> {
    if config.backup_needs_d1(&args.databases) {
        super::require_d1(config)?;
    }
    let sources = open_sources(config).await?;
    let selection = fleet::select(config, &sources, &args.databases).await;
    if !selection.unknown.is_empty() {
        return Err(unknown_databases(config, &selection.unknown));
    }
    for warning in &selection.warnings {
        tracing::warn!("{warning}");
    }
    let mut failures = Vec::new();
    if let Some(e) = &selection.discovery {
        failures.push(format!("fleet members were not backed up: {e}"));
    }
    if args.dry_run {
        for db in &selection.databases {
            let (decision, _) = unchanged::check(db, &sources, args.force).await;
            match decision {
                Decision::Skip(u) => println!(
                    "would skip {} (unchanged since backup {}: same bookmark)",
                    db.name, u.backup_id
                ),
                Decision::Export(reason) => println!("would export {} ({reason})", db.name),
            }
        }
        return finish(failures);
    }
    // One database on a terminal: a redrawn progress line; otherwise a log line a minute.
    crate::progress_log::draw_on_terminal(
        selection.databases.len() == 1 && std::io::stderr().is_terminal(),
    );
    let notifier = Notifier::for_command(&config.notify);
    // Every run counts: a manual backup is recorded where `status` and the daemon look. Best effort: a
    // state_dir this user cannot write costs the backup nothing.
    let catalog = match Catalog::open(&config.daemon.state_dir).await {
        Ok(catalog) => Some(catalog),
        Err(e) => {
            tracing::warn!(
                state_dir = %config.daemon.state_dir.display(),
                error = %e,
                "this backup is not recorded in the catalog (status will not show it)"
            );
            None
        }
    };
    let results: Vec<_> = futures_util::stream::iter(&selection.databases)
        .map(|db| {
            let (sources, notifier, catalog) = (&sources, &notifier, catalog.as_ref());
            async move {
                let started_at = chrono::Utc::now();
                notifier.send(&Event::new(EventKind::Start, &db.name, started_at));
                let run = match catalog {
                    Some(catalog) => catalog
                        .start_run(&db.name, None, started_at, None)
                        .await
                        .ok(),
                    None => None,
                };
                let result = backup_unless_unchanged(db, sources, args.force).await;
                if let (Some(catalog), Some(run)) = (catalog, run) {
                    record(catalog, run, &result).await;
                }
                notifier.send(&finished(&db.name, &result, started_at));
                (db, result)
            }
        })
        .buffered(config.daemon.max_concurrent.max(1))
        .collect()
        .await;
    let mut results_json = Vec::new();
    for (db, result) in results {
        if args.json {
            results_json.push(result_json(&db.name, &result));
        }
        match result {
            Ok(BackupRun::Backed(manifest)) if !args.json => {
                println!("{} {}", manifest.backup_id, db.name)
            }
            Ok(BackupRun::Unchanged(u)) if !args.json => {
                println!("unchanged {} (newest backup {})", db.name, u.backup_id)
            }
            Ok(_) => {}
            Err(e) => {
                // The failure is final: an ERROR event, where alerting on error level sees it.
                tracing::error!(database = %db.name, error = %e, "backup failed");
                failures.push(format!("backup of {} failed: {e}", db.name))
            }
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&results_json).expect("results serialize");
        println!("{text}");
    }
    // Bounded: a receiver that hangs delays the exit by at most one delivery's worst case.
    notifier.finish_in_time().await;
    finish(failures)
}

/// Exit 0, or 1 with every failure.
fn finish(failures: Vec<String>) -> Result<(), Failure> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}

/// One database's object in `backup --json`.
fn result_json<E: std::fmt::Display>(
    database: &str,
    result: &Result<BackupRun, E>,
) -> serde_json::Value {
    match result {
        Ok(BackupRun::Backed(m)) => serde_json::json!({
            "database": database,
            "result": "success",
            "backup_id": m.backup_id,
            "raw_bytes": m.dump.raw_size,
            "stored_bytes": m.dump.size,
        }),
        Ok(BackupRun::Unchanged(u)) => serde_json::json!({
            "database": database,
            "result": "unchanged",
            "backup_id": u.backup_id,
        }),
        Err(e) => serde_json::json!({
            "database": database,
            "result": "failure",
            "error": e.to_string(),
        }),
    }
}

/// Finishes the catalog row of a manual run (best effort, as its start).
async fn record<E: std::fmt::Display>(
    catalog: &Catalog,
    run: RunId,
    result: &Result<BackupRun, E>,
) {
    let now = chrono::Utc::now();
    let recorded = match result {
        Ok(BackupRun::Backed(m)) => {
            let _ = catalog.set_backup_id(run, &m.backup_id).await;
            catalog
                .finish_run(
                    run,
                    RunOutcome::Success,
                    None,
                    Some(m.dump.raw_size),
                    Some(m.dump.size),
                    now,
                )
                .await
        }
        Ok(BackupRun::Unchanged(u)) => {
            let _ = catalog.set_backup_id(run, &u.backup_id).await;
            catalog
                .finish_run(run, RunOutcome::Unchanged, None, None, None, now)
                .await
        }
        Err(e) => {
            catalog
                .finish_run(
                    run,
                    RunOutcome::Failed,
                    Some(e.to_string()),
                    None,
                    None,
                    now,
                )
                .await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "catalog write failed");
    }
}

/// The notification of a finished backup of `database`.
fn finished<E: std::fmt::Display>(
    database: &str,
    result: &Result<BackupRun, E>,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Event {
    let now = chrono::Utc::now();
    match result {
        Ok(BackupRun::Backed(m)) => Event::new(EventKind::Success, database, now)
            .with_backup(&m.backup_id)
            .with_sizes(m.dump.raw_size, m.dump.size),
        Ok(BackupRun::Unchanged(u)) => {
            Event::new(EventKind::Unchanged, database, now).with_backup(&u.backup_id)
        }
        Err(e) => Event::new(EventKind::Failure, database, now).with_error(e.to_string()),
    }
    .with_duration_since(started_at)
}
