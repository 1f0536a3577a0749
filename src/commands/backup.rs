//! `d1vault backup [DB...] [--force]`: back up now, once. Prints `<backup id> <database>` on stdout for
//! each new backup, `unchanged <database> (newest backup <id>)` for a D1 database whose data has not
//! changed since its newest backup (`skip_unchanged`; `--force` exports anyway); failures go to stderr and
//! make the exit status 1.

use futures_util::StreamExt;

use super::{Failure, open_sources, unknown_databases};
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::fleet;
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
    let results: Vec<_> = futures_util::stream::iter(&selection.databases)
        .map(|db| {
            let sources = &sources;
            async move { (db, backup_unless_unchanged(db, sources, args.force).await) }
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
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}
