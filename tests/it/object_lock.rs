//! `storage.object_lock` against moto, which enforces S3 Object Lock as AWS S3 does (a locked version
//! cannot be deleted; a locked upload without a checksum is refused): every object a backup writes, single
//! PutObject and multipart alike, carries the configured retention; the probes d1vault writes to learn
//! about the store do not stay behind; `prune` keeps a backup whose lock has not ended and says so; a
//! delete with the daemon's own key cannot remove a locked object; a bucket that cannot lock (moto without
//! Object Lock, Garage) is refused before anything is written.

use chrono::{Duration, Utc};
use d1vault::config::{LockMode, ObjectLock};
use d1vault::storage::{S3Storage, Storage, StorageErrorKind};

use crate::support::bed::Bed;
use crate::support::fixture::create_big_db;
use crate::support::run::{list_json, run, stderr, stdout};
use crate::support::s3::{S3Store, external_s3, moto_locked_s3, moto_s3, unique_prefix};

/// How long the tests lock objects.
const DAYS: i64 = 2;

/// `[storage]` for `store` under `prefix`, locking in governance mode for [`DAYS`].
fn locked_storage(store: &S3Store, prefix: &str) -> String {
    format!(
        "{}object_lock = {{ mode = \"governance\", days = {DAYS} }}\n",
        store.storage_toml(prefix)
    )
}

/// Every current object key under `prefix`.
async fn keys(store: &S3Store, prefix: &str) -> Vec<String> {
    let listed = store
        .client()
        .list_objects_v2()
        .bucket(&store.bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_backups_carry_retention_and_survive_prune_and_a_delete_with_the_daemons_key() {
    let Some(moto) = moto_locked_s3("object lock").await else {
        return;
    };
    let env = Bed::start().await;
    // Above the 5 MiB part size with compression off: the dump goes up as a multipart upload.
    create_big_db(&env.dir.path().join("big.sqlite"), 12);
    let prefix = unique_prefix("lock");
    let databases = format!(
        "{}retention = {{ keep_last = 1 }}\n{}",
        env.sqlite_database("blog", "blog.sqlite", "zstd"),
        env.sqlite_database("big", "big.sqlite", "none")
    );
    let config = env.write_config("lock", &locked_storage(&moto, &prefix), "", &databases);
    let before = Utc::now();
    for _ in 0..2 {
        let backup = run(&config, &["backup", "--force"], &[]).await;
        assert_eq!(backup.status.code(), Some(0), "{}", stderr(&backup));
        let listed = list_json(&config, &[]).await;
        crate::support::run::after_backup_id(listed[0]["backup_id"].as_str().unwrap()).await;
    }
    let stored = keys(&moto, &prefix).await;
    // Two backups of each database, a dump and a manifest each: and no probe object left behind.
    assert_eq!(stored.len(), 8, "{stored:#?}");
    assert!(
        stored.iter().all(|k| !k.contains(".d1vault-")),
        "{stored:#?}"
    );
    let client = moto.client();
    for key in &stored {
        let head = client
            .head_object()
            .bucket(&moto.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&aws_sdk_s3::types::ObjectLockMode::Governance),
            "{key} is not locked"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let expected = (before + Duration::days(DAYS)).timestamp();
        assert!(
            (expected - 5..=expected + 600).contains(&until),
            "{key}: retained until {until}, expected about {expected}"
        );
    }

    // keep_last = 1 lets blog's older backup go, but its lock has not ended.
    let prune = run(&config, &["prune"], &[]).await;
    assert_eq!(prune.status.code(), Some(0), "{}", stderr(&prune));
    let out = stdout(&prune);
    assert!(out.contains("Object Lock until"), "{out}");
    assert!(out.contains("kept 1 still under Object Lock"), "{out}");
    assert_eq!(keys(&moto, &prefix).await, stored);

    // The daemon's own key, through d1vault's storage: the delete is refused and the object stays.
    let mut s3 = moto.s3_config(&prefix);
    s3.object_lock = Some(ObjectLock {
        mode: LockMode::Governance,
        days: DAYS as u32,
    });
    let storage = S3Storage::new(&s3).await.unwrap();
    let dump = stored
        .iter()
        .find(|k| !k.ends_with("manifest.json"))
        .unwrap();
    let refused = storage.delete(dump).await.unwrap_err();
    assert_eq!(refused.kind, StorageErrorKind::Permanent);
    assert!(
        refused.message.contains("Object Lock"),
        "{}",
        refused.message
    );
    assert!(storage.locked_until(dump).await.unwrap().unwrap() > Utc::now());
    // And with the raw API, naming the version as a thief would.
    let version = client
        .head_object()
        .bucket(&moto.bucket)
        .key(dump)
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    let raw = client
        .delete_object()
        .bucket(&moto.bucket)
        .key(dump)
        .version_id(&version)
        .send()
        .await;
    assert!(raw.is_err(), "a locked version was deleted");
    assert_eq!(keys(&moto, &prefix).await, stored);

    // Locked backups read as any other.
    let verify = run(&config, &["verify"], &[]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
}

/// A configuration asking for Object Lock on `store`, which cannot lock: backup and check-config
/// --online refuse, naming the bucket, and nothing is written under the prefix.
async fn refuses_a_bucket_that_cannot_lock(store: S3Store) {
    let env = Bed::start().await;
    let prefix = unique_prefix("nolock");
    let config = env.write_config(
        "nolock",
        &locked_storage(&store, &prefix),
        "",
        &env.sqlite_database("blog", "blog.sqlite", "zstd"),
    );
    let backup = run(&config, &["backup"], &[]).await;
    assert_ne!(backup.status.code(), Some(0));
    let err = stderr(&backup);
    assert!(
        err.contains(&format!("bucket {} at", store.bucket)) && err.contains("cannot lock objects"),
        "{err}"
    );
    assert_eq!(keys(&store, &prefix).await, Vec::<String>::new());
    let online = run(&config, &["check-config", "--online"], &[]).await;
    assert_eq!(online.status.code(), Some(1), "{}", stderr(&online));
    let out = format!("{}{}", stdout(&online), stderr(&online));
    assert!(out.contains("cannot lock objects"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_on_a_moto_bucket_without_it_is_refused_before_writing() {
    let Some(moto) = moto_s3("object lock on an unlocked bucket").await else {
        return;
    };
    refuses_a_bucket_that_cannot_lock(moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_on_garage_is_refused_before_writing() {
    let Some(garage) = external_s3("object lock on Garage") else {
        return;
    };
    refuses_a_bucket_that_cannot_lock(garage).await;
}
