//! Fleet members everywhere a database is, against d1-emulator over HTTP and in-process S3: `status`,
//! `prune` and `verify` with no names cover the members as `backup` does; a database gone from the
//! account keeps its backups and is shown as gone by `list` and `status`, never as an error; and a
//! failed listing still covers the configured databases, then exits 1.

use serde_json::Value;

use crate::support::bed::Bed;
use crate::support::run::{after_backup_id, assert_prune_ok, list_json, run, stderr, stdout};
use d1vault::catalog::{Catalog, RunOutcome};

/// `blog` by name; `tenant-*` as a fleet that keeps only the newest backup.
const CONFIG: &str = "[[database]]\nname = \"blog\"\n\n[[fleet]]\nmatch = \"tenant-*\"\nschedule = \"@daily\"\ncompression = \"none\"\nretention = { keep_last = 1 }\n";

/// Records a finished run of `database` in the catalog, as the daemon does.
async fn record(catalog: &Catalog, database: &str, outcome: RunOutcome, error: Option<&str>) {
    let now = chrono::Utc::now();
    let id = catalog
        .start_run(database, None, now, Some("20260101T000000Z"))
        .await
        .unwrap();
    catalog
        .finish_run(id, outcome, error.map(String::from), None, None, now)
        .await
        .unwrap();
}

/// The backups `list --json` shows for `database`.
fn of<'a>(listed: &'a [Value], database: &str) -> Vec<&'a Value> {
    listed
        .iter()
        .filter(|m| m["database"]["name"] == database)
        .collect()
}

#[tokio::test]
async fn status_prune_and_verify_cover_members_and_a_gone_member_keeps_its_backups() {
    // Proves, with `tenant-c` deleted from the account after two backups: `status --json` has every
    // member with its entry and condition and `tenant-c` as gone (exit 0); the text keeps the configured
    // database's block, summarises the fleet and names only the failing member; `list` marks only
    // `tenant-c`'s backups gone; `prune` applies the fleet's keep_last = 1 to the members and deletes
    // none of `tenant-c`'s; `verify` checks the configured database and each member.
    let bed = Bed::with_emulator(&["blog", "tenant-a", "tenant-b", "tenant-c"]).await;
    let config = bed.write_s3_config("d1vault", &bed.s3.endpoint, "test", CONFIG);
    let secrets = bed.secrets();
    let first = run(&config, &["backup"], &secrets).await;
    assert!(first.status.success(), "{}", stderr(&first));
    after_backup_id(&stdout(&first)[..16]).await;
    let second = run(&config, &["backup", "--force"], &secrets).await;
    assert!(second.status.success(), "{}", stderr(&second));
    std::fs::remove_file(bed.d1_file("tenant-c")).unwrap();

    let catalog = Catalog::open(bed.dir.path().join("state")).await.unwrap();
    record(&catalog, "blog", RunOutcome::Success, None).await;
    record(&catalog, "tenant-a", RunOutcome::Success, None).await;
    record(
        &catalog,
        "tenant-b",
        RunOutcome::Failed,
        Some("export failed: boom"),
    )
    .await;
    record(&catalog, "tenant-c", RunOutcome::Success, None).await;

    let json = run(&config, &["status", "--json"], &secrets).await;
    assert!(json.status.success(), "{}", stderr(&json));
    let rows: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["database"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog", "tenant-a", "tenant-b", "tenant-c"]);
    assert!(
        rows[0].get("entry").is_none() && rows[0].get("condition").is_none(),
        "a configured database's row reads as before: {}",
        rows[0]
    );
    assert_eq!(
        rows[1]["entry"],
        serde_json::json!({ "kind": "fleet", "index": 0, "match": "tenant-*" })
    );
    assert_eq!(rows[1]["condition"], "fresh");
    assert_eq!(rows[2]["condition"], "failing");
    assert_eq!(rows[2]["last_failure_reason"], "export failed: boom");
    assert_eq!(rows[3]["gone"], true);
    assert_eq!(rows[3]["condition"], "gone");
    assert!(rows[1].get("gone").is_none(), "{}", rows[1]);

    let text = run(&config, &["status"], &secrets).await;
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.starts_with("blog\n  last success: "), "{text}");
    assert!(
        text.contains(
            "fleet[0] match \"tenant-*\": 2 members: 1 fresh, 0 unchanged, 0 stale, 1 failing, 0 never backed up\n  failing tenant-b: last failure "
        ),
        "{text}"
    );
    assert!(text.contains("boom"), "{text}");
    assert!(
        !text.contains("tenant-a"),
        "a fresh member is only counted: {text}"
    );
    assert!(
        text.contains("tenant-c\n  gone from the account: its backups are kept"),
        "{text}"
    );

    let listed = list_json(&config, &secrets).await;
    assert_eq!(of(&listed, "tenant-c").len(), 2);
    for m in &listed {
        let gone = m["database"]["name"] == "tenant-c";
        assert_eq!(m.get("gone"), gone.then_some(&Value::Bool(true)), "{m}");
        assert!(
            m["dump"]["sha256"].is_string(),
            "the manifest's fields stay: {m}"
        );
    }
    let table = stdout(&run(&config, &["list"], &secrets).await);
    for line in table.lines().skip(1) {
        assert_eq!(
            line.starts_with("tenant-c "),
            line.ends_with("  gone"),
            "{table}"
        );
    }

    let prune = run(&config, &["prune"], &secrets).await;
    assert_prune_ok(&prune);
    let out = stdout(&prune);
    assert!(
        out.contains("gone         tenant-c  (gone from the account"),
        "{out}"
    );
    let listed = list_json(&config, &secrets).await;
    assert_eq!(
        of(&listed, "tenant-a").len(),
        1,
        "the fleet's keep_last = 1: {out}"
    );
    assert_eq!(of(&listed, "tenant-b").len(), 1, "{out}");
    assert_eq!(
        of(&listed, "blog").len(),
        2,
        "blog keeps the defaults: {out}"
    );
    assert_eq!(
        of(&listed, "tenant-c").len(),
        2,
        "a gone member is never pruned: {out}"
    );

    let named = run(&config, &["prune", "tenant-c"], &secrets).await;
    assert_eq!(named.status.code(), Some(2), "{}", stderr(&named));
    assert!(
        stderr(&named).contains("tenant-c is gone from the account: prune never deletes"),
        "{}",
        stderr(&named)
    );
    let listed = list_json(&config, &secrets).await;
    assert_eq!(of(&listed, "tenant-c").len(), 2, "named, still not pruned");

    let verify = run(&config, &["verify"], &secrets).await;
    assert!(verify.status.success(), "{}", stderr(&verify));
    let mut verified: Vec<String> = stdout(&verify)
        .lines()
        .filter(|l| l.starts_with("ok "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    verified.sort();
    assert_eq!(
        verified,
        ["blog", "tenant-a", "tenant-b"],
        "{}",
        stdout(&verify)
    );
}

#[tokio::test]
async fn a_failed_listing_still_covers_the_configured_databases_then_exits_1() {
    // Proves that when the list API fails, `status`, `prune` and `verify` handle `blog` and exit 1
    // saying the members were not covered, no member is taken for gone (`list` marks nothing, with a
    // warning, exit 0), and prune deletes no member's backup.
    let bed = Bed::with_emulator(&["blog", "tenant-a"]).await;
    let config = bed.write_s3_config("d1vault", &bed.s3.endpoint, "test", CONFIG);
    let secrets = bed.secrets();
    let first = run(&config, &["backup"], &secrets).await;
    assert!(first.status.success(), "{}", stderr(&first));
    after_backup_id(&stdout(&first)[..16]).await;
    let second = run(&config, &["backup", "--force"], &secrets).await;
    assert!(second.status.success(), "{}", stderr(&second));
    bed.set_faults(serde_json::json!({ "list_error_from_page": 1 }))
        .await;

    let status = run(&config, &["status"], &secrets).await;
    assert_eq!(status.status.code(), Some(1), "{}", stderr(&status));
    assert!(stdout(&status).starts_with("blog\n"), "{}", stdout(&status));
    assert!(!stdout(&status).contains("gone"), "{}", stdout(&status));
    assert!(
        stderr(&status).contains("fleet members were not covered"),
        "{}",
        stderr(&status)
    );

    let list = run(&config, &["list", "--json"], &secrets).await;
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(!stdout(&list).contains("\"gone\""), "{}", stdout(&list));
    assert!(stderr(&list).contains("not marked"), "{}", stderr(&list));

    let prune = run(&config, &["prune"], &secrets).await;
    assert_eq!(prune.status.code(), Some(1), "{}", stderr(&prune));
    assert!(
        stderr(&prune).contains("fleet members were not pruned"),
        "{}",
        stderr(&prune)
    );
    assert!(stdout(&prune).contains(" blog "), "{}", stdout(&prune));
    bed.set_faults(serde_json::json!({ "list_error_from_page": 0 }))
        .await;
    let listed = list_json(&config, &secrets).await;
    assert_eq!(of(&listed, "tenant-a").len(), 2, "no member was pruned");
    bed.set_faults(serde_json::json!({ "list_error_from_page": 1 }))
        .await;

    let verify = run(&config, &["verify"], &secrets).await;
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    assert!(
        stdout(&verify).starts_with("ok      blog "),
        "{}",
        stdout(&verify)
    );
    assert!(!stdout(&verify).contains("tenant-a"), "{}", stdout(&verify));
    assert!(
        stderr(&verify).contains("fleet members were not verified"),
        "{}",
        stderr(&verify)
    );
}
