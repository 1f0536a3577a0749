//! The command line as a person meets it, through the binary: where the configuration file is found
//! without `--config` (the XDG user path between `./d1vault.toml` and `/etc`), and a mistyped database
//! name answered with the name meant; `RUST_LOG`; a fatal error as JSON under `--log-format json`.

use std::path::Path;

/// Runs `d1vault ARGS` in `dir` with `HOME` = `home`, no `D1VAULT_CONFIG` and `XDG_CONFIG_HOME` as given.
fn d1vault(dir: &Path, home: &Path, xdg: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = assert_cmd::Command::cargo_bin("d1vault").expect("the d1vault binary is built");
    cmd.current_dir(dir)
        .args(args)
        .env_remove("D1VAULT_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home);
    if let Some(xdg) = xdg {
        cmd.env("XDG_CONFIG_HOME", xdg);
    }
    cmd.output().expect("d1vault ran")
}

/// A valid configuration with one SQLite database named `blog`, at `path`.
fn write_config(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    crate::support::fixture::create_fixture_db(&dir.join("blog.sqlite"));
    std::fs::write(
        path,
        "[storage]\ntype = \"filesystem\"\npath = \"store\"\n[[database]]\nname = \"blog\"\n\
         sqlite_path = \"blog.sqlite\"\n",
    )
    .unwrap();
}

/// `d1vault --config CONFIG backup` in `dir`, which must succeed; returns the new backup's id.
fn backup_ok(dir: &Path, config: &str) -> String {
    let made = d1vault(dir, dir, None, &["--config", config, "backup"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = String::from_utf8_lossy(&made.stdout).into_owned();
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn without_config_the_user_config_is_found_after_the_working_directory() {
    // Proves the search order ./d1vault.toml, then $XDG_CONFIG_HOME/d1vault/d1vault.toml (default
    // ~/.config/d1vault/d1vault.toml): each is named as the file in use.
    let scratch = tempfile::tempdir().unwrap();
    let (work, home) = (scratch.path().join("work"), scratch.path().join("home"));
    std::fs::create_dir_all(&work).unwrap();
    let default_user = home.join(".config/d1vault/d1vault.toml");
    write_config(&default_user);
    let found = |xdg: Option<&Path>| {
        let output = d1vault(&work, &home, xdg, &["check-config"]);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out.lines().next().unwrap_or_default().to_string()
    };
    assert!(
        found(None).contains(&format!("{} (ok)", default_user.display())),
        "{}",
        found(None)
    );

    let xdg = scratch.path().join("xdg");
    let xdg_user = xdg.join("d1vault/d1vault.toml");
    write_config(&xdg_user);
    assert!(found(Some(&xdg)).contains(&format!("{} (ok)", xdg_user.display())));

    let local = work.join("d1vault.toml");
    write_config(&local);
    assert!(found(Some(&xdg)).contains(&format!("{} (ok)", local.display())));
}

#[test]
fn a_mistyped_database_name_is_answered_with_the_one_meant() {
    // Proves every command that takes configured names says which name was probably meant.
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("d1vault.toml");
    write_config(&config);
    let config = config.to_string_lossy().into_owned();
    // One backup, so that storage knows blog too (restore and verify look there).
    backup_ok(scratch.path(), &config);
    for args in [
        vec!["backup", "bolg"],
        vec!["prune", "bolg", "--dry-run"],
        vec!["restore", "bolg", "--to-sqlite", "x.sqlite"],
        vec!["migrations", "list", "bolg"],
        vec!["verify", "bolg"],
        vec!["list", "bolg"],
    ] {
        let mut full = vec!["--config", config.as_str()];
        full.extend(args.iter().copied());
        let output = d1vault(scratch.path(), scratch.path(), None, &full);
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        // A name that is not configured is a usage error (2), except for the commands that read any
        // database's backups in storage (a gone database's too), where finding none is a failure (1),
        // and `list`, for which it is an empty list (0) with the hint on stderr.
        let expected = match args[0] {
            "restore" | "verify" => 1,
            "list" => 0,
            _ => 2,
        };
        assert_eq!(output.status.code(), Some(expected), "{args:?}: {err}");
        assert!(err.contains("(did you mean \"blog\"?)"), "{args:?}: {err}");
    }
}

#[test]
fn a_fatal_error_is_one_json_line_under_json_logging_and_rust_log_sets_the_levels() {
    // Proves a log pipeline that parses every stderr line sees why d1vault stopped (level ERROR, the
    // message, the exit status), and that RUST_LOG replaces the default levels.
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("d1vault.toml");
    write_config(&config);
    let config = config.to_string_lossy().into_owned();
    let args = [
        "--config",
        config.as_str(),
        "--log-format",
        "json",
        "backup",
        "bolg",
    ];
    let output = d1vault(scratch.path(), scratch.path(), None, &args);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    let fatal: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let last = fatal.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["exit_code"], 2);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no database named \"bolg\"")
    );

    let quiet = |rust_log: &str| {
        let mut cmd = assert_cmd::Command::cargo_bin("d1vault").unwrap();
        cmd.current_dir(scratch.path())
            .args(["--config", config.as_str(), "backup"])
            .env("RUST_LOG", rust_log);
        let output = cmd.output().unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(quiet("d1vault=info").contains("backup complete"));
    assert!(!quiet("d1vault=error").contains("backup complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_results_and_a_dry_run_that_changes_nothing() {
    // Proves `backup --dry-run` says what each database would get and writes nothing, and that backup,
    // verify, prune and check-config print their results as JSON with --json.
    use crate::support::bed::{Bed, TOKEN};
    use crate::support::run::{list_json, run, stderr, stdout};
    let env = Bed::with_emulator(&["blog"]).await;
    let store = env.dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let config = env.write_config(
        "json",
        &format!("type = \"filesystem\"\npath = \"{}\"\n", store.display()),
        "",
        "[[database]]\nname = \"blog\"\nretention = { keep_last = 3 }\n",
    );
    let secrets = [TOKEN.to_string()];
    let json = |output: &std::process::Output| -> serde_json::Value {
        assert!(output.status.success(), "{}", stderr(output));
        serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
    };

    let dry = run(&config, &["backup", "--dry-run"], &secrets).await;
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry).trim(),
        "would export blog (no complete backup yet)"
    );
    assert!(list_json(&config, &secrets).await.is_empty());
    assert_eq!(
        env.emulator().stats().by_route.get("export"),
        None,
        "a dry run exported"
    );

    let first = json(&run(&config, &["backup", "--json"], &secrets).await);
    assert_eq!(first[0]["database"], "blog");
    assert_eq!(first[0]["result"], "success");
    assert!(first[0]["raw_bytes"].as_u64().unwrap() > 0);
    let id = first[0]["backup_id"].as_str().unwrap().to_string();

    let dry = run(&config, &["backup", "--dry-run"], &secrets).await;
    assert_eq!(
        stdout(&dry).trim(),
        format!("would skip blog (unchanged since backup {id}: same bookmark)")
    );
    let again = json(&run(&config, &["backup", "--json"], &secrets).await);
    assert_eq!(again[0]["result"], "unchanged");
    assert_eq!(again[0]["backup_id"], id.as_str());

    let verified = json(&run(&config, &["verify", "--json"], &secrets).await);
    assert_eq!(verified[0]["result"], "ok");
    assert_eq!(verified[0]["backup_id"], id.as_str());
    assert!(verified[0]["rows"].as_u64().unwrap() > 0);

    let pruned = json(&run(&config, &["prune", "--dry-run", "--json"], &secrets).await);
    assert_eq!(pruned[0]["database"], "blog");
    assert_eq!(pruned[0]["dry_run"], true);
    assert_eq!(pruned[0]["backups"][0]["backup_id"], id.as_str());
    assert_eq!(pruned[0]["backups"][0]["action"], "keep");

    let checked = json(&run(&config, &["check-config", "--json"], &secrets).await);
    assert_eq!(checked["databases"][0]["name"], "blog");
    assert_eq!(
        checked["databases"][0]["next_runs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(checked["problems"].as_array().unwrap().is_empty());
}

#[test]
fn a_backup_id_may_be_shortened_to_a_unique_prefix() {
    // Proves `--backup` takes a prefix that names exactly one backup, and refuses one that names several,
    // listing them, for restore and verify alike.
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("d1vault.toml");
    write_config(&config);
    let config = config.to_string_lossy().into_owned();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = backup_ok(scratch.path(), &config);
        ids.push(id.clone());
        // Ids have one-second resolution: wait for the next one.
        while d1vault::repository::manifest::backup_id(chrono::Utc::now()) == id {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let common = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .count();
    let unique = &ids[1][..common + 1];
    let verify = d1vault(
        scratch.path(),
        scratch.path(),
        None,
        &["--config", &config, "verify", "blog", "--backup", unique],
    );
    let out = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(out.contains(&format!("ok      blog {}", ids[1])), "{out}");
    let target = scratch.path().join("restored.sqlite");
    let restore = d1vault(
        scratch.path(),
        scratch.path(),
        None,
        &[
            "--config",
            &config,
            "restore",
            "blog",
            "--backup",
            &ids[1][..common],
            "--to-sqlite",
            target.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&restore.stderr).into_owned();
    assert_eq!(restore.status.code(), Some(1), "{err}");
    assert!(err.contains("is ambiguous: it begins 2 backups"), "{err}");
    assert!(err.contains(&ids[0]) && err.contains(&ids[1]), "{err}");
    assert!(!target.exists());
}

/// `d1vault init PATH` with wrangler's variables naming `token` and the emulator at `base`: the exit
/// status and everything printed, which must not hold the token.
fn init_listing(path: &Path, token: &str, base: &str) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_d1vault"))
        .arg("init")
        .arg(path)
        .env("CLOUDFLARE_API_TOKEN", token)
        .env("CLOUDFLARE_ACCOUNT_ID", crate::support::bed::ACCOUNT)
        .env("CLOUDFLARE_API_BASE_URL", base)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(token), "the token leaked: {all}");
    (output.status.code(), all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_a_token_lists_the_accounts_databases_and_a_wrong_token_writes_nothing() {
    // Proves `init` with wrangler's environment variables writes one [[database]] (name and id) per
    // database of the account in place of the examples, and that a refused token writes no file and
    // shows no token.
    use crate::support::bed::{Bed, TOKEN};
    let env = Bed::with_emulator(&["blog", "shop"]).await;
    let base = env.emulator().base_url();
    let run_init = |path: std::path::PathBuf, token: &'static str| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || init_listing(&path, token, &base))
    };
    let path = env.dir.path().join("listed.toml");
    let (code, out) = run_init(path.clone(), TOKEN).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("listed the account's 2 D1 database(s)"),
        "{out}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: toml_edit::DocumentMut = text.parse().unwrap();
    let listed: Vec<(String, String)> = parsed["database"]
        .as_array_of_tables()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2, "{text}");
    assert_eq!(
        (listed[0].0.as_str(), listed[1].0.as_str()),
        ("blog", "shop")
    );
    assert!(listed.iter().all(|(_, id)| id.len() == 36), "{listed:?}");

    let refused = env.dir.path().join("refused.toml");
    let (code, out) = run_init(refused.clone(), "wrong-token-SECRET")
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("nothing was written"), "{out}");
    assert!(!refused.exists());
}
