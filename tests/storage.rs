//! The storage contract, run against every implementation: the filesystem, an in-process S3 server
//! (s3s-fs over HTTP), and Garage when `D1VAULT_TEST_S3_*` is set (`.ci/run` sets it). Then the failure
//! cases specific to each kind of store.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use d1vault::storage::{FilesystemStorage, S3Storage, Storage, StorageErrorKind};
use support::{ExternalS3, FailingReader, StallingReader, TestS3, test_bytes};
use tokio::io::AsyncReadExt;

/// One store under test and what is needed to look behind its back.
struct Env {
    store: Arc<dyn Storage>,
    /// Every key a test writes starts with this (unique per test on a shared Garage bucket).
    prefix: String,
    target: Target,
}

enum Target {
    Fs(tempfile::TempDir),
    S3s(TestS3),
    Garage(ExternalS3),
}

impl Env {
    async fn fs() -> Env {
        let dir = tempfile::tempdir().unwrap();
        Env {
            store: Arc::new(FilesystemStorage::new(dir.path())),
            prefix: "prod".to_string(),
            target: Target::Fs(dir),
        }
    }

    async fn s3s() -> Env {
        let server = support::start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        Env {
            store: Arc::new(store),
            prefix: "prod".to_string(),
            target: Target::S3s(server),
        }
    }

    async fn garage(test: &str) -> Option<Env> {
        let garage = support::external_s3(test)?;
        let prefix = support::unique_prefix(test);
        let store = S3Storage::new(&garage.s3_config(&prefix)).await.unwrap();
        Some(Env {
            store: Arc::new(store),
            prefix,
            target: Target::Garage(garage),
        })
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    /// Unfinished uploads under the prefix as the store itself sees them: filesystem temporary files,
    /// s3s-fs upload records, Garage's ListMultipartUploads.
    async fn open_uploads(&self) -> usize {
        match &self.target {
            Target::Fs(dir) => support::files_under(dir.path())
                .iter()
                .filter(|f| f.contains(".d1vault-tmp-"))
                .count(),
            Target::S3s(server) => server.open_multipart_uploads(),
            Target::Garage(garage) => garage_open_uploads(garage, &self.prefix).await,
        }
    }

    /// Waits, polling with a bound, until no upload is open (an abort spawned by a dropped future runs
    /// in the background); returns how many remain.
    async fn wait_for_no_open_uploads(&self) -> usize {
        for _ in 0..200 {
            if self.open_uploads().await == 0 {
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.open_uploads().await
    }
}

/// A raw SDK client for Garage, to look at multipart uploads without going through the code under test.
async fn garage_client(garage: &ExternalS3) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&garage.endpoint)
        .region(aws_sdk_s3::config::Region::new(garage.region.clone()))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &garage.access_key_id,
            &garage.secret_access_key,
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn garage_open_uploads(garage: &ExternalS3, prefix: &str) -> usize {
    let output = garage_client(garage)
        .await
        .list_multipart_uploads()
        .bucket(&garage.bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListMultipartUploads on Garage");
    output.uploads().len()
}

async fn read_all(store: &dyn Storage, key: &str) -> Vec<u8> {
    let mut reader = store.get_stream(key).await.unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    out
}

async fn sorted_keys(store: &dyn Storage, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

/// The contract cases, each a function of the store under test.
mod cases {
    use super::*;

    /// A small streamed object and a put_bytes object read back byte for byte, with sizes in the listing.
    pub async fn small_round_trip(env: &Env) {
        let store = &*env.store;
        let data = test_bytes(100_000, 1);
        let key = env.key("blog/20261129T030012Z/dump.sql.zst");
        let stored = store.put_stream(&key, &mut data.as_slice()).await.unwrap();
        assert_eq!(stored, data.len() as u64);
        assert_eq!(read_all(store, &key).await, data);

        let manifest = env.key("blog/20261129T030012Z/manifest.json");
        store.put_bytes(&manifest, b"{}".to_vec()).await.unwrap();
        assert_eq!(store.get_bytes(&manifest).await.unwrap(), b"{}");

        let listed = store.list(&env.key("blog/")).await.unwrap();
        let dump = listed.iter().find(|o| o.key == key).expect("dump listed");
        assert_eq!(dump.size, data.len() as u64);
        assert!(dump.last_modified.is_some());
        assert_eq!(listed.len(), 2, "{listed:?}");
    }

    /// A 12 MiB body (three 5 MiB parts on S3, multipart) arrives intact, and nothing stays open.
    pub async fn multipart_round_trip(env: &Env) {
        let store = &*env.store;
        let data = test_bytes(12 * 1024 * 1024 + 123, 2);
        let key = env.key("big/1/dump.sql");
        let stored = store.put_stream(&key, &mut data.as_slice()).await.unwrap();
        assert_eq!(stored, data.len() as u64);
        let back = read_all(store, &key).await;
        assert_eq!(back.len(), data.len());
        assert!(back == data, "content differs after a multipart round trip");
        assert_eq!(env.open_uploads().await, 0);
    }

    /// A body of exactly one part is stored whole (the look-ahead decides single put versus multipart).
    pub async fn exact_part_size_round_trip(env: &Env) {
        let store = &*env.store;
        let data = test_bytes(support::TEST_PART_SIZE, 3);
        let key = env.key("exact/dump.sql");
        assert_eq!(
            store.put_stream(&key, &mut data.as_slice()).await.unwrap(),
            data.len() as u64
        );
        assert!(read_all(store, &key).await == data);
        let empty = env.key("exact/empty");
        assert_eq!(store.put_stream(&empty, &mut &b""[..]).await.unwrap(), 0);
        assert!(read_all(store, &empty).await.is_empty());
    }

    /// Listing is recursive, matches on the key's string prefix (`db` also matches `db2`), and returns keys
    /// with `/` separators; an unknown prefix lists nothing.
    pub async fn list_by_prefix(env: &Env) {
        let store = &*env.store;
        for rel in [
            "db/a/dump.sql",
            "db/a/manifest.json",
            "db/b/x/y/deep",
            "db2/a/dump.sql",
            "other/z",
        ] {
            store
                .put_bytes(&env.key(rel), rel.as_bytes().to_vec())
                .await
                .unwrap();
        }
        assert_eq!(
            sorted_keys(store, &env.key("db/")).await,
            ["db/a/dump.sql", "db/a/manifest.json", "db/b/x/y/deep"].map(|r| env.key(r))
        );
        assert_eq!(
            sorted_keys(store, &env.key("db")).await,
            [
                "db/a/dump.sql",
                "db/a/manifest.json",
                "db/b/x/y/deep",
                "db2/a/dump.sql"
            ]
            .map(|r| env.key(r))
        );
        assert_eq!(
            sorted_keys(store, &env.key("db/a/m")).await,
            [env.key("db/a/manifest.json")]
        );
        assert_eq!(sorted_keys(store, &env.prefix).await.len(), 5);
        assert!(sorted_keys(store, &env.key("nothing/")).await.is_empty());
    }

    /// Delete removes one object, leaves its neighbours, and deleting a missing key succeeds; reading a
    /// deleted key is NotFound.
    pub async fn delete_and_not_found(env: &Env) {
        let store = &*env.store;
        let (a, b) = (env.key("db/1/dump.sql"), env.key("db/1/manifest.json"));
        store.put_bytes(&a, b"a".to_vec()).await.unwrap();
        store.put_bytes(&b, b"b".to_vec()).await.unwrap();
        store.delete(&a).await.unwrap();
        assert_eq!(sorted_keys(store, &env.prefix).await, [b.clone()]);
        store.delete(&a).await.unwrap();
        store.delete(&env.key("never/existed")).await.unwrap();
        let err = store
            .get_stream(&a)
            .await
            .err()
            .expect("deleted key readable");
        assert_eq!(err.kind, StorageErrorKind::NotFound, "{err}");
        store.delete(&b).await.unwrap();
        assert!(sorted_keys(store, &env.prefix).await.is_empty());
    }

    /// A body that fails half-way (small, and after several parts) leaves no object and no open upload,
    /// and the error says what failed.
    pub async fn failing_body_leaves_nothing(env: &Env) {
        let store = &*env.store;
        for (name, len) in [("small", 1000), ("large", 11 * 1024 * 1024)] {
            let key = env.key(&format!("fail/{name}/dump.sql"));
            let mut body = FailingReader::new(test_bytes(len, 4));
            let err = store.put_stream(&key, &mut body).await.unwrap_err();
            assert!(err.message.contains("test body failed half-way"), "{err}");
            assert!(err.message.contains(&key), "{err}");
        }
        assert!(sorted_keys(store, &env.prefix).await.is_empty());
        assert_eq!(
            env.wait_for_no_open_uploads().await,
            0,
            "an upload stayed open"
        );
    }

    /// Dropping a put future mid-upload (two parts sent, the body stalled) leaves no object and, once the
    /// spawned abort ran, no open upload.
    pub async fn dropped_put_leaves_nothing(env: &Env) {
        let store = &*env.store;
        let key = env.key("dropped/dump.sql");
        let mut body = StallingReader::new(test_bytes(11 * 1024 * 1024, 5));
        let drained = body.drained.clone();
        {
            let put = store.put_stream(&key, &mut body);
            tokio::pin!(put);
            let mut stalled = false;
            for _ in 0..1000 {
                tokio::select! {
                    result = &mut put => panic!("put finished with a stalled body: {result:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
                if drained.load(Ordering::SeqCst) {
                    stalled = true;
                    break;
                }
            }
            assert!(stalled, "the put never consumed the body");
            // Let the first parts get going before the drop.
            tokio::select! {
                result = &mut put => panic!("put finished with a stalled body: {result:?}"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        assert_eq!(
            env.wait_for_no_open_uploads().await,
            0,
            "an upload stayed open"
        );
        assert!(sorted_keys(store, &env.prefix).await.is_empty());
    }

    /// A listing longer than one page comes back whole.
    pub async fn listing_paginates(env: &Env) {
        // The filesystem has no pages: the same case with more than S3's 1,000 keys per page.
        let count = match env.target {
            Target::Fs(_) => 1100,
            _ => 7,
        };
        let store: Arc<dyn Storage> = match &env.target {
            Target::Fs(_) => env.store.clone(),
            Target::S3s(server) => Arc::new(
                S3Storage::new(&server.s3_config(&env.prefix))
                    .await
                    .unwrap()
                    .with_list_page_size(2),
            ),
            Target::Garage(garage) => Arc::new(
                S3Storage::new(&garage.s3_config(&env.prefix))
                    .await
                    .unwrap()
                    .with_list_page_size(2),
            ),
        };
        for i in 0..count {
            store
                .put_bytes(
                    &env.key(&format!("db/{i:05}/manifest.json")),
                    vec![b'x'; i % 7],
                )
                .await
                .unwrap();
        }
        let keys = sorted_keys(&*store, &env.key("db/")).await;
        let expected: Vec<String> = (0..count)
            .map(|i| env.key(&format!("db/{i:05}/manifest.json")))
            .collect();
        assert_eq!(keys, expected);
    }
}

/// Runs each named case against the filesystem, s3s, and Garage when configured.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod filesystem {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    cases::$case(&Env::fs().await).await;
                }
            )*
        }
        mod s3s {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    cases::$case(&Env::s3s().await).await;
                }
            )*
        }
        mod garage {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(env) = Env::garage(stringify!($case)).await else { return };
                    cases::$case(&env).await;
                }
            )*
        }
    };
}

contract!(
    small_round_trip,
    multipart_round_trip,
    exact_part_size_round_trip,
    list_by_prefix,
    delete_and_not_found,
    failing_body_leaves_nothing,
    dropped_put_leaves_nothing,
    listing_paginates,
);
