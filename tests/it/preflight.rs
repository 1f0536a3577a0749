//! `check-config --online` through the binary against d1-emulator and the in-process S3 server: what
//! only asking can tell is found at `check-config`, not at the first scheduled run.

use crate::support::bed::{Bed, TOKEN};
use crate::support::run::{run, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_checks_find_a_missing_database_and_a_wrong_token_and_leave_no_probe_behind() {
    // Proves the online checks pass for a good setup (storage written and deleted, token accepted,
    // database found), fail with exit 1 naming a database the account lacks and a refused token, and
    // leave nothing in storage.
    let env = Bed::with_emulator(&["blog"]).await;
    let good = env.write_s3_config(
        "good",
        &env.s3.endpoint,
        "p",
        "[[database]]\nname = \"blog\"\n",
    );
    let output = run(&good, &["check-config", "--online"], &[TOKEN.to_string()]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    for line in [
        ": write and delete ok",
        "Cloudflare API token (account",
        "online: D1 database blog: found (id ",
    ] {
        assert!(out.contains(line), "{line} missing from\n{out}");
    }

    let missing = env.write_s3_config(
        "missing",
        &env.s3.endpoint,
        "p",
        "[[database]]\nname = \"blog\"\n[[database]]\nname = \"gone\"\n",
    );
    let output = run(
        &missing,
        &["check-config", "--online"],
        &[TOKEN.to_string()],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("online: D1 database gone: FAILED"),
        "{}",
        stdout(&output)
    );

    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace(TOKEN, "not-the-token-SECRET");
    std::fs::write(&good, text).unwrap();
    let output = run(
        &good,
        &["check-config", "--online"],
        &["not-the-token-SECRET".to_string()],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).contains("token"), "{}", stdout(&output));
    let left: Vec<_> = std::fs::read_dir(env.s3.object_path("p"))
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a probe object was left behind: {left:?}");
}
