//! `skip_unchanged` and `backup --force` against d1-emulator and the in-process S3 server: an unchanged
//! D1 database costs one bookmark request and no export; a write, `--force`, or any doubt about the newest
//! backup (no bookmark in its manifest, an unreadable manifest) means a backup.

use crate::support::bed::Bed;
use crate::support::run::{after_backup_id, ids, list_json, run, stderr, stdout};
use d1vault::pipeline::unchanged::{BackupRun, backup_unless_unchanged};
use d1vault::repository::manifest::{self, Manifest};

/// How many requests of `route` the emulator has seen.
fn requests(bed: &Bed, route: &str) -> u64 {
    bed.emulator()
        .stats()
        .by_route
        .get(route)
        .copied()
        .unwrap_or(0)
}

/// Writes a row into emulator database `blog` through the API, as an application would.
async fn write_a_row(bed: &Bed, config: &d1vault::config::Config) {
    let sources = bed.sources(config).await;
    let id = d1_emulator::database_id("blog").to_string();
    sources
        .cloudflare
        .unwrap()
        .query(
            &id,
            "INSERT INTO empty_table (note) VALUES ('written between backups')",
            &[],
        )
        .await
        .unwrap();
}

/// The one backup id `backup` printed for blog.
fn printed_id(out: &std::process::Output) -> String {
    assert!(out.status.success(), "backup failed: {}", stderr(out));
    let text = stdout(out);
    let line = text.trim();
    let (id, name) = line.split_once(' ').expect("`<id> <database>`");
    assert_eq!(name, "blog", "{text}");
    assert!(manifest::parse_backup_id(id).is_some(), "{text}");
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_skips_an_unchanged_database_until_it_is_written_or_forced() {
    // Proves the one-shot path: a second `backup` without a write prints `unchanged`, makes one bookmark
    // request and no export, and lists nothing new; `--force` and a write each make a new backup.
    let bed = Bed::with_emulator(&["blog"]).await;
    let secrets = bed.secrets();
    let path = bed.write_s3_config(
        "d1vault",
        &bed.s3.endpoint,
        "test",
        "[[database]]\nname = \"blog\"\n",
    );
    let config = d1vault::config::load(&path).unwrap();

    let first = printed_id(&run(&path, &["backup"], &secrets).await);
    after_backup_id(&first).await;
    let (exports, bookmarks) = (requests(&bed, "export"), requests(&bed, "bookmark"));

    let second = run(&path, &["backup"], &secrets).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        stdout(&second),
        format!("unchanged blog (newest backup {first})\n")
    );
    assert_eq!(requests(&bed, "export"), exports, "no export request");
    assert_eq!(
        requests(&bed, "bookmark"),
        bookmarks + 1,
        "one bookmark request"
    );
    assert_eq!(ids(&list_json(&path, &secrets).await), vec![first.clone()]);

    let forced = printed_id(&run(&path, &["backup", "--force", "blog"], &secrets).await);
    assert_ne!(forced, first);
    assert!(requests(&bed, "export") > exports, "--force exports");
    after_backup_id(&forced).await;

    write_a_row(&bed, &config).await;
    let counts = || ["bookmark", "query", "export"].map(|route| requests(&bed, route));
    let before = counts();
    let changed = printed_id(&run(&path, &["backup"], &secrets).await);
    assert_ne!(changed, forced);
    // A changed database costs one bookmark check, one schema read (both statements in one request)
    // and one export: each changed member of a fleet pays this out of the API budget.
    let after = counts();
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [1, 1, 1],
        "bookmark, query, export requests"
    );
    assert_eq!(
        ids(&list_json(&path, &secrets).await),
        [changed.clone(), forced, first]
    );
    after_backup_id(&changed).await;
    let again = run(&path, &["backup", "blog"], &secrets).await;
    assert_eq!(
        stdout(&again),
        format!("unchanged blog (newest backup {changed})\n")
    );
}

/// Replaces the stored manifest of `m` with `bytes`.
async fn overwrite_manifest(
    sources: &d1vault::sources::BackupSources,
    m: &Manifest,
    bytes: Vec<u8>,
) {
    let key = manifest::object_key(
        &sources.prefix,
        &m.database.name,
        &m.backup_id,
        manifest::MANIFEST_FILE,
    );
    sources.storage.delete(&key).await.unwrap();
    sources.storage.create_bytes(&key, bytes).await.unwrap();
}

fn backed(run: BackupRun) -> Manifest {
    match run {
        BackupRun::Backed(m) => *m,
        BackupRun::Unchanged(u) => panic!("expected a backup, got unchanged since {}", u.backup_id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_doubt_about_the_newest_backup_means_a_backup() {
    // Proves no skip on a guess: a newest manifest without a bookmark, an unreadable newest manifest, a
    // change of `no_data`, and skip_unchanged = false each export although the database did not change;
    // with none of these the same database is unchanged, even with a newer incomplete directory.
    let bed = Bed::with_emulator(&["blog"]).await;
    let config = bed.config("[[database]]\nname = \"blog\"\n", None);
    let sources = bed.sources(&config).await;
    let db = &config.databases[0];

    let first = backed(backup_unless_unchanged(db, &sources, false).await.unwrap());
    let mut without = first.clone();
    without.bookmark = None;
    overwrite_manifest(&sources, &first, without.to_json()).await;
    after_backup_id(&first.backup_id).await;
    let second = backed(backup_unless_unchanged(db, &sources, false).await.unwrap());
    assert_eq!(
        second.bookmark, first.bookmark,
        "the database did not change"
    );

    overwrite_manifest(&sources, &second, b"{ not json".to_vec()).await;
    after_backup_id(&second.backup_id).await;
    let third = backed(backup_unless_unchanged(db, &sources, false).await.unwrap());

    let schema_only = bed.config("[[database]]\nname = \"blog\"\nno_data = true\n", None);
    after_backup_id(&third.backup_id).await;
    let fourth = backed(
        backup_unless_unchanged(&schema_only.databases[0], &sources, false)
            .await
            .unwrap(),
    );
    assert!(fourth.export.no_data);

    let off = bed.config(
        "[[database]]\nname = \"blog\"\nskip_unchanged = false\n",
        None,
    );
    after_backup_id(&fourth.backup_id).await;
    let fifth = backed(
        backup_unless_unchanged(&off.databases[0], &sources, false)
            .await
            .unwrap(),
    );

    // A newer directory without a manifest (a failed upload) is not a backup and changes nothing.
    after_backup_id(&fifth.backup_id).await;
    let stray = manifest::backup_id(chrono::Utc::now());
    let key = manifest::object_key(&sources.prefix, "blog", &stray, "dump.sql.zst");
    sources
        .storage
        .create_bytes(&key, b"partial".to_vec())
        .await
        .unwrap();
    after_backup_id(&stray).await;
    match backup_unless_unchanged(db, &sources, false).await.unwrap() {
        BackupRun::Unchanged(u) => {
            assert_eq!(u.backup_id, fifth.backup_id);
            assert_eq!(Some(u.bookmark), fifth.bookmark);
        }
        BackupRun::Backed(m) => panic!("an unchanged database was exported again: {}", m.backup_id),
    }
}
