//! Commands that only read storage run when the `[cloudflare]` credentials cannot be resolved (the
//! runbook's worst case: the account or its token is gone); the commands that talk to D1 fail with exit 2
//! and the loader's own error, naming what is missing.

use std::path::{Path, PathBuf};

use crate::support::bed::{Bed, TOKEN};
use crate::support::run::{command, finish, stderr, stdout};

/// Runs the binary on `config` with `args`, `D1VAULT_TEST_UNSET_TOKEN` removed from its environment.
async fn run_unset(env: &Bed, config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = command(config, args);
    cmd.env_remove("D1VAULT_TEST_UNSET_TOKEN");
    finish(cmd.spawn().unwrap(), &env.secrets()).await
}

/// A bed with one D1 backup of `blog` taken with the real token, and a copy of its configuration whose
/// `api_token = ...` line is replaced by `token_line`.
async fn backed_up_then(token_line: &str) -> (Bed, PathBuf) {
    let env = Bed::with_emulator(&["blog"]).await;
    let good = env.write_s3_config(
        "good",
        &env.s3.endpoint,
        "test",
        "[[database]]\nname = \"blog\"\n",
    );
    let output = run_unset(&env, &good, &["backup"]).await;
    assert!(output.status.success(), "backup: {}", stderr(&output));
    let text = std::fs::read_to_string(&good).unwrap();
    let inline = format!("api_token = \"{TOKEN}\"");
    assert!(text.contains(&inline), "{text}");
    let broken = env.dir.path().join("no-token.toml");
    std::fs::write(&broken, text.replace(&inline, token_line)).unwrap();
    (env, broken)
}

/// Proves `list`, `verify`, `restore --to-sqlite` and `prune --dry-run` work with the token's variable
/// unset, while `backup` of a D1 database, `run` and `check-config` exit 2 naming the missing variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_only_commands_run_without_the_cloudflare_token() {
    let (env, config) = backed_up_then("api_token = \"${D1VAULT_TEST_UNSET_TOKEN}\"").await;
    let restored = env.dir.path().join("restored.sqlite");
    let restored = restored.to_str().unwrap();
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["verify", "blog"],
        vec!["restore", "blog", "--to-sqlite", restored],
        vec!["prune", "--dry-run"],
    ] {
        let output = run_unset(&env, &config, &args).await;
        assert!(
            output.status.success(),
            "{args:?} failed without the token:\n{}",
            stderr(&output)
        );
    }
    assert!(Path::new(restored).exists());
    let output = run_unset(&env, &config, &["list"]).await;
    assert!(stdout(&output).contains("blog"), "{}", stdout(&output));

    for args in [
        vec!["backup"],
        vec!["backup", "blog"],
        vec!["run"],
        vec!["databases"],
        vec!["check-config"],
    ] {
        let output = run_unset(&env, &config, &args).await;
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}:\n{err}");
        assert!(
            err.contains(
                "cloudflare.api_token: environment variable D1VAULT_TEST_UNSET_TOKEN is not set"
            ),
            "{args:?}:\n{err}"
        );
    }
}

/// Proves a missing `api_token_file` is treated the same way: `list` runs, `backup` exits 2 naming the
/// file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_file_stops_only_the_d1_commands() {
    let (env, config) = backed_up_then("api_token_file = \"gone/token\"").await;
    let output = run_unset(&env, &config, &["list"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run_unset(&env, &config, &["backup", "blog"]).await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cloudflare.api_token_file: cannot read secret file"),
        "{err}"
    );
}
