//! Restoring into SQLite: a new file written atomically (temporary file, one transaction, prepared
//! statements, `integrity_check`, then rename), and the scratch databases `verify` loads backups into.
//!
//! SQLite work runs on a blocking thread; the async side reads, checks and splits the dump and sends the
//! statements over a bounded channel (a few chunks' worth), so decompression and inserts run on two cores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params_from_iter, types::Value as SqlParam};
use tokio::sync::mpsc;

use super::{Phase, Progress, RestoreError, StatementBatch, phase_of, read_statements};
use crate::manifest::Manifest;
use crate::sql::{SqlValue, parse_insert, quote_identifier};
use crate::storage::Storage;

/// What a loaded database looks like, for `verify` and for the restore report.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// `PRAGMA integrity_check` output (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// `PRAGMA foreign_key_check` violations, as text.
    pub foreign_key_violations: Vec<String>,
    /// Row counts of the manifest's tables as found in the loaded database (`None`: table missing).
    pub row_counts: Vec<(String, Option<u64>)>,
    /// The user tables the loaded database holds (ordinary tables, not `sqlite_*`/`_cf_*`, virtual or
    /// shadow tables): compared with the manifest's list so that the row check covers every table.
    pub tables_found: Vec<String>,
}

impl LoadReport {
    /// Mismatches against the manifest, in words; empty when the backup checks out. The set of tables
    /// must match too: every manifest table exists with its row count, every user table the dump created
    /// is in the manifest (so `tables: []` cannot make the row check vacuous), a `tables` export filter
    /// holds only the tables it names, and a `no_data` export has no rows.
    pub fn problems(&self, manifest: &Manifest) -> Vec<String> {
        let mut problems = Vec::new();
        if self.integrity != ["ok"] {
            problems.push(format!("integrity_check: {}", self.integrity.join("; ")));
        }
        for v in &self.foreign_key_violations {
            problems.push(format!("foreign_key_check: {v}"));
        }
        for table in &manifest.tables {
            let found = self
                .row_counts
                .iter()
                .find(|(name, _)| *name == table.name)
                .and_then(|(_, n)| *n);
            match found {
                Some(n) if n == table.rows => {}
                Some(n) => problems.push(format!(
                    "table {}: {n} rows, the manifest says {}",
                    table.name, table.rows
                )),
                None => problems.push(format!("table {}: missing after load", table.name)),
            }
        }
        for name in &self.tables_found {
            if !manifest
                .tables
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(name))
            {
                problems.push(format!(
                    "table {name}: in the dump but not in the manifest's tables, so its rows were never counted"
                ));
            }
        }
        if !manifest.export.tables.is_empty() {
            for table in &manifest.tables {
                if !manifest
                    .export
                    .tables
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&table.name))
                {
                    problems.push(format!(
                        "table {}: outside the export's tables filter ({})",
                        table.name,
                        manifest.export.tables.join(", ")
                    ));
                }
            }
        }
        if manifest.export.no_data {
            for table in manifest.tables.iter().filter(|t| t.rows > 0) {
                problems.push(format!(
                    "table {}: the manifest says {} rows but the export had no_data",
                    table.name, table.rows
                ));
            }
        }
        problems
    }
}

/// Loads the backup into a new SQLite database at `path` (which must not exist) and checks it. The file is
/// complete and committed when this returns `Ok`; on error it may be partial and the caller removes it.
pub async fn load_into_new_file(
    storage: &dyn Storage,
    manifest: &Manifest,
    path: &Path,
    progress: &mut Progress,
) -> Result<LoadReport, RestoreError> {
    let (tx, rx) = mpsc::channel::<StatementBatch>(4);
    let db_path = path.to_path_buf();
    let tables: Vec<String> = manifest.tables.iter().map(|t| t.name.clone()).collect();
    let writer = tokio::task::spawn_blocking(move || apply_all(&db_path, rx, &tables));

    let read = read_statements(storage, manifest, progress, async |batch| {
        // A closed channel means the writer failed; its error is reported below.
        let _ = tx.send(batch).await;
        Ok(())
    })
    .await;
    // Dropping the sender tells the writer the dump is complete. After a read error the writer's result is
    // irrelevant: the read error (damage, outage) is what the user must see.
    drop(tx);
    let written = writer
        .await
        .map_err(|e| RestoreError::Target(format!("the SQLite writer stopped: {e}")))?;
    read?;
    written.map_err(RestoreError::Target)
}

/// The blocking side: applies statements in restore order inside one transaction, then checks the result.
fn apply_all(
    path: &Path,
    mut rx: mpsc::Receiver<StatementBatch>,
    tables: &[String],
) -> Result<LoadReport, String> {
    let mut conn =
        Connection::open(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    // A fresh file that is renamed into place only when complete: no journal needed until then.
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA foreign_keys=OFF;")
        .map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let mut late: Vec<String> = Vec::new();
    let mut inserter = Inserter::default();
    while let Some(batch) = rx.blocking_recv() {
        for (stmt, kind) in batch {
            match phase_of(&kind) {
                Phase::Skip => {}
                Phase::Late => late.push(stmt),
                Phase::Rows => inserter
                    .insert(&tx, &stmt)
                    .map_err(|e| statement_error(&stmt, &e))?,
                Phase::Schema => tx
                    .execute_batch(&stmt)
                    .map_err(|e| statement_error(&stmt, &e))?,
            }
        }
    }
    for stmt in &late {
        tx.execute_batch(stmt)
            .map_err(|e| statement_error(stmt, &e))?;
    }
    drop(inserter);
    tx.commit().map_err(|e| format!("committing: {e}"))?;
    let report =
        inspect(&conn, tables).map_err(|e| format!("checking the restored database: {e}"))?;
    conn.execute_batch("PRAGMA journal_mode=DELETE;")
        .map_err(|e| e.to_string())?;
    conn.close().map_err(|(_, e)| e.to_string())?;
    Ok(report)
}

fn statement_error(stmt: &str, e: &dyn std::fmt::Display) -> String {
    let head: String = stmt.chars().take(120).collect();
    format!("statement failed: {e}: {head}")
}

/// Inserts rows through cached prepared statements (`INSERT INTO "t" ("c",…) VALUES (?,…)`), which skips
/// SQLite's parser for every row; statements it cannot parse run as text.
#[derive(Default)]
struct Inserter {
    sql_for: HashMap<(String, Option<Vec<String>>, usize), String>,
}

impl Inserter {
    fn insert(&mut self, conn: &Connection, stmt: &str) -> rusqlite::Result<()> {
        let Some(insert) = parse_insert(stmt) else {
            return conn.execute_batch(stmt);
        };
        let key = (
            insert.table.clone(),
            insert.columns.clone(),
            insert.values.len(),
        );
        let sql = self.sql_for.entry(key).or_insert_with(|| {
            let placeholders = vec!["?"; insert.values.len()].join(",");
            match &insert.columns {
                Some(columns) => format!(
                    "INSERT INTO {} ({}) VALUES ({placeholders})",
                    quote_identifier(&insert.table),
                    columns
                        .iter()
                        .map(|c| quote_identifier(c))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                None => format!(
                    "INSERT INTO {} VALUES ({placeholders})",
                    quote_identifier(&insert.table)
                ),
            }
        });
        let mut prepared = conn.prepare_cached(sql)?;
        prepared.execute(params_from_iter(insert.values.into_iter().map(to_param)))?;
        Ok(())
    }
}

fn to_param(value: SqlValue) -> SqlParam {
    match value {
        SqlValue::Null => SqlParam::Null,
        SqlValue::Integer(i) => SqlParam::Integer(i),
        SqlValue::Real(f) => SqlParam::Real(f),
        SqlValue::Text(s) => SqlParam::Text(s),
        SqlValue::Blob(b) => SqlParam::Blob(b),
    }
}

/// Runs the post-load checks: integrity, foreign keys, and row counts of `tables`.
pub fn inspect(conn: &Connection, tables: &[String]) -> rusqlite::Result<LoadReport> {
    let integrity = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let foreign_key_violations = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |row| {
            let table: String = row.get(0)?;
            let rowid: Option<i64> = row.get(1)?;
            let parent: String = row.get(2)?;
            Ok(format!(
                "row {rowid:?} of {table} references a missing row of {parent}"
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut row_counts = Vec::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM {}", quote_identifier(table));
        let count = conn
            .query_row(&sql, [], |row| row.get::<_, i64>(0))
            .ok()
            .map(|n| n as u64);
        row_counts.push((table.clone(), count));
    }
    let tables_found = conn
        .prepare(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LoadReport {
        integrity,
        foreign_key_violations,
        row_counts,
        tables_found,
    })
}

/// A temporary path next to `target` for an atomic write.
pub fn temporary_sibling(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "restore".into());
    target.with_file_name(format!(".{name}.d1vault-restore-{}", std::process::id()))
}
