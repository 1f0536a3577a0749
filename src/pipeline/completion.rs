//! D1 databases with virtual tables (FTS5): D1 refuses to export them whole, so the backup reads the schema
//! through the query API first, exports the ordinary tables by name and completes the same streamed dump
//! with what that export leaves out, in the format `docs/d1-dump-format.md` defines ("Virtual tables"):
//! each `CREATE VIRTUAL TABLE` with its contents (rows read through paged `/query` calls, or the
//! `'rebuild'` command of an external-content table), then the indexes, triggers and views the export did
//! not hold. [`plan`] is the pure policy; [`complete`] streams.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use super::source::SqliteDumpReader;
use crate::cloudflare::{ApiError, Client, Download};
use d1_dump::{
    DumpError, DumpOptions, FtsContent, StatementKind, StatementSplitter, VirtualTable, classify,
    complete_virtual_table, parse_quoted, quote_identifier, rebuild_statement, row_statement,
};

/// Rows of a contentful FTS5 table read per `/query` call: small enough that a page of large rows stays
/// well under D1's result limits, large enough that a table of 100,000 rows takes a few hundred calls.
pub const PAGE_ROWS: usize = 200;

/// Result bytes a page of rows aims to stay under: after a larger page the next one asks for half as many
/// rows (down to one), after a small one for twice as many (up to [`PAGE_ROWS`]), so tables of large
/// documents are read in answers of a few MiB.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One row of `sqlite_schema`, as the query API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEntry {
    /// `table`, `index`, `trigger` or `view`.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The table it belongs to.
    pub tbl_name: String,
    /// Its `CREATE` text (none for automatic indexes).
    pub sql: Option<String>,
}

/// A D1 database's schema, read through the query API before an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct D1Schema {
    /// `sqlite_schema` in creation (rowid) order.
    pub entries: Vec<SchemaEntry>,
    /// The shadow tables SQLite reports in `PRAGMA table_list` (those of virtual tables).
    pub shadow: HashSet<String>,
}

/// How a database with virtual tables is backed up: an export of `export_tables` by name, completed with
/// `virtual_tables` and `others`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionPlan {
    /// The ordinary tables to export by name (no virtual or shadow table).
    pub export_tables: Vec<String>,
    /// Each virtual table with its stored definition, in creation order.
    pub virtual_tables: Vec<(VirtualTable, String)>,
    /// Indexes, triggers and views (name, `sql`) in D1's order (`ORDER BY type COLLATE NOCASE`), to append
    /// when the export did not hold them.
    pub others: Vec<(String, String)>,
}

/// Reads the schema through `/query`: `sqlite_schema` and `PRAGMA table_list` (both allowed on D1), in
/// one request (D1's `sql` takes statements joined by semicolons and answers one result each): a fleet's
/// every changed database pays for it out of the API budget.
pub async fn read_schema(client: &Client, database_id: &str) -> Result<D1Schema, ApiError> {
    let text = |row: &serde_json::Map<String, Value>, key: &str| {
        row.get(key).and_then(Value::as_str).map(str::to_owned)
    };
    let results = client
        .query(
            database_id,
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid; PRAGMA table_list",
            &[],
        )
        .await?;
    let entries = results
        .first()
        .map(|r| r.results.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|row| SchemaEntry {
            kind: text(row, "type").unwrap_or_default(),
            name: text(row, "name").unwrap_or_default(),
            tbl_name: text(row, "tbl_name").unwrap_or_default(),
            sql: text(row, "sql"),
        })
        .collect();
    // Without the second answer the shadow tables are unknown, and exporting them as ordinary tables
    // would store a dump that cannot restore: refuse rather than guess.
    let table_list = results.get(1).ok_or_else(|| {
        ApiError::permanent(
            "reading the schema: D1 answered one result for two statements (sqlite_schema; PRAGMA              table_list); the virtual tables' shadow tables cannot be told apart",
        )
    })?;
    let shadow = table_list
        .results
        .iter()
        .filter(|row| {
            text(row, "schema").as_deref() == Some("main")
                && text(row, "type").as_deref() == Some("shadow")
        })
        .filter_map(|row| text(row, "name"))
        .collect();
    Ok(D1Schema { entries, shadow })
}

/// Whether `sql` defines a virtual table.
fn is_virtual(sql: &str) -> bool {
    matches!(classify(sql), StatementKind::CreateVirtualTable { .. })
}

/// Decides how to back up a database with this schema: `None` when a plain export serves (no virtual
/// table, or a `tables` filter the user chose, which D1 applies itself); otherwise the plan, or the
/// refusal naming a virtual table a dump cannot hold and the `tables` workaround. Pure.
pub fn plan(schema: &D1Schema, options: &DumpOptions) -> Result<Option<CompletionPlan>, DumpError> {
    if !options.tables.is_empty() {
        return Ok(None);
    }
    let tables: Vec<(String, String)> = schema
        .entries
        .iter()
        .filter(|e| e.kind == "table")
        .filter_map(|e| Some((e.name.clone(), e.sql.clone()?)))
        .collect();
    if !tables.iter().any(|(_, sql)| is_virtual(sql)) {
        return Ok(None);
    }
    let wanted = |_: &str| true;
    let mut virtual_tables = Vec::new();
    let mut export_tables = Vec::new();
    for (name, sql) in &tables {
        if is_virtual(sql) {
            let table = complete_virtual_table(name, sql, &tables, &wanted, &schema.shadow)?;
            virtual_tables.push((table, sql.clone()));
        } else if schema.shadow.contains(name)
            || name.starts_with("_cf_")
            || (name.starts_with("sqlite_")
                && name != "sqlite_sequence"
                && !name.starts_with("sqlite_stat"))
        {
            continue;
        } else {
            export_tables.push(name.clone());
        }
    }
    let mut others: Vec<(&str, String, String)> = schema
        .entries
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "index" | "trigger" | "view"))
        .filter_map(|e| Some((e.kind.as_str(), e.name.clone(), e.sql.clone()?)))
        .collect();
    // D1's order: by type, case-insensitively; creation order within a type (a stable sort).
    others.sort_by_key(|(kind, _, _)| kind.to_ascii_lowercase());
    Ok(Some(CompletionPlan {
        export_tables,
        virtual_tables,
        others: others
            .into_iter()
            .map(|(_, name, sql)| (name, sql))
            .collect(),
    }))
}

/// Why a completed dump cannot be trusted; the stream ends in this error so that nothing is stored.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// Set when the database's bookmark moved between the export and the end of the reads: the dump may
    /// mix two states, so the backup is thrown away and taken again.
    pub moved: Arc<AtomicBool>,
}

/// Streams `export` (the per-table export's download, its announced length checked) followed
/// by what it left out, per `plan`: the dump `docs/d1-dump-format.md` defines, never held whole. At the end the database's bookmark is read again;
/// when it differs from `before`, the stream fails (nothing is stored) and `completion.moved` is set.
pub fn complete(
    client: Client,
    database_id: String,
    plan: CompletionPlan,
    options: DumpOptions,
    before: String,
    export: Download,
    completion: &Completion,
) -> SqliteDumpReader {
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let (done_tx, done_rx) = oneshot::channel();
    let moved = completion.moved.clone();
    tokio::spawn(async move {
        let result = write_completed(
            &client,
            &database_id,
            &plan,
            &options,
            &before,
            (export.body, export.content_length),
            writer,
            &moved,
        )
        .await;
        let _ = done_tx.send(result);
    });
    SqliteDumpReader::from_parts(reader, done_rx)
}

#[allow(clippy::too_many_arguments)]
async fn write_completed(
    client: &Client,
    database_id: &str,
    plan: &CompletionPlan,
    options: &DumpOptions,
    before: &str,
    (mut export, export_length): (Box<dyn AsyncRead + Send + Unpin>, u64),
    mut out: DuplexStream,
    moved: &AtomicBool,
) -> Result<(), String> {
    let write = |e: std::io::Error| format!("streaming the completed dump: {e}");
    // 1. The export itself, passed through while noting which schema statements it holds.
    let mut splitter = StatementSplitter::new();
    let mut held: HashSet<String> = HashSet::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = export.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        read += n as u64;
        splitter
            .push(&buffer[..n], &mut |stmt| {
                if let Some(name) = created_name(stmt) {
                    held.insert(name);
                }
            })
            .map_err(|e| format!("reading the export: {e}"))?;
        out.write_all(&buffer[..n]).await.map_err(write)?;
    }
    if read != export_length {
        return Err(format!(
            "the export download ended after {read} of the {export_length} bytes announced; nothing was \
             stored"
        ));
    }
    if let Some(stmt) = splitter
        .finish()
        .map_err(|e| format!("reading the export: {e}"))?
        && let Some(name) = created_name(&stmt)
    {
        held.insert(name);
    }
    // What the export returned, checked against the schema: every table asked for is there.
    if !options.no_schema
        && let Some(missing) = plan.export_tables.iter().find(|t| {
            !held.contains(*t) && *t != "sqlite_sequence" && !t.starts_with("sqlite_stat")
        })
    {
        return Err(format!(
            "D1's export by tables left out table {missing:?}; the dump would be incomplete"
        ));
    }
    // 2. Each virtual table and its contents.
    for (table, sql) in &plan.virtual_tables {
        if !options.no_schema && !held.contains(&table.name) {
            line(&mut out, &format!("{sql};")).await.map_err(write)?;
        }
        if options.no_data {
            continue;
        }
        match table.fts_content() {
            FtsContent::External { .. } => {
                line(&mut out, &rebuild_statement(&table.name))
                    .await
                    .map_err(write)?;
            }
            _ => write_rows(client, database_id, &table.name, &mut out)
                .await
                .map_err(|e| format!("reading FTS5 table {:?}: {e}", table.name))?,
        }
    }
    // 3. Indexes, triggers and views the export did not hold.
    if !options.no_schema {
        for (name, sql) in &plan.others {
            if !held.contains(name) {
                line(&mut out, &format!("{sql};")).await.map_err(write)?;
            }
        }
    }
    // 4. One consistent state: nothing wrote between the export and the last read.
    let after = client
        .bookmark(database_id)
        .await
        .map_err(|e| e.to_string())?;
    if after != before {
        moved.store(true, Ordering::SeqCst);
        return Err(format!(
            "the database changed during the backup (bookmark {before} became {after})"
        ));
    }
    out.shutdown().await.map_err(write)?;
    Ok(())
}

/// The name a `CREATE` statement creates, for the ones an export may hold.
fn created_name(stmt: &str) -> Option<String> {
    match classify(stmt) {
        StatementKind::CreateTable { name }
        | StatementKind::CreateIndex { name }
        | StatementKind::CreateTrigger { name }
        | StatementKind::CreateView { name }
        | StatementKind::CreateVirtualTable { name } => Some(name),
        _ => None,
    }
}

/// The rows to ask for after a page of `limit` rows that came to `bytes`: see [`PAGE_BYTES`]. Pure.
pub fn next_page_rows(limit: usize, bytes: usize) -> usize {
    if bytes > PAGE_BYTES {
        (limit / 2).max(1)
    } else if bytes < PAGE_BYTES / 4 {
        (limit * 2).min(PAGE_ROWS)
    } else {
        limit
    }
}

/// Writes `\n` then `text`: the dump's lines are joined with `\n`, with none after the last.
async fn line(out: &mut DuplexStream, text: &str) -> std::io::Result<()> {
    out.write_all(b"\n").await?;
    out.write_all(text.as_bytes()).await
}

/// Streams a contentful FTS5 table's rows, rowid first, a page of [`PAGE_ROWS`] at a time in rowid order.
/// Values are read as SQLite's `quote()` text, so that integers past 2^53, reals and blobs come back
/// exactly (JSON would round them through doubles).
async fn write_rows(
    client: &Client,
    database_id: &str,
    table: &str,
    out: &mut DuplexStream,
) -> Result<(), String> {
    let quoted = quote_identifier(table);
    let info = client
        .query(database_id, &format!("PRAGMA table_info({quoted})"), &[])
        .await
        .map_err(|e| e.to_string())?;
    let columns: Vec<String> = info
        .first()
        .map(|r| r.results.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|row| row.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut names = vec!["rowid".to_owned()];
    names.extend(columns.iter().cloned());
    let select: Vec<String> = std::iter::once("quote(rowid) AS \"r\"".to_owned())
        .chain(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("quote({}) AS \"v{i}\"", quote_identifier(c))),
        )
        .collect();
    let mut last: Option<i64> = None;
    let mut limit = PAGE_ROWS;
    loop {
        let after = last
            .map(|rowid| format!(" WHERE rowid > {rowid}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {} FROM {quoted}{after} ORDER BY rowid LIMIT {limit}",
            select.join(", ")
        );
        let page = client
            .query(database_id, &sql, &[])
            .await
            .map_err(|e| e.to_string())?;
        let rows = page
            .into_iter()
            .next()
            .map(|r| r.results)
            .unwrap_or_default();
        let count = rows.len();
        let mut bytes = 0;
        for row in rows {
            let value = |key: &str| {
                let text = row.get(key).and_then(Value::as_str).unwrap_or_default();
                parse_quoted(text)
                    .ok_or_else(|| format!("unreadable value {text:?} in column {key}"))
            };
            let rowid = match value("r")? {
                d1_dump::SqlValue::Integer(rowid) => rowid,
                other => return Err(format!("rowid {other:?} is not an integer")),
            };
            let mut values = vec![d1_dump::SqlValue::Integer(rowid)];
            for i in 0..columns.len() {
                values.push(value(&format!("v{i}"))?);
            }
            bytes += row
                .values()
                .filter_map(Value::as_str)
                .map(str::len)
                .sum::<usize>();
            line(out, &row_statement(table, &names, &values))
                .await
                .map_err(|e| format!("streaming the completed dump: {e}"))?;
            last = Some(rowid);
        }
        if count < limit {
            return Ok(());
        }
        limit = next_page_rows(limit, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, name: &str, sql: &str) -> SchemaEntry {
        SchemaEntry {
            kind: kind.into(),
            name: name.into(),
            tbl_name: name.into(),
            sql: Some(sql.into()),
        }
    }

    fn schema(extra: &[SchemaEntry]) -> D1Schema {
        let mut entries = vec![
            entry(
                "table",
                "posts",
                "CREATE TABLE posts (id INTEGER PRIMARY KEY, t)",
            ),
            entry("view", "v", "CREATE VIEW v AS SELECT 1"),
            entry("index", "i", "CREATE INDEX i ON posts(t)"),
            entry(
                "table",
                "sqlite_sequence",
                "CREATE TABLE sqlite_sequence(name,seq)",
            ),
            entry("table", "_cf_KV", "CREATE TABLE _cf_KV (k)"),
        ];
        entries.extend_from_slice(extra);
        D1Schema {
            entries,
            shadow: ["fts_data", "fts_idx", "fts_config", "fts_docsize"]
                .map(String::from)
                .into(),
        }
    }

    #[test]
    fn plans_an_export_by_tables_without_virtual_or_shadow_tables() {
        // Proves a database without virtual tables (or with a user's `tables` filter) keeps the plain
        // export, and one with an FTS5 table exports its ordinary tables only, completed in D1's order.
        assert_eq!(plan(&schema(&[]), &DumpOptions::default()).unwrap(), None);
        let fts = [
            entry(
                "table",
                "fts",
                "CREATE VIRTUAL TABLE fts USING fts5(t, content='posts', content_rowid='id')",
            ),
            entry(
                "table",
                "fts_data",
                "CREATE TABLE 'fts_data'(id INTEGER PRIMARY KEY, block BLOB)",
            ),
            entry(
                "trigger",
                "tr",
                "CREATE TRIGGER tr AFTER INSERT ON posts BEGIN SELECT 1; END",
            ),
        ];
        let filtered = DumpOptions {
            tables: vec!["posts".into()],
            ..DumpOptions::default()
        };
        assert_eq!(plan(&schema(&fts), &filtered).unwrap(), None);
        let planned = plan(&schema(&fts), &DumpOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(planned.export_tables, ["posts", "sqlite_sequence"]);
        assert_eq!(planned.virtual_tables.len(), 1);
        assert_eq!(planned.virtual_tables[0].0.name, "fts");
        let others: Vec<&str> = planned.others.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(others, ["i", "tr", "v"]);
    }

    #[test]
    fn pages_shrink_for_large_rows_and_grow_back() {
        // Proves a page of large documents halves the next one (never below one row) and small pages
        // grow back to PAGE_ROWS.
        assert_eq!(next_page_rows(PAGE_ROWS, PAGE_BYTES + 1), PAGE_ROWS / 2);
        assert_eq!(next_page_rows(1, 10 * PAGE_BYTES), 1);
        assert_eq!(next_page_rows(10, 100), 20);
        assert_eq!(next_page_rows(PAGE_ROWS, 100), PAGE_ROWS);
        assert_eq!(next_page_rows(50, PAGE_BYTES / 2), 50);
    }

    #[test]
    fn refuses_what_a_dump_cannot_hold_naming_the_table_and_the_workaround() {
        // Proves another module, a contentless table and a missing content table are refused by name.
        let cases = [
            (
                "geo",
                "CREATE VIRTUAL TABLE geo USING rtree(id, x0, x1)",
                "rtree",
            ),
            (
                "idx",
                "CREATE VIRTUAL TABLE idx USING fts5(t, content='')",
                "contentless",
            ),
            (
                "ext",
                "CREATE VIRTUAL TABLE ext USING fts5(t, content='gone')",
                "gone",
            ),
        ];
        for (name, sql, named) in cases {
            let err = plan(
                &schema(&[entry("table", name, sql)]),
                &DumpOptions::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(name) && err.contains(named) && err.contains("`tables`"),
                "{err}"
            );
        }
    }
}
