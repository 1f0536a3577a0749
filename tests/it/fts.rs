//! Full-text search (issue 16): a local SQLite source with FTS5 tables (external content fed by triggers,
//! contentful, trigram; deleted rows, unicode, quotes: `tests/fixtures/fts.sql`) is backed up whole with no
//! `tables` setting, restores into SQLite and into D1 (the emulator's import) searchable exactly as the
//! source, passes `verify`, and the emulator's whole-database export of it still ends in D1's refusal. The
//! same fixture as a D1 database is backed up without any whole-database export (the ordinary tables by
//! name, completed from the query API), consistently (a write in between makes it take the backup again).
//! Everything runs through the `d1vault` binary against the in-process emulator and S3 server.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;

use crate::support::bed::Bed;
use crate::support::run::{list_json, run, stderr, stdout};
use d1vault::repository::manifest::{self, Manifest};

/// The FTS fixture, as SQL.
const FTS_SQL: &str = include_str!("../fixtures/fts.sql");

/// MATCH (and one LIKE on the trigram table) queries over the three FTS5 tables, each with its rows.
const SEARCHES: &[&str] = &[
    "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH 'search' ORDER BY rowid",
    "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH '\"quoted\"' ORDER BY rowid",
    "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH 'creme OR 日本語' ORDER BY rowid",
    "SELECT rowid, title FROM posts_fts WHERE posts_fts MATCH 'title:line' ORDER BY rowid",
    "SELECT rowid, snippet(posts_fts, 1, '[', ']', '…', 4) FROM posts_fts WHERE posts_fts MATCH 'body' ORDER BY rank, rowid",
    "SELECT rowid, subject FROM notes WHERE notes MATCH 'run' ORDER BY rowid",
    "SELECT rowid, subject FROM notes WHERE notes MATCH 'strasse OR façade OR obrien' ORDER BY rowid",
    "SELECT rowid, name FROM names WHERE names MATCH 'rich' ORDER BY rowid",
    "SELECT rowid, name FROM names WHERE names MATCH '\"o Pa\"' ORDER BY rowid",
    "SELECT rowid, name FROM names WHERE name LIKE '%''Bri%' ORDER BY rowid",
];

/// What every query of [`SEARCHES`] finds in the database at `path`.
fn searches(path: &Path) -> Vec<Vec<(i64, String)>> {
    let conn = Connection::open(path).unwrap();
    SEARCHES
        .iter()
        .map(|sql| {
            conn.prepare(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        })
        .collect()
}

/// Rows the external-content table finds for `word`.
fn hits(path: &Path, word: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM posts_fts WHERE posts_fts MATCH ?1",
            [word],
            |r| r.get(0),
        )
        .unwrap()
}

/// A bed with the emulator and the FTS fixture as the SQLite source `search` (`search.sqlite`), stored
/// uncompressed so that the dump can also be fed to the `sqlite3` shell; returns the config path.
async fn setup() -> (Bed, PathBuf, PathBuf) {
    let env = Bed::with_emulator(&["blog"]).await;
    let source = env.dir.path().join("search.sqlite");
    Connection::open(&source)
        .unwrap()
        .execute_batch(FTS_SQL)
        .unwrap();
    let config = env.write_s3_config(
        "d1vault",
        &env.s3.endpoint,
        "test",
        &env.sqlite_database("search", "search.sqlite", "none"),
    );
    (env, config, source)
}

/// Backs up `search` through the binary and returns its manifest as `list --json` shows it.
async fn backup(env: &Bed, config: &Path) -> Value {
    let output = run(config, &["backup", "search"], &env.secrets()).await;
    assert!(
        output.status.success(),
        "backup failed: {}",
        stderr(&output)
    );
    list_json(config, &env.secrets()).await.remove(0)
}

/// The "done when": backed up with no `tables` setting, restored into SQLite and into D1, every
/// search finds the same rows as on the source, a row inserted after the restore is found (the triggers
/// came back), `verify` passes, and the `sqlite3` shell loads the stored dump too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fts5_database_backs_up_whole_and_restores_searchable() {
    let (env, config, source) = setup().await;
    let expected = searches(&source);
    assert!(expected.iter().all(|found| !found.is_empty()));
    let m = backup(&env, &config).await;

    // The manifest: ordinary tables only (no virtual or shadow table), the FTS5 tables apart.
    let tables: Vec<&str> = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["posts", "audit_data"]);
    assert_eq!(
        m["virtual_tables"],
        serde_json::json!([
            { "name": "posts_fts", "module": "fts5", "rows": 4 },
            { "name": "notes", "module": "fts5", "rows": 2 },
            { "name": "names", "module": "fts5", "rows": 3 },
        ])
    );

    // Into SQLite.
    let file = env.dir.path().join("restored.sqlite");
    let output = run(
        &config,
        &[
            "restore",
            "search",
            "--to-sqlite",
            file.to_str().unwrap(),
            "--yes",
        ],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    assert_eq!(searches(&file), expected);
    Connection::open(&file)
        .unwrap()
        .execute_batch("INSERT INTO posts (title, body) VALUES ('After', 'a zebra appears');")
        .unwrap();
    assert_eq!(hits(&file, "zebra"), 1);

    // Into D1, through the emulator's import.
    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    let client = sources.cloudflare.as_ref().unwrap();
    client.create_database("restored-search").await.unwrap();
    let d1 = env.d1_file("restored-search");
    let output = run(
        &config,
        &["restore", "search", "--to-d1", "restored-search", "--yes"],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    assert_eq!(searches(&d1), expected);
    Connection::open(&d1)
        .unwrap()
        .execute_batch("INSERT INTO posts (title, body) VALUES ('After', 'a zebra appears');")
        .unwrap();
    assert_eq!(hits(&d1, "zebra"), 1);

    let output = run(&config, &["verify", "search"], &env.secrets()).await;
    assert!(
        output.status.success(),
        "verify failed: {}",
        stderr(&output)
    );

    // The stored dump is a plain SQL script the sqlite3 shell loads as it is.
    if std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!("sqlite3 is not installed: skipping the sqlite3 shell load of the dump");
        return;
    }
    let dump = env.s3.object_path(m["dump"]["key"].as_str().unwrap());
    let shell = env.dir.path().join("shell.sqlite");
    let loaded = std::process::Command::new("sqlite3")
        .arg("-bail")
        .arg(&shell)
        .arg(format!(".read '{}'", dump.display()))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "sqlite3 could not load the dump: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(searches(&shell), expected);
}

/// `verify` fails, naming the table, when the manifest's count of an FTS5 table is not what the dump
/// restores, or when the manifest leaves the FTS5 tables out; it passes again on the true manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_a_tampered_fts_count() {
    let (env, config, _) = setup().await;
    let listed = backup(&env, &config).await;
    let m = Manifest::from_json(&serde_json::to_vec(&listed).unwrap()).unwrap();
    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    let key = manifest::object_key(
        &sources.prefix,
        "search",
        &m.backup_id,
        manifest::MANIFEST_FILE,
    );
    let mut more = m.clone();
    more.virtual_tables[1].rows += 1;
    let mut none = m.clone();
    none.virtual_tables.clear();
    for (edited, says) in [
        (&more, "virtual table notes: 2 rows, the manifest says 3"),
        (
            &none,
            "virtual table posts_fts: in the dump but not in the manifest",
        ),
    ] {
        sources
            .storage
            .put_bytes(&key, edited.to_json())
            .await
            .unwrap();
        let output = run(&config, &["verify", "search"], &env.secrets()).await;
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert!(text.contains(says), "{text}");
    }
    sources.storage.put_bytes(&key, m.to_json()).await.unwrap();
    let output = run(&config, &["verify", "search"], &env.secrets()).await;
    assert!(
        output.status.success(),
        "verify failed: {}",
        stderr(&output)
    );
}

/// D1 refuses a whole-database export of a database with virtual tables, and so does the emulator, for
/// this very database: the refusal d1vault's local source does not share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_whole_export_of_it_still_fails_with_d1s_error() {
    let (env, config, source) = setup().await;
    std::fs::copy(&source, env.d1_file("search")).unwrap();
    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    let client = sources.cloudflare.as_ref().unwrap();
    let id = client.get_database("search").await.unwrap().uuid;
    let err = client
        .export(&id, &d1_dump::DumpOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("D1 Export error: cannot export databases with Virtual Tables (fts5)"),
        "{err}"
    );
}

/// A virtual table d1vault cannot back up (here rtree) fails the backup with a message naming it and the
/// `tables` workaround, and nothing is stored; with `tables` listing the other tables the backup works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_module_fails_the_backup_naming_it_and_the_tables_workaround() {
    let env = Bed::with_emulator(&["blog"]).await;
    Connection::open(env.dir.path().join("geo.sqlite"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE keep (a); INSERT INTO keep VALUES (1);
             CREATE VIRTUAL TABLE places USING rtree(id, x0, x1);
             INSERT INTO places VALUES (1, 0.5, 1.5);",
        )
        .unwrap();
    let database = env.sqlite_database("geo", "geo.sqlite", "zstd");
    let config = env.write_s3_config("d1vault", &env.s3.endpoint, "test", &database);
    let output = run(&config, &["backup", "geo"], &env.secrets()).await;
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        text.contains("\"places\"") && text.contains("\"rtree\"") && text.contains("`tables`"),
        "{text}"
    );
    assert!(list_json(&config, &env.secrets()).await.is_empty());

    let filtered = env.write_s3_config(
        "filtered",
        &env.s3.endpoint,
        "test",
        &format!("{database}tables = [\"keep\"]\n"),
    );
    let output = run(&filtered, &["backup", "geo"], &env.secrets()).await;
    assert!(
        output.status.success(),
        "backup failed: {}",
        stderr(&output)
    );
    let listed = list_json(&filtered, &env.secrets()).await;
    assert_eq!(
        listed[0]["tables"],
        serde_json::json!([{ "name": "keep", "rows": 1 }])
    );
    assert!(listed[0].get("virtual_tables").is_none(), "{}", listed[0]);
}

/// A contentful FTS5 row too large for one D1 statement makes `restore --to-d1` refuse before it imports
/// anything, naming the table and the row; the same backup restores into SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fts_row_too_large_for_d1_is_refused_by_name_before_the_import() {
    let (env, config, source) = setup().await;
    Connection::open(&source)
        .unwrap()
        .execute(
            "INSERT INTO notes(rowid, subject, note) VALUES (40, 'big', ?1)",
            ["word ".repeat(30_000)],
        )
        .unwrap();
    backup(&env, &config).await;
    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    sources
        .cloudflare
        .as_ref()
        .unwrap()
        .create_database("big-target")
        .await
        .unwrap();
    let output = run(
        &config,
        &["restore", "search", "--to-d1", "big-target", "--yes"],
        &env.secrets(),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("row 3 of table notes"), "{text}");
    let tables: i64 = Connection::open(env.d1_file("big-target"))
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0, "nothing may be imported");
    let file = env.dir.path().join("big.sqlite");
    let output = run(
        &config,
        &[
            "restore",
            "search",
            "--to-sqlite",
            file.to_str().unwrap(),
            "--yes",
        ],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
}

/// The FTS fixture as the emulator's D1 database `search`, plus a contentful row whose values JSON would
/// not carry exactly (an integer past 2^53 as rowid and value, a NULL, a real, quotes and unicode); a
/// config backing it up with no `tables` setting, stored uncompressed. Returns the config path.
async fn d1_setup() -> (Bed, PathBuf) {
    let env = Bed::with_emulator(&["blog"]).await;
    let conn = Connection::open(env.d1_file("search")).unwrap();
    conn.execute_batch(FTS_SQL).unwrap();
    conn.execute_batch(
        "INSERT INTO notes(rowid, subject, note) VALUES
           (9007199254740993, NULL, 9007199254740995),
           (-5, 0.30000000000000004, 'it''s \"fine\" — ünï 日本');",
    )
    .unwrap();
    let config = env.write_s3_config(
        "d1vault",
        &env.s3.endpoint,
        "test",
        "[[database]]\nname = \"search\"\ncompression = \"none\"\n",
    );
    (env, config)
}

/// Every row of the contentful table `notes`, typed, with its rowid.
fn note_rows(path: &Path) -> Vec<Vec<rusqlite::types::Value>> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT rowid, subject, note FROM notes ORDER BY rowid")
        .unwrap();
    stmt.query_map([], |r| Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?]))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A D1 database with FTS5 tables is backed up with no `tables` setting and without a whole-database
/// export (which D1 refuses): the ordinary tables by name, completed with the virtual tables, their rows
/// (exact values), the triggers, index and view. It restores into SQLite and into D1 searchable exactly as
/// the source, a new row is found after the restore, and `verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_database_with_fts5_backs_up_by_tables_and_restores_searchable() {
    let (env, config) = d1_setup().await;
    let source = env.d1_file("search");
    let expected = searches(&source);
    let expected_notes = note_rows(&source);
    let m = backup(&env, &config).await;
    assert_eq!(env.emulator().stats().refused_exports, 0);
    assert!(env.emulator().stats().by_route["export"] >= 1);
    assert_eq!(m["export"]["tables"], serde_json::json!([]));
    assert!(m["bookmark"].is_string(), "{m}");
    let tables: Vec<&str> = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tables.contains(&"posts") && tables.contains(&"audit_data"),
        "{tables:?}"
    );
    assert!(
        !tables
            .iter()
            .any(|t| t.contains("_fts") || t.starts_with("notes")),
        "{tables:?}"
    );
    assert_eq!(
        m["virtual_tables"],
        serde_json::json!([
            { "name": "posts_fts", "module": "fts5", "rows": 4 },
            { "name": "notes", "module": "fts5", "rows": 4 },
            { "name": "names", "module": "fts5", "rows": 3 },
        ])
    );

    let file = env.dir.path().join("restored.sqlite");
    let output = run(
        &config,
        &[
            "restore",
            "search",
            "--to-sqlite",
            file.to_str().unwrap(),
            "--yes",
        ],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    assert_eq!(searches(&file), expected);
    assert_eq!(note_rows(&file), expected_notes);
    let restored = Connection::open(&file).unwrap();
    let kept: i64 = restored
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('posts_ai', 'posts_ad', 'posts_au', \
             'posts_title', 'post_titles')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 5, "triggers, index and view come back");
    restored
        .execute_batch("INSERT INTO posts (title, body) VALUES ('After', 'a zebra appears');")
        .unwrap();
    assert_eq!(hits(&file, "zebra"), 1);

    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    let client = sources.cloudflare.as_ref().unwrap();
    client.create_database("restored-search").await.unwrap();
    let output = run(
        &config,
        &["restore", "search", "--to-d1", "restored-search", "--yes"],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    let d1 = env.d1_file("restored-search");
    assert_eq!(searches(&d1), expected);
    assert_eq!(note_rows(&d1), expected_notes);

    let output = run(&config, &["verify", "search"], &env.secrets()).await;
    assert!(
        output.status.success(),
        "verify failed: {}",
        stderr(&output)
    );
    assert_eq!(env.emulator().stats().refused_exports, 0);

    // Still one plain SQL script: the sqlite3 shell loads the completed dump as it is.
    if std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!("sqlite3 is not installed: skipping the sqlite3 shell load of the dump");
        return;
    }
    let dump = env.s3.object_path(m["dump"]["key"].as_str().unwrap());
    let shell = env.dir.path().join("shell.sqlite");
    let loaded = std::process::Command::new("sqlite3")
        .arg("-bail")
        .arg(&shell)
        .arg(format!(".read '{}'", dump.display()))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "sqlite3 could not load the dump: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(searches(&shell), expected);
    assert_eq!(note_rows(&shell), expected_notes);
}

/// A write between the export and the reads that complete it (the emulator writes right after the
/// export) moves the bookmark: that attempt stores nothing and the backup is taken again, holding the
/// new state throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_d1_fts_backup_makes_it_take_the_backup_again() {
    let (env, config) = d1_setup().await;
    env.emulator().faults().set(d1_emulator::Faults {
        write_after_export: Some(d1_emulator::WriteAfterExport {
            sql: "INSERT INTO posts (title, body) VALUES ('Late', 'a late search post')".into(),
            exports: 1,
        }),
        ..Default::default()
    });
    let m = backup(&env, &config).await;
    assert!(env.emulator().stats().by_route["export"] >= 2);
    let posts = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "posts")
        .unwrap()["rows"]
        .clone();
    assert_eq!(posts, 5);
    assert_eq!(m["virtual_tables"][0]["rows"], 5);
    let file = env.dir.path().join("late.sqlite");
    let output = run(
        &config,
        &[
            "restore",
            "search",
            "--to-sqlite",
            file.to_str().unwrap(),
            "--yes",
        ],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    assert_eq!(hits(&file, "late"), 1);
}

/// A database that changes during every attempt fails the backup clearly after the bounded attempts,
/// and nothing (no mixed state) is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_d1_fts_database_changing_on_every_attempt_fails_clearly() {
    let (env, config) = d1_setup().await;
    env.emulator().faults().set(d1_emulator::Faults {
        write_after_export: Some(d1_emulator::WriteAfterExport {
            sql: "INSERT INTO posts (title, body) VALUES ('Busy', 'another search post')".into(),
            exports: 100,
        }),
        ..Default::default()
    });
    let output = run(&config, &["backup", "search"], &env.secrets()).await;
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        text.contains("the database changed during every attempt"),
        "{text}"
    );
    assert!(list_json(&config, &env.secrets()).await.is_empty());
    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    let left = sources.storage.list("test/search/").await.unwrap();
    assert!(
        left.is_empty(),
        "no dump of any attempt may be left: {left:?}"
    );
    assert_eq!(env.s3.open_multipart_uploads(), 0);
}

/// A D1 database with a virtual table of another module fails the backup before any export, naming it
/// and the `tables` workaround.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_d1_database_with_another_module_is_refused_before_any_export() {
    let env = Bed::with_emulator(&["blog"]).await;
    Connection::open(env.d1_file("geo"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE keep (a); INSERT INTO keep VALUES (1);
             CREATE VIRTUAL TABLE places USING rtree(id, x0, x1);",
        )
        .unwrap();
    let config = env.write_s3_config(
        "d1vault",
        &env.s3.endpoint,
        "test",
        "[[database]]\nname = \"geo\"\n",
    );
    let output = run(&config, &["backup", "geo"], &env.secrets()).await;
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        text.contains("\"places\"") && text.contains("\"rtree\"") && text.contains("`tables`"),
        "{text}"
    );
    let stats = env.emulator().stats();
    assert_eq!(stats.by_route.get("export"), None, "{stats:?}");
}

/// A contentful FTS5 table larger than one page of reads comes back whole and in order: every page
/// continues after the last rowid of the one before (rowids with gaps and a negative one included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contentful_table_larger_than_a_page_is_read_whole_in_pages() {
    let (env, config) = d1_setup().await;
    let source = env.d1_file("search");
    let rows = 2 * d1vault::pipeline::completion::PAGE_ROWS + 50;
    {
        let conn = Connection::open(&source).unwrap();
        let mut insert = conn
            .prepare("INSERT INTO notes(rowid, subject, note) VALUES (?1, ?2, 'bulk')")
            .unwrap();
        for i in 0..rows as i64 {
            insert
                .execute(rusqlite::params![1000 + 3 * i, format!("row {i}")])
                .unwrap();
        }
    }
    let expected = note_rows(&source);
    let queries_before = env
        .emulator()
        .stats()
        .by_route
        .get("query")
        .copied()
        .unwrap_or(0);
    let m = backup(&env, &config).await;
    assert_eq!(m["virtual_tables"][1]["rows"], expected.len());
    let queries = env.emulator().stats().by_route["query"] - queries_before;
    assert!(
        queries >= 3,
        "{queries} queries: the table is read in pages"
    );
    let file = env.dir.path().join("paged.sqlite");
    let output = run(
        &config,
        &[
            "restore",
            "search",
            "--to-sqlite",
            file.to_str().unwrap(),
            "--yes",
        ],
        &env.secrets(),
    )
    .await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    assert_eq!(note_rows(&file), expected);
}

/// An export download cut short (as announced by its Content-Length) fails a completed D1 backup: the
/// completion is not appended to half a dump, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_export_download_fails_a_d1_fts_backup_and_stores_nothing() {
    let (env, config) = d1_setup().await;
    env.emulator().faults().set(d1_emulator::Faults {
        download: Some(d1_emulator::DownloadFault::Truncate),
        ..Default::default()
    });
    let output = run(&config, &["backup", "search"], &env.secrets()).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(list_json(&config, &env.secrets()).await.is_empty());
    let loaded = d1vault::config::load(&config).unwrap();
    let sources = env.sources(&loaded).await;
    let left = sources.storage.list("test/search/").await.unwrap();
    assert!(left.is_empty(), "nothing may be left: {left:?}");
}
