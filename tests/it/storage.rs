//! The storage contract, run against every implementation: the filesystem, an in-process S3 server
//! (s3s-fs over HTTP), and Garage when `D1VAULT_TEST_S3_*` is set (`.ci/run` sets it). Then the failure
//! cases specific to each kind of store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::files::files_under;
use crate::support::fixture::test_bytes;
use crate::support::readers::BrokenBody;
use crate::support::s3::{
    S3Store, TEST_PART_SIZE, TEST_SECRET_ACCESS_KEY, TestS3, external_s3, moto_s3, start_s3,
    unique_prefix, unreachable_endpoint,
};
use d1vault::storage::{FilesystemStorage, S3Storage, Storage, StorageErrorKind};
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
    Garage(S3Store),
    /// moto's S3 server, which honours `If-None-Match: *` as AWS and R2 do (Garage does not).
    Moto(S3Store),
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
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        Env {
            store: Arc::new(store),
            prefix: "prod".to_string(),
            target: Target::S3s(server),
        }
    }

    async fn garage(test: &str) -> Option<Env> {
        let garage = external_s3(test)?;
        let prefix = unique_prefix(test);
        let store = S3Storage::new(&garage.s3_config(&prefix)).await.unwrap();
        Some(Env {
            store: Arc::new(store),
            prefix,
            target: Target::Garage(garage),
        })
    }

    async fn moto(test: &str) -> Option<Env> {
        let moto = moto_s3(test).await?;
        let prefix = unique_prefix(test);
        let store = S3Storage::new(&moto.s3_config(&prefix)).await.unwrap();
        Some(Env {
            store: Arc::new(store),
            prefix,
            target: Target::Moto(moto),
        })
    }

    /// Whether a completed multipart upload can be read back here: moto 5.2 answers
    /// CompleteMultipartUpload with a body aws-sdk-s3 takes for an error (HTTP 200, no code), a mismatch
    /// between the two unrelated to d1vault, so multipart round trips are left to s3s and Garage there.
    fn completes_multipart_uploads(&self) -> bool {
        !matches!(self.target, Target::Moto(_))
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    /// Unfinished uploads under the prefix as the store itself sees them: filesystem temporary files,
    /// s3s-fs upload records, Garage's ListMultipartUploads.
    async fn open_uploads(&self) -> usize {
        match &self.target {
            Target::Fs(dir) => files_under(dir.path())
                .iter()
                .filter(|f| f.contains(".d1vault-tmp-"))
                .count(),
            Target::S3s(server) => server.open_multipart_uploads(),
            Target::Garage(garage) | Target::Moto(garage) => {
                garage_open_uploads(garage, &self.prefix).await
            }
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

async fn garage_open_uploads(garage: &S3Store, prefix: &str) -> usize {
    let output = garage
        .client()
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
    pub(crate) async fn small_round_trip(env: &Env) {
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
    pub(crate) async fn multipart_round_trip(env: &Env) {
        if !env.completes_multipart_uploads() {
            return;
        }
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
    pub(crate) async fn exact_part_size_round_trip(env: &Env) {
        let store = &*env.store;
        let data = test_bytes(TEST_PART_SIZE, 3);
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
    pub(crate) async fn list_by_prefix(env: &Env) {
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
    pub(crate) async fn delete_and_not_found(env: &Env) {
        let store = &*env.store;
        let (a, b) = (env.key("db/1/dump.sql"), env.key("db/1/manifest.json"));
        store.put_bytes(&a, b"a".to_vec()).await.unwrap();
        store.put_bytes(&b, b"b".to_vec()).await.unwrap();
        store.delete(&a).await.unwrap();
        assert_eq!(sorted_keys(store, &env.prefix).await, [b.as_str()]);
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
    pub(crate) async fn failing_body_leaves_nothing(env: &Env) {
        let store = &*env.store;
        for (name, len) in [("small", 1000), ("large", 11 * 1024 * 1024)] {
            let key = env.key(&format!("fail/{name}/dump.sql"));
            let mut body = BrokenBody::failing(test_bytes(len, 4));
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
    pub(crate) async fn dropped_put_leaves_nothing(env: &Env) {
        let store = &*env.store;
        let key = env.key("dropped/dump.sql");
        let mut body = BrokenBody::stalling(test_bytes(11 * 1024 * 1024, 5));
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

    /// An exclusive create never replaces: a second create of the same key (single put and multipart)
    /// fails with AlreadyExists and leaves the first object as it was, with no upload left open and no
    /// probe object left behind; a plain put still replaces.
    pub(crate) async fn create_never_replaces(env: &Env) {
        let store = &*env.store;
        let small = env.key("db/20261129T030012Z/manifest.json");
        store.create_bytes(&small, b"first".to_vec()).await.unwrap();
        let err = store
            .create_bytes(&small, b"second".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::AlreadyExists, "{err}");
        assert!(err.message.contains(&small), "{err}");
        let err = store
            .create_stream(&small, &mut &b"third"[..])
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::AlreadyExists, "{err}");
        assert_eq!(store.get_bytes(&small).await.unwrap(), b"first");
        if !env.completes_multipart_uploads() {
            return;
        }

        let big = env.key("db/20261129T030012Z/dump.sql.zst");
        let data = test_bytes(11 * 1024 * 1024, 21);
        assert_eq!(
            store
                .create_stream(&big, &mut data.as_slice())
                .await
                .unwrap(),
            data.len() as u64
        );
        let other = test_bytes(11 * 1024 * 1024, 22);
        let err = store
            .create_stream(&big, &mut other.as_slice())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::AlreadyExists, "{err}");
        assert!(
            read_all(store, &big).await == data,
            "the first dump was replaced"
        );
        assert_eq!(
            env.wait_for_no_open_uploads().await,
            0,
            "an upload stayed open"
        );
        assert_eq!(
            sorted_keys(store, &env.prefix).await,
            [big.clone(), small.clone()]
        );

        store.put_bytes(&small, b"replaced".to_vec()).await.unwrap();
        assert_eq!(store.get_bytes(&small).await.unwrap(), b"replaced");
    }

    /// A listing longer than one page comes back whole.
    pub(crate) async fn listing_paginates(env: &Env) {
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
            Target::Garage(garage) | Target::Moto(garage) => Arc::new(
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
        mod in_process_s3 {
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
        mod moto {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(env) = Env::moto(stringify!($case)).await else { return };
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
    create_never_replaces,
);

/// Writes `data` and calls `at_byte` once the consumer has read past `trigger` bytes: a failure injected
/// at a known point of an upload.
struct HookReader<F: FnMut() + Send + Unpin> {
    data: Vec<u8>,
    pos: usize,
    trigger: usize,
    hook: Option<F>,
}

impl<F: FnMut() + Send + Unpin> tokio::io::AsyncRead for HookReader<F> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos >= this.trigger
            && let Some(mut hook) = this.hook.take()
        {
            hook();
        }
        let n = buf.remaining().min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Failure cases of the filesystem store.
mod filesystem_failures {
    use super::*;

    #[tokio::test]
    async fn missing_root_fails_check_put_and_list_naming_the_path() {
        // Proves a missing backup directory is reported up front with its path, and never created by a put.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not-mounted").join("backups");
        let store = FilesystemStorage::new(&root);
        let err = store.check().await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Permanent);
        assert!(err.message.contains(&root.display().to_string()), "{err}");
        assert!(err.message.contains("does not exist"), "{err}");
        let err = store.put_bytes("a/b", b"x".to_vec()).await.unwrap_err();
        assert!(err.message.contains(&root.display().to_string()), "{err}");
        assert!(store.list("").await.is_err());
        assert!(!root.exists());
    }

    #[tokio::test]
    async fn a_root_deleted_under_a_running_store_is_never_recreated() {
        // Proves the rule "the root is never created": after the directory vanishes (deleted, or a volume
        // unmounted under a running daemon), check, put, create and list fail with a permanent error naming
        // it, even though its parent exists, and the directory does not reappear on the disk below.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backups");
        std::fs::create_dir(&root).unwrap();
        let store = FilesystemStorage::new(&root);
        store
            .put_bytes("prod/db/1/dump.sql", b"x".to_vec())
            .await
            .unwrap();
        std::fs::remove_dir_all(&root).unwrap();

        let err = store.check().await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
        assert!(err.message.contains("does not exist"), "{err}");
        for err in [
            store
                .put_bytes("prod/db/2/dump.sql", b"x".to_vec())
                .await
                .unwrap_err(),
            store
                .create_bytes("prod/db/2/manifest.json", b"x".to_vec())
                .await
                .unwrap_err(),
        ] {
            assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
            assert!(err.message.contains(&root.display().to_string()), "{err}");
            assert!(err.message.contains("does not exist"), "{err}");
        }
        assert!(store.list("prod/").await.is_err());
        assert!(!root.exists(), "the backup directory was recreated");
    }

    #[tokio::test]
    async fn temporary_and_stored_files_are_readable_by_the_owner_only() {
        // Proves a dump on its way to storage (a full copy of a database) is never world-readable, whatever
        // the umask: the temporary file, and the object it becomes, are mode 0600.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::new(dir.path());
        let mut body = BrokenBody::stalling(test_bytes(1000, 23));
        let drained = body.drained.clone();
        {
            let put = store.create_stream("prod/db/1/dump.sql", &mut body);
            tokio::pin!(put);
            for _ in 0..1000 {
                tokio::select! {
                    result = &mut put => panic!("put finished with a stalled body: {result:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                if drained.load(Ordering::SeqCst) {
                    break;
                }
            }
            let temp: Vec<String> = files_under(dir.path());
            assert_eq!(temp.len(), 1, "{temp:?}");
            assert!(temp[0].contains(".d1vault-tmp-"), "{temp:?}");
            let mode = std::fs::metadata(dir.path().join(&temp[0]))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "temporary file mode {mode:o}");
        }
        store
            .put_bytes("prod/db/1/dump.sql", b"x".to_vec())
            .await
            .unwrap();
        let mode = std::fs::metadata(dir.path().join("prod/db/1/dump.sql"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "stored file mode {mode:o}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_many_racing_exclusive_creates_exactly_one_wins() {
        // Proves the filesystem's exclusive create is atomic, not a check then a rename: eight writers race
        // for one key, one stores its bytes, seven get AlreadyExists, no temporary file stays.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FilesystemStorage::new(dir.path()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8u8 {
            let store = store.clone();
            tasks.spawn(async move {
                let body = vec![i; 64 * 1024];
                (i, store.create_bytes("prod/db/1/manifest.json", body).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.unwrap();
            match result {
                Ok(()) => winners.push(i),
                Err(e) => assert_eq!(e.kind, StorageErrorKind::AlreadyExists, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        assert_eq!(
            store.get_bytes("prod/db/1/manifest.json").await.unwrap(),
            vec![winners[0]; 64 * 1024]
        );
        assert_eq!(files_under(dir.path()), ["prod/db/1/manifest.json"]);
    }

    #[tokio::test]
    async fn check_passes_and_leaves_no_probe_behind() {
        // Proves check writes a probe to prove writability and removes it.
        let dir = tempfile::tempdir().unwrap();
        FilesystemStorage::new(dir.path()).check().await.unwrap();
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn disk_full_is_permanent_names_the_place_and_leaves_nothing() {
        // Proves ENOSPC becomes a permanent "disk is full" error naming the directory, with the temporary
        // file removed (on a 1 MiB tmpfs; needs root, skipped otherwise).
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipping disk_full test: cannot mount a tmpfs (not root?)");
            return;
        }
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(dir.path().to_path_buf());

        let store = FilesystemStorage::new(dir.path());
        let data = test_bytes(3 * 1024 * 1024, 9);
        let err = store
            .put_stream("prod/db/1/dump.sql", &mut data.as_slice())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
        assert!(err.message.contains("disk is full"), "{err}");
        assert!(
            err.message.contains(&dir.path().display().to_string()),
            "{err}"
        );
        assert!(
            files_under(dir.path()).is_empty(),
            "left behind: {:?}",
            files_under(dir.path())
        );
        // The space came back: a small write now succeeds.
        store
            .put_bytes("prod/db/1/manifest.json", b"{}".to_vec())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn abort_stale_uploads_removes_only_old_temporary_files_under_the_prefix() {
        // Proves cleanup removes temporary files older than the cutoff under the prefix, and leaves recent
        // ones, other prefixes and real objects alone.
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::new(dir.path());
        store
            .put_bytes("prod/db/1/dump.sql", b"keep".to_vec())
            .await
            .unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        let mk = |rel: &str, mtime: Option<std::time::SystemTime>| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            if let Some(t) = mtime {
                file.set_modified(t).unwrap();
            }
            path
        };
        let stale = mk(
            "prod/db/2/.dump.sql.d1vault-tmp-00000000000000aa",
            Some(old),
        );
        let fresh = mk("prod/db/3/.dump.sql.d1vault-tmp-00000000000000bb", None);
        let elsewhere = mk(
            "other/db/2/.dump.sql.d1vault-tmp-00000000000000cc",
            Some(old),
        );
        // Temporary files never show in listings.
        assert_eq!(sorted_keys(&store, "").await, ["prod/db/1/dump.sql"]);

        let cutoff = chrono::Utc::now() - chrono::Duration::hours(1);
        assert_eq!(
            store.abort_stale_uploads("prod/db", cutoff).await.unwrap(),
            1
        );
        assert!(!stale.exists());
        assert!(fresh.exists());
        assert!(elsewhere.exists());
        assert_eq!(
            store.abort_stale_uploads("prod/db", cutoff).await.unwrap(),
            0
        );
        assert_eq!(sorted_keys(&store, "").await, ["prod/db/1/dump.sql"]);
    }

    #[tokio::test]
    async fn deleting_the_last_object_removes_emptied_directories_but_not_the_root() {
        // Proves pruning does not leave a trail of empty backup directories behind.
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::new(dir.path());
        store
            .put_bytes("prod/db/1/dump.sql", b"x".to_vec())
            .await
            .unwrap();
        store
            .put_bytes("prod/db/2/dump.sql", b"x".to_vec())
            .await
            .unwrap();
        store.delete("prod/db/1/dump.sql").await.unwrap();
        assert!(!dir.path().join("prod/db/1").exists());
        assert!(dir.path().join("prod/db/2").exists());
        store.delete("prod/db/2/dump.sql").await.unwrap();
        assert!(!dir.path().join("prod").exists());
        assert!(dir.path().exists());
    }

    #[tokio::test]
    async fn open_builds_a_filesystem_store() {
        // Proves storage::open dispatches on the configuration and describe names the directory.
        let dir = tempfile::tempdir().unwrap();
        let config =
            d1vault::config::StorageConfig::Filesystem(d1vault::config::FilesystemConfig {
                path: dir.path().to_path_buf(),
                prefix: "prod".to_string(),
            });
        let store = d1vault::storage::open(&config).await.unwrap();
        assert_eq!(store.describe(), dir.path().display().to_string());
        store.check().await.unwrap();
    }
}

/// Failure cases of the S3 store against the in-process server.
mod s3_failures {
    use super::*;
    use ::s3s::S3ErrorCode;
    use d1vault::secret::Secret;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_bucket_is_permanent_and_names_the_bucket() {
        // Proves a wrong bucket name fails check and list permanently, saying which bucket and where.
        let server = start_s3().await;
        let mut config = server.s3_config("prod");
        config.bucket = "no-such-bucket".to_string();
        let store = S3Storage::new(&config).await.unwrap();
        // s3s-fs creates a missing bucket on PutObject, so puts are covered by the Garage test.
        for err in [
            store.check().await.unwrap_err(),
            store.list("prod/").await.unwrap_err(),
        ] {
            assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
            assert!(
                err.message.contains("bucket no-such-bucket does not exist"),
                "{err}"
            );
            assert!(err.message.contains(&server.endpoint), "{err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_endpoint_is_retryable() {
        // Proves a store nobody listens on is a retryable "cannot reach" error, after bounded retries.
        let server = start_s3().await;
        let mut config = server.s3_config("prod");
        let endpoint = unreachable_endpoint();
        config.endpoint = Some(endpoint.clone());
        let store = S3Storage::new(&config).await.unwrap();
        let started = std::time::Instant::now();
        let err = store.check().await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Retryable, "{err}");
        assert!(
            err.message.contains(&format!("cannot reach {endpoint}")),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "retries are not bounded"
        );
        let err = store.put_bytes("prod/x", b"x".to_vec()).await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Retryable, "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_secret_key_is_permanent_and_never_printed() {
        // Proves a wrong secret is a permanent error that points at the secret key setting without
        // showing it.
        let server = start_s3().await;
        let mut config = server.s3_config("prod");
        config.secret_access_key = Some(Secret::new("wrong-secret-value-123"));
        let store = S3Storage::new(&config).await.unwrap();
        for err in [
            store.check().await.unwrap_err(),
            store.put_bytes("prod/x", b"x".to_vec()).await.unwrap_err(),
        ] {
            assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
            assert!(
                err.message.contains("storage.secret_access_key")
                    || err.message.contains("credentials"),
                "{err}"
            );
            assert!(!err.message.contains("wrong-secret-value-123"), "{err}");
            assert!(!err.message.contains(TEST_SECRET_ACCESS_KEY), "{err}");
        }
        assert!(!format!("{store:?}").contains("wrong-secret-value-123"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_down_is_retried_until_it_passes() {
        // Proves 503 SlowDown is retried by the client and a put succeeds once the store recovers.
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        server.inject_errors("PutObject", S3ErrorCode::SlowDown, 2);
        store.put_bytes("prod/x", b"hello".to_vec()).await.unwrap();
        assert_eq!(server.requests("PutObject"), 3);
        assert_eq!(store.get_bytes("prod/x").await.unwrap(), b"hello");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persistent_slow_down_fails_retryable_after_a_bounded_number_of_attempts() {
        // Proves retries are bounded: a store that keeps answering SlowDown yields a retryable error after
        // a few attempts, not a request storm.
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        server.inject_errors("PutObject", S3ErrorCode::SlowDown, 1000);
        let err = store
            .put_bytes("prod/x", b"hello".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Retryable, "{err}");
        assert!(err.message.contains("SlowDown"), "{err}");
        let attempts = server.requests("PutObject");
        assert!((2..=5).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_part_resends_the_same_bytes() {
        // Proves failed UploadPart requests are retried with the buffered part, so the object is intact.
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        server.inject_errors("UploadPart", S3ErrorCode::InternalError, 2);
        let data = test_bytes(12 * 1024 * 1024, 11);
        store
            .put_stream("prod/big", &mut data.as_slice())
            .await
            .unwrap();
        assert_eq!(server.requests("UploadPart"), 5);
        assert!(read_all(&store, "prod/big").await == data);
        assert_eq!(server.open_multipart_uploads(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_part_that_keeps_failing_aborts_the_upload() {
        // Proves a part failing every retry fails the put and aborts the multipart upload.
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        server.inject_errors("UploadPart", S3ErrorCode::InternalError, 1000);
        let data = test_bytes(12 * 1024 * 1024, 12);
        let err = store
            .put_stream("prod/big", &mut data.as_slice())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Retryable, "{err}");
        assert!(err.message.contains("uploading part"), "{err}");
        assert_eq!(server.open_multipart_uploads(), 0);
        assert!(!server.object_path("prod/big").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_complete_aborts_the_upload() {
        // Proves a rejected CompleteMultipartUpload fails the put and aborts the upload.
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        server.inject_errors("CompleteMultipartUpload", S3ErrorCode::AccessDenied, 1);
        let data = test_bytes(11 * 1024 * 1024, 13);
        let err = store
            .put_stream("prod/big", &mut data.as_slice())
            .await
            .unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
        assert!(err.message.contains("access denied"), "{err}");
        assert_eq!(server.open_multipart_uploads(), 0);
        assert!(store.list("prod/").await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_dies_mid_upload_gives_a_retryable_error_and_no_object() {
        // Proves an outage in the middle of a multipart upload ends in a bounded, retryable failure and
        // the object never appears.
        let server = start_s3().await;
        let store = S3Storage::new(&server.s3_config("prod")).await.unwrap();
        let mut body = HookReader {
            data: test_bytes(16 * 1024 * 1024, 14),
            pos: 0,
            trigger: 11 * 1024 * 1024,
            hook: Some(|| server.stop()),
        };
        let err = store.put_stream("prod/big", &mut body).await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Retryable, "{err}");
        assert!(
            err.message.contains("cannot reach") || err.message.contains("unreadable response"),
            "{err}"
        );
        assert!(!server.object_path("prod/big").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_and_describe_name_bucket_prefix_and_endpoint() {
        // Proves storage::open builds an S3 store whose description identifies it without secrets.
        let server = start_s3().await;
        let store = d1vault::storage::open(&server.storage_config("prod"))
            .await
            .unwrap();
        assert_eq!(
            store.describe(),
            format!("s3://d1-backups/prod at {}", server.endpoint)
        );
        store.check().await.unwrap();
        let debug = format!("{store:?}");
        assert!(!debug.contains(TEST_SECRET_ACCESS_KEY), "{debug}");
    }
}

/// Failure cases and stale-upload cleanup against Garage (skipped unless `D1VAULT_TEST_S3_*` is set).
mod garage_failures {
    use super::*;
    use d1vault::secret::Secret;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_bucket_and_wrong_secret_are_permanent() {
        // Proves Garage's answers for a missing bucket and a bad secret map to permanent, actionable errors.
        let Some(garage) = external_s3("garage missing_bucket_and_wrong_secret") else {
            return;
        };
        let mut config = garage.s3_config("prod");
        config.bucket = "no-such-bucket".to_string();
        let store = S3Storage::new(&config).await.unwrap();
        for err in [
            store.check().await.unwrap_err(),
            store.put_bytes("prod/x", b"x".to_vec()).await.unwrap_err(),
        ] {
            assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
            assert!(
                err.message.contains("bucket no-such-bucket does not exist"),
                "{err}"
            );
        }
        let mut config = garage.s3_config("prod");
        config.secret_access_key = Some(Secret::new("0".repeat(64)));
        let store = S3Storage::new(&config).await.unwrap();
        for err in [
            store.check().await.unwrap_err(),
            store.put_bytes("prod/x", b"x".to_vec()).await.unwrap_err(),
        ] {
            assert_eq!(err.kind, StorageErrorKind::Permanent, "{err}");
            assert!(!err.message.contains(&"0".repeat(64)), "{err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_stale_uploads_aborts_only_old_uploads_under_the_prefix() {
        // Proves stale multipart uploads (a crashed backup) are found and aborted by age and prefix.
        let Some(garage) = external_s3("garage abort_stale_uploads") else {
            return;
        };
        let prefix = unique_prefix("stale");
        let other = unique_prefix("stale-other");
        let client = garage.client();
        for key in [
            format!("{prefix}/db/1/dump.sql"),
            format!("{other}/db/1/dump.sql"),
        ] {
            client
                .create_multipart_upload()
                .bucket(&garage.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        }
        let store = S3Storage::new(&garage.s3_config(&prefix)).await.unwrap();
        let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
        assert_eq!(
            store
                .abort_stale_uploads(&prefix, an_hour_ago)
                .await
                .unwrap(),
            0
        );
        assert_eq!(garage_open_uploads(&garage, &prefix).await, 1);
        let soon = chrono::Utc::now() + chrono::Duration::minutes(5);
        assert_eq!(store.abort_stale_uploads(&prefix, soon).await.unwrap(), 1);
        assert_eq!(garage_open_uploads(&garage, &prefix).await, 0);
        assert_eq!(garage_open_uploads(&garage, &other).await, 1);
        // Tidy the other prefix's upload.
        assert_eq!(store.abort_stale_uploads(&other, soon).await.unwrap(), 1);
    }
}
