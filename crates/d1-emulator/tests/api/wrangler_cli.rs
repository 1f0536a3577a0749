//! Running Cloudflare's wrangler against an emulator: shared by the emulator's conformance tests and
//! d1vault's (`tests/it/wrangler.rs` includes this file), so both drive wrangler the same way.

use std::path::Path;
use std::process::{Command, Output};

/// Where wrangler should send its API calls, and as whom.
pub(crate) struct Api<'a> {
    /// The emulator's API base, `http://127.0.0.1:PORT/client/v4`.
    pub(crate) base_url: &'a str,
    /// The bearer token the emulator expects.
    pub(crate) token: &'a str,
    /// The account id the emulator answers for.
    pub(crate) account_id: &'a str,
}

/// Runs `wrangler ARGS` from `cwd` against `api`, non-interactively and without metrics, and echoes the
/// transcript to stderr for the test log.
pub(crate) fn wrangler(wrangler: &Path, api: &Api<'_>, cwd: &Path, args: &[&str]) -> Output {
    let output = Command::new(wrangler)
        .args(args)
        .current_dir(cwd)
        .env("CLOUDFLARE_API_BASE_URL", api.base_url)
        .env("CLOUDFLARE_API_TOKEN", api.token)
        .env("CLOUDFLARE_ACCOUNT_ID", api.account_id)
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

/// The standard output of a wrangler run that must succeed.
pub(crate) fn must(output: Output, what: &str) -> String {
    assert!(output.status.success(), "wrangler {what} failed");
    String::from_utf8(output.stdout).unwrap()
}
