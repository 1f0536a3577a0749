//! Bad configuration through the binary: every file of tests/fixtures/bad-config/ makes
//! `d1vault check-config` exit 2 with the file's `# expect:` error on stderr, without a panic or a secret.

use std::path::Path;
use std::process::Command;

use crate::support::config_env::{SECRET_KEY, TOKEN, corpus_env, credentials_dir};

/// Proves each malformed file is refused by the real binary the way a user sees it: exit status 2, the
/// exact error (position, key, message) on stderr, no panic, no secret from the environment echoed.
#[test]
fn every_bad_config_exits_2_with_its_error_through_the_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-config");
    let credentials = credentials_dir();
    let env = corpus_env(credentials.path());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 25,
        "the corpus holds only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap()
            .trim();
        let output = Command::new(env!("CARGO_BIN_EXE_d1vault"))
            .arg("--config")
            .arg(file)
            .arg("check-config")
            .env_remove("D1VAULT_TEST_UNSET_TOKEN")
            .env_remove("CLOUDFLARE_ACCOUNT_ID")
            .env_remove("CLOUDFLARE_API_TOKEN")
            .envs(&env)
            .current_dir(&dir)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        let mut problems = Vec::new();
        if output.status.code() != Some(2) {
            problems.push(format!("exit status {:?}, not 2", output.status.code()));
        }
        if !err.contains(expected) {
            problems.push(format!("stderr lacks {expected:?}"));
        }
        for text in [&out, &err] {
            if text.contains("panicked") {
                problems.push("a panic".to_string());
            }
            if text.contains(TOKEN) || text.contains(SECRET_KEY) {
                problems.push("a secret in the output".to_string());
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\nstderr:\n{err}",
                file.display(),
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files misbehaved:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
