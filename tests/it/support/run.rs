//! The `d1vault` binary as a child process: run with `--config`, the most verbose logs (JSON and text in
//! turn), and every output checked for secrets and panics; and the readings of its output the suites share.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

/// How a run of the binary logs: the most verbose level, alternating JSON and text between runs.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The logging flags of the next run.
fn log_args() -> [&'static str; 3] {
    if RUNS.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
        ["-vv", "--log-format", "json"]
    } else {
        ["-vv", "--log-format", "text"]
    }
}

/// The `d1vault` binary with `--config`, maximal verbosity and `args`, ready to spawn.
pub(crate) fn command(config: &Path, args: &[&str]) -> tokio::process::Command {
    command_logging(config, &log_args(), args)
}

/// [`command`] always logging JSON (`-vv --log-format json`), for tests that read the log's levels.
pub(crate) fn command_json(config: &Path, args: &[&str]) -> tokio::process::Command {
    command_logging(config, &["-vv", "--log-format", "json"], args)
}

/// The `d1vault` binary with `--config`, the logging flags `log` and `args`, ready to spawn.
fn command_logging(config: &Path, log: &[&str], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_d1vault"));
    cmd.arg("--config").arg(config).args(log).args(args);
    cmd.current_dir(config.parent().unwrap());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to completion (bounded: 120 s) and checks that its output holds none of `secrets`.
pub(crate) async fn run(config: &Path, args: &[&str], secrets: &[String]) -> Output {
    finish(command(config, args).spawn().unwrap(), secrets).await
}

/// Waits for a spawned d1vault to end (bounded: 120 s) and checks that its output holds none of
/// `secrets`.
pub(crate) async fn finish(child: tokio::process::Child, secrets: &[String]) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("d1vault ran longer than 120 s"))
        .unwrap();
    assert_no_secrets(&output, secrets);
    output
}

/// Fails when stdout or stderr contains any of `secrets`, or a panic.
pub(crate) fn assert_no_secrets(output: &Output, secrets: &[String]) {
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} contains the secret {secret:?}:\n{text}"
            );
        }
        assert!(!text.contains("panicked"), "{name} shows a panic:\n{text}");
    }
}

/// A run's stdout as text.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A run's stderr as text. Under `--log-format json` the fatal error is one JSON object (`level` ERROR,
/// `exit_code`); it is shown as the `error: ` lines the text format prints, so that the suites read the
/// same words whichever format the run logged in.
pub(crate) fn stderr(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let mut shown = String::with_capacity(text.len());
    for line in text.lines() {
        let fatal = serde_json::from_str::<Value>(line)
            .ok()
            .filter(|v| v.get("exit_code").is_some() && v["level"] == "ERROR");
        match fatal.as_ref().and_then(|v| v["message"].as_str()) {
            Some(message) => {
                for part in message.lines() {
                    shown.push_str("error: ");
                    shown.push_str(part);
                    shown.push('\n');
                }
            }
            None => {
                shown.push_str(line);
                shown.push('\n');
            }
        }
    }
    shown
}

/// `d1vault list --json` as parsed manifests (asserting success).
pub(crate) async fn list_json(config: &Path, secrets: &[String]) -> Vec<Value> {
    let output = run(config, &["list", "--json"], secrets).await;
    assert!(output.status.success(), "list failed: {}", stderr(&output));
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Backup ids of a `list --json` result.
pub(crate) fn ids(listed: &[Value]) -> Vec<String> {
    listed
        .iter()
        .map(|m| m["backup_id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts a `prune` run succeeded. s3s-fs does not implement ListMultipartUploads, so prune's stale-upload
/// sweep reports an error there; that one error (and only that one) is accepted (Garage covers the sweep
/// in the `storage` suite).
pub(crate) fn assert_prune_ok(output: &Output) {
    if output.status.success() {
        return;
    }
    let err = stderr(output);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        output.status.code() == Some(1)
            && !errors.is_empty()
            && errors
                .iter()
                .all(|l| l.contains("ListMultipartUploads is not implemented")),
        "prune failed:\n{err}"
    );
}

/// Waits (at most a second) until a backup started now gets a different id than `id`: ids have
/// one-second resolution, and two backups of one database in the same second share a directory.
pub(crate) async fn after_backup_id(id: &str) {
    while d1vault::repository::manifest::backup_id(chrono::Utc::now()) == id {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
