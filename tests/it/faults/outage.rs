//! Storage outages: the store vanishes mid-upload, connections are reset mid-upload, and the store answers
//! `503 SlowDown` for a while or for good. Each ends in bounded time as a success or a clean failure,
//! never a listed partial backup, with the previous backups untouched.

use std::time::{Duration, Instant};

use s3s::S3ErrorCode;

use crate::support::bed::Bed;
use crate::support::fixture::create_big_db;
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::run::{after_backup_id, command, finish, ids, list_json, run, stderr};

/// A bed with one complete backup of `blog` made directly, and configs for direct and proxied access.
async fn bed_with_previous_backup(
    proxy_options: ProxyOptions,
) -> (
    Bed,
    Proxy,
    std::path::PathBuf,
    std::path::PathBuf,
    Vec<String>,
) {
    let bed = Bed::start().await;
    create_big_db(&bed.dir.path().join("big.sqlite"), 8);
    let proxy = Proxy::start(&bed.s3.endpoint, proxy_options).await;
    let databases = format!(
        "{}{}",
        bed.sqlite_database("blog", "blog.sqlite", "zstd"),
        bed.sqlite_database("big", "big.sqlite", "none")
    );
    let direct = bed.write_s3_config("direct", &bed.s3.endpoint, "faults", &databases);
    let proxied = bed.write_s3_config("proxied", &proxy.endpoint, "faults", &databases);
    let first = run(&direct, &["backup", "blog"], &bed.secrets()).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let before = ids(&list_json(&direct, &bed.secrets()).await);
    assert_eq!(before.len(), 1);
    after_backup_id(&before[0]).await;
    (bed, proxy, direct, proxied, before)
}

/// Asserts the previous backup is still listed unchanged and still verifies.
async fn previous_untouched(bed: &Bed, direct: &std::path::Path, before: &[String]) {
    let listed = ids(&list_json(direct, &bed.secrets()).await);
    assert!(
        before.iter().all(|id| listed.contains(id)),
        "a previous backup vanished: {before:?} -> {listed:?}"
    );
    let verify = run(direct, &["verify", "blog"], &bed.secrets()).await;
    assert!(
        verify.status.success(),
        "the previous backup no longer verifies: {}",
        stderr(&verify)
    );
}

/// Proves that a store which disappears mid-upload (listener closed, connections cut) makes the backup
/// fail with a storage error in bounded time, lists nothing new, and leaves earlier backups intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gone_mid_upload_fails_cleanly() {
    let (bed, proxy, direct, proxied, before) = bed_with_previous_backup(ProxyOptions {
        upstream_bytes_per_sec: Some(4 << 20),
        ..Default::default()
    })
    .await;
    let child = command(&proxied, &["backup", "big"]).spawn().unwrap();
    proxy.wait_forwarded(2 << 20).await;
    proxy.stop();
    let started = Instant::now();
    let output = finish(child, &bed.secrets()).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("storage"),
        "the error does not name storage: {}",
        stderr(&output)
    );
    assert!(started.elapsed() < Duration::from_secs(90));
    assert_eq!(ids(&list_json(&direct, &bed.secrets()).await), before);
    // A store that is gone cannot be told to abort the upload; at most the one started upload is left for
    // prune's stale-upload sweep.
    assert!(
        bed.s3.open_multipart_uploads() <= 1,
        "{} uploads left open",
        bed.s3.open_multipart_uploads()
    );
    previous_untouched(&bed, &direct, &before).await;
}

/// Proves that connections reset mid-upload (the store stays up) end in a success that verifies, or a
/// clean failure with nothing listed and no multipart upload left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_mid_upload_end_in_success_or_clean_failure() {
    let (bed, proxy, direct, proxied, before) = bed_with_previous_backup(ProxyOptions {
        upstream_bytes_per_sec: Some(4 << 20),
        ..Default::default()
    })
    .await;
    let child = command(&proxied, &["backup", "big"]).spawn().unwrap();
    proxy.wait_forwarded(2 << 20).await;
    proxy.cut_connections();
    let output = finish(child, &bed.secrets()).await;
    let listed = ids(&list_json(&direct, &bed.secrets()).await);
    if output.status.success() {
        assert_eq!(listed.len(), 2);
        let verify = run(&direct, &["verify", "--all"], &bed.secrets()).await;
        assert!(verify.status.success(), "{}", stderr(&verify));
    } else {
        assert_eq!(listed, before);
        assert_eq!(
            bed.s3.wait_for_no_open_uploads().await,
            0,
            "a multipart upload was left open"
        );
    }
    assert_eq!(
        bed.s3.open_multipart_uploads(),
        0,
        "a multipart upload was left open"
    );
    previous_untouched(&bed, &direct, &before).await;
}

/// Proves that a store which disappears while a restore downloads the backup ends the restore with a
/// storage error that says the backup may be fine (not a "damaged backup" verdict), exit 1, and no target
/// file, temporary or final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gone_mid_restore_is_an_outage_and_writes_nothing() {
    let (bed, proxy, direct, proxied, _) = bed_with_previous_backup(ProxyOptions {
        downstream_bytes_per_sec: Some(4 << 20),
        ..Default::default()
    })
    .await;
    let backup = run(&direct, &["backup", "big"], &bed.secrets()).await;
    assert!(backup.status.success(), "{}", stderr(&backup));
    let restored_dir = bed.dir.path().join("restored");
    std::fs::create_dir(&restored_dir).unwrap();
    let target = restored_dir.join("big.sqlite");
    let child = command(
        &proxied,
        &["restore", "big", "--to-sqlite", target.to_str().unwrap()],
    )
    .spawn()
    .unwrap();
    proxy.wait_delivered(2 << 20).await;
    proxy.stop();
    let output = finish(child, &bed.secrets()).await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("from storage failed"),
        "not reported as an outage: {err}"
    );
    assert!(
        !err.contains("damaged"),
        "an outage reported as damage: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(&restored_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "the failed restore left files behind: {left:?}"
    );
}

/// Proves a store answering `503 SlowDown` to its first requests is retried into a backup that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_for_a_while_is_retried_into_a_success() {
    let (bed, _proxy, direct, _proxied, before) =
        bed_with_previous_backup(ProxyOptions::default()).await;
    bed.s3.inject_errors("*", S3ErrorCode::SlowDown, 2);
    let output = run(&direct, &["backup", "blog"], &bed.secrets()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let listed = ids(&list_json(&direct, &bed.secrets()).await);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let verify = run(&direct, &["verify", "--all", "blog"], &bed.secrets()).await;
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(before.iter().all(|id| listed.contains(id)));
}

/// Proves a store that answers `503 SlowDown` to every upload makes a bounded number of attempts, then
/// fails cleanly: exit 1, nothing new listed, no upload left open, the previous backup intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_for_good_fails_after_bounded_attempts() {
    let (bed, _proxy, direct, _proxied, before) =
        bed_with_previous_backup(ProxyOptions::default()).await;
    let puts_before = bed.s3.requests("PutObject");
    bed.s3
        .inject_errors("PutObject", S3ErrorCode::SlowDown, 1000);
    let output = run(&direct, &["backup", "blog"], &bed.secrets()).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let attempts = bed.s3.requests("PutObject") - puts_before;
    assert!(
        (2..=8).contains(&attempts),
        "{attempts} PutObject attempts: not a bounded retry"
    );
    bed.s3.inject_errors("PutObject", S3ErrorCode::SlowDown, 0);
    assert_eq!(ids(&list_json(&direct, &bed.secrets()).await), before);
    assert_eq!(bed.s3.open_multipart_uploads(), 0);
    previous_untouched(&bed, &direct, &before).await;
}
