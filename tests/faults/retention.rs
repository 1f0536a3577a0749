//! Retention safety: prune never deletes what must be kept. A policy that would delete everything keeps
//! everything, backups dated hours in the future (clock skew) do not push out the real newest, a listing
//! that fails part-way deletes nothing, and keys that do not fit the layout are never touched.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use d1vault::backups::StoredBackup;
use d1vault::manifest::{self, Manifest};
use d1vault::prune;
use d1vault::retention::RetentionPolicy;
use d1vault::storage::Storage;
use serde_json::Value;

use crate::common::{Bed, Proxy, ProxyOptions, ids, list_json, run, stderr, stdout};
use crate::support;

/// Keys under the prefix that are not backups: prune must leave every one of them alone.
const UNRELATED: [&str; 6] = [
    "faults/blog/README.txt",
    "faults/blog/20200101T000000Z",
    "faults/blog/not-an-id/dump.sql.zst",
    "faults/blog/20200101T000000Z.bak/manifest.json",
    "faults/notes/2020/01/01.txt",
    "faults-archive/blog/20200101T000000Z/dump.sql.zst",
];

/// Makes one real backup of `blog`, then stores copies of it under the ids of `times` (manifest rewritten
/// to match), plus the unrelated keys. Returns the ids, in the order of `times`.
async fn populate(
    bed: &Bed,
    config: &std::path::Path,
    storage: &dyn Storage,
    times: &[DateTime<Utc>],
) -> Vec<String> {
    let first = run(config, &["backup", "blog"], &bed.secrets()).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let original: Value = list_json(config, &bed.secrets()).await.remove(0);
    let dump_key = original["dump"]["key"].as_str().unwrap().to_string();
    let dump = storage.get_bytes(&dump_key).await.unwrap();
    // Remove the original so only the crafted backups remain.
    let original_id = original["backup_id"].as_str().unwrap();
    storage
        .delete(&manifest::object_key(
            "faults",
            "blog",
            original_id,
            manifest::MANIFEST_FILE,
        ))
        .await
        .unwrap();
    storage.delete(&dump_key).await.unwrap();
    let mut ids = Vec::new();
    for time in times {
        let id = manifest::backup_id(*time);
        let key = manifest::object_key("faults", "blog", &id, dump_key.rsplit('/').next().unwrap());
        let mut m = original.clone();
        m["backup_id"] = Value::String(id.clone());
        m["started_at"] = Value::String(time.to_rfc3339());
        m["finished_at"] = Value::String(time.to_rfc3339());
        m["dump"]["key"] = Value::String(key.clone());
        let m = Manifest::from_json(&serde_json::to_vec(&m).unwrap()).unwrap();
        storage.put_bytes(&key, dump.clone()).await.unwrap();
        storage
            .put_bytes(
                &manifest::object_key("faults", "blog", &id, manifest::MANIFEST_FILE),
                m.to_json(),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    for key in UNRELATED {
        storage
            .put_bytes(key, b"not a backup".to_vec())
            .await
            .unwrap();
    }
    ids
}

fn assert_unrelated_untouched(bed: &Bed) {
    for key in UNRELATED {
        let path = bed.s3.object_path(key);
        assert_eq!(
            std::fs::read(&path).ok().as_deref(),
            Some(&b"not a backup"[..]),
            "prune touched {key}"
        );
    }
}

/// Proves with the binary that prune under a keep_daily = 1 policy, with one backup dated three hours in
/// the future, keeps both the future one and the real newest, deletes older ones, and never touches keys
/// that are not backups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clocks_and_unrelated_keys_are_safe_from_prune() {
    let bed = Bed::start().await;
    let databases = format!(
        "{}[database.retention]\nkeep_daily = 1\n",
        bed.sqlite_database("blog", "blog.sqlite", "zstd")
    );
    let config = bed.write_config("prune", &bed.s3_storage(&bed.s3.endpoint), "", &databases);
    let storage = d1vault::storage::open(&bed.s3.storage_config("faults"))
        .await
        .unwrap();
    let now = Utc::now();
    let times = [
        now + TimeDelta::hours(3),
        now - TimeDelta::hours(1),
        now - TimeDelta::days(2),
        now - TimeDelta::days(3),
        now - TimeDelta::days(4),
    ];
    let ids = populate(&bed, &config, storage.as_ref(), &times).await;
    let output = run(&config, &["prune"], &bed.secrets()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let listed = crate::common::ids(&list_json(&config, &bed.secrets()).await);
    assert!(
        listed.contains(&ids[0]),
        "the future-dated backup was deleted:\n{}",
        stdout(&output)
    );
    assert!(
        listed.contains(&ids[1]),
        "the real newest backup was deleted because of a future-dated one:\n{}",
        stdout(&output)
    );
    assert!(
        !listed.contains(&ids[4]),
        "prune deleted nothing at all:\n{}",
        stdout(&output)
    );
    assert_unrelated_untouched(&bed);
}

/// Proves that a policy whose rules would keep nothing keeps every backup (the pure plan, fixed `now`),
/// and that a future-dated listing keeps the newest backup that is not in the future.
#[test]
fn a_policy_that_would_delete_everything_keeps_everything() {
    let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
    let listing = |times: &[DateTime<Utc>]| -> Vec<StoredBackup> {
        times
            .iter()
            .map(|t| {
                let id = manifest::backup_id(*t);
                let m = serde_json::json!({
                    "format": manifest::FORMAT, "tool": "d1vault test",
                    "database": { "name": "blog", "id": null, "source": "sqlite" },
                    "backup_id": id, "started_at": t.to_rfc3339(), "finished_at": t.to_rfc3339(), "bookmark": null,
                    "export": { "no_data": false, "no_schema": false, "tables": [] },
                    "dump": { "key": format!("p/blog/{id}/dump.sql"), "compression": "none", "size": 1, "sha256": "00",
                              "raw_size": 1, "raw_sha256": "00" },
                    "tables": [], "migrations": []
                });
                StoredBackup {
                    database: "blog".into(),
                    backup_id: id,
                    manifest: Some(Manifest::from_json(&serde_json::to_vec(&m).unwrap()).unwrap()),
                    objects: Vec::new(),
                }
            })
            .collect()
    };
    let times: Vec<_> = (1..=5).map(|d| now - TimeDelta::days(d)).collect();
    let nothing = RetentionPolicy {
        keep_last: Some(0),
        keep_daily: Some(0),
        ..Default::default()
    };
    let plan = prune::plan_from_listing("blog", listing(&times), &nothing, chrono_tz::UTC, now);
    assert_eq!(plan.complete.len(), 5);
    assert!(plan.complete.iter().all(|p| p.keep), "{plan:?}");

    // Every backup dated hours ahead: keep_last = 1 keeps the newest, and the newest not in the future
    // is kept too; nothing is deleted only because the clock is behind.
    let mut skewed: Vec<_> = (1..=3).map(|h| now + TimeDelta::hours(h)).collect();
    skewed.push(now - TimeDelta::hours(5));
    skewed.push(now - TimeDelta::days(9));
    let one = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let plan = prune::plan_from_listing("blog", listing(&skewed), &one, chrono_tz::UTC, now);
    let kept: Vec<_> = plan
        .complete
        .iter()
        .filter(|p| p.keep)
        .map(|p| p.backup.backup_id.clone())
        .collect();
    assert!(
        kept.contains(&manifest::backup_id(now + TimeDelta::hours(3))),
        "{kept:?}"
    );
    assert!(
        kept.contains(&manifest::backup_id(now - TimeDelta::hours(5))),
        "{kept:?}"
    );
    assert!(
        !kept.contains(&manifest::backup_id(now - TimeDelta::days(9))),
        "{kept:?}"
    );
}

/// Proves that when the storage listing breaks on its second page (a real proxy cutting every
/// ListObjectsV2 continuation request), prune fails saying nothing was deleted, and every object remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_fails_part_way_deletes_nothing() {
    let bed = Bed::start().await;
    let proxy = Proxy::start(
        &bed.s3.endpoint,
        ProxyOptions {
            cut_on: Some(b"continuation-token".to_vec()),
            ..Default::default()
        },
    )
    .await;
    let databases = format!(
        "{}[database.retention]\nkeep_last = 1\n",
        bed.sqlite_database("blog", "blog.sqlite", "zstd")
    );
    let direct = bed.write_config("direct", &bed.s3_storage(&bed.s3.endpoint), "", &databases);
    let cut = bed.write_config("cut", &bed.s3_storage(&proxy.endpoint), "", &databases);
    let storage = d1vault::storage::open(&bed.s3.storage_config("faults"))
        .await
        .unwrap();
    let now = Utc::now();
    let times: Vec<_> = (1..=4).map(|d| now - TimeDelta::days(d)).collect();
    populate(&bed, &direct, storage.as_ref(), &times).await;
    // More than one listing page (1,000 keys) under the database's prefix.
    for i in 0..1001 {
        let path = bed.s3.object_path(&format!("faults/blog/zz-filler/{i:04}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    let before = support::files_under(bed.s3.dir.path());
    let output = run(&cut, &["prune"], &bed.secrets()).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "prune over a broken listing did not fail:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("nothing was deleted"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        support::files_under(bed.s3.dir.path()),
        before,
        "prune deleted objects after a failed listing"
    );
    assert_eq!(ids(&list_json(&direct, &bed.secrets()).await).len(), 4);
    assert_unrelated_untouched(&bed);
}
