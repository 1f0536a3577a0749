//! `d1vault databases [--json]`: what a backup would cover now: each configured database and each fleet
//! member found in the account (one list request per page), with the entry that governs it. Warnings
//! (a fleet that governs nothing) go to stderr; a listing that fails is exit 1.

use serde::Serialize;

use super::{Failure, open_sources, require_d1};
use crate::cli::DatabasesArgs;
use crate::config::{Config, Source};
use crate::fleet::{self, Entry};

/// One database as `databases --json` prints it.
#[derive(Debug, Serialize)]
pub struct DatabaseRow {
    /// The database name (its directory in storage).
    pub name: String,
    /// The D1 id: configured, or as listed for a fleet member; `null` when looked up by name or SQLite.
    pub id: Option<String>,
    /// `"d1"` or `"sqlite"`.
    pub source: &'static str,
    /// The entry that governs it: `{"kind": "database", "index": N}` or
    /// `{"kind": "fleet", "index": N, "match": "GLOB"}` (indexes count the file's tables from 0).
    pub entry: Entry,
    /// Its schedule, as written.
    pub schedule: String,
}

/// Lists the account when a fleet is configured, then prints the table or JSON.
pub async fn run(config: &Config, args: &DatabasesArgs) -> Result<(), Failure> {
    require_d1(config)?;
    let sources = open_sources(config).await?;
    let resolution = fleet::discover(config, &sources)
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    for warning in &resolution.warnings {
        eprintln!("warning: {warning}");
    }
    let rows: Vec<DatabaseRow> = resolution
        .members
        .iter()
        .map(|m| DatabaseRow {
            name: m.config.name.clone(),
            id: match &m.config.source {
                Source::D1 { id } => id.clone(),
                Source::Sqlite { .. } => None,
            },
            source: fleet::source_kind(&m.config.source),
            entry: m.entry.clone(),
            schedule: m.config.schedule.expr().to_string(),
        })
        .collect();
    if args.json {
        let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
        println!("{json}");
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no databases to back up");
        return Ok(());
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(8);
    println!(
        "{:<width$}  {:<6}  {:<28}  SCHEDULE",
        "DATABASE", "SOURCE", "ENTRY"
    );
    for r in &rows {
        println!(
            "{:<width$}  {:<6}  {:<28}  {}",
            r.name,
            r.source,
            r.entry.to_string(),
            r.schedule
        );
    }
    Ok(())
}
