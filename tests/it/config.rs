//! The configuration loader through its public API: the shipped example configs load, every file of the
//! bad-configuration corpus fails with the error its first line announces, all errors of a file are
//! reported together, and no secret ever reaches an error message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::config_env::{ACCESS_KEY, SECRET_KEY, TOKEN, credentials_dir, test_env};
use d1vault::config::{
    Compression, ConfigErrors, Source, StorageConfig, find_config_path, load, load_str,
};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn load_with(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<d1vault::config::Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).unwrap();
    load_str(&text, path, &|name| env.get(name).cloned())
}

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<d1vault::config::Config, ConfigErrors> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|name| {
        env.get(name).cloned()
    })
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_loads() {
    // Proves each shipped example in config/ is valid with the environment its comments describe.
    let credentials = credentials_dir();
    let env = test_env(credentials.path());
    let files = toml_files(&repo_path("config"));
    for name in [
        "quickstart.toml",
        "r2.toml",
        "aws-s3.toml",
        "minio.toml",
        "garage.toml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "config/{name} is missing"
        );
    }
    for file in &files {
        if let Err(errors) = load_with(file, &env) {
            panic!("{} does not load:\n{errors}", file.display());
        }
    }
}

#[test]
fn quickstart_needs_no_account_and_stays_inside_the_repository() {
    // Proves the README's first command works without Cloudflare: a SQLite source, local storage, and
    // paths resolved against config/ rather than the working directory.
    let path = repo_path("config/quickstart.toml");
    let config = load_with(&path, &HashMap::new()).unwrap();
    let config_dir = repo_path("config");
    assert!(config.cloudflare.is_none());
    assert_eq!(
        config.daemon.state_dir,
        config_dir.join("../.d1vault-state")
    );
    match &config.storage {
        // The root is the repository itself (a filesystem store never creates its root) and the prefix
        // puts the backups in ./backups.
        StorageConfig::Filesystem(fs) => {
            assert_eq!(fs.path, config_dir.join(".."));
            assert_eq!(config.storage.prefix(), "backups");
        }
        other => panic!("quickstart storage should be a filesystem, got {other:?}"),
    }
    let db = config.database("sample").unwrap();
    assert_eq!(
        db.source,
        Source::Sqlite {
            path: config_dir.join("sample.sqlite")
        }
    );
    assert_eq!(db.schedule.expr(), "* * * * *");
    assert_eq!(db.compression, Compression::Zstd { level: 3 });
    assert!(!db.retention.is_empty());
}

#[test]
fn every_bad_config_fails_with_its_expected_error() {
    // Proves each file of the corpus is rejected, without panicking, with the exact error its first line
    // announces (key and position included), in the `FILE:LINE:COLUMN: KEY: MESSAGE` form.
    let dir = repo_path("tests/fixtures/bad-config");
    let files = toml_files(&dir);
    assert!(
        files.len() >= 25,
        "the corpus should hold at least 25 files, has {}",
        files.len()
    );
    let credentials = credentials_dir();
    let env = crate::support::config_env::corpus_env(credentials.path());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect: ` first line", file.display()))
            .trim()
            .to_string();
        let result = std::panic::catch_unwind(|| load_with(file, &env));
        let outcome = match result {
            Err(_) => "panicked".to_string(),
            // Unresolved `[cloudflare]` credentials leave the section unavailable (the commands that only
            // read storage still run); the error is the same, and `check-config` still reports it.
            Ok(Ok(config)) => match &config.cloudflare_unavailable {
                Some(errors) => {
                    let shown = errors.to_string();
                    let prefix = format!("{}:", file.display());
                    if shown
                        .lines()
                        .any(|line| line.starts_with(&prefix) && line.contains(&expected))
                    {
                        continue;
                    }
                    format!("left [cloudflare] unavailable with:\n{shown}")
                }
                None => "loaded without error".to_string(),
            },
            Ok(Err(errors)) => {
                let shown = errors.to_string();
                let prefix = format!("{}:", file.display());
                let matching = shown
                    .lines()
                    .any(|line| line.starts_with(&prefix) && line.contains(&expected));
                if matching {
                    continue;
                }
                format!("reported:\n{shown}")
            }
        };
        failures.push(format!(
            "{}: expected an error containing {expected:?}, but it {outcome}",
            file.display()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn three_distinct_errors_are_all_reported() {
    // Proves the loader does not stop at the first problem: three errors in three sections, in file order.
    let text = r#"[daemon]
timezone = "Mars/Olympus"

[storage]
type = "filesystem"
path = "/backups"
buckt = "x"

[[database]]
name = "app"
sqlite_path = "app.sqlite"
schedule = "61 * * * *"
"#;
    let errors = load_text(text, &[]).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.0.len(), 3, "{errors}");
    assert!(
        lines[0].starts_with("/etc/d1vault/d1vault.toml:2:12: daemon.timezone: unknown time zone")
    );
    assert!(lines[1].starts_with("/etc/d1vault/d1vault.toml:7:1: storage.buckt: unknown key"));
    assert!(
        lines[2].starts_with("/etc/d1vault/d1vault.toml:12:12: database[0].schedule: invalid cron")
    );
    assert_eq!(errors.to_string().lines().count(), 3);
}

#[test]
fn a_defaults_error_is_reported_once_not_per_database() {
    // Proves a bad [defaults] value inherited by two databases yields one error, at the defaults key.
    let text = r#"[storage]
type = "filesystem"
path = "/b"
[defaults]
compression = "gzip"
compression_level = 15
[[database]]
name = "a"
sqlite_path = "a.sqlite"
[[database]]
name = "b"
sqlite_path = "b.sqlite"
compression = "zstd"
"#;
    let errors = load_text(text, &[]).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].key, "defaults.compression_level");
    assert_eq!((errors.0[0].line, errors.0[0].column), (6, 21));
    assert!(errors.0[0].message.contains("gzip"), "{errors}");
}

#[test]
fn secret_values_never_appear_in_errors() {
    // Proves that no secret, whether inline, from the environment or from a file, is quoted by any error,
    // even when a secret is pasted into a non-secret key whose error quotes the value.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), format!("{SECRET_KEY}\n")).unwrap();
    let config_path = dir.path().join("d1vault.toml");
    let text = format!(
        r#"[cloudflare]
account_id = 42
api_token = "${{CLOUDFLARE_API_TOKEN}}"
api_token_file = "key"

[storage]
type = "s3"
bucket = "b"
prefix = "${{CLOUDFLARE_API_TOKEN}}/../x"
endpoint = "${{CLOUDFLARE_API_TOKEN}}"
access_key_id = "{ACCESS_KEY}"
secret_access_key_file = "key"
region = 7

[daemon]
timezone = "{SECRET_KEY}"
listen = "{ACCESS_KEY}"

[[database]]
name = "{SECRET_KEY}!"
"#
    );
    let env = test_env(dir.path());
    let errors = load_str(&text, &config_path, &|name| env.get(name).cloned()).unwrap_err();
    assert!(errors.0.len() >= 6, "{errors}");
    let shown = format!("{errors}\n{errors:?}");
    for secret in [TOKEN, ACCESS_KEY, SECRET_KEY] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    // Proves the built-in defaults match CONTRACT.md and the documented extras.
    let text = r#"[storage]
type = "s3"
bucket = "b"
[[database]]
name = "app"
sqlite_path = "/data/app.sqlite"
"#;
    let config = load_text(text, &[]).unwrap();
    assert_eq!(config.daemon.state_dir, PathBuf::from("/var/lib/d1vault"));
    assert_eq!(
        config.daemon.listen,
        Some("127.0.0.1:9180".parse().unwrap())
    );
    assert_eq!(config.daemon.timezone, chrono_tz::UTC);
    assert_eq!(config.daemon.max_concurrent, 2);
    assert_eq!(config.daemon.shutdown_grace, Duration::from_secs(300));
    let StorageConfig::S3(s3) = &config.storage else {
        panic!("expected s3")
    };
    assert_eq!(s3.region, "auto");
    assert!(!s3.force_path_style);
    assert!(s3.endpoint.is_none() && s3.access_key_id.is_none());
    assert_eq!(s3.part_size, 8 * 1024 * 1024);
    assert_eq!(s3.max_parts_in_flight, 2);
    assert_eq!(s3.prefix, "");
    let db = &config.databases[0];
    assert_eq!(db.schedule.expr(), "0 3 * * *");
    assert_eq!(db.window, None);
    assert_eq!(db.jitter, Duration::ZERO);
    assert_eq!(db.compression, Compression::Zstd { level: 3 });
    assert!(db.retention.is_empty());
    assert!(!db.no_data && db.tables.is_empty());
    assert_eq!(db.migrations_dir, PathBuf::from("/etc/d1vault/migrations"));
    assert_eq!(db.migrations_table, "d1_migrations");
}

#[test]
fn databases_override_defaults_key_by_key() {
    // Proves every [defaults] key reaches databases that do not set it and yields to those that do
    // (retention is replaced as a whole).
    let text = r#"[daemon]
listen = ""
timezone = "Europe/Berlin"
[cloudflare]
account_id = "acc"
api_token = "tok"
api_base_url = "http://127.0.0.1:8787/client/v4/"
[storage]
type = "filesystem"
path = "backups"
prefix = "/prod/"
[defaults]
schedule = "@hourly"
window = "22:00-02:00"
jitter = "3h"
compression = "gzip"
compression_level = 9
retention = { keep_last = 2, keep_daily = 0 }
tables = ["a", "b"]
[[database]]
name = "one"
[[database]]
name = "two"
id = "8F3C2A1E-5B6D-4C7E-9F00-112233445566"
compression = "none"
retention = { keep_weekly = 4 }
window = "01:00-05:00"
jitter = "1h"
"#;
    let config = load_text(text, &[]).unwrap();
    assert_eq!(config.daemon.listen, None);
    assert_eq!(config.daemon.timezone, chrono_tz::Europe::Berlin);
    let cf = config.cloudflare.as_ref().unwrap();
    assert_eq!(cf.api_base_url, "http://127.0.0.1:8787/client/v4");
    assert_eq!(cf.requests_per_5min, 1000);
    assert_eq!(cf.export_timeout, Duration::from_secs(30 * 60));
    assert_eq!(cf.api_token.expose(), "tok");
    assert_eq!(config.storage.prefix(), "prod");
    let one = config.database("one").unwrap();
    assert_eq!(one.source, Source::D1 { id: None });
    assert_eq!(one.schedule.expr(), "@hourly");
    assert_eq!(one.jitter, Duration::from_secs(3 * 3600));
    assert_eq!(one.compression, Compression::Gzip { level: 9 });
    assert_eq!(one.retention.keep_last, Some(2));
    assert_eq!(one.retention.keep_daily, None);
    assert_eq!(one.tables, vec!["a", "b"]);
    let two = config.database("two").unwrap();
    assert_eq!(
        two.source,
        Source::D1 {
            id: Some("8f3c2a1e-5b6d-4c7e-9f00-112233445566".into())
        }
    );
    assert_eq!(two.compression, Compression::None);
    assert_eq!(two.retention.keep_last, None);
    assert_eq!(two.retention.keep_weekly, Some(4));
    assert_eq!(two.jitter, Duration::from_secs(3600));
}

#[test]
fn variables_expand_in_any_string_and_dollars_escape() {
    // Proves `${VAR}` works in paths, names and arrays, `$$` is a literal dollar, and systemd's
    // STATE_DIRECTORY becomes the default state_dir.
    let text = r#"[storage]
type = "filesystem"
path = "${BASE}/backups"
prefix = "cost$$"
[defaults]
tables = ["${TABLE}"]
[[database]]
name = "${DB}"
sqlite_path = "${BASE}/db.sqlite"
"#;
    let config = load_text(
        text,
        &[
            ("BASE", "/srv"),
            ("TABLE", "users"),
            ("DB", "app"),
            ("STATE_DIRECTORY", "/var/lib/d1vault-unit:/other"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.daemon.state_dir,
        PathBuf::from("/var/lib/d1vault-unit")
    );
    assert_eq!(config.storage.prefix(), "cost$");
    let db = config.database("app").unwrap();
    assert_eq!(db.tables, vec!["users"]);
    assert_eq!(
        db.source,
        Source::Sqlite {
            path: "/srv/db.sqlite".into()
        }
    );
}

#[test]
fn secret_files_are_read_relative_to_the_config_and_trimmed() {
    // Proves `*_file` secrets resolve against the config file's directory and lose their trailing newline.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "tok-from-file\r\n").unwrap();
    std::fs::write(dir.path().join("id"), "id-from-file\n").unwrap();
    std::fs::write(dir.path().join("secret"), "secret-from-file").unwrap();
    let path = dir.path().join("d1vault.toml");
    std::fs::write(
        &path,
        r#"[cloudflare]
account_id = "acc"
api_token_file = "token"
[storage]
type = "s3"
bucket = "b"
access_key_id_file = "./id"
secret_access_key_file = "secret"
[[database]]
name = "app"
"#,
    )
    .unwrap();
    let config = load(&path).unwrap();
    assert_eq!(
        config.cloudflare.unwrap().api_token.expose(),
        "tok-from-file"
    );
    let StorageConfig::S3(s3) = config.storage else {
        panic!("expected s3")
    };
    assert_eq!(s3.access_key_id.unwrap().expose(), "id-from-file");
    assert_eq!(s3.secret_access_key.unwrap().expose(), "secret-from-file");
}

#[test]
fn a_missing_file_is_one_clear_error() {
    // Proves load() on a path that does not exist reports the path and how to point at another file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let line = errors.to_string();
    assert!(
        line.starts_with(&format!("{}: cannot read", path.display())),
        "{line}"
    );
    assert!(line.contains("--config"));
}

#[test]
fn the_command_line_path_wins() {
    // Proves `--config` takes precedence over every other source.
    assert_eq!(
        find_config_path(Some(Path::new("/x/y.toml"))),
        PathBuf::from("/x/y.toml")
    );
}

#[test]
fn a_variable_in_an_ordinary_key_is_shown_by_name_not_by_value() {
    // Proves that a secret reaching a non-secret key through `${VAR}` (found by cargo-fuzz: the token in
    // `timezone`, whose error quotes the value) is shown as `${VAR}`, even with no secret key configured.
    let errors = load_text(
        "[daemon]\ntimezone = \"Europe/${CLOUDFLARE_API_TOKEN}\"\n",
        &[("CLOUDFLARE_API_TOKEN", TOKEN)],
    )
    .unwrap_err();
    let shown = format!("{errors}\n{errors:?}");
    assert!(!shown.contains(TOKEN), "the token leaked:\n{shown}");
    assert!(
        shown.contains("unknown time zone \"Europe/${CLOUDFLARE_API_TOKEN}\""),
        "{shown}"
    );
}

#[test]
fn every_fuzz_corpus_config_is_an_answer_not_a_panic() {
    // Proves the inputs cargo-fuzz found (kept in its corpus, including the one that made toml_edit 0.23
    // panic) load to a result without panicking, in every `cargo test` and not only under the fuzzer.
    let credentials = credentials_dir();
    let env = test_env(credentials.path());
    let corpus = repo_path("fuzz/corpus/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let result =
            std::panic::catch_unwind(|| load_str(text, &path, &|name| env.get(name).cloned()));
        assert!(result.is_ok(), "{} panicked", path.display());
        seen += 1;
    }
    assert!(
        seen >= 5,
        "only {seen} corpus files read from {}",
        corpus.display()
    );
}

#[test]
fn truncated_configs_never_panic() {
    // Proves the loader returns errors rather than panicking on any prefix of every example config (a
    // cheap stand-in for fuzzing: cut-off strings, tables, arrays and keys at every position).
    let credentials = credentials_dir();
    let env = test_env(credentials.path());
    for file in toml_files(&repo_path("config")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for end in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
            let result = std::panic::catch_unwind(|| {
                load_str(&text[..end], &file, &|name| env.get(name).cloned())
            });
            assert!(
                result.is_ok(),
                "{} cut at byte {end} panicked",
                file.display()
            );
        }
    }
}

#[test]
fn standard_tables_and_dotted_keys_work_like_inline_ones() {
    // Proves `[defaults.retention]` tables, dotted keys and `retention = {}` (keep everything) are read,
    // and that problems inside them still carry their dotted key and position.
    let text = r#"storage.type = "filesystem"
storage.path = "/b"

[defaults.retention]
keep_daily = 7

[[database]]
name = "a"
sqlite_path = "a.sqlite"

[[database]]
name = "b"
sqlite_path = "b.sqlite"
retention = {}
"#;
    let config = load_text(text, &[]).unwrap();
    assert_eq!(config.databases[0].retention.keep_daily, Some(7));
    assert!(config.databases[1].retention.is_empty());

    let broken = text.replace("keep_daily = 7", "keep_daily = \"7\"");
    let errors = load_text(&broken, &[]).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(
        errors.0[0].to_string(),
        "/etc/d1vault/d1vault.toml:5:14: defaults.retention.keep_daily: expected an integer, found string"
    );
}

#[test]
fn an_overlong_database_name_is_a_configuration_error_naming_the_key() {
    // Proves a 5,000-character name (a path segment no filesystem or S3 key takes) fails the load and
    // `check-config` (exit 2) with the key and the limit, instead of failing at the first backup.
    let name = "a".repeat(5000);
    let text = format!(
        "[storage]\ntype = \"filesystem\"\npath = \"/tmp/d1vault-backups\"\n[[database]]\nname = \"{name}\"\nsqlite_path = \"app.sqlite\"\n"
    );
    let errors = load_text(&text, &[])
        .expect_err("an overlong name loaded")
        .to_string();
    assert!(errors.contains("database[0].name"), "{errors}");
    assert!(errors.contains("5000 characters"), "{errors}");
    assert!(errors.contains("128"), "{errors}");
    assert!(
        !errors.contains(&name),
        "the whole name is echoed: {errors}"
    );
    let at_limit = text.replace(&name, &"a".repeat(128));
    load_text(&at_limit, &[]).expect("a 128-character name is fine");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d1vault.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_d1vault"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("database[0].name"), "{stderr}");
}

#[test]
fn check_config_reports_a_missing_sqlite_file_and_a_missing_storage_root_at_their_lines() {
    // Proves check-config's preflight (issue 21): a `sqlite_path` that does not exist, a text file given as
    // a SQLite database and a filesystem storage root that does not exist exit 2 at once, each with its
    // FILE:LINE and key, instead of `(ok)` and a failure at the first backup; once the paths are right, the
    // same file passes. Nothing is created on the way.
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "plain text, not a database").unwrap();
    let text = "[daemon]\nstate_dir = \"state\"\n\
                [storage]\ntype = \"filesystem\"\npath = \"backups\"\n\
                [[database]]\nname = \"app\"\nsqlite_path = \"app.sqlite\"\n\
                [[database]]\nname = \"notes\"\nsqlite_path = \"notes.txt\"\n";
    let path = dir.path().join("d1vault.toml");
    std::fs::write(&path, text).unwrap();
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_d1vault"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .unwrap()
    };
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let shown = path.display().to_string();
    assert!(
        stderr.contains(&format!("{shown}:5:8: storage.path:"))
            && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{shown}:8:15: database[0].sqlite_path:")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{shown}:11:15: database[1].sqlite_path:"))
            && stderr.contains("is not a SQLite database"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("backups").exists(),
        "check-config created the storage root"
    );
    assert!(
        !dir.path().join("state").exists(),
        "check-config created the state_dir"
    );

    std::fs::create_dir(dir.path().join("backups")).unwrap();
    for name in ["app.sqlite", "notes.txt"] {
        let _ = std::fs::remove_file(dir.path().join(name));
        rusqlite::Connection::open(dir.path().join(name))
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
    }
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_request_budget_above_cloudflares_limit_needs_an_api_on_loopback() {
    // Proves `requests_per_5min` stays within Cloudflare's 1,200 for Cloudflare's API (and any other
    // host), and may be larger only for an emulator on loopback (scripts/bench-fleet).
    let text = |base: &str| {
        format!(
            "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n{base}requests_per_5min = 50000\n\
             [storage]\ntype = \"filesystem\"\npath = \"/srv\"\n[[database]]\nname = \"blog\"\n"
        )
    };
    for base in [
        "",
        "api_base_url = \"https://cf-proxy.example.com/client/v4\"\n",
    ] {
        let errors = load_text(&text(base), &[]).unwrap_err().to_string();
        assert!(
            errors.contains("cloudflare.requests_per_5min")
                && errors.contains("between 1 and 1200"),
            "{errors}"
        );
    }
    for base in [
        "http://127.0.0.1:8787/client/v4",
        "http://localhost:9/client/v4",
        "http://[::1]:9/client/v4",
    ] {
        let config = load_text(&text(&format!("api_base_url = \"{base}\"\n")), &[]).unwrap();
        assert_eq!(
            config.cloudflare.unwrap().requests_per_5min,
            50000,
            "{base}"
        );
    }
}

#[test]
fn the_account_and_token_come_from_the_environment_as_wrangler_reads_them() {
    // Proves CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN fill in what the file leaves out: keys
    // missing from [cloudflare], and a missing [cloudflare] section altogether; without them, the
    // missing section is an error that names the variables.
    let env = [
        ("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
        ("CLOUDFLARE_API_TOKEN", "env-token-SECRET"),
    ];
    let storage =
        "[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n[[database]]\nname = \"blog\"\n";
    for text in [
        storage.to_string(),
        format!("[cloudflare]\nrequests_per_5min = 600\n{storage}"),
    ] {
        let config = load_text(&text, &env).unwrap_or_else(|e| panic!("{text}\n{e}"));
        let cf = config.cloudflare.unwrap();
        assert_eq!(cf.account_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(cf.api_token.expose(), "env-token-SECRET");
    }
    let err = load_text(storage, &[]).unwrap_err().to_string();
    assert!(
        err.contains("CLOUDFLARE_API_TOKEN in the environment"),
        "{err}"
    );
}

#[test]
fn init_writes_a_starter_that_loads_and_never_overwrites() {
    // Proves `d1vault init PATH` writes a configuration the loader accepts (with its variables set),
    // and refuses, exit 2, to write over an existing file, which keeps its contents.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d1vault.toml");
    let init = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_d1vault"))
            .arg("init")
            .arg(&path)
            // Without Cloudflare credentials: the plain example (tests/it/cli.rs lists an account's).
            .env_remove("CLOUDFLARE_API_TOKEN")
            .env_remove("CLOUDFLARE_ACCOUNT_ID")
            .output()
            .unwrap()
    };
    let first = init();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let credentials = credentials_dir();
    let env = test_env(credentials.path());
    load_with(&path, &env).unwrap_or_else(|e| panic!("the starter does not load:\n{e}"));
    std::fs::write(&path, "mine").unwrap();
    let again = init();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
}
