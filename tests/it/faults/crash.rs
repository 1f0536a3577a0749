//! Crash: `d1vault backup` SIGKILLed mid-upload and between the dump and the manifest. Afterwards nothing
//! partial is listed or counted by retention, the next backup succeeds, and prune clears the leftovers.
//! `restore` and `verify` SIGKILLed mid-download leave no file behind.

use chrono::Duration as TimeDelta;
use d1vault::repository::retention::RetentionPolicy;
use d1vault::repository::{backups, manifest, prune};

use crate::support::bed::Bed;
use crate::support::files::entries;
use crate::support::fixture::create_big_db;
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::run::{
    after_backup_id, assert_no_secrets, assert_prune_ok, command, ids, list_json, run, stderr,
    stdout,
};

/// Kills the child and returns its output, checked for secrets.
async fn kill(mut child: tokio::process::Child, secrets: &[String]) {
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert!(
        !output.status.success(),
        "the killed backup reported success"
    );
    assert_no_secrets(&output, secrets);
}

/// Proves a backup killed while its dump is half uploaded leaves nothing listed or counted, and that the
/// next backup of the same database succeeds and is the only one listed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_leaves_nothing_listed_and_the_next_backup_succeeds() {
    let bed = Bed::start().await;
    create_big_db(&bed.dir.path().join("big.sqlite"), 8);
    let secrets = bed.secrets();
    let proxy = Proxy::start(
        &bed.s3.endpoint,
        ProxyOptions {
            upstream_bytes_per_sec: Some(6 << 20),
            ..Default::default()
        },
    )
    .await;
    let databases = format!(
        "{}{}[database.retention]\nkeep_last = 1\n",
        bed.sqlite_database("blog", "blog.sqlite", "zstd"),
        bed.sqlite_database("big", "big.sqlite", "none")
    );
    let direct = bed.write_s3_config("direct", &bed.s3.endpoint, "faults", &databases);
    let slow = bed.write_s3_config("slow", &proxy.endpoint, "faults", &databases);

    let first = run(&direct, &["backup", "blog"], &secrets).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let before = ids(&list_json(&direct, &secrets).await);
    assert_eq!(before.len(), 1);

    let child = command(&slow, &["backup", "big"]).spawn().unwrap();
    // Past the first 5 MiB part: the multipart upload is under way.
    proxy.wait_forwarded(6 << 20).await;
    kill(child, &secrets).await;

    assert_eq!(
        ids(&list_json(&direct, &secrets).await),
        before,
        "the killed backup changed the listing"
    );
    let storage = d1vault::storage::open(&bed.s3.storage_config("faults"))
        .await
        .unwrap();
    let stored = backups::scan(storage.as_ref(), "faults", Some("big"))
        .await
        .unwrap();
    assert!(
        stored.iter().all(|b| b.manifest.is_none()),
        "a killed backup has a manifest: {stored:?}"
    );
    let dry = run(&direct, &["prune", "--dry-run"], &secrets).await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        !stdout(&dry)
            .lines()
            .any(|l| l.contains(" big ") && (l.starts_with("keep") || l.contains("delete"))),
        "retention counted a partial backup:\n{}",
        stdout(&dry)
    );

    let next = run(&direct, &["backup", "big"], &secrets).await;
    assert!(
        next.status.success(),
        "the backup after the crash failed: {}",
        stderr(&next)
    );
    let listed = list_json(&direct, &secrets).await;
    assert_eq!(
        listed
            .iter()
            .filter(|m| m["database"]["name"] == "big")
            .count(),
        1
    );
    let verify = run(&direct, &["verify", "--all"], &secrets).await;
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// Proves a backup killed after its dump is stored but before its manifest is written is not listed, not
/// counted by retention, does not block the next backup, and is removed by prune once older than a day
/// (through the pure plan with a fixed `now`, and through the binary for an old leftover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_dump_and_manifest_leaves_a_leftover_that_prune_clears() {
    let bed = Bed::start().await;
    let secrets = bed.secrets();
    let proxy = Proxy::start(
        &bed.s3.endpoint,
        ProxyOptions {
            hold_on: Some(b"manifest.json".to_vec()),
            ..Default::default()
        },
    )
    .await;
    let databases = format!(
        "{}[database.retention]\nkeep_last = 1\n",
        bed.sqlite_database("blog", "blog.sqlite", "zstd")
    );
    let direct = bed.write_s3_config("direct", &bed.s3.endpoint, "faults", &databases);
    let held = bed.write_s3_config("held", &proxy.endpoint, "faults", &databases);

    let child = command(&held, &["backup"]).spawn().unwrap();
    proxy.wait_held().await;
    kill(child, &secrets).await;

    let storage = d1vault::storage::open(&bed.s3.storage_config("faults"))
        .await
        .unwrap();
    let stored = backups::scan(storage.as_ref(), "faults", Some("blog"))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let leftover = stored[0].clone();
    assert!(
        leftover.manifest.is_none() && !leftover.objects.is_empty(),
        "expected a dump without manifest: {leftover:?}"
    );
    assert_eq!(
        list_json(&direct, &secrets).await,
        Vec::<serde_json::Value>::new()
    );
    let dry = run(&direct, &["prune", "--dry-run"], &secrets).await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        !stdout(&dry).contains(&leftover.backup_id),
        "prune counted or removed a fresh leftover:\n{}",
        stdout(&dry)
    );

    // The next backup must get its own id (ids have one-second resolution).
    after_backup_id(&leftover.backup_id).await;
    let next = run(&direct, &["backup"], &secrets).await;
    assert!(next.status.success(), "{}", stderr(&next));
    let listed = ids(&list_json(&direct, &secrets).await);
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0], leftover.backup_id);

    // A day later, the pure plan removes the leftover and keeps the complete backup.
    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let started = manifest::parse_backup_id(&leftover.backup_id).unwrap();
    let stored = backups::scan(storage.as_ref(), "faults", Some("blog"))
        .await
        .unwrap();
    let fresh = prune::plan_from_listing(
        "faults",
        "blog",
        stored.clone(),
        &policy,
        chrono_tz::UTC,
        started + TimeDelta::hours(1),
    );
    assert!(
        fresh.incomplete.is_empty(),
        "a leftover younger than a day is planned for removal"
    );
    let later = started + TimeDelta::hours(25);
    let plan = prune::plan_from_listing("faults", "blog", stored, &policy, chrono_tz::UTC, later);
    assert_eq!(
        plan.incomplete
            .iter()
            .map(|b| b.backup_id.clone())
            .collect::<Vec<_>>(),
        vec![leftover.backup_id.clone()]
    );
    assert!(plan.complete.iter().all(|p| p.keep));
    let outcome = prune::execute(storage.as_ref(), "faults", &plan, later).await;
    assert_eq!(outcome.removed_incomplete, 1, "{outcome:?}");
    for object in &leftover.objects {
        assert!(
            !bed.s3.object_path(&object.key).exists(),
            "{} survived prune",
            object.key
        );
    }
    assert_eq!(ids(&list_json(&direct, &secrets).await), listed);

    // Through the binary: a leftover from long ago is removed by `prune`, the complete backup stays.
    let complete = &list_json(&direct, &secrets).await[0];
    let dump_key = complete["dump"]["key"].as_str().unwrap();
    let old_key = format!(
        "faults/blog/20200101T000000Z/{}",
        dump_key.rsplit('/').next().unwrap()
    );
    let old_path = bed.s3.object_path(&old_key);
    std::fs::create_dir_all(old_path.parent().unwrap()).unwrap();
    std::fs::copy(bed.s3.object_path(dump_key), &old_path).unwrap();
    let pruned = run(&direct, &["prune"], &secrets).await;
    assert_prune_ok(&pruned);
    assert!(
        stdout(&pruned).contains("20200101T000000Z"),
        "{}",
        stdout(&pruned)
    );
    assert!(!old_path.exists(), "prune left the old leftover");
    assert_eq!(ids(&list_json(&direct, &secrets).await), listed);
}

/// Proves a `restore --to-sqlite` and a `verify` SIGKILLed while the backup is downloading leave no file
/// behind, neither next to the target nor in `state_dir` (the download goes to an unnamed spool file, and
/// nothing is written before it is proven), and that the restore then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_restore_or_verify_leaves_no_file_behind() {
    let bed = Bed::start().await;
    create_big_db(&bed.dir.path().join("big.sqlite"), 8);
    let secrets = bed.secrets();
    let databases = bed.sqlite_database("big", "big.sqlite", "none");
    let direct = bed.write_s3_config("direct", &bed.s3.endpoint, "faults", &databases);
    let backup = run(&direct, &["backup", "big"], &secrets).await;
    assert!(backup.status.success(), "{}", stderr(&backup));
    let out = bed.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("big.sqlite");
    let target = target.to_str().unwrap();
    let state = bed.dir.path().join("state");

    for (name, args) in [
        ("restore", vec!["restore", "big", "--to-sqlite", target]),
        ("verify", vec!["verify", "big"]),
    ] {
        let proxy = Proxy::start(
            &bed.s3.endpoint,
            ProxyOptions {
                downstream_bytes_per_sec: Some(2 << 20),
                ..Default::default()
            },
        )
        .await;
        let slow = bed.write_s3_config(name, &proxy.endpoint, "faults", &databases);
        let child = command(&slow, &args).spawn().unwrap();
        // A few MiB into the object's download.
        proxy.wait_delivered(3 << 20).await;
        kill(child, &secrets).await;
        assert_eq!(
            entries(&out),
            Vec::<String>::new(),
            "{name} left a file next to the target"
        );
        let left: Vec<String> = entries(&state)
            .into_iter()
            .filter(|n| n.starts_with("d1vault-"))
            .chain(entries(&state.join("spool")))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{name} left files in state_dir");
    }
    let restored = run(
        &direct,
        &["restore", "big", "--to-sqlite", target],
        &secrets,
    )
    .await;
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(entries(&out), ["big.sqlite"]);
}
