//! `d1vault list [DB] [--json]`: complete backups in storage, newest first, read from manifests only.
//! With a `[[fleet]]` configured the account is listed too, and the backups of a database gone from it
//! (neither configured nor listed; only when the listing was complete) are marked: `gone` at the end of
//! the text row, `"gone": true` added to the manifest's object in `--json` (absent otherwise, and the
//! stored manifests are unchanged). A failed listing marks nothing and is a warning, not an error.

use std::collections::BTreeSet;

use serde::Serialize;

use super::present::human_bytes;
use super::{Failure, open_sources};
use crate::cli::ListArgs;
use crate::config::Config;
use crate::fleet;
use crate::repository::backups;
use crate::repository::manifest::Manifest;

/// A manifest as `list --json` prints it: the manifest's own fields, then `"gone": true` for a database
/// gone from the account.
#[derive(Debug, Serialize)]
pub struct Listed<'a> {
    /// The backup's manifest, as stored.
    #[serde(flatten)]
    pub manifest: &'a Manifest,
    /// The database is gone from the account (present only then).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
}

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
    let gone: BTreeSet<String> = if config.fleets.is_empty() || manifests.is_empty() {
        BTreeSet::new()
    } else {
        match fleet::discover(config, &sources).await {
            Ok(resolution) => {
                let stored: BTreeSet<String> =
                    manifests.iter().map(|m| m.database.name.clone()).collect();
                fleet::gone(config, resolution.listed.as_deref().unwrap_or(&[]), &stored)
                    .into_iter()
                    .collect()
            }
            Err(e) => {
                eprintln!("warning: databases gone from the account are not marked: {e}");
                BTreeSet::new()
            }
        }
    };
    if args.json {
        let listed: Vec<Listed<'_>> = manifests
            .iter()
            .map(|m| Listed {
                manifest: m,
                gone: gone.contains(&m.database.name),
            })
            .collect();
        let json = serde_json::to_string_pretty(&listed).expect("manifests serialize");
        println!("{json}");
        return Ok(());
    }
    if manifests.is_empty() {
        let (of, hint) = match &args.database {
            Some(name) => (
                format!(" of {name}"),
                backups::name_hint(sources.storage.as_ref(), &sources.prefix, name).await,
            ),
            None => (String::new(), String::new()),
        };
        eprintln!(
            "no complete backups{of} in {}{hint}",
            sources.storage.describe()
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<17} {:<20} {:>12} {:>12} {:>7} {:>10}  NEWEST MIGRATION",
        "DATABASE", "BACKUP ID", "STARTED (UTC)", "STORED", "SQL", "TABLES", "ROWS"
    );
    for m in &manifests {
        let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
        println!(
            "{:<20} {:<17} {:<20} {:>12} {:>12} {:>7} {:>10}  {}{}",
            m.database.name,
            m.backup_id,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(m.dump.size),
            human_bytes(m.dump.raw_size),
            m.tables.len(),
            rows,
            m.newest_migration().unwrap_or("-"),
            if gone.contains(&m.database.name) {
                "  gone"
            } else {
                ""
            },
        );
        // After a key rotation, which identity opens which backup.
        if let Some(encryption) = &m.encryption {
            println!(
                "{:<20} {:<17} encrypted ({}) to {}",
                "",
                "",
                encryption.kind,
                encryption.recipients.join(", ")
            );
        }
    }
    Ok(())
}
