//! End-to-end backups through real parts: d1-emulator over HTTP as the Cloudflare API, an in-process S3
//! server (s3s) or the filesystem as storage, SQLite as the source and the restore target. Every failure
//! case asserts the three promises: the backup fails, nothing new is listed, no multipart upload is left.

use std::time::Duration;

use crate::support::bed::Bed;
use crate::support::fixture::{assert_same_contents, create_fixture_db};
use crate::support::s3::{S3Store, moto_s3, unique_prefix, unreachable_endpoint};
use chrono::Utc;
use d1vault::pipeline::{BackupError, next_start, run_backup, run_backup_from, run_backup_now};
use d1vault::repository::{backups, manifest};
use d1vault::sources::BackupSources;
use serde_json::{Value, json};

fn database(compression: &str) -> String {
    format!("[[database]]\nname = \"blog\"\ncompression = \"{compression}\"\n")
}

async fn assert_nothing_listed(env: &Bed, sources: &BackupSources) {
    let listed = backups::complete(sources.storage.as_ref(), &sources.prefix, None)
        .await
        .unwrap();
    assert!(listed.is_empty(), "a failed backup was listed: {listed:?}");
    assert_eq!(
        env.s3.open_multipart_uploads(),
        0,
        "a multipart upload was left open"
    );
}

/// For each compression, a D1 backup restores into SQLite with every row and schema object of the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_backup_round_trips_for_every_compression() {
    let env = Bed::with_emulator(&["blog"]).await;
    for compression in ["zstd", "gzip", "none"] {
        let config = env.config(&database(compression), None);
        let sources = env.sources(&config).await;
        let manifest = run_backup(&config.databases[0], &sources, Utc::now())
            .await
            .unwrap();
        assert_eq!(manifest.database.source, "d1");
        assert_eq!(manifest.dump.compression, compression);
        assert!(manifest.bookmark.is_some());
        assert!(
            manifest
                .dump
                .key
                .ends_with(config.databases[0].compression.dump_file_name())
        );
        assert_eq!(
            manifest.migrations,
            vec![
                "0001_init.sql".to_string(),
                "0002_add_comments.sql".to_string()
            ]
        );
        let restored = env
            .restore(
                &sources,
                &manifest,
                &format!("restored-{compression}.sqlite"),
            )
            .await;
        assert_same_contents(&env.source_db(), &restored);
        // Only a second apart can two backups of one database have distinct ids.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    let listed = backups::complete(sources.storage.as_ref(), &sources.prefix, Some("blog"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].started_at >= w[1].started_at),
        "newest first"
    );
}

/// A local SQLite source backs up to the filesystem and restores identically, with no Cloudflare at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_source_to_filesystem_round_trips() {
    let env = Bed::with_emulator(&["blog"]).await;
    let source = env.dir.path().join("local.sqlite");
    create_fixture_db(&source);
    std::fs::create_dir(env.dir.path().join("backups")).unwrap();
    let storage = format!(
        "type = \"filesystem\"\npath = \"{}\"\n",
        env.dir.path().join("backups").display()
    );
    let config = env.config(
        &format!(
            "[[database]]\nname = \"local\"\nsqlite_path = \"{}\"\ncompression = \"zstd\"\n",
            source.display()
        ),
        Some(storage),
    );
    let sources = env.sources(&config).await;
    let manifest = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
    assert_eq!(manifest.database.source, "sqlite");
    assert_eq!(manifest.bookmark, None);
    let restored = env
        .restore(&sources, &manifest, "restored-local.sqlite")
        .await;
    assert_same_contents(&source, &restored);
}

async fn expect_failure(env: &Bed, faults: Value) -> BackupError {
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    env.set_faults(faults).await;
    let err = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .expect_err("backup must fail");
    assert_nothing_listed(env, &sources).await;
    err
}

/// A download cut off half-way is refused as truncated, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_download_is_not_a_backup() {
    let env = Bed::with_emulator(&["blog"]).await;
    let err = expect_failure(&env, json!({ "download": "truncate" })).await;
    let text = err.to_string();
    assert!(
        text.contains("truncated") || text.contains("interrupted"),
        "{text}"
    );
    // An interrupted download is worth another attempt (the daemon retries it).
    assert!(err.is_retryable(), "{text}");
}

/// A download without Content-Length is refused, whole or not: a chunked body and an HTTP/1.0
/// close-delimited one that stop after a complete statement end like whole ones, so the only safe answer
/// is no backup. Nothing is stored; the error names the cause and the likely proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_without_length_is_never_a_backup() {
    let env = Bed::with_emulator(&["blog"]).await;
    for fault in ["chunked_short", "close_short", "chunked"] {
        let err = expect_failure(&env, json!({ "download": fault })).await;
        let text = err.to_string();
        assert!(text.contains("Content-Length"), "{fault}: {text}");
        assert!(text.contains("proxy"), "{fault}: {text}");
        // The same path answers the same way again: retrying does not help, fixing the proxy does.
        assert!(!err.is_retryable(), "{fault}: {text}");
        assert!(
            !text.contains("/__emulator/"),
            "{fault}: the signed URL leaked: {text}"
        );
    }
    // The faults did not break the source: the next download is whole and stored.
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
}

/// A download that sends half its announced body and goes silent fails at the idle timeout with a
/// retryable error naming the stall, in bounded time; nothing is stored and no upload is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_times_out_as_retryable() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config(&database("zstd"), None);
    let mut sources = env.sources(&config).await;
    let client = sources.cloudflare.take().unwrap();
    sources.cloudflare = Some(client.with_timeouts(d1vault::cloudflare::Timeouts {
        download_idle: Duration::from_millis(300),
        ..Default::default()
    }));
    env.set_faults(json!({ "download": "stall" })).await;
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        run_backup(&config.databases[0], &sources, Utc::now()),
    )
    .await
    .expect("the stalled download hung the backup")
    .expect_err("a stalled download must fail the backup");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("stalled"), "{text}");
    assert!(text.contains("export download"), "{text}");
    assert!(err.is_retryable(), "{text}");
    assert_nothing_listed(&env, &sources).await;
}

/// An HTML error page served with status 200 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_page_is_not_a_backup() {
    let env = Bed::with_emulator(&["blog"]).await;
    let err = expect_failure(&env, json!({ "download": "html" })).await;
    assert!(err.to_string().contains("HTML"), "{err}");
}

/// An empty body is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_download_is_not_a_backup() {
    let env = Bed::with_emulator(&["blog"]).await;
    let err = expect_failure(&env, json!({ "download": "empty" })).await;
    assert!(err.to_string().contains("empty"), "{err}");
}

/// An expired download URL (404) fails with advice to run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_download_url_fails_clearly() {
    let env = Bed::with_emulator(&["blog"]).await;
    let err = expect_failure(&env, json!({ "download": "expired" })).await;
    assert!(err.to_string().contains("expired"), "{err}");
}

/// An export that D1 reports as failed fails the backup with D1's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_error_fails_with_the_reason() {
    let env = Bed::with_emulator(&["blog"]).await;
    let err = expect_failure(&env, json!({ "export_error": "out of cheese" })).await;
    assert!(err.to_string().contains("out of cheese"), "{err}");
}

/// A burst of 429s with Retry-After is waited out and the backup succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_burst_is_waited_out() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    env.set_faults(json!({ "rate_limit": { "count": 2, "retry_after_secs": 1 } }))
        .await;
    let started = std::time::Instant::now();
    let manifest = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured"
    );
    assert!(manifest.tables.iter().any(|t| t.rows > 0));
}

/// 5xx answers are retried with backoff and the backup succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config(&database("gzip"), None);
    let sources = env.sources(&config).await;
    env.set_faults(json!({ "server_error": { "count": 2, "status": 502 } }))
        .await;
    run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
}

/// An export that stays active for a while is polled until it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_export_is_polled_to_completion() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    env.set_faults(json!({ "export_active_polls": 5 })).await;
    run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
}

/// A wrong token fails at once: one request, no retry storm, a message about the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_fails_without_retrying() {
    let env = Bed::with_emulator(&["blog"]).await;
    let mut config = env.config(&database("zstd"), None);
    if let Some(cf) = config.cloudflare.as_mut() {
        cf.api_token = d1vault::secret::Secret::new("wrong-token");
    }
    let sources = env.sources(&config).await;
    let before = env.emulator().stats();
    let err = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .expect_err("must fail");
    let after = env.emulator().stats();
    assert!(err.to_string().contains("token"), "{err}");
    assert!(
        !err.to_string().contains("wrong-token"),
        "the token leaked into the message"
    );
    assert_eq!(after.total - before.total, 1, "retried a permanent failure");
    assert_nothing_listed(&env, &sources).await;
}

/// An unknown database name fails with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_fails_clearly() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config("[[database]]\nname = \"nope\"\n", None);
    let sources = env.sources(&config).await;
    let err = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .expect_err("must fail");
    assert!(err.to_string().contains("nope"), "{err}");
    assert_nothing_listed(&env, &sources).await;
}

/// A missing bucket fails before any export blocks the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_fails_before_exporting() {
    let env = Bed::with_emulator(&["blog"]).await;
    let mut store = env.s3.store();
    store.bucket = "no-such-bucket".to_string();
    let storage = store.storage_toml("test");
    let config = env.config(&database("zstd"), Some(storage));
    let sources = env.sources(&config).await;
    let before = env.emulator().stats();
    let err = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .expect_err("must fail");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    assert_eq!(
        before.total,
        env.emulator().stats().total,
        "the export ran although storage was unusable"
    );
}

/// An unreachable storage endpoint fails with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_storage_fails_clearly() {
    let env = Bed::with_emulator(&["blog"]).await;
    let storage = S3Store {
        endpoint: unreachable_endpoint(),
        bucket: "b".to_string(),
        access_key_id: "a".to_string(),
        secret_access_key: "b".to_string(),
        region: "us-east-1".to_string(),
    }
    .storage_toml("test");
    let config = env.config(&database("zstd"), Some(storage));
    let sources = env.sources(&config).await;
    let err = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .expect_err("must fail");
    assert!(err.to_string().to_lowercase().contains("reach"), "{err}");
}

/// Exported object keys follow the contract layout and the manifest is valid JSON with the contract fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_layout_matches_the_contract() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    let m = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
    let prefix = format!("test/blog/{}/", m.backup_id);
    let mut keys: Vec<String> = sources
        .storage
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("{prefix}dump.sql.zst"),
            format!("{prefix}manifest.json")
        ]
    );
    let raw: Value = serde_json::from_slice(
        &sources
            .storage
            .get_bytes(&format!("{prefix}manifest.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    for field in [
        "format",
        "tool",
        "database",
        "backup_id",
        "started_at",
        "finished_at",
        "bookmark",
        "export",
        "dump",
        "tables",
        "migrations",
    ] {
        assert!(raw.get(field).is_some(), "manifest lacks {field}");
    }
    assert_eq!(raw["format"], 1);
    assert_eq!(raw["dump"]["compression"], "zstd");
}

/// Two backups of one database in the same second never share (and overwrite) a directory: the second is
/// refused and the first stays intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_in_the_same_second_is_refused_and_overwrites_nothing() {
    let env = Bed::with_emulator(&["blog"]).await;
    let config = env.config(&database("zstd"), None);
    let sources = env.sources(&config).await;
    let started_at = Utc::now();
    let first = run_backup(&config.databases[0], &sources, started_at)
        .await
        .unwrap();
    let err = run_backup(&config.databases[0], &sources, started_at)
        .await
        .expect_err("same id must be refused");
    assert!(err.to_string().contains("already exists"), "{err}");
    let listed = backups::complete(sources.storage.as_ref(), &sources.prefix, None)
        .await
        .unwrap();
    assert_eq!(listed, vec![first]);
}

/// A schema with columns named like the words that decide where SQLite statements end (`end`, `begin`,
/// `case`, `trigger`, `temp`, `explain`) in trigger bodies, WHEN clauses, a view and CHECK constraints.
const KEYWORD_SCHEMA: &str = "
CREATE TABLE ev (id INTEGER PRIMARY KEY AUTOINCREMENT, begin INTEGER NOT NULL, start INTEGER, end INTEGER,
  \"case\" TEXT DEFAULT 'END;', CHECK (end IS NULL OR end >= start), CHECK (\"case\" <> 'x;END'));
CREATE TABLE log (id INTEGER PRIMARY KEY, trigger TEXT, temp INTEGER, explain TEXT CHECK (explain <> ''));
CREATE TRIGGER ev_end AFTER INSERT ON ev BEGIN
  UPDATE ev SET end = NEW.start + 1 WHERE id = NEW.id AND NEW.end IS NULL;
END;
CREATE TRIGGER ev_begin AFTER UPDATE OF begin ON ev WHEN NEW.begin > 0 BEGIN
  INSERT INTO log (trigger, temp, explain)
    VALUES ('ev_begin', NEW.begin, CASE WHEN NEW.end > NEW.start THEN 'end;' ELSE 'begin' END);
END;
CREATE VIEW ev_spans AS SELECT id, begin, end, end - start AS span,
  CASE WHEN end > start THEN 'ok;' END AS \"end;\" FROM ev;
CREATE INDEX ev_by_end ON ev (end, begin);
CREATE TRIGGER ev_spans_end INSTEAD OF UPDATE OF end ON ev_spans BEGIN
  UPDATE ev SET end = NEW.end WHERE id = NEW.id;
END;
INSERT INTO ev (begin, start, end) VALUES (1, 10, NULL), (0, 20, 25), (2, 30, NULL);
UPDATE ev SET begin = begin + 1;
";

/// Issue 14: a database whose triggers set a column named `end` and test `NEW.begin` in their WHEN
/// clause, with a view and CHECK constraints, and an `INSTEAD OF` trigger on that view (D1's dump writes
/// triggers before views, so restore must create the view first), backs up (the dump is proven to load), passes verify's check
/// (load, integrity, foreign keys, row counts) and restores into SQLite with the same rows and objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_named_columns_in_triggers_views_and_checks_back_up_and_restore() {
    let env = Bed::with_emulator(&["blog"]).await;
    let source = env.dir.path().join("d1/events.sqlite");
    rusqlite::Connection::open(&source)
        .unwrap()
        .execute_batch(KEYWORD_SCHEMA)
        .unwrap();
    let config = env.config(
        "[[database]]\nname = \"events\"\ncompression = \"zstd\"\n",
        None,
    );
    let sources = env.sources(&config).await;
    let manifest = run_backup(&config.databases[0], &sources, Utc::now())
        .await
        .unwrap();
    assert!(
        manifest
            .tables
            .iter()
            .any(|t| t.name == "log" && t.rows == 3),
        "{:?}",
        manifest.tables
    );
    // What `verify` and `restore --to-sqlite` run: load, then the checks against the manifest.
    let restored = env
        .restore(&sources, &manifest, "events-restored.sqlite")
        .await;
    assert_same_contents(&source, &restored);
}

/// Where the tests below keep their backups: the in-process S3 server, a filesystem directory (created,
/// since a filesystem store never creates its root), or moto when `D1VAULT_TEST_MOTO_ENDPOINT` is set.
/// The racing tests leave s3s out: s3s-fs 0.14 checks `If-None-Match: *` when a request arrives and writes
/// when its body has been read, so two puts racing for one key both succeed there (seen in 2 of 8 runs);
/// moto, like AWS S3 and R2, decides atomically.
async fn storage_toml(env: &Bed, kind: &str) -> Option<String> {
    match kind {
        "s3s" => Some(env.s3_storage(&env.s3.endpoint, "test")),
        "filesystem" => {
            let root = env.dir.path().join("backups");
            std::fs::create_dir_all(&root).unwrap();
            Some(format!(
                "type = \"filesystem\"\npath = \"{}\"\nprefix = \"test\"\n",
                root.display()
            ))
        }
        "moto" => {
            let moto = moto_s3("two writers, one id (moto)").await?;
            Some(moto.storage_toml(&unique_prefix("same-second")))
        }
        other => panic!("unknown storage {other}"),
    }
}

/// The fixture as a SQLite source named `blog`: two exports of one D1 database cannot run at once (D1, and
/// so the emulator, refuses the second), and the race below is about storage, not about D1.
fn sqlite_blog(env: &Bed) -> String {
    format!(
        "[[database]]\nname = \"blog\"\nsqlite_path = \"{}\"\ncompression = \"zstd\"\n",
        env.source_db().display()
    )
}

/// Two writers racing for one backup id (the same database, the same start second, both past the early
/// look at the directory): exactly one stores a backup, the other is told the id is taken, and the backup
/// that is listed restores (nothing of it was overwritten by the loser).
async fn racing_writers_for_one_id(kind: &str) {
    let env = Bed::with_emulator(&["blog"]).await;
    let Some(storage) = storage_toml(&env, kind).await else {
        return;
    };
    let config = env.config(&sqlite_blog(&env), Some(storage));
    let sources = env.sources(&config).await;
    let db = &config.databases[0];
    let started_at = Utc::now();
    let (a, b) = tokio::join!(
        run_backup(db, &sources, started_at),
        run_backup(db, &sources, started_at)
    );
    let (winner, loser) = match (a, b) {
        (Ok(m), Err(e)) | (Err(e), Ok(m)) => (m, e),
        (Ok(a), Ok(b)) => panic!(
            "both writers succeeded with ids {} and {}",
            a.backup_id, b.backup_id
        ),
        (Err(a), Err(b)) => panic!("both writers failed: {a}; {b}"),
    };
    assert!(matches!(loser, BackupError::Conflict(_)), "{loser}");
    assert!(loser.to_string().contains(&winner.backup_id), "{loser}");
    let listed = backups::complete(sources.storage.as_ref(), &sources.prefix, None)
        .await
        .unwrap();
    assert_eq!(listed, vec![winner.clone()]);
    let restored = env.restore(&sources, &winner, "restored.sqlite").await;
    assert_same_contents(&env.source_db(), &restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_for_one_id_on_the_filesystem_leave_one_backup() {
    racing_writers_for_one_id("filesystem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_for_one_id_on_moto_leave_one_backup() {
    racing_writers_for_one_id("moto").await;
}

/// Two backups of one database started in the same second (two `backup` runs, a `backup` next to the
/// daemon) both succeed with distinct ids, the later one taking the next second, and both restore.
async fn same_second_backups_get_distinct_ids(kind: &str) {
    let env = Bed::with_emulator(&["blog"]).await;
    let Some(storage) = storage_toml(&env, kind).await else {
        return;
    };
    let config = env.config(&sqlite_blog(&env), Some(storage));
    let sources = env.sources(&config).await;
    let db = &config.databases[0];
    let started_at = Utc::now();
    let (a, b) = tokio::join!(
        run_backup_from(db, &sources, started_at),
        run_backup_from(db, &sources, started_at)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.backup_id, b.backup_id);
    let first = manifest::backup_id(started_at);
    assert!(
        a.backup_id == first || b.backup_id == first,
        "one keeps the start second {first}: {} {}",
        a.backup_id,
        b.backup_id
    );
    for m in [&a, &b] {
        assert_eq!(
            m.backup_id,
            manifest::backup_id(m.started_at),
            "the id is its start time"
        );
        let restored = env
            .restore(&sources, m, &format!("restored-{}.sqlite", m.backup_id))
            .await;
        assert_same_contents(&env.source_db(), &restored);
    }
    let listed = backups::complete(sources.storage.as_ref(), &sources.prefix, None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_backups_on_the_filesystem_get_distinct_ids_and_both_restore() {
    same_second_backups_get_distinct_ids("filesystem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_backups_on_moto_get_distinct_ids_and_both_restore() {
    same_second_backups_get_distinct_ids("moto").await;
}

#[test]
fn the_next_id_is_the_next_second_or_now() {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    assert_eq!(
        next_start(t("2026-11-29T03:00:12.700Z"), t("2026-11-29T03:00:12.900Z")),
        t("2026-11-29T03:00:13Z")
    );
    // A conflict found at the end of a long upload: the new start is now, not a second in the past.
    assert_eq!(
        next_start(t("2026-11-29T03:00:12Z"), t("2026-11-29T03:04:00.250Z")),
        t("2026-11-29T03:04:00.250Z")
    );
}

/// A one-shot `backup` that was killed leaves a full-size temporary file; the next backup of that
/// database (a one-shot run, not only the daemon's prune) removes it, and leaves a live writer's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_backup_clears_a_killed_runs_temporary_file() {
    let env = Bed::with_emulator(&["blog"]).await;
    let storage = storage_toml(&env, "filesystem").await.unwrap();
    let config = env.config(&database("zstd"), Some(storage));
    let sources = env.sources(&config).await;
    let root = env.dir.path().join("backups");
    let temp = |id: &str, n: u8| {
        let dir = root.join("test/blog").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(".dump.sql.zst.d1vault-tmp-{n:016x}"));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        path
    };
    let killed = temp("20261101T030000Z", 1);
    std::fs::File::options()
        .write(true)
        .open(&killed)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 86_400))
        .unwrap();
    let live = temp("20261201T030000Z", 2);

    run_backup_now(&config.databases[0], &sources)
        .await
        .unwrap();
    assert!(
        !killed.exists(),
        "the killed run's temporary file is still there"
    );
    assert!(
        live.exists(),
        "a recent temporary file (a live writer) was removed"
    );
}

/// The storage directory deleted (or its volume unmounted) under a running store: the next backup fails
/// with a permanent error that names the directory, and the directory is not created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_into_a_deleted_storage_directory_fails_and_does_not_recreate_it() {
    let env = Bed::with_emulator(&["blog"]).await;
    let storage = storage_toml(&env, "filesystem").await.unwrap();
    let config = env.config(&database("zstd"), Some(storage));
    let sources = env.sources(&config).await;
    run_backup_now(&config.databases[0], &sources)
        .await
        .unwrap();
    let root = env.dir.path().join("backups");
    std::fs::remove_dir_all(&root).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let err = run_backup_now(&config.databases[0], &sources)
        .await
        .expect_err("a backup into a missing directory");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(
        err.to_string().contains(&root.display().to_string()),
        "{err}"
    );
    assert!(!root.exists(), "the storage directory was recreated");
}

/// The S3 side of a killed one-shot `backup`: a multipart upload it left open under the database's prefix
/// is aborted by the next backup (moto, which lists multipart uploads; s3s-fs cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_backup_aborts_a_killed_runs_multipart_upload() {
    let env = Bed::with_emulator(&["blog"]).await;
    let Some(storage) = storage_toml(&env, "moto").await else {
        return;
    };
    let config = env.config(&sqlite_blog(&env), Some(storage));
    let sources = env.sources(&config).await;
    let d1vault::config::StorageConfig::S3(s3) = &config.storage else {
        panic!("moto is S3")
    };
    let client = moto_s3("a killed run's multipart upload (moto)")
        .await
        .expect("moto answered a moment ago")
        .client();
    let key = manifest::object_key(&s3.prefix, "blog", "20261101T030000Z", "dump.sql.zst");
    client
        .create_multipart_upload()
        .bucket(&s3.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let open = || async {
        client
            .list_multipart_uploads()
            .bucket(&s3.bucket)
            .prefix(&s3.prefix)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    };
    assert_eq!(open().await, 1);
    run_backup_now(&config.databases[0], &sources)
        .await
        .unwrap();
    assert_eq!(
        open().await,
        0,
        "the killed run's multipart upload is still open"
    );
}

/// The log lines of a `--log-format json` run: one JSON object per line of stderr (other lines, such as the
/// final `error:` summary, left out).
fn json_log_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// A failed one-shot `backup` is an ERROR event in the JSON log (what alerting on error level, or journald
/// priority `err`, sees), and no WARN line calls it "backup failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_is_logged_at_error_level() {
    let env = Bed::start().await;
    let databases = env.sqlite_database("blog", "no-such-file.sqlite", "zstd");
    let config = env.write_s3_config("json-log", &env.s3.endpoint, "test", &databases);
    let child = crate::support::run::command_json(&config, &["backup"])
        .spawn()
        .unwrap();
    let output = crate::support::run::finish(child, &env.secrets()).await;
    let err = crate::support::run::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let lines = json_log_lines(&err);
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "backup failed")
        .collect();
    assert!(!failed.is_empty(), "no \"backup failed\" event:\n{err}");
    for line in &failed {
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["database"], "blog", "{line}");
    }
    assert!(err.contains("\"level\":\"ERROR\""), "{err}");
}
