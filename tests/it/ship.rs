//! What packagers ship besides the binary: shell completions and man pages, generated from the clap
//! definitions in `d1vault::cli`. These tests prove the generated artifacts name every command a user can
//! type, and that the man page is valid roff that `man` renders without warnings.

use std::io::Write;
use std::process::{Command as Process, Stdio};

use clap::CommandFactory;
use clap_complete::Shell;
use d1vault::cli::Cli;

/// Every subcommand the contract promises (CONTRACT.md "Command line"), plus the two shipping helpers and
/// `notify` (`notify test`, which issue 19 asks for) and `init` (issue 21): both proposed for the contract.
const SUBCOMMANDS: &[&str] = &[
    "run",
    "backup",
    "list",
    "restore",
    "verify",
    "prune",
    "status",
    "check-config",
    "databases",
    "migrations",
    "healthcheck",
    "completions",
    "notify",
    "init",
];

/// The `migrations` subcommands.
const MIGRATION_SUBCOMMANDS: &[&str] = &["create", "apply"];

fn completions(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "d1vault", &mut out);
    String::from_utf8(out).expect("completions are UTF-8")
}

fn man_page() -> String {
    String::from_utf8(d1vault::man::top_page()).expect("man page is UTF-8")
}

/// roff escapes hyphens as `\-`; undo that so names can be searched as typed.
fn unescape_roff(roff: &str) -> String {
    roff.replace("\\-", "-")
}

#[test]
fn clap_definitions_are_consistent() {
    // Proves the clap definitions have no conflicting ids, bad defaults or broken groups (clap's own checks).
    Cli::command().debug_assert();
}

#[test]
fn the_contract_subcommands_are_all_defined() {
    // Proves the CLI defines exactly the contract's subcommands, so the lists below test real commands.
    let cmd = Cli::command();
    let mut defined: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
    defined.sort_unstable();
    let mut expected = SUBCOMMANDS.to_vec();
    expected.sort_unstable();
    assert_eq!(defined, expected);
}

#[test]
fn completions_name_every_subcommand_in_bash_zsh_and_fish() {
    // Proves completions for the three common shells offer every subcommand and the restore flags.
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let script = completions(shell);
        assert!(
            script.contains("d1vault"),
            "{shell}: the program name is missing"
        );
        for name in SUBCOMMANDS.iter().chain(MIGRATION_SUBCOMMANDS) {
            assert!(
                script.contains(name),
                "{shell}: subcommand {name} is missing"
            );
        }
        for flag in ["to-d1", "to-sqlite", "replace", "no-safety-backup"] {
            assert!(
                script.contains(flag),
                "{shell}: restore flag {flag} is missing"
            );
        }
    }
}

#[test]
fn man_page_has_name_synopsis_and_every_subcommand() {
    // Proves the top-level man page has the standard sections and lists every subcommand.
    let page = unescape_roff(&man_page());
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "section {section} is missing");
    }
    assert!(
        page.contains(".SH NAME\nd1vault - Scheduled, verified backups of Cloudflare D1"),
        "NAME does not say what d1vault is:\n{page}"
    );
    for name in SUBCOMMANDS {
        assert!(
            page.contains(&format!("d1vault-{name}(1)")),
            "subcommand {name} is missing"
        );
    }
}

#[test]
fn man_pages_are_written_for_every_subcommand() {
    // Proves `clap_mangen::generate_to` (what examples/gen-man.rs calls) writes one page per subcommand.
    let dir = tempfile::tempdir().expect("temp dir");
    d1vault::man::write_pages(dir.path()).expect("generate man pages");
    assert!(dir.path().join("d1vault.1").is_file());
    for name in SUBCOMMANDS {
        let page = dir.path().join(format!("d1vault-{name}.1"));
        assert!(page.is_file(), "{} is missing", page.display());
    }
    for name in MIGRATION_SUBCOMMANDS {
        assert!(
            dir.path()
                .join(format!("d1vault-migrations-{name}.1"))
                .is_file()
        );
    }
    let restore =
        unescape_roff(&std::fs::read_to_string(dir.path().join("d1vault-restore.1")).unwrap());
    for flag in [
        "--to-d1",
        "--to-sqlite",
        "--replace",
        "--yes",
        "--no-safety-backup",
        "--backup",
    ] {
        assert!(
            restore.contains(flag),
            "d1vault-restore.1 does not document {flag}"
        );
    }
}

#[test]
fn man_renders_the_page_without_warnings() {
    // Proves the roff is valid: `man -l -` formats it, shows every section and prints no warning.
    // Skipped (with a note) where `man` is not installed.
    let child = Process::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipping: `man` is not available ({e})");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(man_page().as_bytes())
        .expect("write page to man");
    let output = child.wait_with_output().expect("man ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "man failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man printed warnings: {stderr}");
    // Strip overstrike bold/underline in case the formatter emitted it.
    let text: String = {
        let mut plain = String::new();
        for c in stdout.chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain
    };
    for heading in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "GLOBAL OPTIONS",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(
            text.contains(heading),
            "rendered page lacks {heading}:\n{text}"
        );
    }
    for name in SUBCOMMANDS {
        assert!(
            text.contains(&format!("d1vault-{name}(1)")),
            "rendered page lacks {name}:\n{text}"
        );
    }
}

/// The repository root (where Cargo.toml is).
fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs the built `d1vault` binary in `dir` and returns its output, failing the test on a non-zero exit.
fn d1vault_ok(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = assert_cmd::Command::cargo_bin("d1vault").expect("the d1vault binary is built");
    cmd.current_dir(dir).args(args).env_remove("D1VAULT_CONFIG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("d1vault ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "d1vault {args:?} exited with {}:\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_compose_config_passes_check_config() {
    // Proves deploy/compose/d1vault.toml, which compose mounts into the container, is a valid
    // configuration once its secret files exist (they are read from /run/secrets in the container).
    let dir = tempfile::tempdir().expect("temp dir");
    for name in [
        "cloudflare-token",
        "s3-access-key-id",
        "s3-secret-access-key",
    ] {
        std::fs::write(dir.path().join(name), "not-a-real-secret\n").unwrap();
    }
    let text = std::fs::read_to_string(repo_path("deploy/compose/d1vault.toml")).unwrap();
    assert!(
        text.contains("/run/secrets/"),
        "the compose config no longer reads compose secrets"
    );
    let config = dir.path().join("d1vault.toml");
    std::fs::write(
        &config,
        text.replace("/run/secrets", &dir.path().display().to_string()),
    )
    .unwrap();
    let stdout = d1vault_ok(
        dir.path(),
        &["--config", config.to_str().unwrap(), "check-config"],
        &[("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef")],
    );
    assert!(
        stdout.contains("blog"),
        "check-config did not report the database:\n{stdout}"
    );
}

#[test]
fn the_readme_quickstart_reaches_a_verified_restore() {
    // Proves the README's walkthrough works as written on the shipped quickstart: backup, list, verify,
    // and a restore into a new SQLite file whose tables hold the same rows as the bundled sample.
    let dir = tempfile::tempdir().expect("temp dir");
    // The quickstart's paths are relative to config/, so a copy of config/ keeps backups inside `dir`.
    std::fs::create_dir(dir.path().join("config")).unwrap();
    for name in ["quickstart.toml", "sample.sqlite"] {
        std::fs::copy(
            repo_path("config").join(name),
            dir.path().join("config").join(name),
        )
        .unwrap();
    }
    let with = |args: &[&'static str]| -> Vec<&'static str> {
        let mut all = vec!["--config", "config/quickstart.toml"];
        all.extend_from_slice(args);
        all
    };

    let backup = d1vault_ok(dir.path(), &with(&["backup"]), &[]);
    assert!(!backup.trim().is_empty(), "backup printed no backup id");
    let list = d1vault_ok(dir.path(), &with(&["list", "--json"]), &[]);
    let manifests: serde_json::Value =
        serde_json::from_str(&list).expect("list --json prints JSON");
    assert_eq!(
        manifests.as_array().map(Vec::len),
        Some(1),
        "one backup listed: {list}"
    );
    d1vault_ok(dir.path(), &with(&["verify", "sample"]), &[]);
    d1vault_ok(
        dir.path(),
        &with(&["restore", "sample", "--to-sqlite", "restored.sqlite"]),
        &[],
    );

    let count_rows = |path: &std::path::Path| -> Vec<(String, i64)> {
        let db = rusqlite::Connection::open(path).unwrap();
        let mut tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.sort();
        tables
            .into_iter()
            .map(|t| {
                let n = db
                    .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |row| {
                        row.get(0)
                    })
                    .unwrap();
                (t, n)
            })
            .collect()
    };
    let original = count_rows(&repo_path("config/sample.sqlite"));
    assert!(original.iter().any(|(_, n)| *n > 0), "the sample has rows");
    assert_eq!(count_rows(&dir.path().join("restored.sqlite")), original);
}
