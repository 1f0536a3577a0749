//! `d1vault migrations` through real parts: d1-emulator (D1 sources, undone by Time Travel, or by importing
//! the backup where Time Travel is missing) and SQLite files (one transaction), an in-process S3 for the
//! safety backups, and the real binary for output and exit codes.

use std::path::{Path, PathBuf};

use crate::support::bed::Bed;
use crate::support::fixture::{Contents, contents, create_fixture_db};
use d1vault::cli::MigrationsCommand;
use d1vault::commands::{Failure, migrations};
use d1vault::config::Config;
use d1vault::repository::backups;

/// Three good files: a schema, a seed, and the same seed again under another name (`INSERT OR IGNORE`).
const GOOD: &[(&str, &str)] = &[
    (
        "0101_users.sql",
        "-- Migration number: 0101 \t 2026-01-01T00:00:00.000Z\nCREATE TABLE users (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  email TEXT NOT NULL UNIQUE\n);\nCREATE INDEX users_by_email ON users (email);\n",
    ),
    (
        "0102_seed.sql",
        "INSERT OR IGNORE INTO users (email) VALUES ('ada@example.com'), ('bob@example.com');\n",
    ),
    (
        "0103_seed_again.sql",
        "INSERT OR IGNORE INTO users (email) VALUES ('ada@example.com'), ('bob@example.com');\n",
    ),
];

/// A third file whose second statement fails after its first succeeded.
const BAD_THIRD: (&str, &str) = (
    "0103_broken.sql",
    "CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);\nINSERT INTO no_such_table VALUES (1);\nCREATE TABLE never (x);\n",
);

/// A database under test: its name in the configuration and the SQLite file behind it.
struct Target {
    name: &'static str,
    file: PathBuf,
}

/// The environment with four databases, all using `DIR/migrations`: `blog` (D1, the fixture, two
/// migrations applied by wrangler already), `fresh` (D1, empty), `local` (SQLite, the fixture), `scratch`
/// (SQLite, empty).
async fn setup() -> (Bed, Config, Vec<Target>) {
    let env = Bed::with_emulator(&["blog"]).await;
    let local = env.dir.path().join("local.sqlite");
    create_fixture_db(&local);
    let scratch = env.dir.path().join("scratch.sqlite");
    rusqlite::Connection::open(&scratch)
        .unwrap()
        .execute_batch("VACUUM")
        .unwrap();
    let config = env.config(
        &format!(
            "[[database]]\nname = \"blog\"\n\n[[database]]\nname = \"fresh\"\n\n\
             [[database]]\nname = \"local\"\nsqlite_path = \"{}\"\n\n\
             [[database]]\nname = \"scratch\"\nsqlite_path = \"{}\"\n",
            local.display(),
            scratch.display()
        ),
        None,
    );
    env.sources(&config)
        .await
        .cloudflare
        .unwrap()
        .create_database("fresh")
        .await
        .unwrap();
    let d1 = |name: &str| env.dir.path().join("d1").join(format!("{name}.sqlite"));
    let targets = vec![
        Target {
            name: "blog",
            file: d1("blog"),
        },
        Target {
            name: "fresh",
            file: d1("fresh"),
        },
        Target {
            name: "local",
            file: local,
        },
        Target {
            name: "scratch",
            file: scratch,
        },
    ];
    (env, config, targets)
}

fn write_migrations(config: &Config, files: &[(&str, &str)]) {
    let dir = &config.databases[0].migrations_dir;
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn apply(database: &str) -> MigrationsCommand {
    MigrationsCommand::Apply {
        database: database.into(),
        no_backup: false,
        dry_run: false,
    }
}

fn apply_without_backup(database: &str) -> MigrationsCommand {
    MigrationsCommand::Apply {
        database: database.into(),
        no_backup: true,
        dry_run: false,
    }
}

async fn run(config: &Config, command: MigrationsCommand) -> Result<(), Failure> {
    migrations::run(config, &command).await
}

/// Everything a run could change: the file's bytes, every row of every table (including `d1_migrations`
/// and `sqlite_sequence`), and the whole schema as `sqlite_master` holds it.
#[derive(Debug, PartialEq)]
struct State {
    /// SHA-256 of the file, so that a difference prints short.
    bytes: String,
    rows: Contents,
    schema: Vec<(String, String, String, Option<String>)>,
}

fn state(path: &Path) -> State {
    let conn = rusqlite::Connection::open(path).unwrap();
    let schema = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    use sha2::Digest;
    State {
        bytes: hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap())),
        rows: contents(path),
        schema,
    }
}

/// The names in `d1_migrations`, in applied order (empty when the table is missing).
fn applied(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let Ok(mut stmt) = conn.prepare("SELECT name FROM d1_migrations ORDER BY id") else {
        return Vec::new();
    };
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Runs the real binary with the environment's configuration; returns (exit code, stdout, stderr).
async fn binary(env: &Bed, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_d1vault"))
        .arg("--config")
        .arg(env.dir.path().join("d1vault.toml"))
        .args(args)
        .output()
        .await
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        output.status.code().unwrap_or(-1),
        text(output.stdout),
        text(output.stderr),
    )
}

async fn backup_count(config: &Config, database: &str) -> usize {
    let storage = d1vault::storage::open(&config.storage).await.unwrap();
    backups::complete(storage.as_ref(), config.storage.prefix(), Some(database))
        .await
        .unwrap()
        .len()
}

/// On D1 and on SQLite, on a fresh database and on one wrangler already migrated: apply runs every pending
/// file once and in order, `list` (the binary) then shows none pending, a second apply is a no-op, and a
/// seed applied twice (`INSERT OR IGNORE`) adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_runs_each_pending_file_once_and_list_then_shows_none_pending() {
    let (env, config, targets) = setup().await;
    write_migrations(&config, GOOD);
    for target in &targets {
        let before = applied(&target.file);
        let (code, stdout, _) = binary(&env, &["migrations", "list", target.name]).await;
        assert_eq!(code, 0);
        for (name, _) in GOOD {
            assert!(
                stdout.contains(&format!("pending  {name}")),
                "{}: {stdout}",
                target.name
            );
        }

        run(&config, apply(target.name)).await.unwrap();
        let mut expected = before.clone();
        expected.extend(GOOD.iter().map(|(name, _)| name.to_string()));
        assert_eq!(applied(&target.file), expected, "{}", target.name);
        let users = &contents(&target.file)["users"];
        assert_eq!(
            users.len(),
            2,
            "{}: the second seed added nothing",
            target.name
        );

        let (code, stdout, stderr) = binary(&env, &["migrations", "list", target.name]).await;
        assert_eq!(code, 0);
        assert!(!stdout.contains("pending"), "{}: {stdout}", target.name);
        assert!(stdout.contains("applied  0103_seed_again.sql"), "{stdout}");
        assert!(stderr.contains("no migrations to apply"), "{stderr}");

        let after = state(&target.file);
        let (code, stdout, _) = binary(&env, &["migrations", "apply", target.name]).await;
        assert_eq!(code, 0);
        assert!(stdout.contains("no migrations to apply"), "{stdout}");
        assert_eq!(
            state(&target.file),
            after,
            "{}: a second apply changes nothing",
            target.name
        );
        assert_eq!(
            backup_count(&config, target.name).await,
            1,
            "{}: no backup when nothing is pending",
            target.name
        );
    }
    let bookmarks = env.emulator().bookmarks("fresh").unwrap();
    run(&config, apply("fresh")).await.unwrap();
    assert_eq!(
        env.emulator().bookmarks("fresh").unwrap(),
        bookmarks,
        "a no-op apply does not write to D1"
    );
}

/// On D1 and on SQLite, with and without an existing `d1_migrations`: when the third file fails halfway,
/// the database is byte for byte as before the run (schema, rows, `d1_migrations`), even though the first
/// two files were applied; the binary exits 1 naming the file, the statement and the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_third_file_leaves_the_database_exactly_as_before() {
    let (env, config, targets) = setup().await;
    write_migrations(&config, &[GOOD[0], GOOD[1], BAD_THIRD]);
    for target in &targets {
        let before = state(&target.file);
        let (code, stdout, stderr) = binary(&env, &["migrations", "apply", target.name]).await;
        assert_eq!(code, 1, "{}: {stdout}{stderr}", target.name);
        assert!(
            stdout.contains("applied  0102_seed.sql"),
            "{}: the first two files did apply: {stdout}",
            target.name
        );
        assert!(
            stderr.contains("migration 0103_broken.sql failed at statement 2 (INSERT INTO no_such_table VALUES (1);)"),
            "{}: {stderr}",
            target.name
        );
        assert!(stderr.contains("no such table: no_such_table"), "{stderr}");
        assert!(
            stderr.contains("restored") || stderr.contains("rolled back"),
            "{stderr}"
        );
        let after = state(&target.file);
        assert_eq!(after.schema, before.schema, "{}: schema", target.name);
        assert_eq!(
            after.rows, before.rows,
            "{}: rows and d1_migrations",
            target.name
        );
        assert!(
            after.bytes == before.bytes,
            "{}: the file is byte for byte as before",
            target.name
        );
        assert_eq!(
            backup_count(&config, target.name).await,
            1,
            "{}: the safety backup was taken",
            target.name
        );
    }
    // The failure through the library: the same report, as a Failure with exit code 1.
    let failure = run(&config, apply_without_backup("fresh"))
        .await
        .unwrap_err();
    assert_eq!(failure.exit_code, 1);
    assert!(
        failure
            .message
            .contains("0103_broken.sql failed at statement 2"),
        "{}",
        failure.message
    );
}

/// A file that fails on its first statement on a D1 database is reported too (the Time Travel restore
/// then has nothing of this run to undo but the migrations table), and the database is as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_file_on_d1_is_reported_and_undone() {
    let (_env, config, targets) = setup().await;
    write_migrations(&config, &[("0001_bad.sql", "SELECT * FROM nowhere;\n")]);
    let fresh = &targets[1];
    let before = state(&fresh.file);
    let failure = run(&config, apply("fresh")).await.unwrap_err();
    assert!(
        failure
            .message
            .contains("migration 0001_bad.sql failed at statement 1 (SELECT * FROM nowhere;)"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("restored to bookmark"),
        "{}",
        failure.message
    );
    assert_eq!(state(&fresh.file), before);
}

/// On an old `alpha` D1 database, which has no Time Travel, a failed run is undone from the backup taken
/// first: the database's schema, rows and `d1_migrations` are as before (its bytes differ: the backup is
/// imported over it). With `--no-backup` there would be nothing to undo a failure with, so the run is
/// refused before anything is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_time_travel_a_failed_run_is_undone_from_the_backup_taken_first() {
    let (env, config, targets) = setup().await;
    env.set_faults(serde_json::json!({ "time_travel": false }))
        .await;
    write_migrations(&config, &[GOOD[0], GOOD[1], BAD_THIRD]);
    let blog = &targets[0];
    let before = state(&blog.file);
    let applied_before = applied(&blog.file);
    assert_eq!(
        applied_before.len(),
        2,
        "the fixture's two wrangler migrations"
    );

    let failure = run(&config, apply_without_backup("blog"))
        .await
        .unwrap_err();
    assert_eq!(failure.exit_code, 1);
    assert!(
        failure.message.contains("has no Time Travel") && failure.message.contains("--no-backup"),
        "{}",
        failure.message
    );
    assert_eq!(state(&blog.file), before, "refused before anything ran");
    assert_eq!(backup_count(&config, "blog").await, 0);

    let (code, stdout, stderr) = binary(&env, &["migrations", "apply", "blog"]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("applied  0102_seed.sql"), "{stdout}");
    assert!(
        !stdout.contains("bookmark before migrating"),
        "no Time Travel request: {stdout}"
    );
    assert!(
        stderr.contains("migration 0103_broken.sql failed at statement 2")
            && stderr.contains("the database was restored from backup"),
        "{stderr}"
    );
    let after = state(&blog.file);
    assert_eq!(after.schema, before.schema, "schema");
    assert_eq!(after.rows, before.rows, "rows and d1_migrations");
    assert_eq!(applied(&blog.file), applied_before);
    assert_eq!(
        backup_count(&config, "blog").await,
        1,
        "the backup taken first"
    );
}

/// `--dry-run` names what would be applied and changes nothing: no table, no rows, no backup, no D1 write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing() {
    let (env, config, targets) = setup().await;
    write_migrations(&config, GOOD);
    for target in &targets {
        let before = state(&target.file);
        let bookmarks = env.emulator().bookmarks(target.name);
        let (code, stdout, _) =
            binary(&env, &["migrations", "apply", target.name, "--dry-run"]).await;
        assert_eq!(code, 0);
        for (name, _) in GOOD {
            assert!(stdout.contains(&format!("would apply  {name}")), "{stdout}");
        }
        assert_eq!(state(&target.file), before, "{}", target.name);
        assert_eq!(env.emulator().bookmarks(target.name), bookmarks);
        assert_eq!(backup_count(&config, target.name).await, 0);
    }
}

/// `apply` takes a normal backup first (complete, listed, its manifest naming the migrations applied before
/// the run); `--no-backup` skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_takes_a_listed_backup_first_unless_told_not_to() {
    let (env, config, targets) = setup().await;
    write_migrations(&config, &GOOD[..1]);
    for target in [&targets[0], &targets[2]] {
        let before = applied(&target.file);
        run(&config, apply(target.name)).await.unwrap();
        let storage = d1vault::storage::open(&config.storage).await.unwrap();
        let manifests =
            backups::complete(storage.as_ref(), config.storage.prefix(), Some(target.name))
                .await
                .unwrap();
        assert_eq!(manifests.len(), 1, "{}", target.name);
        assert_eq!(
            manifests[0].migrations, before,
            "{}: the backup holds the state before the run",
            target.name
        );
        let (code, stdout, _) = binary(&env, &["list", target.name]).await;
        assert_eq!(code, 0);
        assert!(stdout.contains(&manifests[0].backup_id), "{stdout}");
    }
    write_migrations(&config, &GOOD[..2]);
    for target in [&targets[0], &targets[2]] {
        run(&config, apply_without_backup(target.name))
            .await
            .unwrap();
        assert_eq!(
            applied(&target.file).last().map(String::as_str),
            Some("0102_seed.sql")
        );
        assert_eq!(
            backup_count(&config, target.name).await,
            1,
            "{}: --no-backup took none",
            target.name
        );
    }
}

/// `create` writes the next `NNNN_name.sql` after the highest number, spaces turned into underscores, with
/// wrangler's header line (number, a tab, the ISO time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_writes_the_next_numbered_file_with_wranglers_header() {
    let (_env, config, _) = setup().await;
    let dir = config.database("blog").unwrap().migrations_dir.clone();
    let create = |name: &str| MigrationsCommand::Create {
        database: "blog".into(),
        name: name.into(),
    };
    run(&config, create("add users table")).await.unwrap();
    let first = std::fs::read_to_string(dir.join("0001_add_users_table.sql")).unwrap();
    let header = first
        .strip_prefix("-- Migration number: 0001 \t ")
        .expect(&first);
    let time = header.strip_suffix('\n').expect("one line");
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok()
            && time.ends_with('Z')
            && time.len() == 24,
        "{time}"
    );
    std::fs::write(dir.join("0007_manual.sql"), "").unwrap();
    run(&config, create("seed")).await.unwrap();
    assert!(
        std::fs::read_to_string(dir.join("0008_seed.sql"))
            .unwrap()
            .starts_with("-- Migration number: 0008 \t ")
    );
}

/// A mistyped `sqlite_path` fails `list` and `apply` with the path named, and creates no file there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sqlite_source_fails_and_is_not_created() {
    let env = Bed::with_emulator(&["blog"]).await;
    let missing = env.dir.path().join("typo.sqlite");
    let config = env.config(
        &format!(
            "[[database]]\nname = \"typo\"\nsqlite_path = \"{}\"\n",
            missing.display()
        ),
        None,
    );
    write_migrations(&config, GOOD);
    for command in [
        MigrationsCommand::List {
            database: "typo".into(),
        },
        apply("typo"),
    ] {
        let failure = run(&config, command).await.unwrap_err();
        assert_eq!(failure.exit_code, 1);
        assert!(
            failure.message.contains("typo.sqlite"),
            "{}",
            failure.message
        );
        assert!(!missing.exists(), "no SQLite file may be created");
    }
}
