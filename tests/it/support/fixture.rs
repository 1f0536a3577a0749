//! Test data: the shared fixture (tests/fixtures/fixture.sql), a big poorly compressible database,
//! deterministic bytes, and row-by-row comparison of SQLite databases.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::Value;

/// The fixture SQL: foreign keys to later tables, AUTOINCREMENT, an index, a trigger, a view, BLOBs,
/// REALs, NULLs, quotes, newlines, carriage returns, unicode, an empty table, wrangler's d1_migrations.
pub(crate) fn fixture_sql() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fixture.sql"
    ))
    .expect("tests/fixtures/fixture.sql")
}

/// Creates `path` as a SQLite database holding the fixture.
pub(crate) fn create_fixture_db(path: &Path) {
    let conn = Connection::open(path).expect("create fixture db");
    conn.execute_batch(&fixture_sql()).expect("load fixture");
}

/// Every user table's rows (ordered by rowid, or by all columns for WITHOUT ROWID tables), typed.
pub(crate) type Contents = BTreeMap<String, Vec<Vec<Value>>>;

/// Reads every user table of the database at `path`.
pub(crate) fn contents(path: &Path) -> Contents {
    let conn = Connection::open(path).expect("open db");
    contents_of(&conn)
}

/// Reads every user table of `conn`.
pub(crate) fn contents_of(conn: &Connection) -> Contents {
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    let mut out = Contents::new();
    for table in tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {quoted} ORDER BY rowid"))
            .or_else(|_| conn.prepare(&format!("SELECT * FROM {quoted} ORDER BY 1")))
            .unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..columns)
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        out.insert(table, rows);
    }
    out
}

/// Names of indexes, triggers and views (the schema objects that must survive a round trip).
pub(crate) fn schema_objects(path: &Path) -> Vec<(String, String)> {
    let conn = Connection::open(path).expect("open db");
    let mut objects: Vec<(String, String)> = conn
        .prepare("SELECT type, name FROM sqlite_master WHERE type IN ('index','trigger','view') AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    objects.sort();
    objects
}

/// Asserts that two databases hold the same tables with the same rows, value for value.
pub(crate) fn assert_same_contents(expected: &Path, actual: &Path) {
    let (a, b) = (contents(expected), contents(actual));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "tables differ"
    );
    for (table, rows) in &a {
        assert_eq!(rows, &b[table], "rows of table {table} differ");
    }
    assert_eq!(
        schema_objects(expected),
        schema_objects(actual),
        "indexes, triggers or views differ"
    );
}

/// Deterministic, poorly compressible test bytes (a simple LCG), so round trips compare real content.
pub(crate) fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A SQLite file of about `mib` MiB of poorly compressible blobs, so an upload takes many packets.
pub(crate) fn create_big_db(path: &Path, mib: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL);")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO big(id, data) VALUES (?1, ?2)")
            .unwrap();
        for i in 0..(mib * 16) {
            insert
                .execute(rusqlite::params![i as i64, test_bytes(64 * 1024, i as u64)])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}
