//! Conformance with a client we did not write: Cloudflare's wrangler drives the d1-emulator binary.
//!
//! Skipped unless `D1VAULT_WRANGLER` names a wrangler executable; `scripts/wrangler-conformance` installs
//! wrangler and runs this test.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use d1_dump::{DumpOptions, write_dump};

use crate::wrangler_cli::{Api, must, wrangler};

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

impl Server {
    /// Where wrangler reaches this server.
    fn api(&self) -> Api<'_> {
        Api {
            base_url: &self.base_url,
            token: TOKEN,
            account_id: ACCOUNT,
        }
    }
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
    // the export is byte-identical to `d1_dump::write_dump`, D1's FK-order refusal reaches wrangler's output, and
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
    let fixture_sql =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fixture.sql");

    must(
        wrangler(
            &wrangler_bin,
            &server.api(),
            cwd,
            &["d1", "create", "fixture"],
        ),
        "d1 create fixture",
    );
    must(
        wrangler(
            &wrangler_bin,
            &server.api(),
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
        .execute_batch(include_str!("../../../../tests/fixtures/fixture.sql"))
        .unwrap();
    assert_eq!(contents(&data.join("fixture.sqlite")), contents(&reference));

    let export = work.path().join("export.sql");
    must(
        wrangler(
            &wrangler_bin,
            &server.api(),
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
        "wrangler's download differs from d1_dump::write_dump's output"
    );

    must(
        wrangler(&wrangler_bin, &server.api(), cwd, &["d1", "create", "copy"]),
        "d1 create copy",
    );
    // As on D1, the dump's rows for `comments` come before the `posts` table they reference, so an
    // FK-enforcing import refuses it, and says which statement failed.
    let refused = wrangler(
        &wrangler_bin,
        &server.api(),
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
            &server.api(),
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
            &server.api(),
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
