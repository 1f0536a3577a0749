//! Restore and verify through real parts: backups made by d1vault (and dumps written by hand in wrangler's
//! older format) restored into fresh D1 databases on d1-emulator (through the import API) and into SQLite
//! files, compared row by row with the source; and every bad input leaves the target as it was.

use std::path::{Path, PathBuf};

use crate::support::bed::Bed;
use crate::support::files::entries;
use crate::support::fixture::{assert_same_contents, contents, create_fixture_db};
use chrono::{DateTime, Duration, Utc};
use d1vault::cli::RestoreArgs;
use d1vault::commands::restore;
use d1vault::config::{Compression, Config};
use d1vault::pipeline::{run_backup, store_dump};
use d1vault::repository::manifest::{self, Manifest, ManifestDatabase, ManifestDump, TableCount};
use d1vault::sources::BackupSources;

/// The environment plus a SQLite source `local` next to the D1 database `blog`.
async fn setup(compression: &str) -> (Bed, Config, BackupSources, PathBuf) {
    let env = Bed::with_emulator(&["blog"]).await;
    let local = env.dir.path().join("local.sqlite");
    create_fixture_db(&local);
    let config = env.config(
        &format!(
            "[defaults]\ncompression = \"{compression}\"\n\n[[database]]\nname = \"blog\"\n\n[[database]]\nname = \"local\"\nsqlite_path = \"{}\"\n",
            local.display()
        ),
        None,
    );
    let sources = env.sources(&config).await;
    (env, config, sources, local)
}

fn args(database: &str) -> RestoreArgs {
    RestoreArgs {
        database: database.into(),
        backup: None,
        at: None,
        to_d1: None,
        to_sqlite: None,
        replace: false,
        yes: true,
        no_safety_backup: false,
        identity: None,
        via: d1vault::cli::Via::Auto,
    }
}

fn to_d1(database: &str, target: &str) -> RestoreArgs {
    RestoreArgs {
        to_d1: Some(target.into()),
        ..args(database)
    }
}

fn to_sqlite(database: &str, path: &Path) -> RestoreArgs {
    RestoreArgs {
        to_sqlite: Some(path.to_path_buf()),
        ..args(database)
    }
}

/// The SQLite file behind an emulator database.
fn d1_file(env: &Bed, name: &str) -> PathBuf {
    env.dir.path().join("d1").join(format!("{name}.sqlite"))
}

async fn create_d1(sources: &BackupSources, name: &str) {
    sources
        .cloudflare
        .as_ref()
        .unwrap()
        .create_database(name)
        .await
        .unwrap();
}

/// Every source and compression: backup, restore into a fresh D1 database and into a SQLite file, and
/// compare every table with the source, row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_into_d1_and_sqlite_for_every_source_and_compression() {
    for compression in ["zstd", "gzip", "none"] {
        let (env, config, sources, local) = setup(compression).await;
        for (db, source) in [("blog", env.source_db()), ("local", local.clone())] {
            let db_config = config.database(db).unwrap();
            let manifest = run_backup(db_config, &sources, Utc::now()).await.unwrap();
            let target = format!("restored-{db}-{compression}");
            create_d1(&sources, &target).await;
            restore::run(&config, &to_d1(db, &target)).await.unwrap();
            assert_same_contents(&source, &d1_file(&env, &target));
            let file = env.dir.path().join(format!("{target}.sqlite"));
            restore::run(
                &config,
                &RestoreArgs {
                    backup: Some(manifest.backup_id.clone()),
                    ..to_sqlite(db, &file)
                },
            )
            .await
            .unwrap();
            assert_same_contents(&source, &file);
        }
    }
}

/// A schema-only backup restores the tables without rows; an empty database restores to an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_only_and_empty_databases_restore() {
    let (env, config, sources, _) = setup("zstd").await;
    let mut schema_only = config.database("blog").unwrap().clone();
    schema_only.no_data = true;
    let manifest = run_backup(&schema_only, &sources, Utc::now())
        .await
        .unwrap();
    assert!(manifest.export.no_data);
    let file = env.dir.path().join("schema.sqlite");
    restore::run(&config, &to_sqlite("blog", &file))
        .await
        .unwrap();
    let restored = contents(&file);
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        contents(&env.source_db()).keys().collect::<Vec<_>>()
    );
    assert!(restored.values().all(|rows| rows.is_empty()));

    create_d1(&sources, "empty").await;
    let mut empty = config.database("blog").unwrap().clone();
    empty.name = "empty".into();
    let manifest = run_backup(&empty, &sources, Utc::now()).await.unwrap();
    assert!(manifest.tables.is_empty());
    let file = env.dir.path().join("empty.sqlite");
    restore::run(&config, &to_sqlite("empty", &file))
        .await
        .unwrap();
    assert!(contents(&file).is_empty());
    create_d1(&sources, "empty-target").await;
    restore::run(&config, &to_d1("empty", "empty-target"))
        .await
        .unwrap();
    assert!(contents(&d1_file(&env, "empty-target")).is_empty());
}

/// Stores `sql` as a complete backup of `database` (as if d1vault had taken it) and returns its manifest.
async fn store_as_backup(
    sources: &BackupSources,
    database: &str,
    sql: &[u8],
    age_seconds: i64,
) -> Manifest {
    let started_at = Utc::now() - Duration::seconds(age_seconds);
    let key = zstd_dump_key(sources, database, started_at);
    let stored = store_dump(
        sources.storage.as_ref(),
        &key,
        sql,
        None,
        Compression::Zstd { level: 3 },
        None,
        "d1_migrations",
    )
    .await
    .unwrap();
    let dump = ManifestDump {
        key,
        compression: "zstd".into(),
        size: stored.size,
        sha256: stored.sha256,
        raw_size: stored.report.raw_size,
        raw_sha256: stored.report.raw_sha256,
    };
    let mut m = backup_manifest(database, started_at, dump, stored.report.tables);
    m.migrations = stored.report.migrations;
    put_manifest(sources, &m).await;
    m
}

/// Plants `sql` in storage as a complete backup of `database`, its manifest's hashes made to match, without
/// d1vault's backup pipeline (which refuses a dump that would not load): what someone who can write to the
/// bucket could leave there. Returns its manifest.
async fn plant_as_backup(sources: &BackupSources, database: &str, sql: &[u8]) -> Manifest {
    use sha2::{Digest, Sha256};
    let started_at = Utc::now() - Duration::seconds(10);
    let key = zstd_dump_key(sources, database, started_at);
    let stored = zstd::encode_all(sql, 3).unwrap();
    let dump = ManifestDump {
        key: key.clone(),
        compression: "zstd".into(),
        size: stored.len() as u64,
        sha256: hex::encode(Sha256::digest(&stored)),
        raw_size: sql.len() as u64,
        raw_sha256: hex::encode(Sha256::digest(sql)),
    };
    sources.storage.put_bytes(&key, stored).await.unwrap();
    let m = backup_manifest(database, started_at, dump, Vec::new());
    put_manifest(sources, &m).await;
    m
}

/// Where a zstd backup of `database` started at `started_at` keeps its dump.
fn zstd_dump_key(sources: &BackupSources, database: &str, started_at: DateTime<Utc>) -> String {
    let id = manifest::backup_id(started_at);
    let file = Compression::Zstd { level: 3 }.dump_file_name();
    manifest::object_key(&sources.prefix, database, &id, file)
}

/// The manifest d1vault writes for a D1 backup of `database` with this dump and these tables.
fn backup_manifest(
    database: &str,
    started_at: DateTime<Utc>,
    dump: ManifestDump,
    tables: Vec<TableCount>,
) -> Manifest {
    Manifest {
        format: manifest::FORMAT,
        tool: d1vault::TOOL.into(),
        database: ManifestDatabase {
            name: database.into(),
            id: None,
            source: "d1".into(),
        },
        backup_id: manifest::backup_id(started_at),
        started_at,
        finished_at: started_at,
        bookmark: None,
        export: d1_dump::DumpOptions::default(),
        dump,
        tables,
        virtual_tables: Vec::new(),
        migrations: Vec::new(),
        encryption: None,
    }
}

/// wrangler's older export format (INSERT without column names) with rows of a table that references a
/// table created later, and a trigger that must not fire on restored rows.
const WRANGLER_DUMP: &str = "PRAGMA defer_foreign_keys=TRUE;\n\
CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id), body TEXT);\n\
INSERT INTO \"comments\" VALUES(1,1,'first; with a semicolon');\n\
INSERT INTO \"comments\" VALUES(2,1,replace('two\\nlines','\\n',char(10)));\n\
CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT, n_comments INTEGER DEFAULT 0);\n\
INSERT INTO \"posts\" VALUES(1,'It''s here',2);\n\
CREATE TRIGGER count_comments AFTER INSERT ON comments BEGIN UPDATE posts SET n_comments = n_comments + 1 WHERE id = NEW.post_id; END;";

/// A dump in wrangler's format, with rows before the table they reference and a trigger, restores into D1
/// and into SQLite, and the trigger does not fire on the restored rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrangler_format_dump_restores_in_dependency_order() {
    let (env, config, sources, _) = setup("zstd").await;
    store_as_backup(&sources, "wrangler", WRANGLER_DUMP.as_bytes(), 10).await;
    let file = env.dir.path().join("wrangler.sqlite");
    restore::run(&config, &to_sqlite("wrangler", &file))
        .await
        .unwrap();
    create_d1(&sources, "wrangler-target").await;
    restore::run(&config, &to_d1("wrangler", "wrangler-target"))
        .await
        .unwrap();
    for path in [file, d1_file(&env, "wrangler-target")] {
        let c = contents(&path);
        assert_eq!(c["comments"].len(), 2);
        assert_eq!(
            c["posts"][0][2],
            rusqlite::types::Value::Integer(2),
            "the trigger fired on restored rows"
        );
        assert_eq!(
            c["comments"][1][2],
            rusqlite::types::Value::Text("two\nlines".into())
        );
    }
}

/// Replacing a non-empty D1 database takes a safety backup first, names it, and that backup undoes the
/// restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_takes_a_safety_backup_that_undoes_the_restore() {
    let (env, config, sources, local) = setup("zstd").await;
    store_as_backup(&sources, "wrangler", WRANGLER_DUMP.as_bytes(), 10).await;
    let before = contents(&env.source_db());
    restore::run(
        &config,
        &RestoreArgs {
            replace: true,
            ..to_d1("wrangler", "blog")
        },
    )
    .await
    .unwrap();
    let replaced = contents(&env.source_db());
    assert_eq!(
        replaced.keys().collect::<Vec<_>>(),
        vec!["comments", "posts"],
        "old tables were not removed"
    );
    let safety = d1vault::repository::backups::complete(
        sources.storage.as_ref(),
        &sources.prefix,
        Some("blog"),
    )
    .await
    .unwrap();
    assert_eq!(safety.len(), 1, "exactly one safety backup of the target");
    let undo = RestoreArgs {
        backup: Some(safety[0].backup_id.clone()),
        replace: true,
        no_safety_backup: true,
        ..to_d1("blog", "blog")
    };
    restore::run(&config, &undo).await.unwrap();
    assert_eq!(contents(&env.source_db()), before);
    let _ = local;
}

/// Without --replace, a D1 target with tables and an existing SQLite file are refused and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_targets_need_replace() {
    let (env, config, sources, _) = setup("zstd").await;
    run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let before = contents(&env.source_db());
    let err = restore::run(&config, &to_d1("local", "blog"))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code, 1);
    assert!(err.message.contains("--replace"), "{}", err.message);
    assert_eq!(contents(&env.source_db()), before);

    let file = env.dir.path().join("exists.sqlite");
    std::fs::write(&file, b"precious").unwrap();
    let err = restore::run(&config, &to_sqlite("local", &file))
        .await
        .unwrap_err();
    assert!(err.message.contains("--replace"), "{}", err.message);
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    restore::run(
        &config,
        &RestoreArgs {
            replace: true,
            ..to_sqlite("local", &file)
        },
    )
    .await
    .unwrap();
    assert_same_contents(&env.dir.path().join("local.sqlite"), &file);
}

/// A destructive restore without --yes and without a terminal is refused as a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_restore_without_yes_is_refused() {
    let (env, config, sources, _) = setup("zstd").await;
    run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let file = env.dir.path().join("exists.sqlite");
    std::fs::write(&file, b"precious").unwrap();
    let err = restore::run(
        &config,
        &RestoreArgs {
            replace: true,
            yes: false,
            ..to_sqlite("local", &file)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code, 2, "{}", err.message);
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

/// A target that does not exist is an error, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_d1_target_is_an_error() {
    let (_env, config, sources, _) = setup("zstd").await;
    run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let err = restore::run(&config, &to_d1("local", "does-not-exist"))
        .await
        .unwrap_err();
    assert!(err.message.contains("does-not-exist"), "{}", err.message);
    assert!(
        sources
            .cloudflare
            .as_ref()
            .unwrap()
            .get_database("does-not-exist")
            .await
            .is_err()
    );
}

/// Overwrites the stored dump of `m` with `bytes`; with `fix_manifest` the manifest is updated to match,
/// so that only the content (not the hash) is wrong.
async fn tamper(sources: &BackupSources, m: &Manifest, bytes: Vec<u8>, fix_manifest: bool) {
    use sha2::Digest;
    if fix_manifest {
        let mut fixed = m.clone();
        fixed.dump.size = bytes.len() as u64;
        fixed.dump.sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let key = manifest::object_key(
            &sources.prefix,
            &m.database.name,
            &m.backup_id,
            manifest::MANIFEST_FILE,
        );
        sources
            .storage
            .put_bytes(&key, fixed.to_json())
            .await
            .unwrap();
    }
    sources.storage.put_bytes(&m.dump.key, bytes).await.unwrap();
}

/// A stored object whose sha256 does not match its manifest is refused before anything changes: the D1
/// target keeps its rows and no safety backup is taken; no SQLite file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_changes_nothing() {
    let (env, config, sources, _) = setup("zstd").await;
    let m = run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let mut bytes = sources.storage.get_bytes(&m.dump.key).await.unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    tamper(&sources, &m, bytes, false).await;
    let before = contents(&env.source_db());
    let err = restore::run(
        &config,
        &RestoreArgs {
            replace: true,
            ..to_d1("local", "blog")
        },
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("damaged"), "{}", err.message);
    assert_eq!(contents(&env.source_db()), before);
    let blog_backups = d1vault::repository::backups::complete(
        sources.storage.as_ref(),
        &sources.prefix,
        Some("blog"),
    )
    .await
    .unwrap();
    assert!(
        blog_backups.is_empty(),
        "a safety backup was taken although nothing was going to change"
    );
    let file = env.dir.path().join("never.sqlite");
    assert!(
        restore::run(&config, &to_sqlite("local", &file))
            .await
            .is_err()
    );
    assert!(!file.exists());
}

/// A truncated zstd object and an object that is not zstd at all fail to decompress, even when the
/// manifest's hash matches them, and leave no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_foreign_objects_fail_cleanly() {
    let (env, config, sources, _) = setup("zstd").await;
    let m = run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let full = sources.storage.get_bytes(&m.dump.key).await.unwrap();
    for (name, bytes) in [
        ("truncated", full[..full.len() / 2].to_vec()),
        ("plain SQL", b"PRAGMA defer_foreign_keys=TRUE;".to_vec()),
    ] {
        tamper(&sources, &m, bytes, true).await;
        let file = env.dir.path().join("never.sqlite");
        let err = restore::run(&config, &to_sqlite("local", &file))
            .await
            .unwrap_err();
        assert!(err.message.contains("damaged"), "{name}: {}", err.message);
        assert!(!file.exists(), "{name}: a partial file was left");
    }
}

/// Restoring a backup id that has no manifest is refused: an incomplete backup does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_without_manifest_does_not_exist() {
    let (env, config, sources, _) = setup("zstd").await;
    let m = run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let key = manifest::object_key(
        &sources.prefix,
        "local",
        &m.backup_id,
        manifest::MANIFEST_FILE,
    );
    sources.storage.delete(&key).await.unwrap();
    let file = env.dir.path().join("never.sqlite");
    let err = restore::run(
        &config,
        &RestoreArgs {
            backup: Some(m.backup_id.clone()),
            ..to_sqlite("local", &file)
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.message.contains("no complete backup"),
        "{}",
        err.message
    );
}

/// An import that fails half-way leaves the D1 target exactly as it was, and the error names the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_import_leaves_the_target_as_it_was() {
    let (env, config, sources, _) = setup("zstd").await;
    let dump = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (x INTEGER CHECK (x > 0));\nINSERT INTO \"t\" VALUES(1);\nINSERT INTO \"t\" VALUES(-1);";
    store_as_backup(&sources, "bad", dump.as_bytes(), 10).await;
    let before = contents(&env.source_db());
    let err = restore::run(
        &config,
        &RestoreArgs {
            replace: true,
            no_safety_backup: true,
            ..to_d1("bad", "blog")
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.message.contains("-1") || err.message.contains("CHECK"),
        "{}",
        err.message
    );
    assert_eq!(contents(&env.source_db()), before);
}

/// Spools `manifest` for a D1 restore and imports it into `target` with `client`, as `restore --to-d1`
/// does; returns the error and how long the import took.
async fn import_with(
    env: &Bed,
    sources: &BackupSources,
    manifest: &Manifest,
    client: d1vault::cloudflare::Client,
    target: &str,
) -> (d1vault::restore::RestoreError, std::time::Duration) {
    let spool = env.dir.path().join("spool");
    let body = d1vault::restore::d1::spool_import_body(
        sources.storage.as_ref(),
        manifest,
        None,
        d1vault::cloudflare::IMPORT_MAX_BYTES,
        &spool,
        &mut d1vault::restore::Progress::hidden(),
    )
    .await
    .unwrap();
    let uuid = client.get_database(target).await.unwrap().uuid;
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        d1vault::restore::d1::import_replacing(&client, &uuid, body),
    )
    .await
    .expect("the import hung the restore")
    .expect_err("the import must fail");
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
    (err, started.elapsed())
}

/// An import D1 never reports finished (polls answer `active` for ever) ends `restore --to-d1` at the
/// import deadline with a retryable error that says what it was waiting for and that D1 may still apply it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_never_finishes_fails_at_the_deadline() {
    let (env, config, sources, _) = setup("zstd").await;
    let manifest = run_backup(config.database("blog").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    create_d1(&sources, "target").await;
    let client = sources
        .cloudflare
        .clone()
        .unwrap()
        .with_timeouts(d1vault::cloudflare::Timeouts {
            import_deadline: std::time::Duration::from_millis(500),
            ..Default::default()
        });
    env.set_faults(serde_json::json!({ "import_active_polls": 100000 }))
        .await;
    let (err, took) = import_with(&env, &sources, &manifest, client, "target").await;
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let d1vault::restore::RestoreError::Api(api) = &err else {
        panic!("not an API error: {err}");
    };
    assert!(api.is_retryable(), "{err}");
    assert!(err.to_string().contains("finish the import"), "{err}");
    assert!(err.to_string().contains("still active"), "{err}");
    // The emulator, as D1 may, goes on applying the import: the error must not claim otherwise.
    assert!(err.to_string().contains("may still finish"), "{err}");
}

/// An import upload that the server takes whole and never answers ends at the upload idle timeout with
/// a retryable error; nothing is imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_import_upload_fails_at_the_idle_timeout() {
    let (env, config, sources, _) = setup("zstd").await;
    let manifest = run_backup(config.database("blog").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    create_d1(&sources, "target").await;
    let before = contents(&d1_file(&env, "target"));
    let client = sources
        .cloudflare
        .clone()
        .unwrap()
        .with_timeouts(d1vault::cloudflare::Timeouts {
            upload_idle: std::time::Duration::from_millis(300),
            ..Default::default()
        });
    env.set_faults(serde_json::json!({ "upload_stall": true }))
        .await;
    let (err, took) = import_with(&env, &sources, &manifest, client, "target").await;
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let d1vault::restore::RestoreError::Api(api) = &err else {
        panic!("not an API error: {err}");
    };
    assert!(api.is_retryable(), "{err}");
    assert!(err.to_string().contains("no progress"), "{err}");
    assert_eq!(contents(&d1_file(&env, "target")), before);
}

/// `verify` passes on a good backup and fails (exit 1) when the manifest's row counts disagree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_row_count_mismatches() {
    let (_env, config, sources, _) = setup("zstd").await;
    let m = run_backup(config.database("blog").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let args = |all| d1vault::cli::VerifyArgs {
        databases: vec!["blog".into()],
        backup: None,
        all,
        identity: None,
        json: false,
    };
    d1vault::commands::verify::run(&config, &args(false))
        .await
        .unwrap();
    let mut wrong = m.clone();
    wrong.tables[0].rows += 1;
    let key = manifest::object_key(
        &sources.prefix,
        "blog",
        &m.backup_id,
        manifest::MANIFEST_FILE,
    );
    sources
        .storage
        .put_bytes(&key, wrong.to_json())
        .await
        .unwrap();
    let err = d1vault::commands::verify::run(&config, &args(true))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code, 1);
    assert!(
        err.message.contains(&wrong.tables[0].name),
        "{}",
        err.message
    );
}

/// Writes `m` as the manifest of its own backup directory (a hand edit in storage).
async fn put_manifest(sources: &BackupSources, m: &Manifest) {
    let key = manifest::object_key(
        &sources.prefix,
        &m.database.name,
        &m.backup_id,
        manifest::MANIFEST_FILE,
    );
    sources.storage.put_bytes(&key, m.to_json()).await.unwrap();
}

/// Proves verify's row check is never vacuous: a manifest with `tables: []`, one that omits a table the
/// dump holds, one whose export filter names other tables than it lists, and a `no_data` manifest that
/// claims rows each fail verify (exit 1) naming the table, though sizes and hashes all match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_when_the_manifest_tables_are_not_the_dump_tables() {
    let (_env, config, sources, _) = setup("zstd").await;
    let m = run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let args = d1vault::cli::VerifyArgs {
        databases: vec!["local".into()],
        backup: None,
        all: false,
        identity: None,
        json: false,
    };
    d1vault::commands::verify::run(&config, &args)
        .await
        .unwrap();
    let with_rows = m.tables.iter().find(|t| t.rows > 0).unwrap().name.clone();
    let first = m.tables[0].name.clone();
    let last = m.tables.last().unwrap().name.clone();
    assert_ne!(first, last, "the fixture has several tables");
    let cases: Vec<(&str, Manifest, &str)> = vec![
        (
            "tables: []",
            Manifest {
                tables: vec![],
                ..m.clone()
            },
            &first,
        ),
        (
            "a table left out",
            Manifest {
                tables: m.tables[..m.tables.len() - 1].to_vec(),
                ..m.clone()
            },
            &last,
        ),
        (
            "a filter naming another table",
            Manifest {
                export: d1_dump::DumpOptions {
                    tables: vec![first.clone()],
                    ..m.export.clone()
                },
                ..m.clone()
            },
            &last,
        ),
        (
            "no_data with rows",
            Manifest {
                export: d1_dump::DumpOptions {
                    no_data: true,
                    ..m.export.clone()
                },
                ..m.clone()
            },
            &with_rows,
        ),
    ];
    for (case, edited, table) in cases {
        put_manifest(&sources, &edited).await;
        let err = d1vault::commands::verify::run(&config, &args)
            .await
            .expect_err(case);
        assert_eq!(err.exit_code, 1, "{case}");
        assert!(
            err.message.contains(&format!("table {table}:")),
            "{case}: {}",
            err.message
        );
    }
    put_manifest(&sources, &m).await;
    d1vault::commands::verify::run(&config, &args)
        .await
        .unwrap();
}

/// Proves a manifest is checked against the directory it is stored in before it is trusted: a manifest of
/// `blog` whose dump.key (and hashes and tables) point at `local`'s dump, and a truncated manifest, are not
/// listed, and `verify --backup ID` and `restore --backup ID` refuse them with the reason, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_another_databases_dump_is_not_trusted() {
    let (env, config, sources, _) = setup("zstd").await;
    let local = run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let blog = run_backup(config.database("blog").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let borrowed = Manifest {
        dump: local.dump.clone(),
        tables: local.tables.clone(),
        ..blog.clone()
    };
    put_manifest(&sources, &borrowed).await;
    let manifest_key = manifest::object_key(
        &sources.prefix,
        "blog",
        &blog.backup_id,
        manifest::MANIFEST_FILE,
    );
    for (case, reason) in [("borrowed dump", "dump.key"), ("truncated", "not valid")] {
        if case == "truncated" {
            let json = blog.to_json();
            sources
                .storage
                .put_bytes(&manifest_key, json[..json.len() - 20].to_vec())
                .await
                .unwrap();
        }
        let listed = d1vault::repository::backups::complete(
            sources.storage.as_ref(),
            &sources.prefix,
            Some("blog"),
        )
        .await
        .unwrap();
        assert!(listed.is_empty(), "{case}: listed {listed:?}");
        let err = d1vault::commands::verify::run(
            &config,
            &d1vault::cli::VerifyArgs {
                databases: vec!["blog".into()],
                backup: Some(blog.backup_id.clone()),
                all: false,
                identity: None,
                json: false,
            },
        )
        .await
        .expect_err(case);
        assert_eq!(err.exit_code, 1, "{case}");
        assert!(
            err.message.contains("cannot trust") && err.message.contains(reason),
            "{case}: {}",
            err.message
        );
        let file = env.dir.path().join("never.sqlite");
        let err = restore::run(
            &config,
            &RestoreArgs {
                backup: Some(blog.backup_id.clone()),
                ..to_sqlite("blog", &file)
            },
        )
        .await
        .expect_err(case);
        assert!(
            err.message.contains("cannot trust") && err.message.contains(reason),
            "{case}: {}",
            err.message
        );
        assert!(!file.exists(), "{case}");
    }
}

/// The names of the tables of the SQLite file at `path`.
fn table_names(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn verify_args(database: &str) -> d1vault::cli::VerifyArgs {
    d1vault::cli::VerifyArgs {
        databases: vec![database.into()],
        backup: None,
        all: false,
        identity: None,
        json: false,
    }
}

/// A victim SQLite file outside any restore, with one table `t`.
fn victim(env: &Bed) -> PathBuf {
    let path = env.dir.path().join("victim.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    path
}

/// A dump edited in storage together with its manifest (the hash matches) that ATTACHes another SQLite
/// file of the host and drops its table, or writes a file with VACUUM INTO, is refused by verify and by
/// both restores with a clear error: the victim keeps its table, no file is written, no target changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_dump_with_a_matching_hash_touches_no_file_of_the_host() {
    let (env, config, sources, _) = setup("zstd").await;
    let victim = victim(&env);
    let copy = env.dir.path().join("copy.db");
    let attach = format!(
        "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE x (a);\nINSERT INTO \"x\" VALUES(1);\nATTACH '{}' AS v;\nDROP TABLE v.t;",
        victim.display()
    );
    let vacuum = format!(
        "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE x (a);\nVACUUM INTO '{}';",
        copy.display()
    );
    for (name, sql) in [("attach", attach), ("vacuum", vacuum)] {
        plant_as_backup(&sources, name, sql.as_bytes()).await;
        let file = env.dir.path().join(format!("{name}.sqlite"));
        let before = entries(env.dir.path());
        let err = restore::run(&config, &to_sqlite(name, &file))
            .await
            .unwrap_err();
        assert_eq!(err.exit_code, 1);
        assert!(
            err.message.contains("refused before it ran")
                && err.message.contains("nothing on the target was changed"),
            "{name}: {}",
            err.message
        );
        assert!(!file.exists(), "{name}: a restored file appeared");
        assert_eq!(
            entries(env.dir.path()),
            before,
            "{name}: a file was left behind"
        );

        let err = d1vault::commands::verify::run(&config, &verify_args(name))
            .await
            .unwrap_err();
        assert_eq!(err.exit_code, 1);
        assert!(
            err.message.contains("refused before it ran"),
            "{name}: {}",
            err.message
        );

        let target = format!("{name}-target");
        create_d1(&sources, &target).await;
        let err = restore::run(&config, &to_d1(name, &target))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("refused before it ran"),
            "{name}: {}",
            err.message
        );
        assert!(
            contents(&d1_file(&env, &target)).is_empty(),
            "{name}: the D1 target changed"
        );

        assert_eq!(
            table_names(&victim),
            ["t"],
            "{name}: the victim lost its table"
        );
        assert!(!copy.exists(), "{name}: VACUUM INTO wrote a file");
        assert_eq!(
            entries(&config.daemon.state_dir.join("spool")),
            Vec::<String>::new(),
            "{name}: scratch files were left in the spool directory"
        );
    }
}

/// The same hostile dump put in place of a backup's dump without fixing the manifest (the hash fails):
/// not one statement runs, on either restore or in verify, and the error says the backup is damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_dump_whose_hash_fails_runs_nothing() {
    let (env, config, sources, _) = setup("zstd").await;
    let victim = victim(&env);
    let good = store_as_backup(&sources, "edited", WRANGLER_DUMP.as_bytes(), 10).await;
    let attach = format!(
        "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE x (a);\nCREATE TABLE y AS SELECT * FROM x;\n\
         INSERT INTO \"x\" VALUES(1);\nCOMMIT;\nATTACH '{}' AS v;\nDROP TABLE v.t;",
        victim.display()
    );
    let hostile = plant_as_backup(&sources, "hostile", attach.as_bytes()).await;
    let bytes = sources.storage.get_bytes(&hostile.dump.key).await.unwrap();
    tamper(&sources, &good, bytes, false).await;

    let file = env.dir.path().join("edited.sqlite");
    let before = entries(env.dir.path());
    let err = restore::run(&config, &to_sqlite("edited", &file))
        .await
        .unwrap_err();
    assert!(err.message.contains("damaged"), "{}", err.message);
    assert!(!file.exists());
    assert_eq!(entries(env.dir.path()), before);
    let err = d1vault::commands::verify::run(&config, &verify_args("edited"))
        .await
        .unwrap_err();
    assert!(err.message.contains("damaged"), "{}", err.message);
    create_d1(&sources, "edited-target").await;
    let err = restore::run(&config, &to_d1("edited", "edited-target"))
        .await
        .unwrap_err();
    assert!(err.message.contains("damaged"), "{}", err.message);
    assert!(contents(&d1_file(&env, "edited-target")).is_empty());
    assert_eq!(table_names(&victim), ["t"], "the victim lost its table");
    assert_eq!(
        entries(&config.daemon.state_dir.join("spool")),
        Vec::<String>::new()
    );
}

/// `--to-sqlite` never follows or replaces a symbolic link (to a file, or dangling), a FIFO, a
/// character device or a directory, with `--replace` or without: exit 1, a message saying what is there,
/// and the path and whatever it leads to left as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_sqlite_replaces_only_a_regular_file() {
    use std::os::unix::fs::FileTypeExt;
    let (env, config, sources, _) = setup("zstd").await;
    run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let dir = env.dir.path().join("targets");
    std::fs::create_dir(&dir).unwrap();
    let precious = dir.join("precious.sqlite");
    std::fs::write(&precious, b"precious").unwrap();
    let link = dir.join("link.sqlite");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let dangling = dir.join("dangling.sqlite");
    std::os::unix::fs::symlink(dir.join("nowhere.sqlite"), &dangling).unwrap();
    let fifo = dir.join("fifo.sqlite");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let subdir = dir.join("subdir.sqlite");
    std::fs::create_dir(&subdir).unwrap();
    let mut cases = vec![
        (link.clone(), "a symbolic link"),
        (dangling.clone(), "does not exist"),
        (fifo.clone(), "a FIFO"),
        (subdir.clone(), "a directory"),
    ];
    // A character device of our own (we may not be root: then a link to /dev/null stands in for it).
    let device = dir.join("null.sqlite");
    let mknod = std::process::Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .status();
    if mknod.is_ok_and(|s| s.success()) {
        cases.push((device.clone(), "a character device"));
    } else {
        std::os::unix::fs::symlink("/dev/null", &device).unwrap();
        cases.push((device.clone(), "a symbolic link to /dev/null"));
    }
    let kind = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
    let before: Vec<_> = cases.iter().map(|(p, _)| kind(p)).collect();
    for (path, what) in &cases {
        for replace in [true, false] {
            let err = restore::run(
                &config,
                &RestoreArgs {
                    replace,
                    ..to_sqlite("local", path)
                },
            )
            .await
            .unwrap_err();
            assert_eq!(err.exit_code, 1, "{}: {}", path.display(), err.message);
            assert!(
                err.message.contains(what),
                "{} (--replace {replace}): {}",
                path.display(),
                err.message
            );
        }
    }
    let after: Vec<_> = cases.iter().map(|(p, _)| kind(p)).collect();
    assert_eq!(
        after, before,
        "a link, FIFO, device or directory was replaced"
    );
    assert!(kind(&fifo).is_fifo());
    assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
    assert!(
        !dir.join("nowhere.sqlite").exists(),
        "a dangling link was followed"
    );
    assert_eq!(
        entries(&dir),
        [
            "dangling.sqlite",
            "fifo.sqlite",
            "link.sqlite",
            "null.sqlite",
            "precious.sqlite",
            "subdir.sqlite"
        ]
    );
    assert!(entries(&subdir).is_empty());
}

/// A D1 target that holds only a view and a trigger (no table) is not empty: without --replace the
/// restore is refused and the view stays; with --replace a safety backup is taken first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_d1_target_with_only_views_or_triggers_is_not_empty() {
    let (env, config, sources, local) = setup("zstd").await;
    run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    create_d1(&sources, "views-only").await;
    let client = sources.cloudflare.as_ref().unwrap();
    let target = client.get_database("views-only").await.unwrap();
    client
        .query(
            &target.uuid,
            "CREATE VIEW v AS SELECT 1 AS x; \
             CREATE TRIGGER tr INSTEAD OF INSERT ON v BEGIN SELECT 1; END;",
            &[],
        )
        .await
        .unwrap();
    let schema = |path: &Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT type || ' ' || name FROM sqlite_master ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        schema(&d1_file(&env, "views-only")),
        ["trigger tr", "view v"]
    );

    let err = restore::run(&config, &to_d1("local", "views-only"))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code, 1);
    assert!(err.message.contains("--replace"), "{}", err.message);
    assert!(err.message.contains("view v"), "{}", err.message);
    assert_eq!(
        schema(&d1_file(&env, "views-only")),
        ["trigger tr", "view v"]
    );

    restore::run(
        &config,
        &RestoreArgs {
            replace: true,
            ..to_d1("local", "views-only")
        },
    )
    .await
    .unwrap();
    assert_same_contents(&local, &d1_file(&env, "views-only"));
    let safety = d1vault::repository::backups::complete(
        sources.storage.as_ref(),
        &sources.prefix,
        Some("views-only"),
    )
    .await
    .unwrap();
    assert_eq!(safety.len(), 1, "no safety backup of the views-only target");
}

/// What a killed restore or verify leaves (the temporary file next to a `--to-sqlite` target, verify's
/// scratch database, a D1 import file, with their SQLite side files) is removed when the same operation
/// runs next; files of runs still going (locked) and files d1vault did not name are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_killed_runs_are_removed_by_the_next_run() {
    let (env, config, sources, _) = setup("zstd").await;
    run_backup(config.database("local").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let spool = config.daemon.state_dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let dir = env.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let big = vec![b'x'; 1 << 20];
    // The names a killed run of this version leaves, and the PID-named one of the previous version.
    let leftovers = [
        dir.join(".restored.sqlite.d1vault-restore-4242"),
        dir.join(".restored.sqlite.d1vault-restore-Ab3dE9"),
        spool.join("d1vault-verify-Zx81Qa.sqlite"),
        spool.join("d1vault-verify-Zx81Qa.sqlite-journal"),
        spool.join("d1vault-import-Kq02Lm.sql"),
    ];
    for path in &leftovers {
        std::fs::write(path, &big).unwrap();
    }
    let others = [dir.join("restored.sqlite.bak"), spool.join("notes.txt")];
    for path in &others {
        std::fs::write(path, b"mine").unwrap();
    }
    // A run still going holds its scratch file locked.
    let live = spool.join("d1vault-verify-L1ve00.sqlite");
    let held = std::fs::File::create(&live).unwrap();
    #[allow(clippy::incompatible_msrv)]
    held.lock().unwrap();

    let restored = dir.join("restored.sqlite");
    restore::run(&config, &to_sqlite("local", &restored))
        .await
        .unwrap();
    d1vault::commands::verify::run(&config, &verify_args("local"))
        .await
        .unwrap();
    create_d1(&sources, "fresh").await;
    restore::run(&config, &to_d1("local", "fresh"))
        .await
        .unwrap();

    for path in &leftovers {
        assert!(!path.exists(), "{} survived the next run", path.display());
    }
    for path in &others {
        assert_eq!(std::fs::read(path).unwrap(), b"mine");
    }
    assert!(live.exists(), "a live run's scratch database was removed");
    assert_eq!(
        entries(&spool),
        ["d1vault-verify-L1ve00.sqlite", "notes.txt"],
        "a restore or verify left a file in the spool directory"
    );
    drop(held);
    assert_eq!(entries(&dir), ["restored.sqlite", "restored.sqlite.bak"]);
}

/// `restore --at` takes the newest complete backup that started at or before the time, given as RFC 3339
/// or as a duration ago, and refuses a time before every backup, saying which is the oldest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_at_a_time_takes_the_newest_backup_started_at_or_before_it() {
    let (env, config, sources, local) = setup("zstd").await;
    let db = config.database("local").unwrap();
    let now = Utc::now();
    let early = run_backup(db, &sources, now - Duration::hours(2))
        .await
        .unwrap();
    let before_write = contents(&local);
    rusqlite::Connection::open(&local)
        .unwrap()
        .execute_batch("DELETE FROM comments;")
        .unwrap();
    let late = run_backup(db, &sources, now - Duration::hours(1))
        .await
        .unwrap();
    assert_ne!(early.backup_id, late.backup_id);
    for (at, expected) in [
        ("90m".to_string(), &early),
        (early.started_at.to_rfc3339(), &early),
        (
            (late.started_at - Duration::seconds(1)).to_rfc3339(),
            &early,
        ),
        (late.started_at.to_rfc3339(), &late),
        ("1s".to_string(), &late),
    ] {
        let file = env
            .dir
            .path()
            .join(format!("at-{}.sqlite", at.replace([':', '+'], "_")));
        let args = RestoreArgs {
            at: Some(at.clone()),
            ..to_sqlite("local", &file)
        };
        restore::run(&config, &args).await.unwrap();
        let restored = contents(&file);
        if expected.backup_id == early.backup_id {
            assert_eq!(
                restored, before_write,
                "--at {at} should restore {}",
                early.backup_id
            );
        } else {
            assert_eq!(
                restored,
                contents(&local),
                "--at {at} should restore {}",
                late.backup_id
            );
        }
    }
    let file = env.dir.path().join("latest.sqlite");
    let args = RestoreArgs {
        backup: Some("latest".into()),
        ..to_sqlite("local", &file)
    };
    restore::run(&config, &args).await.unwrap();
    assert_eq!(
        contents(&file),
        contents(&local),
        "--backup latest is the newest backup"
    );
    let file = env.dir.path().join("too-early.sqlite");
    let args = RestoreArgs {
        at: Some("3h".into()),
        ..to_sqlite("local", &file)
    };
    let err = restore::run(&config, &args).await.unwrap_err();
    assert_eq!(err.exit_code, 1, "{err}");
    assert!(err.message.contains("the oldest started at"), "{err}");
    assert!(!file.exists(), "a refused restore created its target");
    let args = RestoreArgs {
        at: Some("last tuesday".into()),
        ..to_sqlite("local", &file)
    };
    assert_eq!(restore::run(&config, &args).await.unwrap_err().exit_code, 2);
}

/// A D1 backup restored into its own source database goes back by Time Travel (no import, so no safety
/// backup: D1's previous bookmark is the undo) to exactly the state the backup holds; `--via import`
/// imports instead (with its safety backup); a database without Time Travel is imported, and
/// `--via time-travel` is refused there before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_goes_back_into_its_own_source_by_time_travel_unless_told_to_import() {
    let (env, config, sources, _) = setup("zstd").await;
    let original = env.dir.path().join("original.sqlite");
    create_fixture_db(&original);
    let backup = run_backup(config.database("blog").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    let client = sources.cloudflare.as_ref().unwrap();
    let id = client.get_database("blog").await.unwrap().uuid;
    let damage = || async {
        client
            .query(&id, "DELETE FROM comments", &[])
            .await
            .unwrap();
    };
    let stored = || async {
        d1vault::repository::backups::complete(
            sources.storage.as_ref(),
            &sources.prefix,
            Some("blog"),
        )
        .await
        .unwrap()
        .len()
    };
    // By id: each import's safety backup (of the damaged state) becomes the newest backup.
    let in_place = |via| RestoreArgs {
        replace: true,
        via,
        backup: Some(backup.backup_id.clone()),
        ..to_d1("blog", "blog")
    };

    damage().await;
    restore::run(&config, &in_place(d1vault::cli::Via::Auto))
        .await
        .unwrap();
    assert_same_contents(&original, &env.source_db());
    assert_eq!(
        stored().await,
        1,
        "Time Travel took a safety backup (or imported)"
    );

    damage().await;
    restore::run(&config, &in_place(d1vault::cli::Via::Import))
        .await
        .unwrap();
    assert_same_contents(&original, &env.source_db());
    assert_eq!(stored().await, 2, "the import's safety backup is missing");

    env.set_faults(serde_json::json!({ "time_travel": false }))
        .await;
    damage().await;
    let refused = restore::run(&config, &in_place(d1vault::cli::Via::TimeTravel))
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("cannot go back by Time Travel"),
        "{refused}"
    );
    assert_ne!(
        contents(&original),
        contents(&env.source_db()),
        "a refused restore changed the target"
    );
    restore::run(&config, &in_place(d1vault::cli::Via::Auto))
        .await
        .unwrap();
    assert_same_contents(&original, &env.source_db());
    assert_eq!(
        stored().await,
        3,
        "without Time Travel the import (and its safety backup) runs"
    );
}

/// A dump larger than one D1 import restores through several imports in order (clearing and schema, rows
/// in runs, then indexes, triggers and views), each under the limit the emulator enforces, and the
/// target ends up holding exactly the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_over_the_import_limit_restores_through_several_imports() {
    const LIMIT: u64 = 1_200;
    let (env, config, mut sources, _) = setup("zstd").await;
    sources.cloudflare = sources.cloudflare.map(|c| c.with_import_limit(LIMIT));
    let manifest = run_backup(config.database("blog").unwrap(), &sources, Utc::now())
        .await
        .unwrap();
    assert!(
        manifest.dump.raw_size > 3 * LIMIT,
        "the fixture ({} bytes) is too small to need several imports",
        manifest.dump.raw_size
    );
    create_d1(&sources, "copy").await;
    env.set_faults(serde_json::json!({ "import_max_bytes": LIMIT }))
        .await;
    let request = d1vault::restore::RestoreRequest {
        database: "blog".into(),
        backup: d1vault::restore::BackupChoice::Newest,
        target: d1vault::restore::RestoreTarget::D1("copy".into()),
        replace: false,
        safety_backup: true,
        via: d1vault::restore::RestoreVia::Auto,
    };
    d1vault::restore::plan(&config, &sources, request)
        .await
        .unwrap()
        .run(&mut d1vault::restore::Progress::hidden())
        .await
        .unwrap();
    assert_same_contents(&env.source_db(), &d1_file(&env, "copy"));

    // The emulator really refuses a file over the limit: one import of the whole dump fails.
    create_d1(&sources, "whole").await;
    let mut one_import = sources.clone();
    one_import.cloudflare = one_import.cloudflare.map(|c| c.with_import_limit(u64::MAX));
    let request = d1vault::restore::RestoreRequest {
        database: "blog".into(),
        backup: d1vault::restore::BackupChoice::Newest,
        target: d1vault::restore::RestoreTarget::D1("whole".into()),
        replace: false,
        safety_backup: true,
        via: d1vault::restore::RestoreVia::Auto,
    };
    let refused = d1vault::restore::plan(&config, &one_import, request)
        .await
        .unwrap()
        .run(&mut d1vault::restore::Progress::hidden())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("over the limit"), "{refused}");
}
