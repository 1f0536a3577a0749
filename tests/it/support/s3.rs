//! S3 stores for the tests: a real S3 server in process (s3s + s3s-fs over HTTP on 127.0.0.1:0) that can
//! fail requests on purpose, the Garage store that `.ci/run` starts and moto's server (both described by
//! environment variables, skipped when unset), and the configuration and TOML that reach each of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use d1vault::config::{S3Config, StorageConfig};
use d1vault::secret::Secret;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Access key id the in-process server accepts.
pub(crate) const TEST_ACCESS_KEY_ID: &str = "D1VAULTTESTKEY";
/// Secret key the in-process server accepts.
pub(crate) const TEST_SECRET_ACCESS_KEY: &str = "d1vault-test-secret-do-not-use";
/// Part size every test configuration uses: S3's minimum, so multipart is reachable with small bodies.
pub(crate) const TEST_PART_SIZE: usize = 5 * 1024 * 1024;

/// An in-process S3 server (s3s-fs) with one bucket, serving on a loopback port until dropped.
///
/// s3s-fs 0.14 supports PutObject, GetObject, DeleteObject, HeadBucket, ListObjectsV2 (with pagination)
/// and multipart create/upload/complete/abort, but not ListMultipartUploads: use
/// [`TestS3::open_multipart_uploads`] to see unfinished uploads, and Garage for `abort_stale_uploads`.
pub(crate) struct TestS3 {
    /// `http://127.0.0.1:PORT`.
    pub(crate) endpoint: String,
    /// The bucket created at start (`d1-backups`).
    pub(crate) bucket: String,
    /// [`TEST_ACCESS_KEY_ID`].
    pub(crate) access_key_id: String,
    /// [`TEST_SECRET_ACCESS_KEY`].
    pub(crate) secret_access_key: String,
    /// s3s-fs's root directory: one sub-directory per bucket, objects as plain files.
    pub(crate) dir: tempfile::TempDir,
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
pub(crate) async fn start_s3() -> TestS3 {
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
    /// This server as a store reached by address and keys (region `us-east-1`).
    pub(crate) fn store(&self) -> S3Store {
        S3Store {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            region: "us-east-1".to_string(),
        }
    }

    /// A configuration for this server: path style, 5 MiB parts, 2 parts in flight.
    pub(crate) fn s3_config(&self, prefix: &str) -> S3Config {
        self.store().s3_config(prefix)
    }

    /// [`Self::s3_config`] wrapped as the `[storage]` section.
    pub(crate) fn storage_config(&self, prefix: &str) -> StorageConfig {
        StorageConfig::S3(self.s3_config(prefix))
    }

    /// Multipart uploads started and neither completed nor aborted (s3s-fs keeps one
    /// `.upload-<id>.json` per open upload in its root).
    pub(crate) fn open_multipart_uploads(&self) -> usize {
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
    pub(crate) async fn wait_for_no_open_uploads(&self) -> usize {
        for _ in 0..200 {
            if self.open_multipart_uploads() == 0 {
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.open_multipart_uploads()
    }

    /// Where s3s-fs keeps object `key` on disk.
    pub(crate) fn object_path(&self, key: &str) -> PathBuf {
        self.dir.path().join(&self.bucket).join(key)
    }
}

impl TestS3 {
    /// Makes the next `count` requests for `operation` (an S3 operation name such as `PutObject`,
    /// `UploadPart`, `CompleteMultipartUpload`, `ListObjectsV2`, or `*` for any) fail with `code`, e.g.
    /// `S3ErrorCode::SlowDown` (503) or `S3ErrorCode::InternalError` (500). The request body is not read.
    pub(crate) fn inject_errors(&self, operation: &str, code: s3s::S3ErrorCode, count: usize) {
        self.faults
            .pending
            .lock()
            .unwrap()
            .insert(operation.to_string(), (code, count));
    }

    /// How many requests for `operation` (or `*`: all) reached the server, injected failures included.
    pub(crate) fn requests(&self, operation: &str) -> usize {
        let seen = self.faults.seen.lock().unwrap();
        if operation == "*" {
            seen.values().sum()
        } else {
            seen.get(operation).copied().unwrap_or(0)
        }
    }

    /// Stops the server at once: the listener closes (later connections are refused) and open
    /// connections are cut mid-request, like a crashed or unplugged store.
    pub(crate) fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An S3 store reached by address and keys: the in-process server ([`TestS3::store`]), or a real
/// external one, Garage in `.ci/run` (described by `D1VAULT_TEST_S3_ENDPOINT`, `_BUCKET`,
/// `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY` and `_REGION`; `scripts/garage-env start DIR` writes them) or moto.
#[derive(Debug, Clone)]
pub(crate) struct S3Store {
    /// `http://HOST:PORT`.
    pub(crate) endpoint: String,
    /// The bucket every test of this store writes to.
    pub(crate) bucket: String,
    /// Access key id the store accepts.
    pub(crate) access_key_id: String,
    /// Secret key the store accepts.
    pub(crate) secret_access_key: String,
    /// The region the store signs for.
    pub(crate) region: String,
}

/// The external store from the environment, or `None` (after printing why) so the caller can skip.
pub(crate) fn external_s3(test: &str) -> Option<S3Store> {
    let var = |name: &str| std::env::var(format!("D1VAULT_TEST_S3_{name}")).ok();
    match (
        var("ENDPOINT"),
        var("BUCKET"),
        var("ACCESS_KEY_ID"),
        var("SECRET_ACCESS_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(access_key_id), Some(secret_access_key)) => {
            Some(S3Store {
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

impl S3Store {
    /// A configuration for this store: path style, 5 MiB parts, 2 parts in flight.
    pub(crate) fn s3_config(&self, prefix: &str) -> S3Config {
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
            object_lock: None,
        }
    }

    /// The `[storage]` lines of a configuration file for this store with keys under `prefix`: path
    /// style, 5 MiB parts (S3's minimum, so multipart is reachable with small dumps) and one part in
    /// flight (so a proxy in front sees the parts in order).
    pub(crate) fn storage_toml(&self, prefix: &str) -> String {
        format!(
            "type = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
             force_path_style = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprefix = \"{prefix}\"\n\
             part_size = {TEST_PART_SIZE}\nmax_parts_in_flight = 1\n",
            self.bucket, self.endpoint, self.region, self.access_key_id, self.secret_access_key
        )
    }

    /// A raw SDK client for this store, to look behind the back of the code under test (multipart
    /// uploads, buckets).
    pub(crate) fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// moto's S3 server (`moto_server -H 127.0.0.1 -p PORT`; `scripts/test-all` starts one) at
/// `D1VAULT_TEST_MOTO_ENDPOINT`, with bucket `d1-backups` created if missing; `None` (after printing why)
/// when the variable is not set. Unlike Garage, moto answers a second `If-None-Match: *` write with 412,
/// as AWS S3 and R2 do, so exclusive creates are exercised the way production stores see them.
pub(crate) async fn moto_s3(test: &str) -> Option<S3Store> {
    let Ok(endpoint) = std::env::var("D1VAULT_TEST_MOTO_ENDPOINT") else {
        eprintln!(
            "skipping {test}: D1VAULT_TEST_MOTO_ENDPOINT not set (start `moto_server -H 127.0.0.1 -p PORT`)"
        );
        return None;
    };
    let moto = S3Store {
        endpoint,
        bucket: "d1-backups".to_string(),
        access_key_id: "testing".to_string(),
        secret_access_key: "testing".to_string(),
        region: "us-east-1".to_string(),
    };
    ensure_bucket(&moto, false).await;
    Some(moto)
}

/// Creates `store`'s bucket unless it exists (with Object Lock when `locked`), and checks it is there.
async fn ensure_bucket(store: &S3Store, locked: bool) {
    let client = store.client();
    if client
        .head_bucket()
        .bucket(&store.bucket)
        .send()
        .await
        .is_err()
    {
        // Two tests may race to create it: whoever loses finds it there.
        let _ = client
            .create_bucket()
            .bucket(&store.bucket)
            .set_object_lock_enabled_for_bucket(locked.then_some(true))
            .send()
            .await;
        client
            .head_bucket()
            .bucket(&store.bucket)
            .send()
            .await
            .expect("the moto bucket exists");
    }
}

/// moto's S3 server as [`moto_s3`], with bucket `d1-backups-locked` created with Object Lock enabled (and so
/// versioning), for `storage.object_lock`; moto enforces retention as AWS S3 does: a locked version cannot
/// be deleted, and a locked upload without a checksum is refused.
pub(crate) async fn moto_locked_s3(test: &str) -> Option<S3Store> {
    let mut moto = moto_s3(test).await?;
    moto.bucket = "d1-backups-locked".to_string();
    ensure_bucket(&moto, true).await;
    let lock = moto
        .client()
        .get_object_lock_configuration()
        .bucket(&moto.bucket)
        .send()
        .await
        .expect("the locked moto bucket has an Object Lock configuration");
    assert_eq!(
        lock.object_lock_configuration()
            .and_then(|c| c.object_lock_enabled()),
        Some(&aws_sdk_s3::types::ObjectLockEnabled::Enabled)
    );
    Some(moto)
}

/// A prefix no other test run uses, for tests that share a long-lived bucket.
pub(crate) fn unique_prefix(name: &str) -> String {
    format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// An `http://127.0.0.1:PORT` URL where nothing listens: bound, port taken, listener dropped.
pub(crate) fn unreachable_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
