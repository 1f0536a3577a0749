//! Validation of a SQL dump while it streams. A backup only counts when its body is a complete D1-format
//! dump: UTF-8 SQL starting with `PRAGMA defer_foreign_keys=TRUE;`, exactly as long as the server announced,
//! not an HTML error page, not empty, and ending with a complete statement. Peers have stored truncated
//! dumps and CDN error pages as "successful" backups and then pruned the good ones; this module is why
//! d1vault does not.
//!
//! It must also load: every statement but the plain rows is run (schema) or prepared (the rest) in a
//! schema-only scratch SQLite ([`ScratchSchema`]), and every row must fit a table of that schema, so a dump
//! that `verify` or `restore` would reject is never stored as a backup.
//!
//! The same pass counts rows per table and collects the names in the migrations table, for the manifest.

use std::collections::HashMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::repository::manifest::{TableCount, VirtualTableCount};
use d1_dump::{
    FtsContent, ScratchSchema, SqlValue, StatementKind, StatementSplitter, classify, insert_head,
    is_rebuild, parse_insert, parse_virtual_table,
};

/// The first statement of every D1 export.
pub const DUMP_HEADER: &str = "PRAGMA defer_foreign_keys=TRUE;";

/// Why a downloaded or generated dump is not a usable backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// Zero bytes: D1 writes at least its PRAGMA line, so nothing came.
    #[error("the dump is empty (0 bytes): the export produced nothing; not counted as a backup")]
    Empty,
    #[error(
        "the download is an HTML page, not a SQL dump (it starts with {start:?}): an error page from a proxy \
         or CDN; not counted as a backup"
    )]
    /// The body is a web page (a proxy's or CDN's error page), not SQL.
    Html {
        /// The first characters, to show what came.
        start: String,
    },
    #[error("the dump is not UTF-8 text at byte {offset}: {detail}")]
    /// The bytes are not UTF-8 text, so not a dump (or a damaged one).
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: u64,
        /// What the decoder reported.
        detail: String,
    },
    #[error("the dump does not start with `{DUMP_HEADER}` but with {found:?}: not a D1 export")]
    /// The text does not open with D1's PRAGMA line, so it is not a D1 export.
    MissingHeader {
        /// What the text starts with instead.
        found: String,
    },
    #[error("the dump is truncated: {received} bytes received, the server announced {announced}")]
    /// Fewer bytes arrived than the server announced: the download ended early.
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes the server announced (`Content-Length`).
        announced: u64,
    },
    #[error("the dump is longer than announced: more than {announced} bytes received")]
    /// More bytes arrived than the server announced: not the file it described.
    Overlong {
        /// Bytes the server announced (`Content-Length`).
        announced: u64,
    },
    #[error("the dump ends in the middle of a statement ({tail:?}): truncated")]
    /// The text stops inside a statement: truncated even if the byte count matched.
    IncompleteStatement {
        /// The start of the unfinished statement.
        tail: String,
    },
    /// SQLite rejects a statement of the dump: `verify` and `restore` would fail on it. Running the backup
    /// again gives the same dump, so this is permanent.
    #[error(
        "the dump would not restore: SQLite rejects the statement starting `{start}`: {reason}. The \
         backup is not stored; D1 exported something d1vault cannot load, please report it with that \
         statement"
    )]
    Unloadable {
        /// The first characters of the statement.
        start: String,
        /// SQLite's reason.
        reason: String,
    },
    /// The inspector thread ended without a verdict: a bug, reported rather than counted as a backup.
    #[error("{0}")]
    Inspector(String),
}

impl DumpError {
    /// Whether downloading the dump again may give a good one: not when SQLite rejects what D1 exported.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DumpError::Unloadable { .. })
    }
}

/// What the inspection learned about a valid dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpReport {
    /// Bytes of SQL text.
    pub raw_size: u64,
    /// sha256 (hex) of the SQL text.
    pub raw_sha256: String,
    /// Tables in dump order with the rows inserted into each (never a virtual table or its shadow tables).
    pub tables: Vec<TableCount>,
    /// Virtual tables (FTS5) in dump order, with their rows: the rows inserted, or for an external-content
    /// table the rows of its content table when its `'rebuild'` came.
    pub virtual_tables: Vec<VirtualTableCount>,
    /// Names inserted into the migrations table, in dump order.
    pub migrations: Vec<String>,
    /// Statements seen.
    pub statements: u64,
}

/// Counts and checks, kept apart from the splitter so the splitter's callback can borrow them.
#[derive(Debug)]
struct Tally {
    migrations_table: String,
    statements: u64,
    table_index: HashMap<String, usize>,
    tables: Vec<TableCount>,
    /// The virtual tables created so far, with where their rows live.
    virtual_tables: Vec<(VirtualTableCount, FtsContent)>,
    migrations: Vec<String>,
    error: Option<DumpError>,
    /// The exact start shared by the INSERTs of the table last inserted into (as `INSERT INTO "t" (`),
    /// with that table's index: a dump is mostly runs of such rows, and counting them by prefix skips
    /// classifying millions of statements one by one. Set only after a row of that table was proven to
    /// fit the scratch schema.
    row_prefix: Option<(String, usize)>,
    /// The dump's schema so far, where every statement but the rows is proven to load.
    scratch: Option<ScratchSchema>,
}

impl Tally {
    /// The index of table `name` in `tables`, adding it on first sight.
    fn table(&mut self, name: &str) -> usize {
        match self.table_index.get(name) {
            Some(i) => *i,
            None => {
                self.tables.push(TableCount {
                    name: name.to_string(),
                    rows: 0,
                });
                self.table_index
                    .insert(name.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        }
    }

    /// Remembers how `stmt`, an INSERT into `tables[index]`, starts, when it starts exactly as D1 writes
    /// rows: `INSERT INTO "t" ("c1","c2") VALUES(` (or without the column list). That start names the table
    /// and the columns unambiguously, so a row with the same start fits the scratch schema as this one
    /// did; rows written any other way are classified and checked one by one.
    fn remember_row_prefix(&mut self, stmt: &str, index: usize) {
        let Some(insert) = parse_insert(stmt) else {
            return;
        };
        let prefix = format!("{}(", insert_head(&insert.table, insert.columns.as_deref()));
        if stmt.starts_with(prefix.as_str()) {
            self.row_prefix = Some((prefix, index));
        }
    }

    fn statement(&mut self, stmt: &str) {
        if self.error.is_some() {
            return;
        }
        self.statements += 1;
        if self.statements == 1 {
            let normalized: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
            if !normalized.eq_ignore_ascii_case(DUMP_HEADER) {
                self.error = Some(DumpError::MissingHeader {
                    found: preview(stmt),
                });
            }
            return;
        }
        if let Some((prefix, index)) = &self.row_prefix
            && stmt.starts_with(prefix.as_str())
        {
            self.tables[*index].rows += 1;
            return;
        }
        let kind = classify(stmt);
        if let Err(reason) = self.prove_loads(stmt, &kind) {
            self.error = Some(DumpError::Unloadable {
                start: preview(stmt),
                reason,
            });
            return;
        }
        if let Err(reason) = self.count_virtual(stmt, &kind) {
            self.error = Some(DumpError::Unloadable {
                start: preview(stmt),
                reason,
            });
            return;
        }
        match kind {
            StatementKind::CreateVirtualTable { .. } => {}
            StatementKind::Insert { table } if self.virtual_index(&table).is_some() => {}
            StatementKind::CreateTable { name } if is_user_table(&name) => {
                self.table(&name);
            }
            StatementKind::Insert { table } if is_user_table(&table) => {
                let index = self.table(&table);
                self.tables[index].rows += 1;
                if table.eq_ignore_ascii_case(&self.migrations_table) {
                    // Never counted by prefix: each of its rows also names a migration.
                    if let Some(name) = migration_name(stmt) {
                        self.migrations.push(name);
                    }
                } else {
                    self.remember_row_prefix(stmt, index);
                }
            }
            _ => {}
        }
    }
}

impl Tally {
    /// The index of virtual table `name` in `virtual_tables`, if the dump created it.
    fn virtual_index(&self, name: &str) -> Option<usize> {
        self.virtual_tables
            .iter()
            .position(|(t, _)| t.name.eq_ignore_ascii_case(name))
    }

    /// Counts what the dump holds for its virtual tables (docs/d1-dump-format.md, "Virtual tables"): a
    /// `CREATE VIRTUAL TABLE` adds one, a row into it counts one, and its `'rebuild'` command counts its
    /// content table's rows, which must have come before. Fails when a `'rebuild'` would index nothing.
    fn count_virtual(&mut self, stmt: &str, kind: &StatementKind) -> Result<(), String> {
        match kind {
            StatementKind::CreateVirtualTable { name } => {
                let table = parse_virtual_table(stmt).ok_or_else(|| {
                    format!("cannot read the definition of virtual table {name:?}")
                })?;
                let content = table.fts_content();
                self.virtual_tables.push((
                    VirtualTableCount {
                        name: table.name,
                        module: table.module,
                        rows: 0,
                    },
                    content,
                ));
                Ok(())
            }
            StatementKind::Insert { table } => {
                let Some(index) = self.virtual_index(table) else {
                    return Ok(());
                };
                let name = &self.virtual_tables[index].0.name;
                let rebuild = parse_insert(stmt).is_some_and(|insert| is_rebuild(&insert, name));
                let (entry, content) = &mut self.virtual_tables[index];
                match (rebuild, content) {
                    (true, FtsContent::External { table: source }) => {
                        let rows = self
                            .table_index
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(source))
                            .map(|(_, i)| self.tables[*i].rows)
                            .ok_or_else(|| {
                                format!(
                                    "FTS5 table {:?} is rebuilt from {source:?}, which the dump does not \
                                     hold before it",
                                    entry.name
                                )
                            })?;
                        entry.rows = rows;
                    }
                    _ => entry.rows += 1,
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Proves `stmt` would load as the restore loads it: a row INSERT the INSERT parser reads must fit a
    /// table of the scratch schema (checked once per table and column list); statements the restore skips
    /// (pragmas, transaction control) are left out; everything else runs or is prepared in the scratch
    /// schema.
    fn prove_loads(&mut self, stmt: &str, kind: &StatementKind) -> Result<(), String> {
        let Some(scratch) = self.scratch.as_mut() else {
            return Ok(());
        };
        match kind {
            StatementKind::Pragma | StatementKind::Transaction => Ok(()),
            StatementKind::CreateTrigger { .. } => {
                scratch.defer_trigger(stmt);
                Ok(())
            }
            StatementKind::Insert { .. } => match parse_insert(stmt) {
                Some(insert) => scratch.check_insert(
                    &insert.table,
                    insert.columns.as_deref(),
                    insert.values.len(),
                ),
                None => scratch.load(stmt),
            },
            _ => scratch.load(stmt),
        }
    }
}

/// Tables that belong to the user (not SQLite's or Cloudflare's internals).
fn is_user_table(name: &str) -> bool {
    let starts_with = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    !starts_with("sqlite_") && !starts_with("_cf_")
}

/// The `name` value of an INSERT into wrangler's migrations table (`id, name, applied_at`).
fn migration_name(stmt: &str) -> Option<String> {
    let insert = parse_insert(stmt)?;
    let index = match &insert.columns {
        Some(columns) => columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case("name"))?,
        None => 1,
    };
    match insert.values.get(index)? {
        SqlValue::Text(name) => Some(name.clone()),
        _ => None,
    }
}

fn preview(text: &str) -> String {
    let one_line: String = text.chars().take(60).collect();
    one_line.replace('\n', "\\n")
}

/// Feeds on the dump's bytes in order and decides, at the end, whether it is a valid dump.
#[derive(Debug)]
pub struct DumpInspector {
    splitter: StatementSplitter,
    tally: Tally,
    sha256: Sha256,
    received: u64,
    announced: Option<u64>,
    /// The first non-whitespace bytes, to recognise an HTML page before a statement completes.
    start: Vec<u8>,
}

impl DumpInspector {
    /// An inspector for a dump of `announced` bytes (when the server said), whose migrations live in
    /// `migrations_table`.
    pub fn new(announced: Option<u64>, migrations_table: &str) -> Self {
        let (scratch, error) = match ScratchSchema::new() {
            Ok(scratch) => (Some(scratch), None),
            Err(e) => (None, Some(DumpError::Inspector(e))),
        };
        DumpInspector {
            splitter: StatementSplitter::new(),
            tally: Tally {
                migrations_table: migrations_table.to_string(),
                statements: 0,
                table_index: HashMap::new(),
                tables: Vec::new(),
                virtual_tables: Vec::new(),
                migrations: Vec::new(),
                error,
                row_prefix: None,
                scratch,
            },
            sha256: Sha256::new(),
            received: 0,
            announced,
            start: Vec::new(),
        }
    }

    /// Consumes the next bytes. Fails as soon as the dump is known to be bad (HTML, no header, not UTF-8,
    /// longer than announced), so that a bad download is abandoned early.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), DumpError> {
        if let Some(err) = &self.tally.error {
            return Err(err.clone());
        }
        self.received += chunk.len() as u64;
        if let Some(announced) = self.announced
            && self.received > announced
        {
            return self.fail(DumpError::Overlong { announced });
        }
        self.sha256.update(chunk);
        if self.start.len() < 16 {
            for &b in chunk {
                if self.start.len() == 16 {
                    break;
                }
                // Leading whitespace does not count: an HTML page may start with a newline.
                if self.start.is_empty() && b.is_ascii_whitespace() {
                    continue;
                }
                self.start.push(b);
            }
            if self.start.first() == Some(&b'<') {
                let start = String::from_utf8_lossy(&self.start).into_owned();
                return self.fail(DumpError::Html { start });
            }
        }
        let tally = &mut self.tally;
        if let Err(e) = self.splitter.push(chunk, &mut |stmt| tally.statement(stmt)) {
            return self.fail(DumpError::NotUtf8 {
                offset: self.received,
                detail: e.to_string(),
            });
        }
        match &self.tally.error {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Ends the inspection: the dump is valid only if everything announced arrived and the last
    /// statement is complete.
    pub fn finish(self) -> Result<DumpReport, DumpError> {
        if let Some(err) = self.tally.error {
            return Err(err);
        }
        if self.received == 0 {
            return Err(DumpError::Empty);
        }
        if let Some(announced) = self.announced
            && self.received < announced
        {
            return Err(DumpError::Truncated {
                received: self.received,
                announced,
            });
        }
        let mut tally = self.tally;
        let tail = self.splitter.finish().map_err(|e| DumpError::NotUtf8 {
            offset: self.received,
            detail: e.to_string(),
        })?;
        if let Some(tail) = tail {
            // A complete final statement without its `;` is still incomplete for SQLite's purposes.
            return Err(DumpError::IncompleteStatement {
                tail: preview(&tail),
            });
        }
        if tally.statements == 0 {
            return Err(DumpError::MissingHeader {
                found: String::new(),
            });
        }
        if let Some(scratch) = tally.scratch.as_mut() {
            scratch
                .finish()
                .map_err(|(stmt, reason)| DumpError::Unloadable {
                    start: preview(&stmt),
                    reason,
                })?;
        }
        Ok(DumpReport {
            raw_size: self.received,
            raw_sha256: hex::encode(self.sha256.finalize()),
            tables: std::mem::take(&mut tally.tables),
            virtual_tables: std::mem::take(&mut tally.virtual_tables)
                .into_iter()
                .map(|(count, _)| count)
                .collect(),
            migrations: std::mem::take(&mut tally.migrations),
            statements: tally.statements,
        })
    }

    fn fail(&mut self, err: DumpError) -> Result<(), DumpError> {
        self.tally.error = Some(err.clone());
        Err(err)
    }
}

/// Chunks in flight between the feed and the inspector thread: enough to keep both sides busy, few enough
/// to keep memory bounded (the feed's chunks are 256 KiB, so about 2 MiB).
const CHUNKS_IN_FLIGHT: usize = 8;

/// A [`DumpInspector`] on a blocking thread of its own, fed chunks of the dump that the compressor shares
/// (a `Bytes` clone, not a copy), so that validation, hashing and row counting run beside compression and
/// upload instead of adding to them.
pub struct InspectorThread {
    chunks: mpsc::Sender<Bytes>,
    verdict: oneshot::Receiver<Result<DumpReport, DumpError>>,
}

impl InspectorThread {
    /// Starts `inspector` on tokio's blocking pool (so it must be called inside a tokio runtime).
    pub fn spawn(inspector: DumpInspector) -> Self {
        let (chunks, chunk_receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (verdict_sender, verdict) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = verdict_sender.send(inspect_chunks(inspector, chunk_receiver));
        });
        InspectorThread { chunks, verdict }
    }

    /// Hands over the next chunk. Returns false when the inspector already stopped because the dump is bad;
    /// [`InspectorThread::verdict`] then says why.
    pub async fn push(&self, chunk: Bytes) -> bool {
        self.chunks.send(chunk).await.is_ok()
    }

    /// Ends the input and waits for the verdict on the whole dump.
    pub async fn verdict(self) -> Result<DumpReport, DumpError> {
        drop(self.chunks);
        self.verdict.await.unwrap_or_else(|_| {
            Err(DumpError::Inspector(
                "the dump inspector stopped without a verdict (a bug in d1vault)".into(),
            ))
        })
    }
}

/// The inspector thread: feeds every chunk to `inspector` until the input ends or the dump is found bad
/// (then it returns at once, which closes the channel and tells the feed to stop).
fn inspect_chunks(
    mut inspector: DumpInspector,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<DumpReport, DumpError> {
    while let Some(chunk) = chunks.blocking_recv() {
        inspector.push(&chunk)?;
    }
    inspector.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(dump: &str) -> Vec<(String, u64)> {
        let mut inspector = DumpInspector::new(None, "d1_migrations");
        inspector.push(dump.as_bytes()).unwrap();
        let report = inspector.finish().unwrap();
        report
            .tables
            .into_iter()
            .map(|t| (t.name, t.rows))
            .collect()
    }

    #[test]
    fn rows_counted_by_prefix_match_rows_counted_one_by_one() {
        // Proves the INSERT-prefix shortcut counts exactly what classifying each statement counts: names
        // that share a prefix, quotes inside names, a schema-qualified name after a cached one, other
        // casing, and tables interleaved.
        let dump = "PRAGMA defer_foreign_keys=TRUE;\n\
            CREATE TABLE \"a\" (x);\nCREATE TABLE \"ab\" (x);\nCREATE TABLE \"q\"\"t\" (x);\nCREATE TABLE \"b\" (x);\nCREATE TABLE \"main\" (x);\n\
            INSERT INTO \"a\" (\"x\") VALUES(1);\nINSERT INTO \"a\" (\"x\") VALUES(2);\n\
            INSERT INTO \"ab\" (\"x\") VALUES(1);\nINSERT INTO \"a\" VALUES(3);\n\
            INSERT INTO \"main\" (\"x\") VALUES(1);\nINSERT INTO \"main\" .\"b\" VALUES(1);\n\
            INSERT INTO \"q\"\"t\" (\"x\") VALUES(1);\n\
            insert into \"a\" (\"x\") values(4);\nINSERT INTO \"a\" (\"x\") VALUES(5);\n";
        assert_eq!(
            rows(dump),
            vec![
                ("a".to_string(), 5),
                ("ab".to_string(), 1),
                ("q\"t".to_string(), 1),
                ("b".to_string(), 1),
                ("main".to_string(), 1),
            ]
        );
    }

    #[test]
    fn fts5_tables_are_counted_apart_and_only_fts5_loads() {
        // Proves a completed dump of the FTS fixture passes inspection with `tables` listing only ordinary
        // tables (no virtual or shadow table) and `virtual_tables` each FTS5 table with its rows (the
        // content table's rows for the external-content one); a 'rebuild' before its content table's
        // rows and a virtual table of another module are refused.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../tests/fixtures/fts.sql"))
            .unwrap();
        let mut dump = Vec::new();
        d1_dump::write_dump_with(
            &conn,
            &d1_dump::DumpOptions::default(),
            d1_dump::VirtualTables::Complete,
            &mut dump,
        )
        .unwrap();
        let mut inspector = DumpInspector::new(None, "d1_migrations");
        inspector.push(&dump).unwrap();
        let report = inspector.finish().unwrap();
        let tables: Vec<(&str, u64)> = report
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows))
            .collect();
        assert_eq!(tables, [("posts", 4), ("audit_data", 2)]);
        let virtuals: Vec<(&str, &str, u64)> = report
            .virtual_tables
            .iter()
            .map(|t| (t.name.as_str(), t.module.as_str(), t.rows))
            .collect();
        assert_eq!(
            virtuals,
            [
                ("posts_fts", "fts5", 4),
                ("notes", "fts5", 2),
                ("names", "fts5", 3)
            ]
        );

        for (bad, says) in [
            (
                "CREATE VIRTUAL TABLE f USING fts5(a, content='t');\n\
                 INSERT INTO \"f\" (\"f\") VALUES('rebuild');\nCREATE TABLE t (a);",
                "does not hold before it",
            ),
            (
                "CREATE VIRTUAL TABLE g USING rtree(id, x0, x1);",
                "not authorized",
            ),
        ] {
            let mut inspector = DumpInspector::new(None, "d1_migrations");
            let dump = format!("PRAGMA defer_foreign_keys=TRUE;\n{bad}\n");
            let err = inspector
                .push(dump.as_bytes())
                .and_then(|()| inspector.finish())
                .expect_err(bad);
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn keyword_named_columns_in_triggers_views_and_checks_are_a_valid_dump() {
        // Proves a schema SQLite accepts (columns named `end` and `begin` in trigger bodies and WHEN
        // clauses, CASE ... END, a view, CHECK constraints) passes inspection with its rows counted.
        let dump = "PRAGMA defer_foreign_keys=TRUE;\n\
            CREATE TABLE ev (id INTEGER PRIMARY KEY, begin INT, start INT, end INT, CHECK (end >= start));\n\
            INSERT INTO \"ev\" (\"id\",\"begin\",\"start\",\"end\") VALUES(1,1,2,3);\n\
            INSERT INTO \"ev\" (\"id\",\"begin\",\"start\",\"end\") VALUES(2,0,5,6);\n\
            CREATE TRIGGER ev_end AFTER INSERT ON ev BEGIN UPDATE ev SET end = NEW.start + 1 WHERE id = NEW.id; END;\n\
            CREATE TRIGGER ev_begin AFTER UPDATE ON ev WHEN NEW.begin > 0 BEGIN SELECT CASE WHEN NEW.start THEN 1 END; END;\n\
            CREATE VIEW v AS SELECT begin, end FROM ev;";
        assert_eq!(rows(dump), vec![("ev".to_string(), 2)]);
    }

    #[test]
    fn a_dump_that_sqlite_rejects_is_refused_for_good() {
        // Proves each statement that would make `verify` fail is found while the dump streams, named by
        // its start, and reported as permanent: broken schema statements, a row into a missing table, a
        // row naming a missing column after good rows of the same table, a trigger on a missing table.
        let head = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE \"t\" (a INT, \"end\" INT);\n";
        for (bad, start) in [
            ("CREATE TABLE u (a,);", "CREATE TABLE u"),
            (
                "INSERT INTO \"missing\" (\"a\") VALUES(1);",
                "INSERT INTO \"missing\"",
            ),
            (
                "INSERT INTO \"t\" (\"nope\") VALUES(1);",
                "INSERT INTO \"t\" (\"nope\")",
            ),
            ("CREATE VIEW v AS SELECT FROM t;", "CREATE VIEW v"),
            (
                "CREATE TRIGGER tr AFTER INSERT ON nope BEGIN UPDATE t SET end = 1; END;",
                "CREATE TRIGGER tr",
            ),
        ] {
            let mut inspector = DumpInspector::new(None, "d1_migrations");
            let dump = format!("{head}INSERT INTO \"t\" (\"a\",\"end\") VALUES(1,2);\n{bad}\n");
            let verdict = inspector
                .push(dump.as_bytes())
                .and_then(|()| inspector.finish());
            let err = verdict.expect_err(bad);
            let text = err.to_string();
            assert!(text.contains("would not restore"), "{bad}: {text}");
            assert!(text.contains(start), "{bad}: {text}");
            assert!(!err.is_retryable(), "{bad}");
        }
    }
}
