//! Conformance with a client we did not write: Cloudflare's wrangler drives the d1-emulator binary.
//!
//! Skipped unless `D1VAULT_WRANGLER` names a wrangler executable; `scripts/wrangler-conformance` installs
//! wrangler and runs this test.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use d1vault::dump::{DumpOptions, write_dump};

const TOKEN: &str = "conformance-token";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// The emulator binary, killed when dropped.
struct Server {
    child: Child,
    base_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_emulator(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_d1-emulator"))
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN, "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start d1-emulator");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base_url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the listening line")
        .to_owned();
    Server { child, base_url }
}

/// Runs `wrangler ARGS` against the emulator from `cwd` (no wrangler config there).
fn wrangler(wrangler: &Path, server: &Server, cwd: &Path, args: &[&str]) -> Output {
    let output = Command::new(wrangler)
        .args(args)
        .current_dir(cwd)
        .env("CLOUDFLARE_API_BASE_URL", &server.base_url)
        .env("CLOUDFLARE_API_TOKEN", TOKEN)
        .env("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env_remove("CLOUDFLARE_API_KEY")
        .env_remove("CLOUDFLARE_EMAIL")
        .output()
        .expect("run wrangler");
    eprintln!(
        "$ wrangler {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn must(output: Output, what: &str) -> String {
    assert!(output.status.success(), "wrangler {what} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// One row: each value with its storage class, as (type, text).
type TypedRow = Vec<(String, String)>;

/// Every row of every table (including sqlite_sequence), each value with its storage class, by table.
fn contents(path: &Path) -> Vec<(String, Vec<TypedRow>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {quoted} ORDER BY rowid"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            let v: rusqlite::types::Value = r.get(i)?;
                            Ok((format!("{:?}", v.data_type()), format!("{v:?}")))
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (table, rows)
        })
        .collect()
}

fn schema(path: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.prepare("SELECT type, name FROM sqlite_schema ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn wrangler_round_trips_the_fixture_through_the_emulator() {
    // Proves wrangler's own create, execute --file, export and --command accept the emulator unmodified,
    // the export is byte-identical to crate::dump, D1's FK-order refusal reaches wrangler's output, and
    // export -> import reproduces every typed value of every fixture table.
    let Some(wrangler_bin) = std::env::var_os("D1VAULT_WRANGLER").map(PathBuf::from) else {
        eprintln!(
            "skipped: set D1VAULT_WRANGLER to a wrangler executable (scripts/wrangler-conformance does)"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = start_emulator(&data);
    let cwd = work.path();
    let fixture_sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fixture.sql");

    must(
        wrangler(&wrangler_bin, &server, cwd, &["d1", "create", "fixture"]),
        "d1 create fixture",
    );
    must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &[
                "d1",
                "execute",
                "fixture",
                "--remote",
                "--file",
                fixture_sql.to_str().unwrap(),
                "-y",
            ],
        ),
        "d1 execute fixture --file fixture.sql",
    );
    // The import ran the fixture exactly as SQLite does.
    let reference = work.path().join("reference.sqlite");
    rusqlite::Connection::open(&reference)
        .unwrap()
        .execute_batch(include_str!("../fixtures/fixture.sql"))
        .unwrap();
    assert_eq!(contents(&data.join("fixture.sqlite")), contents(&reference));

    let export = work.path().join("export.sql");
    must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &[
                "d1",
                "export",
                "fixture",
                "--remote",
                "--output",
                export.to_str().unwrap(),
                "-y",
            ],
        ),
        "d1 export fixture",
    );
    let mut expected = Vec::new();
    let conn = rusqlite::Connection::open(data.join("fixture.sqlite")).unwrap();
    write_dump(&conn, &DumpOptions::default(), &mut expected).unwrap();
    drop(conn);
    assert!(
        std::fs::read(&export).unwrap() == expected,
        "wrangler's download differs from crate::dump's output"
    );

    must(
        wrangler(&wrangler_bin, &server, cwd, &["d1", "create", "copy"]),
        "d1 create copy",
    );
    // As on D1, the dump's rows for `comments` come before the `posts` table they reference, so an
    // FK-enforcing import refuses it, and says which statement failed.
    let refused = wrangler(
        &wrangler_bin,
        &server,
        cwd,
        &[
            "d1",
            "execute",
            "copy",
            "--remote",
            "--file",
            export.to_str().unwrap(),
            "-y",
        ],
    );
    assert!(
        !refused.status.success(),
        "D1 refuses this dump; the emulator must too"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        text.contains("no such table: main.posts"),
        "wrangler shows the failing statement: {text}"
    );
    assert!(
        schema(&data.join("copy.sqlite")).is_empty(),
        "a failed import leaves the database as it was"
    );

    // With foreign keys off the same file loads and reproduces every row of every table.
    let admin = server.base_url.replace("/client/v4", "/__emulator/faults");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(admin)
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "enforce_foreign_keys": false }))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success());
    must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &[
                "d1",
                "execute",
                "copy",
                "--remote",
                "--file",
                export.to_str().unwrap(),
                "-y",
            ],
        ),
        "d1 execute copy --file export.sql",
    );
    assert_eq!(
        contents(&data.join("copy.sqlite")),
        contents(&data.join("fixture.sqlite"))
    );
    assert_eq!(
        schema(&data.join("copy.sqlite")),
        schema(&data.join("fixture.sqlite"))
    );

    let json = must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &[
                "d1",
                "execute",
                "copy",
                "--remote",
                "--command",
                "SELECT count(*) AS n FROM posts; SELECT title FROM posts WHERE id = 3",
                "--json",
            ],
        ),
        "d1 execute copy --command",
    );
    let parsed: serde_json::Value =
        serde_json::from_str(&json).expect("wrangler --json prints JSON");
    assert_eq!(parsed[0]["results"][0]["n"], 5);
    assert_eq!(parsed[1]["results"][0]["title"], "Unicode 😀 日本語");
}

/// Runs the d1vault binary with `config`; returns (success, stdout + stderr).
fn d1vault(config: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_d1vault"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run d1vault");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("$ d1vault {}\n{text}", args.join(" "));
    (output.status.success(), text)
}

#[test]
fn wrangler_and_d1vault_agree_on_pending_migrations() {
    // Proves migrations applied by wrangler show as applied in d1vault and the reverse: wrangler applies
    // two files, d1vault lists them applied and a third pending, applies it, and wrangler then has nothing
    // pending; wrangler's own `d1 time-travel restore` accepts the emulator's restore answer and undoes it.
    let Some(wrangler_bin) = std::env::var_os("D1VAULT_WRANGLER").map(PathBuf::from) else {
        eprintln!(
            "skipped: set D1VAULT_WRANGLER to a wrangler executable (scripts/wrangler-conformance does)"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let server = start_emulator(&work.path().join("data"));
    let cwd = work.path();
    let id = d1vault::emulator::database_id("mig").to_string();
    std::fs::write(
        cwd.join("wrangler.toml"),
        format!(
            "name = \"conformance\"\ncompatibility_date = \"2025-01-01\"\n\n[[d1_databases]]\n\
             binding = \"DB\"\ndatabase_name = \"mig\"\ndatabase_id = \"{id}\"\nmigrations_dir = \"migrations\"\n"
        ),
    )
    .unwrap();
    let config = cwd.join("d1vault.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"state\"\nlisten = \"\"\n\n[cloudflare]\naccount_id = \"{ACCOUNT}\"\n\
             api_token = \"{TOKEN}\"\napi_base_url = \"{}\"\n\n[storage]\ntype = \"filesystem\"\npath = \"backups\"\n\n\
             [[database]]\nname = \"mig\"\nmigrations_dir = \"migrations\"\n",
            server.base_url
        ),
    )
    .unwrap();
    let migrations = cwd.join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::create_dir_all(cwd.join("backups")).unwrap();
    let files = [
        (
            "0001_users.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE);\n",
        ),
        (
            "0002_seed.sql",
            "INSERT OR IGNORE INTO users (email) VALUES ('ada@example.com');\n",
        ),
        (
            "0003_notes.sql",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\n",
        ),
    ];
    for (name, sql) in &files[..2] {
        std::fs::write(migrations.join(name), sql).unwrap();
    }
    must(
        wrangler(&wrangler_bin, &server, cwd, &["d1", "create", "mig"]),
        "d1 create mig",
    );
    must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &["d1", "migrations", "apply", "mig", "--remote"],
        ),
        "d1 migrations apply (two files)",
    );

    std::fs::write(migrations.join(files[2].0), files[2].1).unwrap();
    let (ok, listed) = d1vault(&config, &["migrations", "list", "mig"]);
    assert!(ok, "d1vault migrations list failed");
    assert!(
        listed.contains("applied  0001_users.sql") && listed.contains("applied  0002_seed.sql"),
        "{listed}"
    );
    assert!(listed.contains("pending  0003_notes.sql"), "{listed}");
    assert!(
        !listed.contains("pending  0001") && !listed.contains("pending  0002"),
        "{listed}"
    );
    let pending = must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &["d1", "migrations", "list", "mig", "--remote"],
        ),
        "d1 migrations list (one pending)",
    );
    assert!(
        pending.contains("0003_notes.sql") && !pending.contains("0002_seed.sql"),
        "{pending}"
    );

    let (ok, applied) = d1vault(&config, &["migrations", "apply", "mig"]);
    assert!(ok, "d1vault migrations apply failed");
    assert!(applied.contains("backup before migrating:"), "{applied}");
    let bookmark = applied
        .lines()
        .find_map(|l| l.strip_prefix("bookmark before migrating: "))
        .expect("d1vault prints the bookmark it can return to")
        .trim()
        .to_owned();
    let none = must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &["d1", "migrations", "list", "mig", "--remote"],
        ),
        "d1 migrations list (none pending)",
    );
    assert!(none.contains("No migrations to apply"), "{none}");
    let again = must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &["d1", "migrations", "apply", "mig", "--remote"],
        ),
        "d1 migrations apply (nothing to do)",
    );
    assert!(again.contains("No migrations to apply"), "{again}");

    // wrangler's Time Travel client takes the emulator's restore answer; the run d1vault made is undone.
    let restored = must(
        wrangler(
            &wrangler_bin,
            &server,
            cwd,
            &[
                "d1",
                "time-travel",
                "restore",
                "mig",
                &format!("--bookmark={bookmark}"),
                "--json",
            ],
        ),
        "d1 time-travel restore",
    );
    let answer: serde_json::Value =
        serde_json::from_str(&restored).expect("wrangler --json prints JSON");
    assert!(
        answer["bookmark"].as_str().unwrap() > bookmark.as_str(),
        "{answer}"
    );
    assert!(answer["previous_bookmark"].is_string(), "{answer}");
    let (ok, listed) = d1vault(&config, &["migrations", "list", "mig"]);
    assert!(ok && listed.contains("pending  0003_notes.sql"), "{listed}");
}
