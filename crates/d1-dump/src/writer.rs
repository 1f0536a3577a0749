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
//! 3. Indexes, triggers and views (`ORDER BY type COLLATE NOCASE`).
//! 4. Lines joined with `\n`, no trailing newline.
//!
//! Values are written by the rules in `docs/d1-dump-format.md` ("Values"). Rows are streamed to the writer
//! one by one.

use std::collections::HashSet;
use std::io::Write;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use crate::DumpOptions;
use crate::insert::{SqlValue, quote_identifier, write_blob, write_text, write_value};

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
    /// Bytes written to the output.
    pub bytes: u64,
}

/// Why a dump could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// D1 refuses to export databases with virtual tables; this is the exact text it reports.
    #[error("D1 Export error: cannot export databases with Virtual Tables (fts5)")]
    VirtualTables,
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
    // D1 fails when it reaches a virtual table; checking first gives the same outcome without a partial dump.
    for (name, sql) in &tables {
        if !wanted(name) || name == "sqlite_sequence" || is_stat_table(name) {
            continue;
        }
        if sql.starts_with("CREATE VIRTUAL TABLE") {
            return Err(DumpError::VirtualTables);
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
        } else if name.starts_with("_cf_") || name.starts_with("sqlite_") {
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

/// Writes one table's rows as INSERT statements; returns how many.
fn write_rows(
    conn: &Connection,
    table: &str,
    writer: &mut CountingWriter<'_>,
    line: &mut String,
) -> Result<u64, DumpError> {
    let quoted_table = quote_identifier(table);
    let columns: Vec<String> = {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info={quoted_table}"))?;
        stmt.query_map([], |row| row.get::<_, String>(1))?
            .collect::<Result<_, _>>()?
    };
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
