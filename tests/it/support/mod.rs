//! Shared helpers for integration tests: a real S3 server in process (s3s + s3s-fs over HTTP on
//! 127.0.0.1:0), the Garage store that `.ci/run` starts (from `D1VAULT_TEST_S3_*` variables), and body
//! readers that fail or stall on purpose.
//!
//! Use from a test file with `mod support;`. Not every test file uses every helper.
#![allow(dead_code)]

pub mod env;
pub mod fixture;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use d1vault::config::{S3Config, StorageConfig};
use d1vault::secret::Secret;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Access key id the in-process server accepts.
pub const TEST_ACCESS_KEY_ID: &str = "D1VAULTTESTKEY";
/// Secret key the in-process server accepts.
pub const TEST_SECRET_ACCESS_KEY: &str = "d1vault-test-secret-do-not-use";
/// Part size every test configuration uses: S3's minimum, so multipart is reachable with small bodies.
pub const TEST_PART_SIZE: usize = 5 * 1024 * 1024;

/// An in-process S3 server (s3s-fs) with one bucket, serving on a loopback port until dropped.
///
/// s3s-fs 0.14 supports PutObject, GetObject, DeleteObject, HeadBucket, ListObjectsV2 (with pagination)
/// and multipart create/upload/complete/abort, but not ListMultipartUploads: use
/// [`TestS3::open_multipart_uploads`] to see unfinished uploads, and Garage for `abort_stale_uploads`.
pub struct TestS3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created at start (`d1-backups`).
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// s3s-fs's root directory: one sub-directory per bucket, objects as plain files.
    pub dir: tempfile::TempDir,
    faults: Arc<Faults>,
    /// The accept loop; it owns every connection task, so aborting it cuts them all.
    server: JoinHandle<()>,
}

/// Injected failures and per-operation request counts, consulted by the server before each request.
#[derive(Default)]
struct Faults {
    /// Operation name (`PutObject`, `UploadPart`, ... or `*`) -> error code and how many requests to fail.
    pending: Mutex<HashMap<String, (s3s::S3ErrorCode, usize)>>,
    /// Operation name -> requests seen (failed ones included).
    seen: Mutex<HashMap<String, usize>>,
}

/// The server's access hook, which is where s3s lets a test fail a request before it runs.
struct FaultHook(Arc<Faults>);

#[async_trait::async_trait]
impl s3s::access::S3Access for FaultHook {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let op = cx.s3_op().name().to_string();
        *self.0.seen.lock().unwrap().entry(op.clone()).or_default() += 1;
        let mut pending = self.0.pending.lock().unwrap();
        for name in [op.as_str(), "*"] {
            if let Some((code, left)) = pending.get_mut(name)
                && *left > 0
            {
                *left -= 1;
                return Err(s3s::S3Error::with_message(
                    code.clone(),
                    "injected by the test server",
                ));
            }
        }
        // What s3s does without an access hook: signed requests only.
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3s::S3Error::new(s3s::S3ErrorCode::AccessDenied)),
        }
    }
}

/// Starts an in-process S3 server with bucket `d1-backups` and the fixed test credentials.
pub async fn start_s3() -> TestS3 {
    let dir = tempfile::tempdir().expect("temporary directory for s3s-fs");
    let bucket = "d1-backups".to_string();
    // An s3s-fs bucket is a directory under its root.
    std::fs::create_dir(dir.path().join(&bucket)).expect("create the test bucket");
    let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs root");
    let faults = Arc::new(Faults::default());
    let service = {
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            TEST_ACCESS_KEY_ID,
            TEST_SECRET_ACCESS_KEY,
        ));
        builder.set_access(FaultHook(faults.clone()));
        builder.build()
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the S3 test server");
    let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
    let server = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        // Dropped with this task, which aborts every open connection: `TestS3::stop` is a hard outage.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            connections.spawn(async move {
                let _ = conn.await;
            });
        }
    });
    TestS3 {
        endpoint,
        bucket,
        access_key_id: TEST_ACCESS_KEY_ID.to_string(),
        secret_access_key: TEST_SECRET_ACCESS_KEY.to_string(),
        dir,
        faults,
        server,
    }
}

impl TestS3 {
    /// A configuration for this server: path style, region `us-east-1`, 5 MiB parts, 2 parts in flight.
    pub fn s3_config(&self, prefix: &str) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_string(),
            force_path_style: true,
            access_key_id: Some(Secret::new(&self.access_key_id)),
            secret_access_key: Some(Secret::new(&self.secret_access_key)),
            part_size: TEST_PART_SIZE,
            max_parts_in_flight: 2,
        }
    }

    /// [`Self::s3_config`] wrapped as the `[storage]` section.
    pub fn storage_config(&self, prefix: &str) -> StorageConfig {
        StorageConfig::S3(self.s3_config(prefix))
    }

    /// Multipart uploads started and neither completed nor aborted (s3s-fs keeps one
    /// `.upload-<id>.json` per open upload in its root).
    pub fn open_multipart_uploads(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .expect("read the s3s-fs root")
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with(".upload-") && name.ends_with(".json")
            })
            .count()
    }

    /// Waits (bounded, polling) until no multipart upload is open, e.g. after a dropped put whose abort
    /// runs in a spawned task; returns how many are still open when the wait gives up.
    pub async fn wait_for_no_open_uploads(&self) -> usize {
        for _ in 0..200 {
            if self.open_multipart_uploads() == 0 {
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.open_multipart_uploads()
    }

    /// Where s3s-fs keeps object `key` on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.path().join(&self.bucket).join(key)
    }
}

impl TestS3 {
    /// Makes the next `count` requests for `operation` (an S3 operation name such as `PutObject`,
    /// `UploadPart`, `CompleteMultipartUpload`, `ListObjectsV2`, or `*` for any) fail with `code`, e.g.
    /// `S3ErrorCode::SlowDown` (503) or `S3ErrorCode::InternalError` (500). The request body is not read.
    pub fn inject_errors(&self, operation: &str, code: s3s::S3ErrorCode, count: usize) {
        self.faults
            .pending
            .lock()
            .unwrap()
            .insert(operation.to_string(), (code, count));
    }

    /// How many requests for `operation` (or `*`: all) reached the server, injected failures included.
    pub fn requests(&self, operation: &str) -> usize {
        let seen = self.faults.seen.lock().unwrap();
        if operation == "*" {
            seen.values().sum()
        } else {
            seen.get(operation).copied().unwrap_or(0)
        }
    }

    /// Stops the server at once: the listener closes (later connections are refused) and open
    /// connections are cut mid-request, like a crashed or unplugged store.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A real external S3 store (Garage in `.ci/run`) described by `D1VAULT_TEST_S3_ENDPOINT`, `_BUCKET`,
/// `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY` and `_REGION` (`scripts/garage-env start DIR` writes them).
#[derive(Debug, Clone)]
pub struct ExternalS3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// The external store from the environment, or `None` (after printing why) so the caller can skip.
pub fn external_s3(test: &str) -> Option<ExternalS3> {
    let var = |name: &str| std::env::var(format!("D1VAULT_TEST_S3_{name}")).ok();
    match (
        var("ENDPOINT"),
        var("BUCKET"),
        var("ACCESS_KEY_ID"),
        var("SECRET_ACCESS_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(access_key_id), Some(secret_access_key)) => {
            Some(ExternalS3 {
                endpoint,
                bucket,
                access_key_id,
                secret_access_key,
                region: var("REGION").unwrap_or_else(|| "garage".to_string()),
            })
        }
        _ => {
            eprintln!(
                "skipping {test}: D1VAULT_TEST_S3_* not set (run `scripts/garage-env start DIR` and source DIR/env)"
            );
            None
        }
    }
}

impl ExternalS3 {
    /// A configuration for this store: path style, 5 MiB parts, 2 parts in flight.
    pub fn s3_config(&self, prefix: &str) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
            endpoint: Some(self.endpoint.clone()),
            region: self.region.clone(),
            force_path_style: true,
            access_key_id: Some(Secret::new(&self.access_key_id)),
            secret_access_key: Some(Secret::new(&self.secret_access_key)),
            part_size: TEST_PART_SIZE,
            max_parts_in_flight: 2,
        }
    }
}

/// moto's S3 server (`moto_server -H 127.0.0.1 -p PORT`; `scripts/test-all` starts one) at
/// `D1VAULT_TEST_MOTO_ENDPOINT`, with bucket `d1-backups` created if missing; `None` (after printing why)
/// when the variable is not set. Unlike Garage, moto answers a second `If-None-Match: *` write with 412,
/// as AWS S3 and R2 do, so exclusive creates are exercised the way production stores see them.
pub async fn moto_s3(test: &str) -> Option<ExternalS3> {
    let Ok(endpoint) = std::env::var("D1VAULT_TEST_MOTO_ENDPOINT") else {
        eprintln!(
            "skipping {test}: D1VAULT_TEST_MOTO_ENDPOINT not set (start `moto_server -H 127.0.0.1 -p PORT`)"
        );
        return None;
    };
    let moto = ExternalS3 {
        endpoint,
        bucket: "d1-backups".to_string(),
        access_key_id: "testing".to_string(),
        secret_access_key: "testing".to_string(),
        region: "us-east-1".to_string(),
    };
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(aws_sdk_s3::config::Region::new(moto.region.clone()))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &moto.access_key_id,
            &moto.secret_access_key,
            None,
            None,
            "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    if client
        .head_bucket()
        .bucket(&moto.bucket)
        .send()
        .await
        .is_err()
    {
        // Two tests may race to create it: whoever loses finds it there.
        let _ = client.create_bucket().bucket(&moto.bucket).send().await;
        client
            .head_bucket()
            .bucket(&moto.bucket)
            .send()
            .await
            .expect("the moto bucket exists");
    }
    Some(moto)
}

/// A prefix no other test run uses, for tests that share a long-lived bucket.
pub fn unique_prefix(name: &str) -> String {
    format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// An `http://127.0.0.1:PORT` URL where nothing listens: bound, port taken, listener dropped.
pub fn unreachable_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Deterministic, poorly compressible test bytes (a simple LCG), so round trips compare real content.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A body that yields `data` and then fails with an I/O error instead of reaching EOF: a download that
/// broke half-way.
pub struct FailingReader {
    data: Vec<u8>,
    pos: usize,
}

impl FailingReader {
    /// Yields `data`, then the error.
    pub fn new(data: Vec<u8>) -> Self {
        FailingReader { data, pos: 0 }
    }
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.data.len() {
            let n = buf.remaining().min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "test body failed half-way",
            )))
        }
    }
}

/// A body that yields `data` and then never produces another byte (a stalled download), counting how far
/// the consumer read, so a test can drop the consuming future at a known point.
pub struct StallingReader {
    data: Vec<u8>,
    pos: usize,
    /// Set when every byte of `data` has been handed out.
    pub drained: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingReader {
    /// Yields `data`, then stays pending forever.
    pub fn new(data: Vec<u8>) -> Self {
        StallingReader {
            data,
            pos: 0,
            drained: Default::default(),
        }
    }
}

impl AsyncRead for StallingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.data.len() {
            let n = buf.remaining().min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        } else {
            self.drained
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // Never woken: the test drops the future instead.
            Poll::Pending
        }
    }
}

/// Every file under `dir`, recursively, as paths relative to it (hidden files included), for asserting
/// that nothing was left behind.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}
