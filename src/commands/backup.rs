//! `d1vault backup [DB...]`: back up now, once. Prints `<backup id> <database>` on stdout for each new
//! backup; failures go to stderr and make the exit status 1.

use futures_util::StreamExt;

use super::{Failure, open_sources, select_databases};
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::pipeline::run_backup_now;

/// Runs the backups, up to `daemon.max_concurrent` at once.
pub async fn run(config: &Config, args: &BackupArgs) -> Result<(), Failure> {
    let databases = select_databases(config, &args.databases)?;
    let sources = open_sources(config).await?;
    let results: Vec<_> = futures_util::stream::iter(databases)
        .map(|db| {
            let sources = &sources;
            async move { (db, run_backup_now(db, sources).await) }
        })
        .buffered(config.daemon.max_concurrent.max(1))
        .collect()
        .await;
    let mut failures = Vec::new();
    for (db, result) in results {
        match result {
            Ok(manifest) => println!("{} {}", manifest.backup_id, db.name),
            Err(e) => failures.push(format!("backup of {} failed: {e}", db.name)),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}
