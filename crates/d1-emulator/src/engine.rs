//! Running SQL the way D1 does: one transaction per request, D1's refusals, D1's result shapes.
//!
//! Everything here blocks; callers run it on a blocking thread.

use std::time::Instant;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ToSql};
use serde_json::{Value, json};

use d1_dump::{StatementKind, classify};

use super::registry::Database;

/// D1's statement length limit in bytes.
pub(crate) use d1_dump::limits::MAX_STATEMENT_BYTES;

/// Pragmas D1 allows; any other is refused (`docs/d1-dump-format.md`, "Refused").
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_list",
    "table_info",
    "table_xinfo",
    "data_version",
    "page_size",
    "case_sensitive_like",
    "foreign_keys",
    "defer_foreign_keys",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
    "foreign_key_check",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "quick_check",
    "optimize",
];

/// One statement's result, ready for `/query` (objects) or `/raw` (columns and rows).
#[derive(Debug)]
pub(crate) struct StatementResult {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) meta: Meta,
}

/// D1's `meta` object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub(crate) duration_ms: f64,
    pub(crate) changes: u64,
    pub(crate) last_row_id: i64,
    pub(crate) changed_db: bool,
    pub(crate) size_after: u64,
    pub(crate) rows_read: u64,
    pub(crate) rows_written: u64,
}

impl Meta {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "served_by": "d1-emulator",
            "served_by_region": "WEUR",
            "served_by_primary": true,
            "timings": { "sql_duration_ms": self.duration_ms },
            "duration": self.duration_ms,
            "changes": self.changes,
            "last_row_id": self.last_row_id,
            "changed_db": self.changed_db,
            "size_after": self.size_after,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "total_attempts": 1
        })
    }
}

impl StatementResult {
    /// The `/query` form: `{ results: [ {col: value} ], success, meta }`.
    pub(crate) fn to_query_json(&self) -> Value {
        let results: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let object: serde_json::Map<String, Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect();
                Value::Object(object)
            })
            .collect();
        json!({ "results": results, "success": true, "meta": self.meta.to_json() })
    }

    /// The `/raw` form: `{ results: { columns, rows }, success, meta }`.
    pub(crate) fn to_raw_json(&self) -> Value {
        json!({
            "results": { "columns": self.columns, "rows": self.rows },
            "success": true,
            "meta": self.meta.to_json()
        })
    }
}

/// The SQLite result-code name D1 appends to messages (`: SQLITE_ERROR`).
fn code_name(code: rusqlite::ErrorCode) -> &'static str {
    use rusqlite::ErrorCode::*;
    match code {
        ConstraintViolation => "SQLITE_CONSTRAINT",
        TooBig => "SQLITE_TOOBIG",
        AuthorizationForStatementDenied => "SQLITE_AUTH",
        TypeMismatch => "SQLITE_MISMATCH",
        ParameterOutOfRange => "SQLITE_RANGE",
        DatabaseBusy => "SQLITE_BUSY",
        DatabaseLocked => "SQLITE_LOCKED",
        ReadOnly => "SQLITE_READONLY",
        DatabaseCorrupt => "SQLITE_CORRUPT",
        DiskFull => "SQLITE_FULL",
        _ => "SQLITE_ERROR",
    }
}

/// A rusqlite error as D1 words it: `<message>: SQLITE_<CODE>`.
/// Turns foreign key enforcement on (as D1 does) or off (`--no-foreign-keys`) for the next request.
pub(crate) fn set_foreign_keys(conn: &Connection, enforce: bool) -> Result<(), String> {
    conn.execute_batch(if enforce {
        "PRAGMA foreign_keys=ON"
    } else {
        "PRAGMA foreign_keys=OFF"
    })
    .map_err(|e| d1_message(&e))
}

pub(crate) fn d1_message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(e, Some(msg)) => format!("{msg}: {}", code_name(e.code)),
        rusqlite::Error::SqliteFailure(e, None) => format!("{e}: {}", code_name(e.code)),
        rusqlite::Error::InvalidParameterCount(given, expected) => {
            format!(
                "Wrong number of parameter bindings for SQL query (expected {expected}, got {given}): SQLITE_RANGE"
            )
        }
        other => format!("{other}: SQLITE_ERROR"),
    }
}

/// D1's refusals that SQLite itself would accept; the message D1 gives, or `None` when allowed.
pub(crate) fn refusal(statement: &str) -> Option<String> {
    if statement.len() > MAX_STATEMENT_BYTES {
        return Some("statement too long: SQLITE_TOOBIG".to_owned());
    }
    if matches!(classify(statement), StatementKind::Transaction) {
        let first = statement
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("");
        return Some(if first.eq_ignore_ascii_case("BEGIN") {
            "cannot start a transaction within a transaction: SQLITE_ERROR".to_owned()
        } else {
            "not authorized to use transaction statements; D1 runs every request in its own transaction: SQLITE_AUTH"
                .to_owned()
        });
    }
    let mut lexer = d1_dump::words(statement);
    let first = lexer
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    if matches!(first.as_str(), "ATTACH" | "DETACH" | "VACUUM") {
        return Some("not authorized: SQLITE_AUTH".to_owned());
    }
    if lexer.iter().any(|w| {
        w.as_bytes()
            .get(..4)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"_cf_"))
    }) {
        return Some("not authorized: SQLITE_AUTH".to_owned());
    }
    if first == "PRAGMA" {
        // PRAGMA [schema.]name ...: the name is the second word, or the third after a schema.
        lexer.remove(0);
        let name = if lexer.len() >= 2 && lexer[0].eq_ignore_ascii_case("main") {
            &lexer[1]
        } else {
            lexer.first()?
        };
        if !ALLOWED_PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            return Some("not authorized: SQLITE_AUTH".to_owned());
        }
    }
    None
}

/// Converts a JSON parameter to an SQLite value (strings, numbers, booleans, null; others as JSON text).
fn json_param(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(SqlValue::Integer)
            .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// Converts an SQLite value to D1's JSON (blobs as arrays of byte numbers).
fn json_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(r) => serde_json::Number::from_f64(r)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Array(b.iter().map(|x| json!(x)).collect()),
    }
}

/// The database's size in bytes.
pub(crate) fn database_size(conn: &Connection) -> u64 {
    conn.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .unwrap_or(0)
}

fn schema_version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Runs one prepared statement, collecting its rows.
fn run_one(conn: &Connection, sql: &str, params: &[Value]) -> Result<StatementResult, String> {
    if let Some(refused) = refusal(sql) {
        return Err(refused);
    }
    let started = Instant::now();
    let before = conn.total_changes();
    let mut stmt = conn.prepare(sql).map_err(|e| d1_message(&e))?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let values: Vec<SqlValue> = if stmt.parameter_count() > 0 {
        params.iter().map(json_param).collect()
    } else {
        vec![]
    };
    let refs: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
    let mut rows_out = Vec::new();
    {
        let mut rows = stmt.query(refs.as_slice()).map_err(|e| d1_message(&e))?;
        while let Some(row) = rows.next().map_err(|e| d1_message(&e))? {
            rows_out.push(
                (0..columns.len())
                    .map(|i| json_value(row.get_ref_unwrap(i)))
                    .collect(),
            );
        }
    }
    let changes = conn.total_changes().saturating_sub(before);
    Ok(StatementResult {
        meta: Meta {
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            changes,
            // Reads report 0, not the connection's last insert from an earlier request.
            last_row_id: if changes > 0 {
                conn.last_insert_rowid()
            } else {
                0
            },
            changed_db: changes > 0,
            rows_read: rows_out.len() as u64 + changes,
            rows_written: changes,
            size_after: 0,
        },
        columns,
        rows: rows_out,
    })
}

/// A transaction on a database's connection that rolls back unless committed: on an error, and on a panic
/// half-way (the guard is dropped while unwinding), the database is left exactly as it was and outside any
/// transaction, so the next request works.
pub(crate) struct TransactionGuard<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> TransactionGuard<'c> {
    /// Starts a write transaction (`BEGIN IMMEDIATE`) on `conn`.
    pub(crate) fn begin(conn: &'c Connection) -> Result<Self, String> {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| d1_message(&e))?;
        Ok(TransactionGuard { conn, open: true })
    }

    /// Starts a read transaction (`BEGIN`) on `conn`: one consistent snapshot, ended when dropped.
    pub(crate) fn begin_read(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN")?;
        Ok(TransactionGuard { conn, open: true })
    }

    /// Commits; a failed commit is rolled back (when the guard drops) and reported in D1's words.
    pub(crate) fn commit(mut self) -> Result<(), String> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| d1_message(&e))?;
        self.open = false;
        Ok(())
    }
}

impl Drop for TransactionGuard<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Runs statements as one transaction: all succeed and commit, or the first failure rolls everything back.
/// Returns per-statement results, or D1's error message. Records a bookmark when the database changed.
pub(crate) fn run_batch(
    db: &Database,
    statements: &[(String, Vec<Value>)],
    enforce_foreign_keys: bool,
) -> Result<Vec<StatementResult>, String> {
    let conn = db.connection().map_err(|e| e.to_string())?;
    set_foreign_keys(&conn, enforce_foreign_keys)?;
    let schema_before = schema_version(&conn);
    // Any request may write; keep the state it starts from for Time Travel (once per bookmark).
    db.before_write(&conn);
    let transaction = TransactionGuard::begin(&conn)?;
    let mut results = Vec::with_capacity(statements.len());
    for (sql, params) in statements {
        // A failure drops `transaction`, which rolls everything back.
        results.push(run_one(&conn, sql, params)?);
    }
    transaction.commit()?;
    let changed =
        results.iter().any(|r| r.meta.changes > 0) || schema_version(&conn) != schema_before;
    let size = database_size(&conn);
    drop(conn);
    if changed {
        db.note_change();
    }
    for result in &mut results {
        result.meta.size_after = size;
        result.meta.changed_db = changed;
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn refuses_what_d1_refuses() {
        // Proves transactions, _cf_ names, unknown pragmas, ATTACH and long statements are refused.
        assert!(
            refusal("BEGIN TRANSACTION;")
                .unwrap()
                .contains("within a transaction")
        );
        assert!(refusal("COMMIT").is_some());
        assert!(refusal("SAVEPOINT x").is_some());
        assert!(
            refusal("CREATE TABLE _cf_KV (k)")
                .unwrap()
                .ends_with("SQLITE_AUTH")
        );
        assert!(refusal("SELECT * FROM \"_CF_METADATA\"").is_some());
        assert!(refusal("PRAGMA journal_mode=DELETE").is_some());
        assert!(refusal("PRAGMA main.journal_mode").is_some());
        assert!(refusal("ATTACH 'x' AS y").is_some());
        assert!(
            refusal(&format!("SELECT '{}'", "a".repeat(100_000)))
                .unwrap()
                .contains("TOOBIG")
        );
        assert_eq!(refusal("PRAGMA defer_foreign_keys=TRUE;"), None);
        assert_eq!(refusal("PRAGMA table_info(\"t\")"), None);
        assert_eq!(refusal("SELECT '_cf_ in a string is fine'"), None);
        assert_eq!(refusal("DELETE FROM sqlite_sequence;"), None);
    }
}
