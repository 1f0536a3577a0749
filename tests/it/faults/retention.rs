//! Retention safety: prune never deletes what must be kept. A policy that would delete everything keeps
//! everything, backups dated hours in the future (clock skew) do not push out the real newest, a listing
//! that fails part-way deletes nothing, and keys that do not fit the layout are never touched.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use d1vault::repository::backups::StoredBackup;
use d1vault::repository::manifest::{self, Manifest};
use d1vault::repository::prune;
use d1vault::repository::retention::RetentionPolicy;
use d1vault::storage::Storage;
use serde_json::Value;

use crate::support::bed::Bed;
use crate::support::files::files_under;
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::run::{assert_prune_ok, ids, list_json, run, stderr, stdout};

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
    let config = bed.write_s3_config("prune", &bed.s3.endpoint, "faults", &databases);
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
    assert_prune_ok(&output);
    let listed = crate::support::run::ids(&list_json(&config, &bed.secrets()).await);
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
                    unreadable: None,
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
    let plan =
        prune::plan_from_listing("p", "blog", listing(&times), &nothing, chrono_tz::UTC, now);
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
    let plan = prune::plan_from_listing("p", "blog", listing(&skewed), &one, chrono_tz::UTC, now);
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
    let direct = bed.write_s3_config("direct", &bed.s3.endpoint, "faults", &databases);
    let cut = bed.write_s3_config("cut", &proxy.endpoint, "faults", &databases);
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
    let before = files_under(bed.s3.dir.path());
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
        files_under(bed.s3.dir.path()),
        before,
        "prune deleted objects after a failed listing"
    );
    assert_eq!(ids(&list_json(&direct, &bed.secrets()).await).len(), 4);
    assert_unrelated_untouched(&bed);
}

/// The manifest of backup `id` of `blog` under the `faults` prefix.
fn manifest_key(id: &str) -> String {
    manifest::object_key("faults", "blog", id, manifest::MANIFEST_FILE)
}

/// Every object (key and bytes) under `faults/blog/<id>/`, as the S3 server stores them.
async fn objects_of(storage: &dyn Storage, id: &str) -> Vec<(String, Vec<u8>)> {
    let mut keys: Vec<String> = storage
        .list(&format!("faults/blog/{id}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let bytes = storage.get_bytes(&key).await.unwrap();
        out.push((key, bytes));
    }
    out
}

/// Proves the rule "prune never deletes what it cannot read": backups whose manifest is truncated JSON,
/// has `format: 2` (a newer d1vault), lacks a field, or names another database's dump are kept whole by
/// `prune --dry-run` and `prune` (manifest and dump, byte for byte), printed as kept with "manifest
/// unreadable", left out of `list`, and make `prune` exit 1; retention still applies to the readable ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_every_backup_whose_manifest_cannot_be_read_and_exits_1() {
    let bed = Bed::start().await;
    let databases = format!(
        "{}[database.retention]\nkeep_last = 1\n",
        bed.sqlite_database("blog", "blog.sqlite", "zstd")
    );
    let config = bed.write_s3_config("unreadable", &bed.s3.endpoint, "faults", &databases);
    let storage = d1vault::storage::open(&bed.s3.storage_config("faults"))
        .await
        .unwrap();
    let now = Utc::now();
    // All older than the one-day grace that incomplete leftovers get, so age protects none of them.
    let times: Vec<_> = (1..=6)
        .map(|d| now - TimeDelta::days(d) - TimeDelta::hours(1))
        .collect();
    let ids = populate(&bed, &config, storage.as_ref(), &times).await;
    let edit = async |id: &str, f: &dyn Fn(&mut Value)| {
        let key = manifest_key(id);
        let mut m: Value = serde_json::from_slice(&storage.get_bytes(&key).await.unwrap()).unwrap();
        f(&mut m);
        storage
            .put_bytes(&key, serde_json::to_vec_pretty(&m).unwrap())
            .await
            .unwrap();
    };
    // The newest: truncated JSON (a torn write, bit rot).
    let whole = storage.get_bytes(&manifest_key(&ids[0])).await.unwrap();
    storage
        .put_bytes(&manifest_key(&ids[0]), whole[..whole.len() / 2].to_vec())
        .await
        .unwrap();
    // A newer format, a missing field, and a dump key in another database's directory.
    edit(&ids[2], &|m| m["format"] = 2.into()).await;
    edit(&ids[3], &|m| {
        m.as_object_mut().unwrap().remove("tables");
    })
    .await;
    let foreign_dump = format!("faults/shop/{}/dump.sql.zst", ids[5]);
    storage
        .put_bytes(&foreign_dump, b"another database's dump".to_vec())
        .await
        .unwrap();
    edit(&ids[5], &|m| m["dump"]["key"] = foreign_dump.clone().into()).await;
    let unreadable = [&ids[0], &ids[2], &ids[3], &ids[5]];
    let mut before = Vec::new();
    for id in unreadable {
        let objects = objects_of(storage.as_ref(), id).await;
        assert_eq!(objects.len(), 2, "{id}: {objects:?}");
        before.push(objects);
    }

    for args in [&["prune", "--dry-run"][..], &["prune"][..]] {
        let output = run(&config, args, &bed.secrets()).await;
        let (out, err) = (stdout(&output), stderr(&output));
        assert_eq!(output.status.code(), Some(1), "{args:?}:\n{out}\n{err}");
        assert!(err.contains("cannot be read"), "{args:?}:\n{err}");
        for id in unreadable {
            let line = out
                .lines()
                .find(|l| l.contains(id.as_str()))
                .unwrap_or_else(|| panic!("{args:?}: no line for {id}:\n{out}"));
            assert!(
                line.starts_with("keep") && line.contains("manifest unreadable"),
                "{args:?}: {line}"
            );
        }
    }
    for (id, objects) in unreadable.iter().zip(&before) {
        assert_eq!(
            &objects_of(storage.as_ref(), id).await,
            objects,
            "prune changed the unreadable backup {id}"
        );
    }
    assert_eq!(
        storage.get_bytes(&foreign_dump).await.unwrap(),
        b"another database's dump"
    );
    // Retention still ran on the readable backups: the newest readable one stays, the other went.
    assert_eq!(ids_listed(&config, &bed).await, vec![ids[1].clone()]);
    assert!(objects_of(storage.as_ref(), &ids[4]).await.is_empty());
    assert_unrelated_untouched(&bed);
}

async fn ids_listed(config: &std::path::Path, bed: &Bed) -> Vec<String> {
    ids(&list_json(config, &bed.secrets()).await)
}

/// A listing entry for the pure planner: backup `id` of `blog` under prefix `p` with objects `files`,
/// complete (a valid manifest), unreadable (`Err(reason)`), or incomplete (`None`).
fn stored(id: &str, manifest: Option<Result<(), &str>>, files: &[&str]) -> StoredBackup {
    let time = manifest::parse_backup_id(id).unwrap();
    let valid = || {
        let m = serde_json::json!({
            "format": manifest::FORMAT, "tool": "d1vault test",
            "database": { "name": "blog", "id": null, "source": "sqlite" },
            "backup_id": id, "started_at": time.to_rfc3339(), "finished_at": time.to_rfc3339(), "bookmark": null,
            "export": { "no_data": false, "no_schema": false, "tables": [] },
            "dump": { "key": format!("p/blog/{id}/dump.sql"), "compression": "none", "size": 1, "sha256": "00",
                      "raw_size": 1, "raw_sha256": "00" },
            "tables": [], "migrations": []
        });
        Manifest::from_json(&serde_json::to_vec(&m).unwrap()).unwrap()
    };
    StoredBackup {
        database: "blog".into(),
        backup_id: id.into(),
        manifest: matches!(manifest, Some(Ok(()))).then(valid),
        unreadable: match manifest {
            Some(Err(reason)) => Some(reason.into()),
            _ => None,
        },
        objects: files
            .iter()
            .map(|f| d1vault::storage::ObjectInfo {
                key: format!("p/blog/{id}/{f}"),
                size: 1,
                last_modified: None,
            })
            .collect(),
    }
}

fn kept_ids(plan: &prune::PrunePlan) -> Vec<String> {
    plan.complete
        .iter()
        .filter(|p| p.keep)
        .map(|p| p.backup.backup_id.clone())
        .collect()
}

/// Proves the rule "an unreadable backup is invisible to retention": it takes no keep_* slot, is not the
/// newest that protects, and is never planned for deletion or removal, so the complete backups kept are
/// exactly those kept if it were not there at all (it can never cost another backup its place).
#[test]
fn an_unreadable_backup_is_invisible_to_retention_and_never_planned_for_deletion() {
    let now: DateTime<Utc> = "2026-03-10T12:00:00Z".parse().unwrap();
    let complete = [
        "20260308T030000Z",
        "20260307T030000Z",
        "20260306T030000Z",
        "20260305T030000Z",
        "20260301T030000Z",
    ];
    // Unreadable backups newest, in the middle, and oldest: a newer version's, bit rot, an old format.
    let unreadable = ["20260309T030000Z", "20260306T150000Z", "20260201T030000Z"];
    let readable: Vec<StoredBackup> = complete
        .iter()
        .map(|id| stored(id, Some(Ok(())), &["dump.sql", "manifest.json"]))
        .collect();
    let mut all = readable.clone();
    for id in unreadable {
        all.push(stored(
            id,
            Some(Err("manifest format 2 is not supported")),
            &["dump.sql.zst", "manifest.json"],
        ));
    }
    let policies = [
        RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        },
        RetentionPolicy {
            keep_daily: Some(3),
            keep_monthly: Some(1),
            ..Default::default()
        },
        RetentionPolicy {
            keep_last: Some(0),
            ..Default::default()
        },
    ];
    for policy in &policies {
        let with = prune::plan_from_listing("p", "blog", all.clone(), policy, chrono_tz::UTC, now);
        let without =
            prune::plan_from_listing("p", "blog", readable.clone(), policy, chrono_tz::UTC, now);
        assert_eq!(kept_ids(&with), kept_ids(&without), "{policy:?}");
        assert_eq!(with.complete.len(), complete.len(), "{policy:?}");
        assert!(
            with.incomplete.is_empty(),
            "{policy:?}: {:?}",
            with.incomplete
        );
        assert_eq!(
            with.unreadable
                .iter()
                .map(|b| b.backup_id.as_str())
                .collect::<Vec<_>>(),
            unreadable,
            "{policy:?}"
        );
    }
    // keep_last = 2 keeps the two newest readable backups: the unreadable newest takes no slot.
    let plan = prune::plan_from_listing("p", "blog", all, &policies[0], chrono_tz::UTC, now);
    assert_eq!(kept_ids(&plan), ["20260308T030000Z", "20260307T030000Z"]);
}

/// Proves prune deletes only the names d1vault writes: in a directory without a manifest it removes the
/// dumps (every compression, with and without `.age`) but leaves other files, nested keys and a directory
/// holding only foreign files; in a complete backup that retention deletes it removes the manifest and the
/// dump and leaves the extra files, and it names every object it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_the_files_d1vault_writes() {
    let bed = Bed::start().await;
    let databases = format!(
        "{}[database.retention]\nkeep_last = 1\n",
        bed.sqlite_database("blog", "blog.sqlite", "zstd")
    );
    let config = bed.write_s3_config("foreign", &bed.s3.endpoint, "faults", &databases);
    let storage = d1vault::storage::open(&bed.s3.storage_config("faults"))
        .await
        .unwrap();
    let now = Utc::now();
    let times: Vec<_> = (2..=3).map(|d| now - TimeDelta::days(d)).collect();
    let ids = populate(&bed, &config, storage.as_ref(), &times).await;
    let pruned = &ids[1];
    let leftover = "20210101T000000Z";
    let only_foreign = "20210202T000000Z";
    let put = async |key: String| {
        storage
            .put_bytes(&key, b"someone else's".to_vec())
            .await
            .unwrap();
        key
    };
    let foreign = [
        put(format!("faults/blog/{pruned}/extra.txt")).await,
        put(format!("faults/blog/{pruned}/sub/dump.sql")).await,
        put(format!("faults/blog/{leftover}/notes.txt")).await,
        put(format!("faults/blog/{leftover}/dump.sql.bak")).await,
        put(format!("faults/blog/{only_foreign}/README")).await,
    ];
    let mut ours = Vec::new();
    for file in manifest::DUMP_FILES {
        ours.push(put(format!("faults/blog/{leftover}/{file}")).await);
    }
    let pruned_objects: Vec<String> = objects_of(storage.as_ref(), pruned)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !foreign.contains(k))
        .collect();
    assert_eq!(pruned_objects.len(), 2, "{pruned_objects:?}");

    let output = run(&config, &["prune"], &bed.secrets()).await;
    assert_prune_ok(&output);
    let out = stdout(&output);
    for key in foreign.iter() {
        assert_eq!(
            storage.get_bytes(key).await.ok().as_deref(),
            Some(&b"someone else's"[..]),
            "prune deleted {key}, which d1vault never wrote:\n{out}"
        );
        assert!(out.contains(key.as_str()), "{key} not reported:\n{out}");
    }
    for key in ours.iter().chain(&pruned_objects) {
        assert!(
            storage.get_bytes(key).await.is_err(),
            "{key} survived prune:\n{out}"
        );
    }
    assert!(
        !out.lines()
            .any(|l| l.contains(only_foreign) && l.starts_with("remove")),
        "{out}"
    );
    assert_eq!(ids_listed(&config, &bed).await, vec![ids[0].clone()]);
    assert_unrelated_untouched(&bed);
}
