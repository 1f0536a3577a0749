//! The one writer of D1's export format, used by the emulator's export and by d1vault's local SQLite source.
//!
//! It writes what D1's own export writes, byte for byte (the format, and the two places where d1vault
//! deliberately differs, are in `docs/d1-dump-format.md`):
//!
//! 1. `PRAGMA defer_foreign_keys=TRUE;` always comes first (an empty database exports only this line).
//! 2. Tables in creation order (`sqlite_sequence` last). Each table's schema (`CREATE TABLE IF NOT EXISTS`
//!    when the name was quoted) is followed at once by its rows as
//!    `INSERT INTO "t" ("c1","c2") VALUES(...);`. `sqlite_sequence` becomes `DELETE FROM sqlite_sequence;`
//!    plus its rows; `sqlite_stat*` becomes `ANALYZE sqlite_schema;` plus its rows; other `_cf_*` and
//!    `sqlite_*` tables are skipped; a virtual table refuses the whole export.
//! 3. With [`VirtualTables::Complete`] (d1vault's local SQLite source) instead of the refusal: each FTS5
//!    table's `CREATE VIRTUAL TABLE` and its contents (rows with their rowid, or the `'rebuild'` command
//!    of an external-content table), after all ordinary tables, whose lists leave out the shadow tables.
//! 4. Indexes, triggers and views (`ORDER BY type COLLATE NOCASE`).
//! 5. Lines joined with `\n`, no trailing newline.
//!
//! Values are written by the rules in `docs/d1-dump-format.md` ("Values"). Rows are streamed to the writer
//! one by one.

use std::collections::HashSet;
use std::io::Write;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use crate::DumpOptions;
use crate::insert::{SqlValue, quote_identifier, write_blob, write_text, write_value};
use crate::virtual_table::{
    FtsContent, VirtualTable, VirtualTableRows, parse_virtual_table, rebuild_statement,
};

/// What the writer does with a database that has virtual tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VirtualTables {
    /// Refuse the whole export with D1's exact error, as D1 does (the emulator's export).
    #[default]
    Refuse,
    /// Complete the dump with each FTS5 table and its contents (d1vault's local SQLite source); refuse,
    /// naming it, a virtual table whose rows a dump cannot hold (another module, contentless FTS5, an
    /// external content table left out).
    Complete,
}

/// How many rows one table contributed to a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    /// The table name as stored in `sqlite_schema`.
    pub name: String,
    /// Number of INSERT statements written for it (0 with `no_data`).
    pub rows: u64,
}

/// What a finished dump holds: its size (the emulator reports it as the export's size) and the rows of
/// each table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Every exported table (including `sqlite_sequence` when present), in dump order.
    pub tables: Vec<TableRows>,
    /// Every exported virtual table (only with [`VirtualTables::Complete`]), in dump order.
    pub virtual_tables: Vec<VirtualTableRows>,
    /// Bytes written to the output.
    pub bytes: u64,
}

/// Why a dump could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// D1 refuses to export databases with virtual tables; this is the exact text it reports.
    #[error("D1 Export error: cannot export databases with Virtual Tables (fts5)")]
    VirtualTables,
    /// A virtual table of a module other than FTS5: d1vault backs up FTS5 tables only.
    #[error(
        "virtual table {name:?} uses module {module:?}; d1vault backs up FTS5 virtual tables only. List the \
         database's other tables in its `tables` setting to back them up without it"
    )]
    UnsupportedVirtualTable {
        /// The virtual table.
        name: String,
        /// Its module.
        module: String,
    },
    /// A contentless FTS5 table (`content=''`) keeps no rows that could be read back into a dump.
    #[error(
        "FTS5 table {name:?} is contentless (content=''): its rows cannot be read back, so no backup could \
         restore it. List the database's other tables in its `tables` setting to back them up, and rebuild \
         {name:?} from its source after a restore"
    )]
    ContentlessFts {
        /// The FTS5 table.
        name: String,
    },
    /// An external-content FTS5 table whose content table is not in the dump: its `'rebuild'` would index
    /// nothing, or fail.
    #[error(
        "FTS5 table {name:?} takes its rows from {content:?}, which is not a table in this dump (missing, a \
         view, or left out by `tables`): add {content:?} to `tables`, or leave {name:?} out"
    )]
    MissingContentTable {
        /// The FTS5 table.
        name: String,
        /// The content table it names.
        content: String,
    },
    /// Reading the database failed.
    #[error("reading the database for the dump failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Writing the dump failed.
    #[error("writing the dump failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the database's dump in D1's export format to `out`, row by row.
///
/// For a consistent snapshot the caller runs this inside a read transaction (`BEGIN` ... `COMMIT` on the
/// connection, or a `rusqlite::Transaction`): the dump issues several queries and would otherwise see writes
/// made between them. The output is buffered internally; nothing is written before the virtual-table check,
/// so a refused export leaves `out` untouched.
pub fn write_dump(
    conn: &Connection,
    options: &DumpOptions,
    out: &mut dyn Write,
) -> Result<DumpSummary, DumpError> {
    write_dump_with(conn, options, VirtualTables::Refuse, out)
}

/// [`write_dump`], with a choice of what to do with virtual tables: D1's refusal, or (for d1vault's local
/// SQLite source) the complete dump `docs/d1-dump-format.md` defines in "Virtual tables". Every virtual
/// table is checked before a byte is written, so a refusal leaves `out` untouched.
pub fn write_dump_with(
    conn: &Connection,
    options: &DumpOptions,
    virtual_tables: VirtualTables,
    out: &mut dyn Write,
) -> Result<DumpSummary, DumpError> {
    let filter: HashSet<&str> = options.tables.iter().map(String::as_str).collect();
    let wanted = |name: &str| filter.is_empty() || filter.contains(name);

    let tables: Vec<(String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT name, type, sql FROM sqlite_schema AS o WHERE (true) AND type=='table' AND sql NOT NULL \
             ORDER BY tbl_name='sqlite_sequence', rowid",
        )?;
        stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(2)?))
        })?
        .collect::<Result<_, _>>()?
    };
    // SQLite's own answer to which tables are virtual and which are their shadow tables (by the module's
    // xShadowName, not by suffix).
    let shadow: HashSet<String> = if virtual_tables == VirtualTables::Complete {
        let mut stmt = conn.prepare(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'",
        )?;
        stmt.query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<_, _>>()?
    } else {
        HashSet::new()
    };
    // D1 fails when it reaches a virtual table; checking first gives the same outcome without a partial dump.
    let mut virtuals: Vec<(VirtualTable, &str)> = Vec::new();
    for (name, sql) in &tables {
        if !wanted(name) || name == "sqlite_sequence" || is_stat_table(name) {
            continue;
        }
        if sql.starts_with("CREATE VIRTUAL TABLE") {
            if virtual_tables == VirtualTables::Refuse {
                return Err(DumpError::VirtualTables);
            }
            virtuals.push((
                complete_virtual_table(name, sql, &tables, &wanted, &shadow)?,
                sql,
            ));
        }
    }

    let mut writer = CountingWriter {
        inner: std::io::BufWriter::with_capacity(64 * 1024, out),
        bytes: 0,
    };
    let mut summary = DumpSummary::default();
    writer.write_all(b"PRAGMA defer_foreign_keys=TRUE;")?;
    let mut line = String::new();

    for (name, sql) in &tables {
        if !wanted(name) {
            continue;
        }
        if name == "sqlite_sequence" {
            if !options.no_schema {
                writer.line("DELETE FROM sqlite_sequence;")?;
            }
        } else if is_stat_table(name) {
            if !options.no_schema {
                writer.line("ANALYZE sqlite_schema;")?;
            }
        } else if name.starts_with("_cf_")
            || name.starts_with("sqlite_")
            || shadow.contains(name)
            || virtuals.iter().any(|(v, _)| &v.name == name)
        {
            continue;
        } else if !options.no_schema {
            // D1 (like sqlite3's shell) adds IF NOT EXISTS when the table name was quoted; its pattern is an
            // unanchored match, reproduced here as a substring test.
            if sql.contains("CREATE TABLE '") || sql.contains("CREATE TABLE \"") {
                line.clear();
                line.push_str("CREATE TABLE IF NOT EXISTS ");
                line.push_str(sql.get(13..).unwrap_or_default());
                line.push(';');
                writer.line(&line)?;
            } else {
                line.clear();
                line.push_str(sql);
                line.push(';');
                writer.line(&line)?;
            }
        }

        let mut rows = 0u64;
        if !options.no_data {
            rows = write_rows(conn, name, &mut writer, &mut line)?;
        }
        summary.tables.push(TableRows {
            name: name.clone(),
            rows,
        });
    }

    for (table, sql) in &virtuals {
        if !options.no_schema {
            line.clear();
            line.push_str(sql);
            line.push(';');
            writer.line(&line)?;
        }
        let mut rows = 0u64;
        if !options.no_data {
            match table.fts_content() {
                FtsContent::External { .. } => {
                    writer.line(&rebuild_statement(&table.name))?;
                    let count = format!("SELECT count(*) FROM {}", quote_identifier(&table.name));
                    rows = conn.query_row(&count, [], |row| row.get::<_, i64>(0))? as u64;
                }
                _ => rows = write_rows_with_rowid(conn, &table.name, &mut writer, &mut line)?,
            }
        }
        summary.virtual_tables.push(VirtualTableRows {
            name: table.name.clone(),
            module: table.module.clone(),
            rows,
        });
    }

    if !options.no_schema {
        let mut stmt = conn.prepare(
            "SELECT name, sql FROM sqlite_schema AS o WHERE (true) AND sql NOT NULL \
             AND type IN ('index', 'trigger', 'view') ORDER BY type COLLATE NOCASE",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            if !wanted(&name) {
                continue;
            }
            line.clear();
            let sql: String = row.get(1)?;
            line.push_str(&sql);
            line.push(';');
            writer.line(&line)?;
        }
    }
    writer.inner.flush()?;
    summary.bytes = writer.bytes;
    Ok(summary)
}

fn is_stat_table(name: &str) -> bool {
    name.len() > "sqlite_stat".len() && name.starts_with("sqlite_stat")
}

/// Checks that a dump can hold virtual table `name` (an FTS5 table with readable contents, whose
/// content table, if any, is an ordinary table in the dump) and reads its definition. `tables` are the
/// database's tables (name, `sql`) from `sqlite_schema`, `wanted` the dump's table filter and `shadow` the
/// shadow tables `PRAGMA table_list` reports. Shared by the local writer and the D1 backup, which completes
/// its per-table export by the same rules.
pub fn complete_virtual_table(
    name: &str,
    sql: &str,
    tables: &[(String, String)],
    wanted: &dyn Fn(&str) -> bool,
    shadow: &HashSet<String>,
) -> Result<VirtualTable, DumpError> {
    let unsupported = |module: String| DumpError::UnsupportedVirtualTable {
        name: name.to_owned(),
        module,
    };
    let Some(table) = parse_virtual_table(sql) else {
        return Err(unsupported("unknown".to_owned()));
    };
    if !table.is_fts5() {
        return Err(unsupported(table.module));
    }
    match table.fts_content() {
        FtsContent::Contentful => {}
        FtsContent::Contentless => {
            return Err(DumpError::ContentlessFts {
                name: name.to_owned(),
            });
        }
        FtsContent::External { table: content } => {
            let dumped = tables.iter().any(|(other, other_sql)| {
                *other == content
                    && wanted(other)
                    && !shadow.contains(other)
                    && !other_sql.starts_with("CREATE VIRTUAL TABLE")
            });
            if !dumped {
                return Err(DumpError::MissingContentTable {
                    name: name.to_owned(),
                    content,
                });
            }
        }
    }
    Ok(table)
}

/// The columns of `table`, in `PRAGMA table_info` order.
fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, DumpError> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info={}", quote_identifier(table)))?;
    let columns = stmt
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<_, _>>()?;
    Ok(columns)
}

/// Writes a contentful FTS5 table's rows, each with its rowid first, so that search results and
/// references to rowids stay the same after a restore; returns how many.
fn write_rows_with_rowid(
    conn: &Connection,
    table: &str,
    writer: &mut CountingWriter<'_>,
    line: &mut String,
) -> Result<u64, DumpError> {
    let mut columns = vec!["rowid".to_owned()];
    columns.extend(table_columns(conn, table)?);
    write_columns(conn, table, &columns, writer, line)
}

/// Writes one table's rows as INSERT statements; returns how many.
fn write_rows(
    conn: &Connection,
    table: &str,
    writer: &mut CountingWriter<'_>,
    line: &mut String,
) -> Result<u64, DumpError> {
    let columns = table_columns(conn, table)?;
    write_columns(conn, table, &columns, writer, line)
}

/// Writes the rows of `table` as INSERT statements naming `columns`; returns how many.
fn write_columns(
    conn: &Connection,
    table: &str,
    columns: &[String],
    writer: &mut CountingWriter<'_>,
    line: &mut String,
) -> Result<u64, DumpError> {
    let quoted_table = quote_identifier(table);
    let quoted_columns: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
    let prefix = format!(
        "INSERT INTO {quoted_table} ({}) VALUES(",
        quoted_columns.join(",")
    );
    let mut stmt = conn.prepare(&format!(
        "SELECT {} FROM {quoted_table};",
        quoted_columns.join(", ")
    ))?;
    let mut rows = stmt.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        line.clear();
        line.push_str(&prefix);
        for i in 0..columns.len() {
            if i > 0 {
                line.push(',');
            }
            match row.get_ref(i)? {
                ValueRef::Null => line.push_str("NULL"),
                ValueRef::Integer(v) => line.push_str(&v.to_string()),
                ValueRef::Real(v) => write_value(&SqlValue::Real(v), line),
                ValueRef::Text(bytes) => write_text(&String::from_utf8_lossy(bytes), line),
                ValueRef::Blob(bytes) => write_blob(bytes, line),
            }
        }
        line.push_str(");");
        writer.line(line)?;
        count += 1;
    }
    Ok(count)
}

/// The buffered output, counting bytes and separating lines with `\n` (none after the last).
struct CountingWriter<'a> {
    inner: std::io::BufWriter<&'a mut dyn Write>,
    bytes: u64,
}

impl CountingWriter<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes `\n` and then the line (the first line is written with `write_all`).
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.write_all(b"\n")?;
        self.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StatementKind, classify, split_statements};

    const FIXTURE: &str = include_str!("../../../tests/fixtures/fixture.sql");

    fn fixture_db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(FIXTURE).unwrap();
        conn
    }

    fn dump(conn: &Connection, options: &DumpOptions) -> (String, DumpSummary) {
        let mut out = Vec::new();
        let summary = write_dump(conn, options, &mut out).unwrap();
        assert_eq!(summary.bytes, out.len() as u64);
        (String::from_utf8(out).unwrap(), summary)
    }

    /// Every row of every table (including sqlite_sequence), as typed values, by table name.
    fn contents(conn: &Connection) -> Vec<(String, Vec<Vec<rusqlite::types::Value>>)> {
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        names
            .into_iter()
            .map(|name| {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT * FROM {} ORDER BY rowid",
                        quote_identifier(&name)
                    ))
                    .unwrap();
                let n = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| {
                        (0..n)
                            .map(|i| r.get::<_, rusqlite::types::Value>(i))
                            .collect()
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                (name, rows)
            })
            .collect()
    }

    fn schema(conn: &Connection) -> Vec<(String, String, String)> {
        conn.prepare("SELECT type, name, sql FROM sqlite_schema WHERE sql NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn load(dump: &str) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys=OFF").unwrap();
        for statement in split_statements(dump).unwrap() {
            conn.execute_batch(&statement)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        conn
    }

    #[test]
    fn fixture_round_trips_exactly() {
        // Proves load(fixture) -> dump -> load reproduces every typed value of every table and every object.
        let source = fixture_db();
        let (text, summary) = dump(&source, &DumpOptions::default());
        let copy = load(&text);
        assert_eq!(contents(&copy), contents(&source));
        let source_schema = schema(&source);
        assert_eq!(schema(&copy).len(), source_schema.len());
        assert!(
            copy.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .unwrap()
                == "ok"
        );
        let counts: Vec<(&str, u64)> = summary
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("comments", 4),
                ("authors", 3),
                ("posts", 5),
                ("measurements", 9),
                ("empty_table", 0),
                ("order items", 2),
                ("d1_migrations", 2),
                ("sqlite_sequence", 2)
            ]
        );
        // A dump of the copy is byte-identical: the format is a fixed point.
        assert_eq!(dump(&copy, &DumpOptions::default()).0, text);
    }

    #[test]
    fn fixture_dump_has_d1_shape() {
        // Proves the first line, table order, IF NOT EXISTS rewrite, sqlite_sequence handling and the
        // trailing index/trigger/view block, joined by `\n` without a trailing newline.
        let (text, _) = dump(&fixture_db(), &DumpOptions::default());
        assert!(text.starts_with("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE comments ("));
        assert!(!text.ends_with('\n'));
        assert!(text.contains("\nCREATE TABLE IF NOT EXISTS \"authors\" (\n"));
        assert!(text.contains("\nCREATE TABLE IF NOT EXISTS \"d1_migrations\"(\n"));
        assert!(text.contains(
            "\nINSERT INTO \"d1_migrations\" (\"id\",\"name\",\"applied_at\") VALUES(1,'0001_init.sql','2026-11-01 10:00:00');"
        ));
        assert!(text.contains("\nINSERT INTO \"order items\" (\"select\",\"quote\"\"d\") VALUES('from',9007199254740993);"));
        assert!(text.contains(
            "\nINSERT INTO \"measurements\" (\"id\",\"label\",\"value\",\"raw\") VALUES(4,'integral real',3,NULL);"
        ));
        assert!(text.contains("VALUES(3,'huge',1e+300,X'00ff00ff');"));
        assert!(text.contains("VALUES(5,'tiny',1e-7,X'');"));
        assert!(text.contains("VALUES(6,'big',1e+21,X'7f');"));
        assert!(text.contains("VALUES(1,1,'Hello; world',replace('first line\\nsecond line','\\n',char(10)),0.1,X'00ff');"));
        let kinds: Vec<StatementKind> = split_statements(&text)
            .unwrap()
            .iter()
            .map(|s| classify(s))
            .collect();
        let objects: Vec<&StatementKind> = kinds
            .iter()
            .filter(|k| {
                matches!(
                    k,
                    StatementKind::CreateIndex { .. }
                        | StatementKind::CreateTrigger { .. }
                        | StatementKind::CreateView { .. }
                )
            })
            .collect();
        assert_eq!(
            objects,
            vec![
                &StatementKind::CreateIndex {
                    name: "idx_posts_author".into()
                },
                &StatementKind::CreateTrigger {
                    name: "posts_score_floor".into()
                },
                &StatementKind::CreateView {
                    name: "post_summary".into()
                },
            ]
        );
        let sequence_at = text.find("\nDELETE FROM sqlite_sequence;\nINSERT INTO \"sqlite_sequence\" (\"name\",\"seq\") VALUES('comments',5);").unwrap();
        assert!(sequence_at > text.find("INSERT INTO \"d1_migrations\"").unwrap());
        assert!(text.find("CREATE INDEX").unwrap() > sequence_at);
    }

    #[test]
    fn golden_small_database() {
        // Proves the exact bytes for a small database, including a quoted and an unquoted table.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (a INTEGER, b TEXT, c REAL, d BLOB);
             INSERT INTO t VALUES (1, 'x''y', 2.0, X'ABCD'), (NULL, 'l1' || char(13) || char(10) || 'l2', -0.5, NULL);
             CREATE TABLE \"Q\" (v);
             CREATE VIEW vv AS SELECT a FROM t;
             CREATE INDEX ia ON t(a);",
        )
        .unwrap();
        let (text, _) = dump(&conn, &DumpOptions::default());
        assert_eq!(
            text,
            "PRAGMA defer_foreign_keys=TRUE;\n\
             CREATE TABLE t (a INTEGER, b TEXT, c REAL, d BLOB);\n\
             INSERT INTO \"t\" (\"a\",\"b\",\"c\",\"d\") VALUES(1,'x''y',2,X'abcd');\n\
             INSERT INTO \"t\" (\"a\",\"b\",\"c\",\"d\") VALUES(NULL,replace(replace('l1\\r\\nl2','\\r',char(13)),'\\n',char(10)),-0.5,NULL);\n\
             CREATE TABLE IF NOT EXISTS \"Q\" (v);\n\
             CREATE INDEX ia ON t(a);\n\
             CREATE VIEW vv AS SELECT a FROM t;"
        );
    }

    #[test]
    fn empty_database_exports_only_the_pragma() {
        // Proves D1's "non-empty export" first line is the whole dump of an empty database.
        let conn = Connection::open_in_memory().unwrap();
        let (text, summary) = dump(&conn, &DumpOptions::default());
        assert_eq!(text, "PRAGMA defer_foreign_keys=TRUE;");
        assert!(summary.tables.is_empty());
    }

    #[test]
    fn options_filter_schema_data_and_tables() {
        // Proves no_data, no_schema and the table filter (objects filtered by their own name) as D1 does.
        let conn = fixture_db();
        let (schema_only, summary) = dump(
            &conn,
            &DumpOptions {
                no_data: true,
                ..Default::default()
            },
        );
        assert!(!schema_only.contains("INSERT INTO"));
        assert!(schema_only.contains("CREATE VIEW post_summary"));
        assert!(summary.tables.iter().all(|t| t.rows == 0));

        let (data_only, _) = dump(
            &conn,
            &DumpOptions {
                no_schema: true,
                ..Default::default()
            },
        );
        assert!(data_only.starts_with("PRAGMA defer_foreign_keys=TRUE;\nINSERT INTO \"comments\""));
        assert!(!data_only.contains("CREATE "));
        assert!(!data_only.contains("DELETE FROM sqlite_sequence"));

        let options = DumpOptions {
            tables: vec!["posts".into(), "post_summary".into()],
            ..Default::default()
        };
        let (filtered, summary) = dump(&conn, &options);
        assert_eq!(
            summary.tables,
            vec![TableRows {
                name: "posts".into(),
                rows: 5
            }]
        );
        assert!(filtered.contains("CREATE VIEW post_summary"));
        assert!(!filtered.contains("CREATE INDEX"));
        assert!(!filtered.contains("CREATE TABLE comments"));
    }

    #[test]
    fn internal_tables_are_skipped_and_stat_tables_analyzed() {
        // Proves _cf_* tables vanish and sqlite_stat1 becomes ANALYZE plus its rows.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE _cf_KV (k, v); INSERT INTO _cf_KV VALUES (1, 2);
             CREATE TABLE t (a); CREATE INDEX ta ON t(a); INSERT INTO t VALUES (1), (1); ANALYZE;",
        )
        .unwrap();
        let (text, _) = dump(&conn, &DumpOptions::default());
        assert!(!text.contains("CREATE TABLE _cf_KV"));
        assert!(!text.contains("INSERT INTO \"_cf_KV\""));
        assert!(text.contains("\nANALYZE sqlite_schema;\nINSERT INTO \"sqlite_stat1\" (\"tbl\",\"idx\",\"stat\") VALUES('t','ta','2 2');"));
    }

    const FTS_FIXTURE: &str = include_str!("../../../tests/fixtures/fts.sql");

    /// What each of a few MATCH queries finds, to compare a copy's search with the source's.
    fn searches(conn: &Connection) -> Vec<Vec<(i64, String)>> {
        [
            "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH 'search' ORDER BY rowid",
            "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH '\"quoted\"' ORDER BY rowid",
            "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH 'creme OR 日本語' ORDER BY rowid",
            "SELECT rowid, subject FROM notes WHERE notes MATCH 'run' ORDER BY rowid",
            "SELECT rowid, subject FROM notes WHERE notes MATCH 'strasse OR façade' ORDER BY rowid",
            "SELECT rowid, name FROM names WHERE names MATCH 'rich' ORDER BY rowid",
            "SELECT rowid, name FROM names WHERE name LIKE '%''Bri%' ORDER BY rowid",
        ]
        .iter()
        .map(|sql| {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        })
        .collect()
    }

    fn complete(
        conn: &Connection,
        options: &DumpOptions,
    ) -> Result<(String, DumpSummary), DumpError> {
        let mut out = Vec::new();
        let summary = write_dump_with(conn, options, VirtualTables::Complete, &mut out)?;
        assert_eq!(summary.bytes, out.len() as u64);
        Ok((String::from_utf8(out).unwrap(), summary))
    }

    #[test]
    fn fts5_tables_are_completed_and_search_the_same_after_a_load() {
        // Proves the "Virtual tables" shape: no shadow tables (found by module: `audit_data` stays), each
        // CREATE VIRTUAL TABLE after the ordinary tables, contentful rows with their rowid, `'rebuild'` for
        // the external-content table, triggers last; the loaded copy searches exactly as the source, passes
        // FTS5's integrity-check, and the summary reports each virtual table with its rows.
        let source = Connection::open_in_memory().unwrap();
        source.execute_batch(FTS_FIXTURE).unwrap();
        let (text, summary) = complete(&source, &DumpOptions::default()).unwrap();
        for shadow in ["_data", "_idx", "_content", "_docsize", "_config"] {
            assert!(!text.contains(&format!("notes{shadow}")), "{shadow}");
            assert!(!text.contains(&format!("posts_fts{shadow}")), "{shadow}");
        }
        assert!(
            text.contains("\nINSERT INTO \"audit_data\" (\"id\",\"what\") VALUES(1,'created');")
        );
        let sequence = text.find("\nDELETE FROM sqlite_sequence;").unwrap();
        let posts_fts = text
            .find("\nCREATE VIRTUAL TABLE posts_fts USING fts5(title, body, content='posts', content_rowid='id');")
            .unwrap();
        assert!(posts_fts > sequence);
        let rebuild = text
            .find("\nINSERT INTO \"posts_fts\" (\"posts_fts\") VALUES('rebuild');")
            .unwrap();
        assert!(rebuild > posts_fts);
        assert!(text.contains(
            "\nINSERT INTO \"notes\" (\"rowid\",\"subject\",\"note\") VALUES(10,'Running','the runner runs; O''Brien said \"go\"');"
        ));
        assert!(!text.contains("'running late'"), "a deleted row came back");
        assert!(text.find("\nCREATE TRIGGER posts_ai").unwrap() > rebuild);
        assert_eq!(
            summary.virtual_tables,
            vec![
                VirtualTableRows {
                    name: "posts_fts".into(),
                    module: "fts5".into(),
                    rows: 4
                },
                VirtualTableRows {
                    name: "notes".into(),
                    module: "fts5".into(),
                    rows: 2
                },
                VirtualTableRows {
                    name: "names".into(),
                    module: "fts5".into(),
                    rows: 3
                },
            ]
        );
        let names: Vec<&str> = summary.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["posts", "audit_data", "sqlite_sequence"]);

        let copy = load(&text);
        assert_eq!(searches(&copy), searches(&source));
        assert!(searches(&source).iter().all(|found| !found.is_empty()));
        for table in ["posts_fts", "notes", "names"] {
            copy.execute_batch(&format!(
                "INSERT INTO {table}({table}) VALUES('integrity-check');"
            ))
            .unwrap();
        }
        // The triggers came back and keep the index in step.
        copy.execute_batch("INSERT INTO posts (title, body) VALUES ('New', 'fresh zebra');")
            .unwrap();
        let hits: i64 = copy
            .query_row(
                "SELECT count(*) FROM posts_fts WHERE posts_fts MATCH 'zebra'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 1);
        // D1's refusal is unchanged without the option.
        assert!(matches!(
            write_dump(&source, &DumpOptions::default(), &mut Vec::new()),
            Err(DumpError::VirtualTables)
        ));
    }

    #[test]
    fn virtual_tables_a_dump_cannot_hold_are_refused_by_name_without_output() {
        // Proves an rtree table, a contentless FTS5 table and an external-content table whose content
        // table is left out each refuse the dump, naming the table and the `tables` workaround, before
        // a byte is written; the workaround then works.
        let cases = [
            (
                "CREATE VIRTUAL TABLE geo USING rtree(id, x0, x1);",
                "geo",
                "rtree",
            ),
            (
                "CREATE VIRTUAL TABLE idx USING fts5(body, content='');",
                "idx",
                "contentless",
            ),
        ];
        for (sql, name, says) in cases {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE keep (a); INSERT INTO keep VALUES (1); {sql}"
            ))
            .unwrap();
            let mut out = Vec::new();
            let err = write_dump_with(
                &conn,
                &DumpOptions::default(),
                VirtualTables::Complete,
                &mut out,
            )
            .unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("{name:?}")) && text.contains(says),
                "{text}"
            );
            assert!(text.contains("`tables`"), "{text}");
            assert!(out.is_empty());
            let only_keep = DumpOptions {
                tables: vec!["keep".into()],
                ..Default::default()
            };
            assert!(complete(&conn, &only_keep).is_ok());
        }
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(FTS_FIXTURE).unwrap();
        let without_posts = DumpOptions {
            tables: vec!["posts_fts".into(), "notes".into()],
            ..Default::default()
        };
        let err = complete(&conn, &without_posts).unwrap_err();
        assert!(
            matches!(err, DumpError::MissingContentTable { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("\"posts\""), "{err}");
    }

    #[test]
    fn virtual_tables_refuse_the_export_without_output() {
        // Proves D1's exact refusal and that nothing reaches the writer.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE a (x); CREATE VIRTUAL TABLE docs USING fts5(body);")
            .unwrap();
        let mut out = Vec::new();
        let err = write_dump(&conn, &DumpOptions::default(), &mut out).unwrap_err();
        assert!(matches!(err, DumpError::VirtualTables));
        assert_eq!(
            err.to_string(),
            "D1 Export error: cannot export databases with Virtual Tables (fts5)"
        );
        assert!(out.is_empty());
        // Filtering the virtual table out lets the export through, as in D1.
        let options = DumpOptions {
            tables: vec!["a".into()],
            ..Default::default()
        };
        assert!(write_dump(&conn, &options, &mut out).is_ok());
    }
}
