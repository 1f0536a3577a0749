//! Notifications (`[[notify]]`) through the real binary and the real daemon: a recording HTTP server on
//! loopback checks the webhook JSON and its signature, the healthchecks ping paths and the grouped chat
//! message; a receiver that is gone and one that never answers show that delivery costs a backup nothing;
//! every output is checked for the URLs and the signing secret.

use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::support::bed::Bed;
use crate::support::receiver::{Received, Recorder, silent_receiver};
use crate::support::run::{run, stderr, stdout};
use crate::support::s3::unreachable_endpoint;
use d1vault::config;
use d1vault::daemon::{self, Clock, DaemonOptions, Signal};

const HOOK_TOKEN: &str = "hook-SECRET-7f3a";
const SIGNING_SECRET: &str = "sign-SECRET-91c2";
const PING_KEY: &str = "hc-SECRET-55e1";
const SLACK_TOKEN: &str = "slack-SECRET-0b7d";

/// Every secret of the notification targets: no output may contain one.
fn secrets() -> Vec<String> {
    [HOOK_TOKEN, SIGNING_SECRET, PING_KEY, SLACK_TOKEN]
        .map(String::from)
        .to_vec()
}

/// Whether `request` carries the valid `X-D1vault-Signature` of its body under [`SIGNING_SECRET`].
fn signed(request: &Received) -> bool {
    let Some(header) = request.headers.get("x-d1vault-signature") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    header.to_str().unwrap() == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_and_two_failing_databases_send_signed_webhooks_pings_and_one_chat_message() {
    // Proves issue 19's "done when" through `d1vault backup`: a signed `success` and `failure` webhook
    // with the contract's fields, the healthchecks pings per database (/start, the bare URL, /fail with
    // the error), one Slack message for both failures, the exit status the failures alone decide, and no
    // URL or secret in any output.
    let env = Bed::with_emulator(&["blog"]).await;
    let receiver = Recorder::start().await;
    let ping_file = env.dir.path().join("ping-url");
    std::fs::write(
        &ping_file,
        format!("{}/ping/{PING_KEY}/{{database}}\n", receiver.base),
    )
    .unwrap();
    let tables = format!(
        "[[database]]\nname = \"blog\"\n\
         [[database]]\nname = \"missing-a\"\n\
         [[database]]\nname = \"missing-b\"\n\
         [[notify]]\ntype = \"webhook\"\nurl = \"{base}/{HOOK_TOKEN}\"\nsecret = \"{SIGNING_SECRET}\"\n\
         [[notify]]\ntype = \"healthchecks\"\nurl_file = \"{ping}\"\n\
         [[notify]]\ntype = \"slack\"\nurl = \"{base}/slack/{SLACK_TOKEN}\"\n",
        base = receiver.base,
        ping = ping_file.display(),
    );
    let config = env.write_s3_config("notify", &env.s3.endpoint, "n", &tables);
    let output = run(&config, &["backup"], &secrets()).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let backup_id = stdout(&output)
        .lines()
        .find_map(|l| l.strip_suffix(" blog"))
        .expect("blog's backup id on stdout")
        .to_string();

    // The webhook: every event, each signed, in order per database.
    let hooks = receiver.under(&format!("/{HOOK_TOKEN}"));
    assert_eq!(hooks.len(), 6, "{hooks:?}");
    assert!(
        hooks.iter().all(signed),
        "an unsigned or badly signed webhook"
    );
    let events: Vec<serde_json::Value> = hooks.iter().map(Received::json).collect();
    let of = |db: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["database"] == db).collect()
    };
    let blog = of("blog");
    assert_eq!(blog[0]["event"], "start");
    assert_eq!(blog[1]["event"], "success");
    assert_eq!(blog[1]["backup_id"], backup_id.as_str());
    assert!(blog[1]["raw_bytes"].as_u64().unwrap() > blog[1]["stored_bytes"].as_u64().unwrap());
    assert!(blog[1]["duration_seconds"].as_f64().is_some());
    assert!(blog[1]["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(blog[1]["error"].is_null());
    for db in ["missing-a", "missing-b"] {
        let failed = of(db);
        assert_eq!(failed[0]["event"], "start", "{failed:?}");
        assert_eq!(failed[1]["event"], "failure", "{failed:?}");
        assert!(
            failed[1]["error"].as_str().is_some_and(|e| e.contains(db)),
            "{failed:?}"
        );
    }

    // healthchecks: one check per database.
    let mut pings: Vec<String> = receiver
        .under("/ping/")
        .iter()
        .map(|r| r.path.replace(PING_KEY, "KEY"))
        .collect();
    pings.sort();
    assert_eq!(
        pings,
        [
            "/ping/KEY/blog",
            "/ping/KEY/blog/start",
            "/ping/KEY/missing-a/fail",
            "/ping/KEY/missing-a/start",
            "/ping/KEY/missing-b/fail",
            "/ping/KEY/missing-b/start",
        ]
    );
    let fail = &receiver.under(&format!("/ping/{PING_KEY}/missing-a/fail"))[0];
    assert!(fail.text().contains("missing-a"), "{}", fail.text());

    // Slack: failures only (its default), both in one message.
    let slack = receiver.under("/slack/");
    assert_eq!(slack.len(), 1, "{slack:?}");
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("2 failure"), "{text}");
    assert!(
        text.contains("missing-a") && text.contains("missing-b"),
        "{text}"
    );
    assert!(!text.contains("blog"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_gone_or_never_answers_costs_the_backup_nothing() {
    // Proves a webhook receiver that accepts and never answers and a healthchecks URL with nothing
    // listening leave `backup` succeeding (exit 0, backup listed), ending within the delivery bound
    // (3 attempts of 5 s: 20 s in all), with each failure logged without its URL.
    let env = Bed::start().await;
    let (silent, _held) = silent_receiver().await;
    let gone = unreachable_endpoint();
    let tables = format!(
        "{}[[notify]]\ntype = \"webhook\"\nurl = \"{silent}/{HOOK_TOKEN}\"\n\
         [[notify]]\ntype = \"healthchecks\"\nurl = \"{gone}/ping/{PING_KEY}\"\n",
        env.sqlite_database("blog", "blog.sqlite", "zstd"),
    );
    let config = env.write_s3_config("notify", &env.s3.endpoint, "n", &tables);
    let started = Instant::now();
    let output = run(&config, &["backup"], &secrets()).await;
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).trim_end().ends_with(" blog"),
        "{}",
        stdout(&output)
    );
    assert!(took < Duration::from_secs(30), "backup took {took:?}");
    let log = stderr(&output);
    assert!(log.contains("notify[0] (webhook)"), "{log}");
    assert!(log.contains("notify[1] (healthchecks)"), "{log}");
    assert!(log.contains("notification failed"), "{log}");
    let listed = run(&config, &["list", "--json"], &secrets()).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reports_each_target_and_fails_when_one_does() {
    // Proves `d1vault notify test` sends the test event to every target, prints `ok` or `FAILED` per
    // target by its index and type (never its URL), and exits 1 when one failed.
    let env = Bed::start().await;
    let receiver = Recorder::start().await;
    let gone = unreachable_endpoint();
    let tables = format!(
        "{}[[notify]]\ntype = \"webhook\"\nurl = \"{}/{HOOK_TOKEN}\"\non = [\"failure\"]\n\
         [[notify]]\ntype = \"slack\"\nurl = \"{gone}/{SLACK_TOKEN}\"\n",
        env.sqlite_database("blog", "blog.sqlite", "zstd"),
        receiver.base,
    );
    let config = env.write_s3_config("notify", &env.s3.endpoint, "n", &tables);
    let output = run(&config, &["notify", "test"], &secrets()).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("ok      notify[0] (webhook)"), "{out}");
    assert!(out.contains("FAILED  notify[1] (slack): "), "{out}");
    let got = receiver.under(&format!("/{HOOK_TOKEN}"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json()["event"], "test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_a_stale_database_once_and_counts_the_delivery() {
    // Proves the daemon sends `stale` when it finds a database stale (here at start, its backup three
    // days old against a daily schedule), sends it once, and counts it in d1vault_notifications_total.
    let env = Bed::start().await;
    let receiver = Recorder::start().await;
    let tables = format!(
        "{}schedule = \"0 3 * * *\"\n[[notify]]\ntype = \"webhook\"\nurl = \"{}/{HOOK_TOKEN}\"\non = [\"stale\"]\n",
        env.sqlite_database("blog", "blog.sqlite", "zstd"),
        receiver.base,
    );
    let storage = env.s3_storage(&env.s3.endpoint, "n");
    let path = env.write_daemon_config(
        "daemon",
        "listen = \"\"\ntimezone = \"UTC\"",
        &storage,
        &tables,
    );
    let output = run(&path, &["backup"], &secrets()).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let options = DaemonOptions {
        config_path: path.clone(),
        config: config::load(&path).unwrap(),
        listener: Some(listener),
        clock: Clock::tokio_at(Utc::now() + chrono::Duration::days(3)),
    };
    let handle = tokio::spawn(daemon::run(options, rx));
    let got = receiver
        .wait_for(&format!("/{HOOK_TOKEN}"), 1, Duration::from_secs(20))
        .await;
    let event = got[0].json();
    assert_eq!(event["event"], "stale", "{event}");
    assert_eq!(event["stale"], true, "{event}");
    assert_eq!(event["database"], "blog", "{event}");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("d1vault_notifications_total{type=\"webhook\",result=\"sent\"} 1"),
        "{metrics}"
    );
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(receiver.under(&format!("/{HOOK_TOKEN}")).len(), 1);
}
