//! Cloudflare faults beyond the `backup` suite: a 429 storm against several concurrent backups sharing one
//! rate limiter, exports stuck `active` past `cloudflare.export_timeout`, and 5xx answers that never end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use d1vault::cloudflare::RateLimiter;
use d1vault::config;
use d1vault::pipeline::run_backup;
use d1vault::sources::BackupSources;
use serde_json::json;

use crate::support::bed::Bed;
use crate::support::run::{ids, list_json, run, stderr};

const NAMES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

fn d1_databases(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[[database]]\nname = \"{n}\"\ncompression = \"zstd\"\n"))
        .collect()
}

/// Library-level sources for `bed` with the given limiter and quick retries.
async fn lib_sources(
    bed: &Bed,
    limiter: Arc<RateLimiter>,
    max_attempts: u32,
) -> (config::Config, BackupSources) {
    let path = bed.write_s3_config("lib", &bed.s3.endpoint, "faults", &d1_databases(&NAMES));
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sources = bed.sources_limited(&config, limiter, max_attempts).await;
    (config, sources)
}

/// Proves that four concurrent backups hit by a burst of 429s with `Retry-After` never send more than the
/// shared limiter allows (2 starts per second; at most twice that in arrivals at the emulator), send no request beyond one retry per 429, and
/// all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storm_is_held_by_the_shared_limiter() {
    let bed = Bed::with_emulator(&NAMES).await;
    let limiter = Arc::new(RateLimiter::new(2, Duration::from_secs(1)));
    let (config, sources) = lib_sources(&bed, limiter, 6).await;
    bed.set_faults(json!({ "rate_limit": { "count": 4, "retry_after_secs": 1 } }))
        .await;
    let now = chrono::Utc::now();
    let results = futures_util::future::join_all(
        config
            .databases
            .iter()
            .map(|db| run_backup(db, &sources, now)),
    )
    .await;
    for (db, result) in config.databases.iter().zip(&results) {
        assert!(
            result.is_ok(),
            "backup of {} failed: {:?}",
            db.name,
            result.as_ref().err()
        );
    }
    let stats = bed.emulator().stats();
    // The limiter bounds request *starts* per sliding second; the emulator counts *arrivals*, and on a
    // loaded machine two starts late in one second plus two early in the next can arrive within one
    // second. So the arrival bound is twice the limit; without the limiter, the 4 backups' retries and
    // polls arrive far faster than that.
    assert!(
        stats.peak_per_second <= 4,
        "the limiter let a storm through: {stats:?}"
    );
    let clean = bed.emulator().stats();
    // Every backup needs the same requests; the 429s add exactly one request each, nothing more.
    let per_backup = {
        let single = Bed::with_emulator(&["alpha"]).await;
        let (config, sources) = lib_sources(
            &single,
            Arc::new(RateLimiter::new(100, Duration::from_secs(1))),
            6,
        )
        .await;
        run_backup(&config.databases[0], &sources, now)
            .await
            .unwrap();
        single.emulator().stats().total
    };
    assert_eq!(
        clean.total,
        per_backup * NAMES.len() as u64 + 4,
        "request count: {clean:?}"
    );
}

/// Proves that 5xx answers that never end stop after the configured attempts with a retryable error
/// naming the status, and leave nothing listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_server_errors_stop_after_bounded_attempts() {
    let bed = Bed::with_emulator(&NAMES).await;
    let (config, sources) = lib_sources(
        &bed,
        Arc::new(RateLimiter::new(100, Duration::from_secs(1))),
        4,
    )
    .await;
    bed.set_faults(json!({ "server_error": { "count": 100000, "status": 503 } }))
        .await;
    let started = Instant::now();
    let error = run_backup(&config.databases[0], &sources, chrono::Utc::now())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("503"), "{error}");
    assert_eq!(
        bed.emulator().stats().total,
        4,
        "attempts: {:?}",
        bed.emulator().stats()
    );
    let listed =
        d1vault::repository::backups::complete(sources.storage.as_ref(), &sources.prefix, None)
            .await
            .unwrap();
    assert!(listed.is_empty());
    assert_eq!(bed.s3.open_multipart_uploads(), 0);
}

/// Proves through the binary (with -vv logs checked for secrets and signed URLs) that a good D1 backup is
/// listed, and that an export stuck `active` past a 2 s `export_timeout` fails in bounded time with a
/// message naming the setting, listing nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_stuck_active_fails_at_the_export_timeout() {
    let bed = Bed::with_emulator(&["alpha"]).await;
    let secrets = bed.secrets();
    let path = bed.write_config(
        "stuck",
        &bed.s3_storage(&bed.s3.endpoint, "faults"),
        "export_timeout = \"2s\"\n",
        &d1_databases(&["alpha"]),
    );
    let good = run(&path, &["backup"], &secrets).await;
    assert!(good.status.success(), "{}", stderr(&good));
    let before = ids(&list_json(&path, &secrets).await);
    assert_eq!(before.len(), 1);

    bed.set_faults(json!({ "export_active_polls": 100000 }))
        .await;
    let started = Instant::now();
    // --force: the database is unchanged since the good backup, and this test is about the export.
    let stuck = run(&path, &["backup", "--force"], &secrets).await;
    assert_eq!(stuck.status.code(), Some(1), "{}", stderr(&stuck));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr(&stuck).contains("export_timeout"),
        "{}",
        stderr(&stuck)
    );
    assert_eq!(ids(&list_json(&path, &secrets).await), before);
    let verify = run(&path, &["verify", "--all"], &secrets).await;
    assert!(verify.status.success(), "{}", stderr(&verify));
}
