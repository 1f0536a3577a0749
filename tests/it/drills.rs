//! Restore drills (`verify_schedule`): the real daemon verifies the newest backup on its own schedule,
//! reports it in `/metrics`, and a corrupted newest backup turns `/healthz` unhealthy (`verify_failed`)
//! with a `verify_failure` notification, until a verification of a good backup succeeds.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::support::bed::Bed;
use crate::support::receiver::Recorder;
use crate::support::run::{run, stderr, stdout};
use d1vault::config;
use d1vault::daemon::{self, Clock, DaemonOptions, Signal};

/// Polls `check` every 50 ms until it gives a value (bounded: 30 s).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_verifies_on_schedule_and_a_corrupted_backup_turns_healthz_unhealthy() {
    // Proves: scheduled verifications are counted as successes while the backup is good; after its dump
    // is damaged in storage the next one fails, /healthz answers 503 with state `verify_failed`, the
    // failure is notified once per failed verification with the backup id; a new good backup verified
    // next clears it.
    let env = Bed::start().await;
    let receiver = Recorder::start().await;
    std::fs::create_dir_all(env.dir.path().join("store")).unwrap();
    let storage = format!(
        "type = \"filesystem\"\npath = \"{}\"\nprefix = \"p\"\n",
        env.dir.path().join("store").display()
    );
    let tables = format!(
        "{}schedule = \"0 3 * * *\"\nverify_schedule = \"* * * * * *\"\n\
         [[notify]]\ntype = \"webhook\"\nurl = \"{}/hook\"\non = [\"verify_failure\"]\n",
        env.sqlite_database("blog", "blog.sqlite", "none"),
        receiver.base,
    );
    let path = env.write_daemon_config(
        "drill",
        "listen = \"\"\ntimezone = \"UTC\"",
        &storage,
        &tables,
    );
    let first = run(&path, &["backup"], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let backup_id = stdout(&first)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let options = DaemonOptions {
        config_path: path.clone(),
        config: config::load(&path).unwrap(),
        listener: Some(listener),
        clock: Clock::tokio_at(Utc::now()),
    };
    let handle = tokio::spawn(daemon::run(options, rx));
    let http = reqwest::Client::new();
    let metrics = || async {
        http.get(format!("http://{addr}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let healthz = || async {
        let response = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.ok()?;
        Some((status, body["databases"][0]["state"].as_str()?.to_string()))
    };
    eventually("a successful scheduled verification", || async {
        let text = metrics().await?;
        (text.contains("d1vault_verifications_total{database=\"blog\",result=\"success\"}")
            && text.contains("d1vault_last_verify_success_timestamp_seconds{database=\"blog\"}"))
        .then_some(())
    })
    .await;
    assert_eq!(healthz().await, Some((200, "fresh".to_string())));
    assert!(receiver.received().is_empty());

    // Damage the stored dump, keeping its size: only the checksum can tell.
    let dump = env
        .dir
        .path()
        .join(format!("store/p/blog/{backup_id}/dump.sql"));
    let mut bytes = std::fs::read(&dump).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&dump, bytes).unwrap();
    eventually("/healthz to say verify_failed", || async {
        (healthz().await? == (503, "verify_failed".to_string())).then_some(())
    })
    .await;
    let failures = receiver.wait_for("/hook", 1, Duration::from_secs(20)).await;
    let event = failures[0].json();
    assert_eq!(event["event"], "verify_failure", "{event}");
    assert_eq!(event["database"], "blog", "{event}");
    assert_eq!(event["backup_id"], backup_id.as_str(), "{event}");
    assert!(
        event["error"]
            .as_str()
            .is_some_and(|e| e.contains("sha256")),
        "{event}"
    );
    assert!(
        metrics()
            .await
            .unwrap()
            .contains("d1vault_verifications_total{database=\"blog\",result=\"failure\"}"),
    );

    // A new good backup becomes the newest; its verification clears the failure.
    let second = run(&path, &["backup"], &[]).await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    eventually("/healthz to be fresh again", || async {
        (healthz().await? == (200, "fresh".to_string())).then_some(())
    })
    .await;
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_the_newest_backup_into_its_scratch_d1_database_and_checks_it() {
    // Proves `drill_to_d1`: on the verify schedule the newest backup goes, through D1's import, into
    // the scratch database (whatever it held is replaced), the checks there pass, and it is counted as a
    // successful verification.
    let env = Bed::with_emulator(&["blog", "scratch"]).await;
    std::fs::create_dir_all(env.dir.path().join("store")).unwrap();
    let storage = format!(
        "type = \"filesystem\"\npath = \"{}\"\nprefix = \"p\"\n",
        env.dir.path().join("store").display()
    );
    let tables = "[[database]]\nname = \"blog\"\nschedule = \"0 3 * * *\"\n\
                  verify_schedule = \"* * * * * *\"\ndrill_to_d1 = \"scratch\"\n";
    let path = env.write_daemon_config(
        "drill",
        "listen = \"\"\ntimezone = \"UTC\"",
        &storage,
        tables,
    );
    let first = run(&path, &["backup"], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let config = config::load(&path).unwrap();
    let sources = env.sources(&config).await;
    let client = sources.cloudflare.as_ref().unwrap();
    let scratch = client.get_database("scratch").await.unwrap().uuid;
    client
        .query(&scratch, "DELETE FROM comments", &[])
        .await
        .unwrap();
    let differs = || {
        crate::support::fixture::contents(&env.d1_file("blog"))
            != crate::support::fixture::contents(&env.d1_file("scratch"))
    };
    assert!(differs(), "the scratch database should start different");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let options = DaemonOptions {
        config_path: path.clone(),
        config,
        listener: Some(listener),
        clock: Clock::tokio_at(Utc::now()),
    };
    let handle = tokio::spawn(daemon::run(options, rx));
    eventually("a successful drill", || async {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("d1vault_verifications_total{database=\"blog\",result=\"success\"}")
            .then_some(())
    })
    .await;
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
    assert!(
        !differs(),
        "the drill did not restore the backup into the scratch database"
    );
    assert!(
        !reqwest::get(format!("http://{addr}/metrics"))
            .await
            .is_ok_and(|r| r.status().is_success()),
        "the daemon still answers after stopping"
    );
}
