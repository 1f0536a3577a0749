//! `d1vault backup [DB...] [--force]`: back up now, once. Prints `<backup id> <database>` on stdout for
//! each new backup, `unchanged <database> (newest backup <id>)` for a D1 database whose data has not
//! changed since its newest backup (`skip_unchanged`; `--force` exports anyway); failures go to stderr and
//! make the exit status 1.

use futures_util::StreamExt;

use super::{Failure, open_sources, unknown_databases};
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::fleet;
use crate::notify::{Event, EventKind, Notifier};
use crate::pipeline::unchanged::{BackupRun, backup_unless_unchanged};

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
    let notifier = Notifier::for_command(&config.notify);
    let results: Vec<_> = futures_util::stream::iter(&selection.databases)
        .map(|db| {
            let (sources, notifier) = (&sources, &notifier);
            async move {
                let started_at = chrono::Utc::now();
                notifier.send(&Event::new(EventKind::Start, &db.name, started_at));
                let result = backup_unless_unchanged(db, sources, args.force).await;
                notifier.send(&finished(&db.name, &result, started_at));
                (db, result)
            }
        })
        .buffered(config.daemon.max_concurrent.max(1))
        .collect()
        .await;
    for (db, result) in results {
        match result {
            Ok(BackupRun::Backed(manifest)) => println!("{} {}", manifest.backup_id, db.name),
            Ok(BackupRun::Unchanged(u)) => {
                println!("unchanged {} (newest backup {})", db.name, u.backup_id)
            }
            Err(e) => {
                // The failure is final: an ERROR event, where alerting on error level sees it.
                tracing::error!(database = %db.name, error = %e, "backup failed");
                failures.push(format!("backup of {} failed: {e}", db.name))
            }
        }
    }
    // Bounded: a receiver that hangs delays the exit by at most one delivery's worst case.
    notifier.finish_in_time().await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
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
