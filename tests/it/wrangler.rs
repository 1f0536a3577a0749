//! Conformance with a client we did not write, on d1vault's side: wrangler and `d1vault migrations` agree
//! on which migrations are applied, both ways, against the D1 emulator (in process).
//!
//! Skipped unless `D1VAULT_WRANGLER` names a wrangler executable; `scripts/wrangler-conformance` installs
//! wrangler and runs this test together with the emulator's own wrangler round trip.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::bed::{ACCOUNT, Bed, TOKEN};

#[path = "../../crates/d1-emulator/tests/api/wrangler_cli.rs"]
mod wrangler_cli;
use wrangler_cli::{Api, must, wrangler};

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
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Backups go to the filesystem: the bed's S3 server stays unused.
    let bed = runtime.block_on(Bed::with_emulator(&[]));
    let server = bed.emulator();
    let base_url = server.base_url();
    let api = Api {
        base_url: &base_url,
        token: TOKEN,
        account_id: ACCOUNT,
    };
    let cwd = bed.dir.path();
    let id = d1_emulator::database_id("mig").to_string();
    std::fs::write(
        cwd.join("wrangler.toml"),
        format!(
            "name = \"conformance\"\ncompatibility_date = \"2025-01-01\"\n\n[[d1_databases]]\n\
             binding = \"DB\"\ndatabase_name = \"mig\"\ndatabase_id = \"{id}\"\nmigrations_dir = \"migrations\"\n"
        ),
    )
    .unwrap();
    let config = bed.write_config(
        "d1vault",
        "type = \"filesystem\"\npath = \"backups\"\n",
        "",
        "[[database]]\nname = \"mig\"\nmigrations_dir = \"migrations\"\n",
    );
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
        wrangler(&wrangler_bin, &api, cwd, &["d1", "create", "mig"]),
        "d1 create mig",
    );
    must(
        wrangler(
            &wrangler_bin,
            &api,
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
            &api,
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
            &api,
            cwd,
            &["d1", "migrations", "list", "mig", "--remote"],
        ),
        "d1 migrations list (none pending)",
    );
    assert!(none.contains("No migrations to apply"), "{none}");
    let again = must(
        wrangler(
            &wrangler_bin,
            &api,
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
            &api,
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
