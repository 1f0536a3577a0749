//! `d1vault list [DB] [--json]`: complete backups in storage, newest first, read from manifests only.

use super::present::human_bytes;
use super::{Failure, open_sources};
use crate::cli::ListArgs;
use crate::config::Config;
use crate::repository::backups;

/// Prints the table, or the manifests as a JSON array.
pub async fn run(config: &Config, args: &ListArgs) -> Result<(), Failure> {
    let sources = open_sources(config).await?;
    let manifests = backups::complete(
        sources.storage.as_ref(),
        &sources.prefix,
        args.database.as_deref(),
    )
    .await
    .map_err(|e| Failure::failed(format!("listing backups: {e}")))?;
    if args.json {
        let json = serde_json::to_string_pretty(&manifests).expect("manifests serialize");
        println!("{json}");
        return Ok(());
    }
    if manifests.is_empty() {
        eprintln!("no complete backups in {}", sources.storage.describe());
        return Ok(());
    }
    println!(
        "{:<20} {:<17} {:<20} {:>12} {:>12} {:>7} {:>10}  NEWEST MIGRATION",
        "DATABASE", "BACKUP ID", "STARTED (UTC)", "STORED", "SQL", "TABLES", "ROWS"
    );
    for m in &manifests {
        let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
        println!(
            "{:<20} {:<17} {:<20} {:>12} {:>12} {:>7} {:>10}  {}",
            m.database.name,
            m.backup_id,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(m.dump.size),
            human_bytes(m.dump.raw_size),
            m.tables.len(),
            rows,
            m.newest_migration().unwrap_or("-"),
        );
    }
    Ok(())
}
