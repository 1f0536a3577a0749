//! A schema-only SQLite database in memory, locked down, that proves a dump's statements would load.
//!
//! A backup counts only if its dump would restore; `verify` must not be the first to find out. While a
//! dump streams, the backup hands every statement that is not a plain row INSERT to this database: schema
//! statements (`CREATE TABLE/INDEX/VIEW/TRIGGER`, `ALTER`, `DROP`, `ANALYZE`) run, on empty tables, so
//! later statements can refer to what they create; anything else is only prepared, which is where SQLite
//! checks syntax and names. Row INSERTs are checked once per shape (table and columns), as the restore
//! prepares them. No row is ever stored, so memory stays bounded by the schema.
//!
//! The database can touch no file: `ATTACH`, `DETACH` and pragmas outside a short harmless list are denied
//! when a statement is prepared, temporary tables live in memory, and a statement that runs too long (a
//! recursive `CREATE TABLE ... AS SELECT`) is interrupted.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Batch, Connection, Statement};

use super::insert::insert_head;

/// Pragmas a statement may name in the scratch database: the ones dumps write, and harmless reads.
const ALLOWED_PRAGMAS: &[&str] = &[
    "defer_foreign_keys",
    "foreign_keys",
    "table_info",
    "table_xinfo",
    "index_info",
    "index_list",
    "index_xinfo",
    "foreign_key_list",
];

/// How many progress callbacks (each after [`PROGRESS_STEP`] virtual machine instructions) one statement
/// may take: far more than any schema statement on empty tables needs.
const PROGRESS_BUDGET: u32 = 2_000;
/// Virtual machine instructions between progress callbacks.
const PROGRESS_STEP: i32 = 10_000;

/// The scratch database: the schema of the dump read so far, and nothing else.
pub struct ScratchSchema {
    conn: Connection,
    /// Progress callbacks left to the statement running now.
    budget: Arc<AtomicU32>,
    /// Row shapes already proven: table, columns (when listed), number of values.
    inserts: HashSet<(String, Option<Vec<String>>, usize)>,
    /// `CREATE TRIGGER` statements, run at [`ScratchSchema::finish`]: restore creates triggers last (after
    /// the views that D1's dump writes after them, which an `INSTEAD OF` trigger needs), so the proof does too.
    triggers: Vec<String>,
}

impl std::fmt::Debug for ScratchSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchSchema")
            .field("row_shapes", &self.inserts.len())
            .finish_non_exhaustive()
    }
}

/// Whether `stmt` changes the schema (and so must run for later statements to be checked): its first word
/// is `CREATE`, `ALTER`, `DROP` or `ANALYZE`.
fn changes_schema(stmt: &str) -> bool {
    let words = super::words(stmt);
    words.first().is_some_and(|first| {
        ["CREATE", "ALTER", "DROP", "ANALYZE"]
            .iter()
            .any(|kw| first.eq_ignore_ascii_case(kw))
    })
}

/// The authorizer: no other database file, no pragma that is not on [`ALLOWED_PRAGMAS`], no virtual table
/// but FTS5's (the only one a dump holds: `docs/d1-dump-format.md`, "Virtual tables").
fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::CreateVtable { module_name, .. }
            if !module_name.eq_ignore_ascii_case(crate::FTS5) =>
        {
            Authorization::Deny
        }
        AuthAction::Pragma { pragma_name, .. }
            if !ALLOWED_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

impl ScratchSchema {
    /// An empty, locked-down scratch database in memory.
    pub fn new() -> Result<Self, String> {
        let conn = Connection::open_in_memory()
            .map_err(|e| format!("opening the scratch SQLite database: {e}"))?;
        // Before the authorizer: temporary tables in memory, never in a file.
        conn.execute_batch("PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF;")
            .map_err(|e| format!("setting up the scratch SQLite database: {e}"))?;
        conn.authorizer(Some(authorize));
        let budget = Arc::new(AtomicU32::new(PROGRESS_BUDGET));
        let left = budget.clone();
        conn.progress_handler(
            PROGRESS_STEP,
            Some(move || {
                left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_err()
            }),
        );
        Ok(ScratchSchema {
            conn,
            budget,
            inserts: HashSet::new(),
            triggers: Vec::new(),
        })
    }

    /// Proves one statement (as the splitter cut it) would load: runs it when it changes the schema,
    /// prepares it otherwise. Fails with SQLite's reason, which includes SQLite reading more than one
    /// statement in the text.
    pub fn load(&mut self, stmt: &str) -> Result<(), String> {
        let mut prepared = self.conn.prepare(stmt).map_err(|e| e.to_string())?;
        if changes_schema(stmt) {
            run(&mut prepared, &self.budget)?;
        }
        Ok(())
    }

    /// Keeps a `CREATE TRIGGER` for [`ScratchSchema::finish`], where it is proven after everything else, in
    /// the order the restore creates triggers. Schema text is small; rows never come here.
    pub fn defer_trigger(&mut self, stmt: &str) {
        self.triggers.push(stmt.to_owned());
    }

    /// Proves the deferred triggers, in dump order, once the whole dump was read; fails with the first
    /// trigger SQLite rejects and its reason.
    pub fn finish(&mut self) -> Result<(), (String, String)> {
        for stmt in std::mem::take(&mut self.triggers) {
            self.load(&stmt).map_err(|reason| (stmt, reason))?;
        }
        Ok(())
    }

    /// Proves a row INSERT of this shape would load, as the restore prepares it: the table and the columns
    /// exist and take that many values. Checked once per shape.
    pub fn check_insert(
        &mut self,
        table: &str,
        columns: Option<&[String]>,
        values: usize,
    ) -> Result<(), String> {
        let key = (table.to_owned(), columns.map(<[String]>::to_vec), values);
        if self.inserts.contains(&key) {
            return Ok(());
        }
        let placeholders = vec!["?"; values].join(",");
        let sql = format!("{} ({placeholders})", insert_head(table, columns));
        self.conn.prepare(&sql).map_err(|e| e.to_string())?;
        self.inserts.insert(key);
        Ok(())
    }
}

/// Steps `prepared` to its end within the progress budget.
fn run(prepared: &mut Statement<'_>, budget: &AtomicU32) -> Result<(), String> {
    budget.store(PROGRESS_BUDGET, Ordering::Relaxed);
    let mut rows = prepared.raw_query();
    loop {
        match rows.next() {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                return Err("it runs too long on an empty schema".to_owned());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// `text` without what SQLite reads before a statement: whitespace, comments and empty statements (`;`).
fn strip_leading(mut text: &str) -> &str {
    loop {
        let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0c', ';']);
        if let Some(after) = trimmed.strip_prefix("--") {
            text = after.find('\n').map_or("", |i| &after[i + 1..]);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            text = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            return trimmed;
        }
    }
}

/// The statements of `sql` as SQLite's own parser cuts them (prepare and its tail, through
/// [`rusqlite::Batch`]), each without the whitespace and comments before it, run on a [`ScratchSchema`]
/// as the backup would (schema statements run, the rest prepared) so later statements can refer to
/// earlier tables. Also returns why SQLite stopped early, if it did: the statements before that point are
/// still SQLite's answer. The reference the splitter is tested against (unit tests and the fuzz harness).
#[doc(hidden)]
pub fn split_statements_by_sqlite(sql: &str) -> (Vec<String>, Option<String>) {
    let scratch = match ScratchSchema::new() {
        Ok(scratch) => scratch,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut statements = Vec::new();
    let mut batch = Batch::new(&scratch.conn, sql);
    loop {
        let mut prepared = match batch.next() {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return (statements, None),
            Err(e) => return (statements, Some(e.to_string())),
        };
        // With parameters, SQLite's text of the statement (expanded) is not the input's.
        if prepared.parameter_count() > 0 {
            return (statements, Some("a statement has parameters".to_owned()));
        }
        let Some(text) = prepared.expanded_sql() else {
            return (statements, Some("SQLite gave no text".to_owned()));
        };
        let text = strip_leading(&text).to_owned();
        if changes_schema(&text)
            && let Err(e) = run(&mut prepared, &scratch.budget)
        {
            statements.push(text);
            return (statements, Some(e));
        }
        statements.push(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_database_cannot_attach_or_run_unlisted_pragmas() {
        // Proves a dump cannot make the backup open another file, nor change how SQLite works.
        let mut scratch = ScratchSchema::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("other.sqlite");
        let attach = format!("ATTACH '{}' AS other;", file.display());
        assert!(scratch.load(&attach).is_err());
        assert!(!file.exists(), "ATTACH created a file");
        assert!(scratch.load("PRAGMA journal_mode=WAL;").is_err());
        assert!(scratch.load("PRAGMA temp_store_directory='/tmp';").is_err());
        let vacuum = format!("VACUUM INTO '{}';", file.display());
        scratch.load(&vacuum).unwrap_or_default();
        assert!(!file.exists(), "VACUUM INTO wrote a file");
        scratch.load("PRAGMA defer_foreign_keys=TRUE;").unwrap();
    }

    #[test]
    fn schema_runs_rows_are_checked_by_shape_and_runaway_statements_stop() {
        // Proves CREATE statements take effect for later checks, a row into a missing table or column
        // is refused, two statements in one text are refused, and a recursive CTAS is interrupted.
        let mut scratch = ScratchSchema::new().unwrap();
        scratch
            .load("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, \"end\" INT);")
            .unwrap();
        scratch.load("DELETE FROM sqlite_sequence;").unwrap();
        scratch
            .check_insert("t", Some(&["id".into(), "end".into()]), 2)
            .unwrap();
        assert!(
            scratch
                .check_insert("t", Some(&["nope".into()]), 1)
                .is_err()
        );
        assert!(scratch.check_insert("missing", None, 1).is_err());
        assert!(scratch.load("SELECT 1; SELECT 2;").is_err());
        assert!(
            scratch
                .load("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET end = 1;")
                .is_err()
        );
        // FTS5 tables load, with their rows and the 'rebuild' command; no other module does.
        scratch
            .load("CREATE VIRTUAL TABLE docs USING fts5(body, content='t', content_rowid='id');")
            .unwrap();
        scratch
            .check_insert("docs", Some(&["docs".into()]), 1)
            .unwrap();
        scratch
            .load("CREATE VIRTUAL TABLE n USING fts5(a, tokenize='trigram');")
            .unwrap();
        scratch
            .check_insert("n", Some(&["rowid".into(), "a".into()]), 2)
            .unwrap();
        for other in [
            "CREATE VIRTUAL TABLE g USING rtree(id, x0, x1);",
            "CREATE VIRTUAL TABLE f4 USING fts4(body);",
            "CREATE VIRTUAL TABLE s USING dbstat;",
        ] {
            let err = scratch.load(other).unwrap_err();
            assert!(err.contains("not authorized"), "{other}: {err}");
        }
        let err = scratch
            .load(
                "CREATE TABLE big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                 SELECT x FROM c;",
            )
            .unwrap_err();
        assert!(err.contains("too long"), "{err}");
    }
}
