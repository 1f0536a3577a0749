//! Fleets against d1-emulator over HTTP: the account listed page by page, which entry governs each
//! database, `d1vault databases`, `backup` of a fleet, and the daemon finding new members.

use crate::support::bed::Bed;
use crate::support::run::{run, stderr, stdout};
use d1vault::fleet::{self, DiscoveryError, Entry};

/// `[[fleet]]` tables for tenant databases: `tenant-*` without the staging ones, then everything.
const FLEETS: &str = "[[fleet]]\nmatch = \"tenant-*\"\nexclude = [\"tenant-staging-*\"]\nschedule = \"@daily\"\ncompression = \"none\"\n\n[[fleet]]\nmatch = \"tenant-staging-*\"\nschedule = \"@weekly\"\n";

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
    let config = bed.config(
        &format!("[[database]]\nname = \"blog\"\n\n{FLEETS}"),
        None,
    );
    let sources = bed.sources(&config).await;
    let client = sources.cloudflare.as_ref().unwrap();
    let before = bed.emulator().stats().by_route.get("list").copied().unwrap_or(0);
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
    assert!(matches!(error, DiscoveryError::Page { page: 2, .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("none is taken for gone"), "{error}");
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
    assert!(text.contains("tenant-a") && text.contains("fleet[0] match \"tenant-*\""), "{text}");
    assert!(!text.contains("other"), "{text}");
}
