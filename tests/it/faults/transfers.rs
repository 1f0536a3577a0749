//! Transfers that end early or go silent (issue 14): a download without a length is never a backup, and no
//! download or upload stream waits forever. Real parts only: the d1-emulator's download faults, the
//! in-process S3 server behind the TCP proxy that stalls or holds connections, and a FIFO as a hung file.

use std::time::{Duration, Instant};

use d1vault::config::{self, StorageConfig};
use d1vault::pipeline::run_backup;
use d1vault::restore::{Progress, RestoreError, sqlite};
use d1vault::storage::{FilesystemStorage, S3Storage, Storage, StorageErrorKind};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::support::bed::Bed;
use crate::support::fixture::create_big_db;
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::run::{after_backup_id, ids, list_json, run, stderr};

/// Proves through the binary that a download that stops after a complete statement without announcing
/// its length (chunked, then a clean end) fails `backup` with exit 1, names the cause, lists nothing new,
/// and leaves the earlier backup verifying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_download_without_length_fails_backup_with_exit_1() {
    let bed = Bed::with_emulator(&["alpha"]).await;
    let secrets = bed.secrets();
    let path = bed.write_s3_config(
        "short",
        &bed.s3.endpoint,
        "faults",
        "[[database]]\nname = \"alpha\"\ncompression = \"zstd\"\n",
    );
    let good = run(&path, &["backup"], &secrets).await;
    assert!(good.status.success(), "{}", stderr(&good));
    let before = ids(&list_json(&path, &secrets).await);
    assert_eq!(before.len(), 1);
    after_backup_id(&before[0]).await;

    for fault in ["chunked_short", "close_short"] {
        bed.set_faults(json!({ "download": fault })).await;
        // --force: the database is unchanged since the good backup, and this test is about the download.
        let short = run(&path, &["backup", "--force"], &secrets).await;
        assert_eq!(short.status.code(), Some(1), "{fault}: {}", stderr(&short));
        assert!(
            stderr(&short).contains("Content-Length"),
            "{fault}: {}",
            stderr(&short)
        );
        assert_eq!(ids(&list_json(&path, &secrets).await), before, "{fault}");
    }
    assert_eq!(bed.s3.open_multipart_uploads(), 0);
    let verify = run(&path, &["verify", "--all"], &secrets).await;
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// An S3 storage for `bed`'s server reached through `endpoint`, with short timeouts.
async fn s3_through(
    bed: &Bed,
    endpoint: &str,
    read_idle: Duration,
    attempt: Duration,
) -> S3Storage {
    let mut config = bed.s3.s3_config("faults");
    config.endpoint = Some(endpoint.to_string());
    S3Storage::new(&config)
        .await
        .unwrap()
        .with_timeouts(read_idle, attempt)
}

/// Proves that a store which sends part of an object and goes silent fails the read within a bounded time
/// as a retryable error naming the stall: a plain read (`get_bytes`) and a restore into SQLite (reported
/// as an outage, not as a damaged backup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stalls_mid_object_fails_reads_as_retryable() {
    let bed = Bed::start().await;
    create_big_db(&bed.dir.path().join("big.sqlite"), 1);
    let path = bed.write_s3_config(
        "direct",
        &bed.s3.endpoint,
        "faults",
        &bed.sqlite_database("big", "big.sqlite", "none"),
    );
    let config = config::load(&path).unwrap();
    let sources = bed.sources(&config).await;
    let manifest = run_backup(&config.databases[0], &sources, chrono::Utc::now())
        .await
        .unwrap();
    assert!(manifest.dump.size > 1 << 20);

    let proxy = Proxy::start(
        &bed.s3.endpoint,
        ProxyOptions {
            stall_downstream_after: Some(256 * 1024),
            ..Default::default()
        },
    )
    .await;
    let stalling = s3_through(
        &bed,
        &proxy.endpoint,
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .await;

    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        stalling.get_bytes(&manifest.dump.key),
    )
    .await
    .expect("the stalled read hung")
    .expect_err("a stalled read must fail");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, StorageErrorKind::Retryable, "{err}");
    assert!(err.message.contains("stalled"), "{err}");

    let target = bed.dir.path().join("restored").join("big.sqlite");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        sqlite::load_into_new_file(&stalling, &manifest, None, &target, &mut Progress::hidden()),
    )
    .await
    .expect("the stalled restore hung")
    .expect_err("a restore from a stalled store must fail");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let RestoreError::Storage(storage_err) = &err else {
        panic!("a stall reported as something else than an outage: {err}");
    };
    assert!(storage_err.is_retryable(), "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");
}

/// Proves that an upload to a store that accepts the connection and never answers fails within a bounded
/// time (the attempt timeout, a few attempts) as a retryable error, leaving nothing listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_store_that_never_answers_fails_in_bounded_time() {
    let bed = Bed::start().await;
    let proxy = Proxy::start(
        &bed.s3.endpoint,
        ProxyOptions {
            hold_on: Some(b"PUT ".to_vec()),
            ..Default::default()
        },
    )
    .await;
    let silent = s3_through(
        &bed,
        &proxy.endpoint,
        Duration::from_secs(10),
        Duration::from_millis(500),
    )
    .await;
    let mut body: &[u8] = b"PRAGMA defer_foreign_keys=TRUE;\n";
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        silent.put_stream("faults/x/20260101T000000Z/dump.sql", &mut body),
    )
    .await
    .expect("the unanswered upload hung")
    .expect_err("an unanswered upload must fail");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err}");
    let direct = d1vault::storage::open(&StorageConfig::S3(bed.s3.s3_config("faults")))
        .await
        .unwrap();
    assert!(direct.list("faults/").await.unwrap().is_empty());
}

/// Proves that a filesystem read that stops delivering (a FIFO standing in for a hung mount) fails at the
/// read idle timeout with a retryable error instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_read_that_hangs_fails_at_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("dump.sql");
    let made = std::process::Command::new("mkfifo")
        .arg(&object)
        .status()
        .unwrap();
    assert!(made.success());
    // The writer sends a little, then holds the FIFO open without writing until the test is done.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let object = object.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut fifo = std::fs::OpenOptions::new()
                .write(true)
                .open(&object)
                .unwrap();
            fifo.write_all(b"PRAGMA").unwrap();
            let _ = done_rx.recv();
        })
    };
    let storage =
        FilesystemStorage::new(dir.path()).with_read_idle_timeout(Duration::from_millis(300));
    let mut reader = storage.get_stream("dump.sql").await.unwrap();
    let mut buf = Vec::new();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut buf))
        .await
        .expect("the hung read waited for ever")
        .expect_err("a hung read must fail");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");
    assert_eq!(buf, b"PRAGMA");
    drop(done_tx);
    writer.join().unwrap();
}
