//! The environment the shipped example configs and the bad-config corpus read: variables and a
//! systemd-style credentials directory, holding secrets that tests look for in every output.

use std::collections::HashMap;
use std::path::Path;

/// The Cloudflare API token of [`test_env`]; no output may show it.
pub(crate) const TOKEN: &str = "cf-token-4f1b9e-SECRET";
/// The S3 access key id of [`test_env`]; no error may show it.
pub(crate) const ACCESS_KEY: &str = "AKIA-ACCESS-SECRET-77";
/// The S3 secret key of [`test_env`] and of [`credentials_dir`]; no output may show it.
pub(crate) const SECRET_KEY: &str = "s3-secret-key-VERY-SECRET-99";

/// The environment the example configs and the corpus expect, with secrets that tests look for.
pub(crate) fn test_env(credentials_dir: &Path) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for (name, value) in [
        ("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
        ("CLOUDFLARE_API_TOKEN", TOKEN),
        ("R2_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("MINIO_ACCESS_KEY", ACCESS_KEY),
        ("MINIO_SECRET_KEY", SECRET_KEY),
        ("GARAGE_KEY_ID", ACCESS_KEY),
        ("HOME", "/home/tester"),
    ] {
        env.insert(name.to_string(), value.to_string());
    }
    env.insert(
        "CREDENTIALS_DIRECTORY".to_string(),
        credentials_dir.display().to_string(),
    );
    env
}

/// [`test_env`] for the bad-config corpus: its files name the account and token `${CF_ACCOUNT}` and
/// `${CF_TOKEN}`, and `CLOUDFLARE_ACCOUNT_ID` / `CLOUDFLARE_API_TOKEN` are absent, because d1vault reads
/// those (as wrangler does) when a file leaves `account_id` or `api_token` out, which would turn the
/// corpus's "missing" cases into valid files.
pub(crate) fn corpus_env(credentials_dir: &Path) -> HashMap<String, String> {
    let mut env = test_env(credentials_dir);
    let account = env
        .remove("CLOUDFLARE_ACCOUNT_ID")
        .expect("set by test_env");
    let token = env.remove("CLOUDFLARE_API_TOKEN").expect("set by test_env");
    env.insert("CF_ACCOUNT".into(), account);
    env.insert("CF_TOKEN".into(), token);
    env
}

/// A systemd-style credentials directory holding every secret file the example configs name.
pub(crate) fn credentials_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["r2-secret", "garage-secret"] {
        std::fs::write(dir.path().join(name), format!("{SECRET_KEY}\n")).unwrap();
    }
    std::fs::write(
        dir.path().join("cloudflare-api-token"),
        format!("{TOKEN}\n"),
    )
    .unwrap();
    dir
}
