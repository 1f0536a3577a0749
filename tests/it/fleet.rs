//! Fleets against d1-emulator over HTTP: the account listed page by page, which entry governs each
//! database, `d1vault databases`, `backup` of a fleet, and the daemon finding new members.

use crate::support::bed::Bed;
use crate::support::run::{after_backup_id, list_json, run, stderr, stdout};
use d1vault::fleet::{self, DiscoveryError, Entry};

/// `[[fleet]]` tables for tenant databases: `tenant-*` without the staging ones, then everything.
const FLEETS: &str = "[[fleet]]\nmatch = \"tenant-*\"\nexclude = [\"tenant-staging-*\"]\nschedule = \"@daily\"\nskip_unchanged = false\ncompression = \"none\"\n\n[[fleet]]\nmatch = \"tenant-staging-*\"\nschedule = \"@weekly\"\n";

/// Adds an empty database `name` to the emulator's account (every `d1/NAME.sqlite` is one).
fn add_empty(bed: &Bed, name: &str) {
    std::fs::write(bed.d1_file(name), b"").unwrap();
}

#[tokio::test]
async fn the_account_is_listed_over_every_page_and_each_database_gets_its_entry() {
    // Proves discovery reads every page (25 databases at 10 a page: 3 list requests, each one counted),
    // then the governance rule over the listing: `blog` by name, tenants by the first fleet, staging
    // tenants by the second (excluded from the first).
    let bed = Bed::with_emulator(&["blog"]).await;
    for i in 0..20 {
        add_empty(&bed, &format!("tenant-{i:02}"));
    }
    for i in 0..4 {
        add_empty(&bed, &format!("tenant-staging-{i}"));
    }
    let config = bed.config(&format!("[[database]]\nname = \"blog\"\n\n{FLEETS}"), None);
    let sources = bed.sources(&config).await;
    let client = sources.cloudflare.as_ref().unwrap();
    let before = bed
        .emulator()
        .stats()
        .by_route
        .get("list")
        .copied()
        .unwrap_or(0);
    let listed = fleet::list_all(client, 10).await.unwrap();
    let lists = bed.emulator().stats().by_route["list"] - before;
    assert_eq!(listed.len(), 25, "{listed:?}");
    assert_eq!(lists, 3, "one request per page");

    let resolution = fleet::resolve(&config, &listed);
    assert_eq!(resolution.members.len(), 25);
    let entry = |name: &str| resolution.member(name).unwrap().entry.clone();
    assert_eq!(entry("blog"), Entry::Database { index: 0 });
    assert_eq!(
        entry("tenant-07"),
        Entry::Fleet {
            index: 0,
            pattern: "tenant-*".into()
        }
    );
    assert_eq!(
        entry("tenant-staging-3"),
        Entry::Fleet {
            index: 1,
            pattern: "tenant-staging-*".into()
        }
    );
    assert!(resolution.warnings.is_empty(), "{:?}", resolution.warnings);
}

#[tokio::test]
async fn a_list_that_fails_part_way_is_an_error_never_a_shorter_list() {
    // Proves that when page 2 keeps failing (retries included) discovery returns an error naming the
    // page, not the 10 databases of page 1, so no member beyond it can be taken for gone.
    let bed = Bed::with_emulator(&["blog"]).await;
    for i in 0..15 {
        add_empty(&bed, &format!("tenant-{i:02}"));
    }
    let config = bed.config(FLEETS, None);
    let sources = bed.sources(&config).await;
    bed.set_faults(serde_json::json!({ "list_error_from_page": 2 }))
        .await;
    let error = fleet::list_all(sources.cloudflare.as_ref().unwrap(), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DiscoveryError::Page { page: 2, .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(
        error.to_string().contains("none is taken for gone"),
        "{error}"
    );
    bed.set_faults(serde_json::json!({ "list_error_from_page": 0 }))
        .await;
    assert_eq!(
        fleet::list_all(sources.cloudflare.as_ref().unwrap(), 10)
            .await
            .unwrap()
            .len(),
        16
    );
}

#[tokio::test]
async fn databases_shows_each_database_and_the_entry_that_governs_it() {
    // Proves `d1vault databases --json` lists the configured database and every fleet member with its
    // entry, id and schedule, leaves out what no entry takes, and warns (exit 0) about a fleet that fits
    // nothing; the table names the same entries.
    let bed = Bed::with_emulator(&["blog", "tenant-a", "tenant-staging-1", "other"]).await;
    let config = bed.write_s3_config(
        "d1vault",
        &bed.s3.endpoint,
        "test",
        &format!("[[database]]\nname = \"blog\"\n\n{FLEETS}\n[[fleet]]\nmatch = \"nobody-*\"\n"),
    );
    let output = run(&config, &["databases", "--json"], &bed.secrets()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tenant_id = d1_emulator::database_id("tenant-a").to_string();
    assert_eq!(
        rows,
        serde_json::json!([
            { "name": "blog", "id": null, "source": "d1",
              "entry": { "kind": "database", "index": 0 }, "schedule": "0 3 * * *" },
            { "name": "tenant-a", "id": tenant_id, "source": "d1",
              "entry": { "kind": "fleet", "index": 0, "match": "tenant-*" }, "schedule": "@daily" },
            { "name": "tenant-staging-1", "id": d1_emulator::database_id("tenant-staging-1").to_string(),
              "source": "d1", "entry": { "kind": "fleet", "index": 1, "match": "tenant-staging-*" },
              "schedule": "@weekly" },
        ])
    );
    assert!(
        stderr(&output).contains("warning: fleet[2] match \"nobody-*\" fits no database"),
        "{}",
        stderr(&output)
    );
    let table = run(&config, &["databases"], &bed.secrets()).await;
    let text = stdout(&table);
    assert!(
        text.contains("tenant-a") && text.contains("fleet[0] match \"tenant-*\""),
        "{text}"
    );
    assert!(!text.contains("other"), "{text}");
}

#[tokio::test]
async fn backup_with_no_names_backs_up_every_configured_database_and_fleet_member() {
    // Proves `backup` with no names exports the configured database and each fleet member (same storage
    // layout, listed by `list`), not the database no entry takes; and that when the list API fails it
    // still backs up the configured database, but exits 1 saying the members were not backed up.
    let bed = Bed::with_emulator(&["blog", "tenant-a", "tenant-b", "other"]).await;
    let config = bed.write_s3_config(
        "d1vault",
        &bed.s3.endpoint,
        "test",
        &format!("[[database]]\nname = \"blog\"\n\n{FLEETS}"),
    );
    let output = run(&config, &["backup"], &bed.secrets()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let mut backed_up: Vec<String> = stdout(&output)
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    backed_up.sort();
    assert_eq!(backed_up, ["blog", "tenant-a", "tenant-b"]);
    let listed = list_json(&config, &bed.secrets()).await;
    let mut names: Vec<&str> = listed
        .iter()
        .map(|m| m["database"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["blog", "tenant-a", "tenant-b"]);
    let tenant = listed
        .iter()
        .find(|m| m["database"]["name"] == "tenant-a")
        .unwrap();
    let key = tenant["dump"]["key"].as_str().unwrap();
    assert!(
        key.starts_with("test/tenant-a/") && key.ends_with("/dump.sql"),
        "{key}"
    );
    assert_eq!(
        tenant["database"]["id"],
        d1_emulator::database_id("tenant-a").to_string()
    );

    // One member by name works too.
    after_backup_id(tenant["backup_id"].as_str().unwrap()).await;
    let one = run(&config, &["backup", "--force", "tenant-b"], &bed.secrets()).await;
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(
        stdout(&one).trim_end().ends_with(" tenant-b"),
        "{}",
        stdout(&one)
    );

    bed.set_faults(serde_json::json!({ "list_error_from_page": 1 }))
        .await;
    after_backup_id(&stdout(&one)[..16]).await;
    // `--force`: `blog` is unchanged since the first run, and the point is that it is exported.
    let failed = run(&config, &["backup", "--force"], &bed.secrets()).await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stdout(&failed).trim_end().ends_with(" blog"),
        "{}",
        stdout(&failed)
    );
    assert!(
        stderr(&failed).contains("fleet members were not backed up"),
        "{}",
        stderr(&failed)
    );
}

/// The complete backups of `database` in the filesystem store of `config`, oldest first, as backup ids.
async fn stored(config: &d1vault::config::Config, database: &str) -> Vec<String> {
    let storage = d1vault::storage::open(&config.storage).await.unwrap();
    let mut ids: Vec<String> = d1vault::repository::backups::complete(
        storage.as_ref(),
        config.storage.prefix(),
        Some(database),
    )
    .await
    .unwrap()
    .into_iter()
    .map(|m| m.backup_id)
    .collect();
    ids.reverse();
    ids
}

#[tokio::test(start_paused = true)]
async fn the_daemon_finds_new_members_at_the_next_discovery_and_keeps_them_through_a_failed_list() {
    // Proves the daemon's discovery in paused time: a member listed at start is backed up at its due
    // times; a database created after start gets no backup until the next discovery (10 minutes after
    // start) and then at its next due time; a list that fails stops no member; a database gone from the
    // account gets no more backups, and its backups stay.
    use chrono::TimeZone;
    use d1vault::daemon::{self, Clock, DaemonOptions, Signal};
    let t = |h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 1, 10, h, m, 0).unwrap();
    let id = |h: u32, m: u32| d1vault::repository::manifest::backup_id(t(h, m));
    let bed = Bed::with_emulator(&["tenant-a"]).await;
    std::fs::create_dir_all(bed.dir.path().join("store")).unwrap();
    let path = bed.write_daemon_config(
        "daemon",
        "listen = \"\"\ndiscovery_interval = \"10m\"",
        "type = \"filesystem\"\npath = \"store\"\nprefix = \"p\"",
        "[[fleet]]\nmatch = \"tenant-*\"\nschedule = \"*/5 * * * *\"\nskip_unchanged = false\ncompression = \"none\"\n",
    );
    let config = d1vault::config::load(&path).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let t0 = t(1, 1);
    let anchor = tokio::time::Instant::now();
    let until = |at: chrono::DateTime<chrono::Utc>| {
        tokio::time::sleep_until(anchor + (at - t0).to_std().unwrap())
    };
    let options = DaemonOptions {
        config_path: path.clone(),
        config: config.clone(),
        listener: None,
        clock: Clock::tokio_at(t0),
    };
    let handle = tokio::spawn(daemon::run(options, rx));

    until(t(1, 6)).await;
    assert_eq!(stored(&config, "tenant-a").await, [id(1, 5)]);
    crate::support::fixture::create_fixture_db(&bed.d1_file("tenant-b"));
    until(t(1, 10) + chrono::Duration::seconds(30)).await;
    assert!(
        stored(&config, "tenant-b").await.is_empty(),
        "not backed up before the next discovery"
    );
    until(t(1, 16)).await;
    assert_eq!(
        stored(&config, "tenant-b").await,
        [id(1, 15)],
        "found at 01:11, backed up at its next due time"
    );

    bed.set_faults(serde_json::json!({ "list_error_from_page": 1 }))
        .await;
    until(t(1, 26)).await;
    assert_eq!(stored(&config, "tenant-a").await.last(), Some(&id(1, 25)));
    assert_eq!(
        stored(&config, "tenant-b").await,
        [id(1, 15), id(1, 20), id(1, 25)],
        "a failed listing (01:21) takes no member for gone"
    );

    bed.set_faults(serde_json::json!({ "list_error_from_page": 0 }))
        .await;
    std::fs::remove_file(bed.d1_file("tenant-a")).unwrap();
    until(t(1, 41)).await;
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
    let a = stored(&config, "tenant-a").await;
    assert_eq!(
        a,
        [1, 2, 3, 4, 5].map(|i| id(1, 5 * i)),
        "gone at the 01:31 discovery: no backup since, none deleted"
    );
    assert_eq!(stored(&config, "tenant-b").await.last(), Some(&id(1, 40)));
    // Its task stopped: the 01:30 run (the file was already deleted) is its last attempt.
    let catalog = d1vault::catalog::Catalog::open(bed.dir.path().join("state"))
        .await
        .unwrap();
    let runs = catalog.recent_runs("tenant-a", 100).await.unwrap();
    let last_due = runs.iter().filter_map(|r| r.scheduled_for).max();
    assert_eq!(last_due, Some(t(1, 30)), "{runs:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_reload_applies_new_fleet_rules_to_the_members_already_found() {
    // Proves SIGHUP with a fleet: the reloaded rules apply at once to the members found before (an
    // `exclude` added for `tenant-b` ends its task, `tenant-a` keeps its schedule without waiting for the
    // next discovery), and `tenant-b`'s backups stay.
    use chrono::TimeZone;
    use d1vault::daemon::{self, Clock, DaemonOptions, Signal};
    let t = |h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 1, 10, h, m, 0).unwrap();
    let id = |h: u32, m: u32| d1vault::repository::manifest::backup_id(t(h, m));
    let bed = Bed::with_emulator(&["tenant-a", "tenant-b"]).await;
    std::fs::create_dir_all(bed.dir.path().join("store")).unwrap();
    let write = |exclude: &str| {
        bed.write_daemon_config(
            "daemon",
            "listen = \"\"\ndiscovery_interval = \"1h\"",
            "type = \"filesystem\"\npath = \"store\"\nprefix = \"p\"",
            &format!(
                "[[fleet]]\nmatch = \"tenant-*\"\nexclude = [{exclude}]\nschedule = \"*/5 * * * *\"\nskip_unchanged = false\n"
            ),
        )
    };
    let path = write("");
    let config = d1vault::config::load(&path).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let t0 = t(1, 1);
    let anchor = tokio::time::Instant::now();
    let until = |at: chrono::DateTime<chrono::Utc>| {
        tokio::time::sleep_until(anchor + (at - t0).to_std().unwrap())
    };
    let options = DaemonOptions {
        config_path: path.clone(),
        config: config.clone(),
        listener: None,
        clock: Clock::tokio_at(t0),
    };
    let handle = tokio::spawn(daemon::run(options, rx));
    until(t(1, 6)).await;
    assert_eq!(stored(&config, "tenant-b").await, [id(1, 5)]);
    // Make the next listing fail: the reload must work from the members already found.
    bed.set_faults(serde_json::json!({ "list_error_from_page": 1 }))
        .await;
    write("\"tenant-b\"");
    tx.send(Signal::Reload).await.unwrap();
    until(t(1, 21)).await;
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(
        stored(&config, "tenant-a").await,
        [id(1, 5), id(1, 10), id(1, 15), id(1, 20)]
    );
    assert_eq!(stored(&config, "tenant-b").await, [id(1, 5)]);
}
