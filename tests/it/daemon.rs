//! The scheduler daemon (`d1vault::daemon::run`) driven through its public entry point with real parts:
//! SQLite sources built from the shared fixture, filesystem storage in a temporary directory, the real
//! configuration loader, and the real catalog.
//!
//! Two kinds of tests:
//! * paused tokio time (`start_paused`): the daemon's clock is `Clock::tokio_at(t0)`, so hours and days of
//!   schedule pass in milliseconds. Every blocking step of a SQLite-to-filesystem backup (the dump thread,
//!   `tokio::fs`, the catalog) runs in `spawn_blocking`, which stops tokio from auto-advancing paused time,
//!   so a backup takes zero virtual time and the tests are deterministic.
//! * real time on a multi-thread runtime, with the daemon's clock started just before a due time, for
//!   what needs a backup to take time (concurrency, a window closing while a run waits for a slot, the
//!   shutdown grace). A backup is made slow by holding an exclusive lock on its SQLite source: the dump
//!   waits on SQLite's busy timeout until the test releases the lock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::bed::Bed;
use crate::support::fixture::create_fixture_db;
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use d1vault::catalog::{Catalog, RunOutcome, RunRecord, RunState};
use d1vault::config::{self, Config};
use d1vault::daemon::{self, Clock, DaemonOptions, Signal};
use d1vault::repository::backups;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// A scratch directory with SQLite sources, a state dir, a filesystem store and a config file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// Creates the fixture as SQLite source `<name>.sqlite` for each name.
    fn new(databases: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for name in databases {
            create_fixture_db(&dir.path().join(format!("{name}.sqlite")));
        }
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        Setup { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.path().join("d1vault.toml")
    }

    fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes `d1vault.toml`: `[daemon]` extra lines, then one `[[database]]` per (name, extra lines).
    fn write_config(&self, daemon: &str, databases: &[(&str, &str)]) {
        let mut text = format!(
            "[daemon]\nstate_dir = \"state\"\nlisten = \"\"\n{daemon}\n\n[storage]\ntype = \"filesystem\"\npath = \"store\"\nprefix = \"p\"\n\n"
        );
        for (name, extra) in databases {
            text.push_str(&format!(
                "[[database]]\nname = \"{name}\"\nsqlite_path = \"{name}.sqlite\"\ncompression = \"none\"\n{extra}\n\n"
            ));
        }
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn load(&self) -> Config {
        config::load(&self.config_path()).unwrap_or_else(|e| panic!("config does not load: {e}"))
    }

    /// Starts the daemon on the current config with a tokio-driven clock reading `t0` now.
    fn start(&self, t0: DateTime<Utc>) -> Daemon {
        let (tx, rx) = mpsc::channel(8);
        let options = DaemonOptions {
            config_path: self.config_path(),
            config: self.load(),
            listener: None,
            clock: Clock::tokio_at(t0),
        };
        let handle = tokio::spawn(daemon::run(options, rx));
        Daemon {
            tx,
            handle,
            t0,
            anchor: tokio::time::Instant::now(),
        }
    }

    /// Every catalog row of `database`, oldest first.
    async fn runs(&self, database: &str) -> Vec<RunRecord> {
        let catalog = Catalog::open(self.state_dir()).await.unwrap();
        let mut runs = catalog.recent_runs(database, 10_000).await.unwrap();
        runs.reverse();
        runs
    }

    /// The complete backups of `database` in the store, newest first, as backup ids.
    async fn stored(&self, database: &str) -> Vec<String> {
        let config = self.load();
        let storage = d1vault::storage::open(&config.storage).await.unwrap();
        backups::complete(storage.as_ref(), config.storage.prefix(), Some(database))
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.backup_id)
            .collect()
    }
}

/// A running daemon and the tokio instant at which its clock read `t0`.
struct Daemon {
    tx: mpsc::Sender<Signal>,
    handle: JoinHandle<Result<(), String>>,
    t0: DateTime<Utc>,
    anchor: tokio::time::Instant,
}

impl Daemon {
    /// Lets (paused or real) time pass until the daemon's clock reads `t`.
    async fn until(&self, t: DateTime<Utc>) {
        let offset = (t - self.t0).to_std().expect("time moves forward");
        tokio::time::sleep_until(self.anchor + offset).await;
    }

    /// Sends Terminate and waits for the daemon to return.
    async fn stop(self) {
        self.tx.send(Signal::Terminate).await.unwrap();
        self.handle.await.unwrap().unwrap();
    }
}

fn started(runs: &[RunRecord]) -> Vec<&RunRecord> {
    runs.iter()
        .filter(|r| r.outcome != RunState::Skipped)
        .collect()
}

fn successes(runs: &[RunRecord]) -> Vec<&RunRecord> {
    runs.iter()
        .filter(|r| r.outcome == RunState::Finished(RunOutcome::Success))
        .collect()
}

fn id(t: DateTime<Utc>) -> String {
    d1vault::repository::manifest::backup_id(t)
}

#[tokio::test(start_paused = true)]
async fn runs_happen_at_their_cron_times_in_the_configured_zone_across_a_dst_change() {
    // Proves a 5-field cron is read as wall-clock time in daemon.timezone: 03:30 in Berlin is 02:30 UTC
    // before the spring-forward change of 2026-03-29 and 01:30 UTC after it; each run starts on time.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"Europe/Berlin\"",
        &[("blog", "schedule = \"30 3 * * *\"")],
    );
    let d = setup.start(utc(2026, 3, 27, 12, 0, 0));
    d.until(utc(2026, 3, 30, 12, 0, 0)).await;
    d.stop().await;

    let runs = setup.runs("blog").await;
    let expected = [
        utc(2026, 3, 28, 2, 30, 0),
        utc(2026, 3, 29, 1, 30, 0),
        utc(2026, 3, 30, 1, 30, 0),
    ];
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for (run, due) in runs.iter().zip(expected) {
        assert_eq!(
            run.outcome,
            RunState::Finished(RunOutcome::Success),
            "{run:#?}"
        );
        assert_eq!(run.scheduled_for, Some(due));
        assert_eq!(
            run.started_at, due,
            "starts exactly at its due time (no jitter configured)"
        );
        assert_eq!(run.backup_id.as_deref(), Some(id(due).as_str()));
    }
    let mut stored = setup.stored("blog").await;
    stored.reverse();
    assert_eq!(
        stored,
        expected.map(id).to_vec(),
        "each run left one complete backup"
    );
}

#[tokio::test(start_paused = true)]
async fn the_manifests_finished_at_follows_the_daemons_clock() {
    // Proves the manifest's `finished_at` is read from the daemon's injected clock, not the wall clock: with
    // paused time set in 2031 a run due at 03:00 finishes at 03:00 (a backup takes no virtual time), and the
    // manifest and the catalog row agree on it.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 3 * * *\"")],
    );
    let due = utc(2031, 6, 1, 3, 0, 0);
    let d = setup.start(utc(2031, 6, 1, 2, 59, 0));
    d.until(utc(2031, 6, 1, 3, 30, 0)).await;
    d.stop().await;

    let config = setup.load();
    let storage = d1vault::storage::open(&config.storage).await.unwrap();
    let manifests = backups::complete(storage.as_ref(), config.storage.prefix(), Some("blog"))
        .await
        .unwrap();
    assert_eq!(manifests.len(), 1, "{manifests:#?}");
    let manifest = &manifests[0];
    assert_eq!(manifest.started_at, due);
    assert!(
        manifest.finished_at >= due && manifest.finished_at - due < chrono::Duration::minutes(1),
        "finished_at {} is on the daemon's clock (due {due}), not the wall clock",
        manifest.finished_at
    );
    let runs = setup.runs("blog").await;
    let finished = runs[0].finished_at.expect("the run finished");
    assert_eq!(
        finished.trunc_subsecs(0),
        manifest.finished_at,
        "the catalog row and the manifest read the same clock"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_due_outside_its_window_starts_at_the_windows_opening() {
    // Proves a run due at 23:00 with a 02:00-05:00 window (crossing nothing, next due after the close)
    // waits for the next opening, and is recorded with its due time.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[(
            "blog",
            "schedule = \"0 23 * * *\"\nwindow = \"02:00-05:00\"",
        )],
    );
    let d = setup.start(utc(2026, 1, 10, 12, 0, 0));
    d.until(utc(2026, 1, 11, 1, 59, 0)).await;
    assert!(
        started(&setup.runs("blog").await).is_empty(),
        "nothing may start before the window opens"
    );
    d.until(utc(2026, 1, 11, 6, 0, 0)).await;
    d.stop().await;

    let runs = setup.runs("blog").await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].scheduled_for, Some(utc(2026, 1, 10, 23, 0, 0)));
    assert_eq!(runs[0].started_at, utc(2026, 1, 11, 2, 0, 0));
    assert_eq!(runs[0].outcome, RunState::Finished(RunOutcome::Success));
}

#[tokio::test(start_paused = true)]
async fn due_times_that_cannot_start_in_their_own_window_are_recorded_as_skipped_with_a_reason() {
    // Proves an hourly schedule with a 02:00-04:00 window runs at 02:00 and 03:00, and that every other due
    // time is recorded as skipped with a reason, visible to `status` as well.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 * * * *\"\nwindow = \"02:00-04:00\"")],
    );
    let d = setup.start(utc(2026, 1, 10, 0, 30, 0));
    d.until(utc(2026, 1, 10, 6, 30, 0)).await;
    d.stop().await;

    let runs = setup.runs("blog").await;
    let ran: Vec<_> = started(&runs)
        .iter()
        .map(|r| r.scheduled_for.unwrap())
        .collect();
    assert_eq!(
        ran,
        vec![utc(2026, 1, 10, 2, 0, 0), utc(2026, 1, 10, 3, 0, 0)],
        "{runs:#?}"
    );
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.outcome == RunState::Skipped)
        .collect();
    let skipped_due: Vec<_> = skipped.iter().map(|r| r.scheduled_for.unwrap()).collect();
    assert_eq!(
        skipped_due,
        vec![
            utc(2026, 1, 10, 1, 0, 0),
            utc(2026, 1, 10, 4, 0, 0),
            utc(2026, 1, 10, 5, 0, 0),
            utc(2026, 1, 10, 6, 0, 0)
        ],
        "every due time outside the window is accounted for"
    );
    for s in skipped {
        let reason = s.error.as_deref().unwrap_or("");
        assert!(
            reason.contains("outside window 02:00-04:00"),
            "reason names the window: {reason}"
        );
    }
    // `status --json` shows the latest skip and its reason.
    let (code, stdout, stderr) = d1vault(&setup.config_path(), &["status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        status[0]["last_skipped"], "2026-01-10T06:00:00+00:00",
        "{status}"
    );
    assert!(
        status[0]["last_skipped_reason"]
            .as_str()
            .unwrap()
            .contains("outside window"),
        "{status}"
    );
}

#[tokio::test(start_paused = true)]
async fn retention_after_each_success_keeps_exactly_what_the_policy_says() {
    // Proves retention runs after every successful backup: 60 hourly backups with keep_last = 2 and
    // keep_daily = 2 leave the two newest and the newest of the previous day, nothing else.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[(
            "blog",
            "schedule = \"0 * * * *\"\nretention = { keep_last = 2, keep_daily = 2 }",
        )],
    );
    let d = setup.start(utc(2026, 1, 10, 0, 30, 0));
    d.until(utc(2026, 1, 11, 0, 30, 0)).await;
    // After the run of 2026-01-11 00:00: last two are 00:00 and 10th 23:00; daily adds nothing new.
    assert_eq!(
        setup.stored("blog").await,
        vec![
            id(utc(2026, 1, 11, 0, 0, 0)),
            id(utc(2026, 1, 10, 23, 0, 0))
        ]
    );
    d.until(utc(2026, 1, 12, 12, 30, 0)).await;
    d.stop().await;
    assert_eq!(
        setup.stored("blog").await,
        vec![
            id(utc(2026, 1, 12, 12, 0, 0)),
            id(utc(2026, 1, 12, 11, 0, 0)),
            id(utc(2026, 1, 11, 23, 0, 0))
        ]
    );
    assert_eq!(
        successes(&setup.runs("blog").await).len(),
        60,
        "every hourly run succeeded"
    );
}

/// Log lines captured from the current thread's tracing events (the paused runtime runs the daemon's
/// tasks on this thread).
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(start_paused = true)]
async fn retention_after_each_run_keeps_a_backup_whose_manifest_is_unreadable_and_logs_it_at_error()
{
    // Proves the daemon's prune after each backup never deletes a backup whose manifest it cannot read
    // (here a newer format, as a newer d1vault sharing the bucket writes): it survives hours of hourly
    // runs under keep_last = 1, is never listed, and each run logs it at ERROR.
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[(
            "blog",
            "schedule = \"0 * * * *\"\nretention = { keep_last = 1 }",
        )],
    );
    let old = "20260105T030000Z";
    let dir = setup.path().join("store/p/blog").join(old);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = serde_json::json!({
        "format": 2, "tool": "d1vault 9.0.0",
        "database": { "name": "blog", "id": null, "source": "sqlite" },
        "backup_id": old, "started_at": "2026-01-05T03:00:00Z", "finished_at": "2026-01-05T03:00:09Z",
        "dump": { "key": format!("p/blog/{old}/dump.sql.zst"), "compression": "zstd" }
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("dump.sql.zst"), b"a newer version's dump").unwrap();
    let d = setup.start(utc(2026, 1, 10, 0, 30, 0));
    d.until(utc(2026, 1, 10, 3, 30, 0)).await;
    d.stop().await;
    assert_eq!(
        setup.stored("blog").await,
        vec![id(utc(2026, 1, 10, 3, 0, 0))]
    );
    assert_eq!(
        std::fs::read(dir.join("dump.sql.zst")).unwrap(),
        b"a newer version's dump",
        "the daemon's retention deleted a backup it could not read"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.json")).unwrap(),
        manifest.to_string()
    );
    let text = logs.text();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("manifest unreadable") && l.contains(old))
        .collect();
    assert_eq!(errors.len(), 3, "one ERROR per run:\n{text}");
}

#[tokio::test(start_paused = true)]
async fn reload_applies_a_new_schedule_and_an_invalid_file_keeps_the_old_one() {
    // Proves SIGHUP (Signal::Reload) re-reads the file: a daily schedule becomes hourly at once, a
    // second database added by the reload gets its own schedule, and a broken file changes nothing.
    let setup = Setup::new(&["blog", "shop"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 3 * * *\"")],
    );
    let d = setup.start(utc(2026, 1, 10, 0, 0, 0));
    d.until(utc(2026, 1, 10, 0, 10, 0)).await;
    setup.write_config(
        "timezone = \"UTC\"",
        &[
            ("blog", "schedule = \"0 * * * *\""),
            ("shop", "schedule = \"30 * * * *\""),
        ],
    );
    d.tx.send(Signal::Reload).await.unwrap();
    d.until(utc(2026, 1, 10, 2, 10, 0)).await;
    let blog: Vec<_> = started(&setup.runs("blog").await)
        .iter()
        .map(|r| r.scheduled_for.unwrap())
        .collect();
    assert_eq!(
        blog,
        vec![utc(2026, 1, 10, 1, 0, 0), utc(2026, 1, 10, 2, 0, 0)]
    );
    let shop: Vec<_> = started(&setup.runs("shop").await)
        .iter()
        .map(|r| r.scheduled_for.unwrap())
        .collect();
    assert_eq!(
        shop,
        vec![utc(2026, 1, 10, 0, 30, 0), utc(2026, 1, 10, 1, 30, 0)]
    );

    // An invalid file (unknown key, bad cron): reported, the hourly configuration stays in force.
    std::fs::write(setup.config_path(), "[daemon]\nstate_dir = \"state\"\nbogus = 1\n[[database]]\nname = \"blog\"\nschedule = \"nope\"\n").unwrap();
    d.tx.send(Signal::Reload).await.unwrap();
    d.until(utc(2026, 1, 10, 4, 10, 0)).await;
    let blog: Vec<_> = started(&setup.runs("blog").await)
        .iter()
        .map(|r| r.scheduled_for.unwrap())
        .collect();
    assert_eq!(blog.len(), 4, "blog kept its hourly schedule: {blog:?}");
    assert_eq!(
        started(&setup.runs("shop").await).len(),
        4,
        "shop kept running"
    );

    // Removing a database by reload stops its schedule.
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 * * * *\"")],
    );
    d.tx.send(Signal::Reload).await.unwrap();
    d.until(utc(2026, 1, 10, 6, 10, 0)).await;
    d.stop().await;
    assert_eq!(
        started(&setup.runs("shop").await).len(),
        4,
        "a removed database is not backed up any more"
    );
    assert_eq!(started(&setup.runs("blog").await).len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_run_waiting_for_its_window_survives_a_reload() {
    // Proves a reload while a run is already due but waiting for its window opening does not drop it: the
    // run still starts at the opening (re-planned with the new configuration).
    let setup = Setup::new(&["blog"]);
    let db = "schedule = \"0 23 * * *\"\nwindow = \"02:00-05:00\"";
    setup.write_config("timezone = \"UTC\"", &[("blog", db)]);
    let d = setup.start(utc(2026, 1, 10, 22, 0, 0));
    d.until(utc(2026, 1, 11, 0, 0, 0)).await;
    setup.write_config("timezone = \"UTC\"\nmax_concurrent = 3", &[("blog", db)]);
    d.tx.send(Signal::Reload).await.unwrap();
    d.until(utc(2026, 1, 11, 6, 0, 0)).await;
    d.stop().await;
    let runs = setup.runs("blog").await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].scheduled_for, Some(utc(2026, 1, 10, 23, 0, 0)));
    assert_eq!(runs[0].started_at, utc(2026, 1, 11, 2, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn terminate_stops_an_idle_daemon_at_once() {
    // Proves Signal::Terminate ends an idle daemon without waiting for its next due time or a grace period.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"\nshutdown_grace = \"1h\"",
        &[("blog", "schedule = \"0 3 * * *\"")],
    );
    let t0 = utc(2026, 1, 10, 0, 0, 0);
    let d = setup.start(t0);
    d.until(utc(2026, 1, 10, 0, 1, 0)).await;
    let before = tokio::time::Instant::now();
    d.stop().await;
    assert!(
        before.elapsed() < Duration::from_secs(1),
        "stopping took {:?} of (virtual) time",
        before.elapsed()
    );
    assert!(setup.runs("blog").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_killed_daemon_neither_loses_nor_repeats_a_missed_run() {
    // Proves restart safety: the daemon is killed (its future dropped, no shutdown code runs) before a due
    // time and restarted after it: the missed run happens once, right away; a second restart does not
    // repeat it; a run left "running" by a kill mid-backup is marked interrupted and retried once.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 3 * * *\"")],
    );

    // First life: one normal run on the 10th gives the catalog a history.
    let d = setup.start(utc(2026, 1, 10, 2, 0, 0));
    d.until(utc(2026, 1, 10, 12, 0, 0)).await;
    d.handle.abort();
    assert_eq!(started(&setup.runs("blog").await).len(), 1);

    // Down from the 10th 12:00 until the 12th 09:00: due times on the 11th and 12th at 03:00 were missed.
    let d = setup.start(utc(2026, 1, 12, 9, 0, 0));
    d.until(utc(2026, 1, 12, 9, 1, 0)).await;
    let runs = setup.runs("blog").await;
    let ran: Vec<_> = started(&runs)
        .iter()
        .map(|r| (r.scheduled_for.unwrap(), r.started_at))
        .collect();
    assert_eq!(
        ran,
        vec![
            (utc(2026, 1, 10, 3, 0, 0), utc(2026, 1, 10, 3, 0, 0)),
            (utc(2026, 1, 12, 3, 0, 0), utc(2026, 1, 12, 9, 0, 0)),
        ],
        "the latest missed due time runs once at start-up (not once per missed tick)"
    );
    d.handle.abort();

    // Restarted again the same morning: nothing was missed, nothing runs twice.
    let d = setup.start(utc(2026, 1, 12, 10, 0, 0));
    d.until(utc(2026, 1, 12, 11, 0, 0)).await;
    d.handle.abort();
    assert_eq!(
        started(&setup.runs("blog").await).len(),
        2,
        "no duplicate after a second restart"
    );

    // A kill in the middle of the 13th's run leaves a row in state "running".
    let catalog = Catalog::open(setup.state_dir()).await.unwrap();
    let due = utc(2026, 1, 13, 3, 0, 0);
    catalog
        .start_run("blog", Some(due), due, Some(&id(due)))
        .await
        .unwrap();
    drop(catalog);
    let d = setup.start(utc(2026, 1, 13, 8, 0, 0));
    d.until(utc(2026, 1, 13, 8, 1, 0)).await;
    d.stop().await;
    let runs = setup.runs("blog").await;
    let for_13th: Vec<_> = runs
        .iter()
        .filter(|r| r.scheduled_for == Some(due))
        .collect();
    assert_eq!(for_13th.len(), 2, "{for_13th:#?}");
    assert_eq!(for_13th[0].outcome, RunState::Interrupted);
    assert_eq!(for_13th[1].outcome, RunState::Finished(RunOutcome::Success));
    assert_eq!(for_13th[1].started_at, utc(2026, 1, 13, 8, 0, 0));
}

/// Holds an exclusive lock on a SQLite file, so that a dump of it waits (busy timeout) until released.
struct SourceLock {
    release: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SourceLock {
    fn hold(path: &Path) -> SourceLock {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.recv();
            conn.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        SourceLock {
            release,
            thread: Some(thread),
        }
    }

    /// Releases the lock after `after` (on its own thread, so the test can keep waiting meanwhile).
    fn release_after(self, after: Duration) {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            drop(self);
        });
    }
}

impl Drop for SourceLock {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn overlaps(a: &RunRecord, b: &RunRecord) -> bool {
    let (a0, a1) = (a.started_at, a.finished_at.unwrap());
    let (b0, b1) = (b.started_at, b.finished_at.unwrap());
    a0 < b1 && b0 < a1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_one_never_runs_two_backups_at_once() {
    // Proves max_concurrent bounds simultaneous backups: two databases due at the same second, each backup
    // held for 1.5 s by a lock on its source; with max_concurrent = 1 their catalog intervals do not overlap
    // (and with 2 they do, which shows the observation can fail).
    for (max, expect_overlap) in [(1, false), (2, true)] {
        let setup = Setup::new(&["blog", "shop"]);
        setup.write_config(
            &format!("timezone = \"UTC\"\nmax_concurrent = {max}"),
            &[
                ("blog", "schedule = \"1 0 2 * * *\""),
                ("shop", "schedule = \"1 0 2 * * *\""),
            ],
        );
        let blog_lock = SourceLock::hold(&setup.path().join("blog.sqlite"));
        let shop_lock = SourceLock::hold(&setup.path().join("shop.sqlite"));
        let d = setup.start(utc(2026, 1, 10, 2, 0, 0));
        d.until(utc(2026, 1, 10, 2, 0, 1)).await;
        blog_lock.release_after(Duration::from_millis(1500));
        shop_lock.release_after(Duration::from_millis(1500));
        // Both runs are done by 02:00:06 (1.5 s each, at most one after the other, plus slack).
        d.until(utc(2026, 1, 10, 2, 0, 8)).await;
        d.stop().await;
        let blog = setup.runs("blog").await;
        let shop = setup.runs("shop").await;
        let (b, s) = (successes(&blog), successes(&shop));
        assert_eq!(
            (b.len(), s.len()),
            (1, 1),
            "max_concurrent = {max}: {blog:#?} {shop:#?}"
        );
        assert_eq!(
            overlaps(b[0], s[0]),
            expect_overlap,
            "max_concurrent = {max}: {b:#?} {s:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_get_a_slot_before_its_window_closes_is_skipped() {
    // Proves the window is a hard limit: with max_concurrent = 1, a run waiting for a slot while the
    // window closes is recorded as skipped with the reason, instead of starting after the window.
    let setup = Setup::new(&["blog", "shop"]);
    let db = "schedule = \"57 0 2 * * *\"\nwindow = \"02:00-02:01\"";
    setup.write_config(
        "timezone = \"UTC\"\nmax_concurrent = 1",
        &[("blog", db), ("shop", db)],
    );
    let blog_lock = SourceLock::hold(&setup.path().join("blog.sqlite"));
    let shop_lock = SourceLock::hold(&setup.path().join("shop.sqlite"));
    let d = setup.start(utc(2026, 1, 10, 2, 0, 56));
    d.until(utc(2026, 1, 10, 2, 0, 57)).await;
    // Whichever got the slot holds it past the close at 02:01:00.
    blog_lock.release_after(Duration::from_secs(5));
    shop_lock.release_after(Duration::from_secs(5));
    d.until(utc(2026, 1, 10, 2, 1, 8)).await;
    d.stop().await;
    let mut all: Vec<RunRecord> = setup.runs("blog").await;
    all.extend(setup.runs("shop").await);
    let ran: Vec<_> = all
        .iter()
        .filter(|r| r.outcome == RunState::Finished(RunOutcome::Success))
        .collect();
    let skipped: Vec<_> = all
        .iter()
        .filter(|r| r.outcome == RunState::Skipped)
        .collect();
    assert_eq!((ran.len(), skipped.len()), (1, 1), "{all:#?}");
    assert!(
        skipped[0]
            .error
            .as_deref()
            .unwrap()
            .contains("window closed while waiting"),
        "{skipped:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_flight_finishes_within_a_long_grace() {
    // Proves a graceful stop lets a running backup finish when it does so within shutdown_grace.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"\nshutdown_grace = \"30s\"",
        &[("blog", "schedule = \"1 0 2 * * *\"")],
    );
    let lock = SourceLock::hold(&setup.path().join("blog.sqlite"));
    let d = setup.start(utc(2026, 1, 10, 2, 0, 0));
    d.until(utc(2026, 1, 10, 2, 0, 2)).await;
    assert_eq!(setup.runs("blog").await[0].outcome, RunState::Running);
    lock.release_after(Duration::from_secs(2));
    d.stop().await;
    let runs = setup.runs("blog").await;
    assert_eq!(
        runs[0].outcome,
        RunState::Finished(RunOutcome::Success),
        "{runs:#?}"
    );
    assert_eq!(setup.stored("blog").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_flight_is_aborted_cleanly_after_a_short_grace() {
    // Proves a backup still running when shutdown_grace ends is aborted: the daemon returns promptly, the
    // run is recorded as aborted, no manifest and no temporary file is left in the store.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"\nshutdown_grace = \"1s\"",
        &[("blog", "schedule = \"1 0 2 * * *\"")],
    );
    let lock = SourceLock::hold(&setup.path().join("blog.sqlite"));
    let d = setup.start(utc(2026, 1, 10, 2, 0, 0));
    d.until(utc(2026, 1, 10, 2, 0, 2)).await;
    let before = std::time::Instant::now();
    d.stop().await;
    let took = before.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "stop took {took:?} with a 1 s grace"
    );
    drop(lock);
    let runs = setup.runs("blog").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].outcome,
        RunState::Finished(RunOutcome::Aborted),
        "{runs:#?}"
    );
    assert!(setup.stored("blog").await.is_empty());
    let leftovers: Vec<_> = walk(&setup.path().join("store"));
    assert!(
        leftovers.is_empty(),
        "files left in the store: {leftovers:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// The `d1vault` binary as a process: `run` against d1-emulator and the in-process S3 server, and `prune`.

const BIN: &str = env!("CARGO_BIN_EXE_d1vault");

/// Writes a config for `env` (emulator source `blog`, S3 storage) and returns its path.
fn write_env_config(env: &Bed, daemon: &str, database: &str) -> PathBuf {
    env.write_daemon_config(
        "d1vault",
        daemon,
        &env.s3_storage(&env.s3.endpoint, "test"),
        &format!("[[database]]\nname = \"blog\"\n{database}\n"),
    )
}

/// Runs a one-shot `d1vault` command and returns (exit code, stdout, stderr).
async fn d1vault(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The backup ids `list --json` prints, newest first.
async fn list_ids(config: &Path) -> Vec<String> {
    let (code, stdout, stderr) = d1vault(config, &["list", "--json"]).await;
    assert_eq!(code, 0, "list failed: {stderr}");
    let manifests: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    manifests
        .iter()
        .map(|m| m["backup_id"].as_str().unwrap().to_string())
        .collect()
}

/// `d1vault run` as a child process, with its stderr lines collected.
struct DaemonProcess {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl DaemonProcess {
    fn spawn(config: &Path) -> DaemonProcess {
        let mut child = tokio::process::Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        DaemonProcess {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `needle` and returns it.
    async fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                _ => panic!(
                    "no log line containing {needle:?} within {limit:?}; stderr so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The address from the "serving /healthz and /metrics addr=..." line.
    async fn http_addr(&mut self) -> String {
        let line = self
            .wait_for_line("serving /healthz and /metrics", Duration::from_secs(30))
            .await;
        let addr = line
            .split("addr=")
            .nth(1)
            .expect("addr field")
            .split_whitespace()
            .next()
            .unwrap();
        addr.trim_matches('"').to_string()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and returns the exit code and how long the exit took.
    async fn terminate(&mut self, limit: Duration) -> (i32, Duration) {
        let before = std::time::Instant::now();
        self.signal("TERM");
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit within {limit:?} of SIGTERM"))
            .unwrap();
        (status.code().unwrap_or(-1), before.elapsed())
    }
}

/// Waits (up to 20 s) until the catalog in `state_dir` shows blog's newest run as running.
async fn wait_for_running_backup(state_dir: &Path) {
    eventually(Duration::from_secs(20), "a running backup", || async {
        let catalog = Catalog::open(state_dir).await.unwrap();
        let runs = catalog.recent_runs("blog", 1).await.unwrap();
        runs.first()
            .is_some_and(|r| r.outcome == RunState::Running)
            .then_some(())
    })
    .await;
}

/// The daemon's `GET /metrics` answer at `addr`.
async fn metrics_text(addr: impl std::fmt::Display) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `check` every 200 ms until it returns Some, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_binary_backs_up_on_a_seconds_cron_keeps_two_serves_health_and_metrics_and_exits_on_sigterm()
 {
    // Proves the real daemon process end to end: a 6-field cron against d1-emulator and S3 makes backups,
    // retention keep_last = 2 leaves exactly the two newest, /healthz and /metrics answer on the port the
    // daemon bound (listen = 127.0.0.1:0, read from its log), and SIGTERM ends it with exit 0 in time.
    let env = Bed::with_emulator(&["blog"]).await;
    let config = write_env_config(
        &env,
        "listen = \"127.0.0.1:0\"\nshutdown_grace = \"20s\"",
        // Every run exports, though nothing writes between them.
        "schedule = \"*/2 * * * * *\"\nretention = { keep_last = 2 }\nskip_unchanged = false",
    );
    let mut daemon = DaemonProcess::spawn(&config);
    let addr = daemon.http_addr().await;
    daemon
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;

    let state_dir = env.dir.path().join("state");
    let successes = || async {
        let catalog = Catalog::open(&state_dir).await.unwrap();
        let runs = catalog.recent_runs("blog", 100).await.unwrap();
        runs.into_iter()
            .filter(|r| r.outcome == RunState::Finished(RunOutcome::Success))
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(60), "four successful runs", || async {
        (successes().await.len() >= 4).then_some(())
    })
    .await;

    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["databases"][0]["name"], "blog", "{body}");
    assert_eq!(body["databases"][0]["state"], "fresh", "{body}");
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "d1vault_last_success_timestamp_seconds{database=\"blog\"}",
        "d1vault_backups_total{database=\"blog\",result=\"success\"}",
        "d1vault_backup_duration_seconds{database=\"blog\"}",
        "d1vault_backup_bytes{database=\"blog\",kind=\"raw\"}",
        "d1vault_backup_bytes{database=\"blog\",kind=\"stored\"}",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }

    let (code, took) = daemon.terminate(Duration::from_secs(25)).await;
    assert_eq!(
        code,
        0,
        "exit status after SIGTERM; stderr:\n{}",
        daemon.log.join("\n")
    );
    assert!(took < Duration::from_secs(20), "exit took {took:?}");

    // Retention after each success: exactly the two newest successful backups remain.
    let mut newest: Vec<String> = successes()
        .await
        .into_iter()
        .filter_map(|r| r.backup_id)
        .collect();
    newest.sort();
    newest.reverse();
    assert_eq!(list_ids(&config).await, newest[..2].to_vec());
    assert_eq!(env.s3.open_multipart_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_records_unchanged_runs_without_exports_and_stays_fresh() {
    // Proves skip_unchanged in the daemon: after the first backup, runs on an unwritten database make no
    // export, are recorded as `unchanged` naming that backup, are counted in /metrics as
    // result="unchanged", and keep /healthz fresh although the backup is older than the freshness limit.
    let env = Bed::with_emulator(&["blog"]).await;
    let config = write_env_config(
        &env,
        "listen = \"127.0.0.1:0\"\nshutdown_grace = \"20s\"",
        "schedule = \"*/2 * * * * *\"",
    );
    let mut daemon = DaemonProcess::spawn(&config);
    let addr = daemon.http_addr().await;
    let state_dir = env.dir.path().join("state");
    let runs = || async {
        let catalog = Catalog::open(&state_dir).await.unwrap();
        catalog.recent_runs("blog", 100).await.unwrap()
    };
    let by = |runs: &[RunRecord], outcome: RunOutcome| {
        runs.iter()
            .filter(|r| r.outcome == RunState::Finished(outcome))
            .cloned()
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(60), "an unchanged run", || async {
        (!by(&runs().await, RunOutcome::Unchanged).is_empty()).then_some(())
    })
    .await;
    let exports = env.emulator().stats().by_route.get("export").copied();
    assert!(exports.is_some_and(|n| n > 0), "the first run exported");
    let seen = eventually(Duration::from_secs(60), "three unchanged runs", || async {
        let runs = runs().await;
        (by(&runs, RunOutcome::Unchanged).len() >= 3).then_some(runs)
    })
    .await;
    let successes = by(&seen, RunOutcome::Success);
    assert_eq!(successes.len(), 1, "{seen:?}");
    let first = successes[0].backup_id.clone().unwrap();
    for run in by(&seen, RunOutcome::Unchanged) {
        assert_eq!(run.backup_id.as_deref(), Some(first.as_str()), "{run:?}");
    }
    assert_eq!(
        env.emulator().stats().by_route.get("export").copied(),
        exports,
        "no export request for an unchanged run"
    );

    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    let status = health.status();
    let body: serde_json::Value = health.json().await.unwrap();
    let blog = &body["databases"][0];
    assert!(
        blog["age_seconds"].as_i64().unwrap() > blog["limit_seconds"].as_i64().unwrap(),
        "the backup is older than the limit: {body}"
    );
    assert_eq!(
        (status.as_u16(), &blog["state"]),
        (200, &serde_json::json!("fresh")),
        "{body}"
    );
    assert!(blog["unchanged_at"].is_string(), "{body}");
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unchanged = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("d1vault_backups_total{database=\"blog\",result=\"unchanged\"} ")
        })
        .unwrap_or_else(|| panic!("no unchanged count in\n{metrics}"));
    assert!(unchanged.parse::<u64>().unwrap() >= 3, "{metrics}");
    assert!(
        metrics.contains("d1vault_backups_total{database=\"blog\",result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("d1vault_last_unchanged_timestamp_seconds{database=\"blog\"}"),
        "{metrics}"
    );
    let (code, _) = daemon.terminate(Duration::from_secs(25)).await;
    assert_eq!(code, 0, "stderr:\n{}", daemon.log.join("\n"));

    // `status` shows the latest unchanged run and the backup that holds the data.
    let (code, stdout, stderr) = d1vault(&config, &["status", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        status[0]["last_unchanged_backup_id"],
        first.as_str(),
        "{status}"
    );
    assert!(status[0]["last_unchanged"].is_string(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_export_in_flight_waits_for_a_long_grace_and_aborts_after_a_short_one() {
    // Proves the shutdown grace with the real process: an export that stays `active` for many polls is
    // still running at SIGTERM; with a long grace it completes and is listed, with a short grace the daemon
    // exits 0 promptly, the run is recorded as aborted, nothing new is listed and no upload stays open.
    let env = Bed::with_emulator(&["blog"]).await;
    for (grace, polls, completes) in [("60s", 3, true), ("1s", 1000, false)] {
        let before = list_ids(&write_env_config(
            &env,
            "listen = \"\"",
            "schedule = \"@daily\"",
        ))
        .await;
        let config = write_env_config(
            &env,
            &format!("listen = \"\"\nshutdown_grace = \"{grace}\""),
            // The second round must export again though nothing was written.
            "schedule = \"* * * * * *\"\nskip_unchanged = false",
        );
        env.set_faults(serde_json::json!({ "export_active_polls": polls }))
            .await;
        let mut daemon = DaemonProcess::spawn(&config);
        daemon
            .wait_for_line("daemon started", Duration::from_secs(30))
            .await;
        // The next second's run starts the export, which stays active.
        let state_dir = env.dir.path().join("state");
        wait_for_running_backup(&state_dir).await;
        let (code, took) = daemon.terminate(Duration::from_secs(70)).await;
        assert_eq!(code, 0, "grace {grace}: stderr:\n{}", daemon.log.join("\n"));
        let catalog = Catalog::open(&state_dir).await.unwrap();
        let last = catalog.recent_runs("blog", 1).await.unwrap().remove(0);
        let after = list_ids(&config).await;
        if completes {
            assert_eq!(
                last.outcome,
                RunState::Finished(RunOutcome::Success),
                "{last:#?}"
            );
            assert_eq!(
                after.len(),
                before.len() + 1,
                "the backup finished during the grace period"
            );
        } else {
            assert!(
                took < Duration::from_secs(6),
                "exit took {took:?} with a 1 s grace"
            );
            assert_eq!(
                last.outcome,
                RunState::Finished(RunOutcome::Aborted),
                "{last:#?}"
            );
            assert_eq!(after, before, "an aborted backup is not listed");
            assert_eq!(
                env.s3.wait_for_no_open_uploads().await,
                0,
                "a multipart upload was left open"
            );
        }
        env.set_faults(serde_json::json!({ "export_active_polls": 0 }))
            .await;
    }
}

/// Copies the complete backup `from` in a filesystem store to backup id `to` (manifest rewritten to match).
fn clone_backup(db_dir: &Path, from: &str, to: &str) {
    let src = db_dir.join(from);
    let dst = db_dir.join(to);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "manifest.json" {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let started = d1vault::repository::manifest::parse_backup_id(to).unwrap();
            let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
            m["backup_id"] = to.into();
            m["started_at"] = started
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
            m["finished_at"] = (started + chrono::Duration::seconds(5))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
            m["dump"]["key"] = m["dump"]["key"].as_str().unwrap().replace(from, to).into();
            std::fs::write(dst.join(&name), serde_json::to_string_pretty(&m).unwrap()).unwrap();
        } else {
            std::fs::copy(entry.path(), dst.join(&name)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_dry_run_changes_nothing_and_prune_applies_the_policy_and_removes_old_incomplete_backups()
 {
    // Proves `prune --dry-run` prints keep/delete with reasons and changes no file; `prune` then deletes
    // exactly what the policy does not keep, removes an incomplete backup older than a day, leaves a recent
    // incomplete one (it may be in progress) and never touches keys outside the layout.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "retention = { keep_last = 2 }")],
    );
    let config = setup.config_path();
    let (code, _, stderr) = d1vault(&config, &["backup", "blog"]).await;
    assert_eq!(code, 0, "{stderr}");
    let first = list_ids(&config).await.remove(0);
    let db_dir = setup.path().join("store/p/blog");
    for old in ["20250101T030000Z", "20250102T030000Z", "20250103T030000Z"] {
        clone_backup(&db_dir, &first, old);
    }
    // Incomplete: a dump without a manifest, one old, one from a minute ago.
    let recent =
        d1vault::repository::manifest::backup_id(Utc::now() - chrono::Duration::minutes(1));
    for incomplete in ["20240101T000000Z", recent.as_str()] {
        std::fs::create_dir_all(db_dir.join(incomplete)).unwrap();
        std::fs::write(db_dir.join(incomplete).join("dump.sql"), "partial").unwrap();
    }
    // Unrelated keys under the prefix and the database's directory.
    std::fs::write(db_dir.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(db_dir.join("not-a-backup")).unwrap();
    std::fs::write(db_dir.join("not-a-backup/file"), "mine").unwrap();
    std::fs::write(setup.path().join("store/p/README"), "mine").unwrap();

    let store = setup.path().join("store");
    let before = walk(&store);
    let (code, stdout, stderr) = d1vault(&config, &["prune", "--dry-run"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(walk(&store), before, "--dry-run changed the store");
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no line for {id}:\n{stdout}"))
            .to_string()
    };
    assert!(
        line(&first).starts_with("keep") && line(&first).contains("last"),
        "{stdout}"
    );
    assert!(line("20250103T030000Z").starts_with("keep"), "{stdout}");
    for deleted in ["20250101T030000Z", "20250102T030000Z"] {
        assert!(
            line(deleted).starts_with("would delete") && line(deleted).contains('('),
            "{stdout}"
        );
    }
    assert!(
        line("20240101T000000Z").starts_with("would remove"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&recent),
        "a recent incomplete backup is not touched:\n{stdout}"
    );

    let (code, stdout, stderr) = d1vault(&config, &["prune"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        list_ids(&config).await,
        vec![first.clone(), "20250103T030000Z".to_string()]
    );
    for gone in ["20250101T030000Z", "20250102T030000Z", "20240101T000000Z"] {
        assert!(!db_dir.join(gone).exists(), "{gone} should be gone");
    }
    assert!(
        db_dir.join(&recent).join("dump.sql").exists(),
        "recent incomplete backup kept"
    );
    for kept in [
        "store/p/blog/notes.txt",
        "store/p/blog/not-a-backup/file",
        "store/p/README",
    ] {
        assert!(setup.path().join(kept).exists(), "{kept} was touched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_200_while_the_newest_backup_is_fresh_and_503_once_it_is_stale() {
    // Proves the /healthz freshness rule: a daily schedule allows twice its interval; a backup one hour
    // old is fresh (200), the same backup seen three days later is stale (503), and the body names the
    // database and its state.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 3 * * *\"")],
    );
    let (code, _, stderr) = d1vault(&setup.config_path(), &["backup", "blog"]).await;
    assert_eq!(code, 0, "{stderr}");
    for (offset, status, state) in [
        (chrono::Duration::hours(1), 200, "fresh"),
        (chrono::Duration::days(3), 503, "stale"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(8);
        let options = DaemonOptions {
            config_path: setup.config_path(),
            config: setup.load(),
            listener: Some(listener),
            clock: Clock::tokio_at(Utc::now() + offset),
        };
        let handle = tokio::spawn(daemon::run(options, rx));
        let response = eventually(Duration::from_secs(10), "/healthz", || async {
            reqwest::get(format!("http://{addr}/healthz")).await.ok()
        })
        .await;
        assert_eq!(response.status(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["databases"][0]["name"], "blog", "{body}");
        assert_eq!(body["databases"][0]["state"], state, "{body}");
        assert_eq!(body["databases"][0]["limit_seconds"], 2 * 86_400, "{body}");
        tx.send(Signal::Terminate).await.unwrap();
        handle.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_unchanged_run_in_the_catalog_keeps_its_database_fresh() {
    // Proves the daemon seeds /healthz and /metrics from the catalog's latest unchanged run: three days
    // after their backups, `blog` (found unchanged half a day ago, naming its newest backup) is fresh
    // while `shop` (no such run) is stale.
    let setup = Setup::new(&["blog", "shop"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[
            ("blog", "schedule = \"0 3 * * *\""),
            ("shop", "schedule = \"0 3 * * *\""),
        ],
    );
    let (code, _, stderr) = d1vault(&setup.config_path(), &["backup", "blog", "shop"]).await;
    assert_eq!(code, 0, "{stderr}");
    let newest = setup.stored("blog").await.remove(0);
    let now = Utc::now();
    let catalog = Catalog::open(setup.state_dir()).await.unwrap();
    let checked = now + chrono::Duration::hours(60);
    let run = catalog
        .start_run("blog", None, checked, Some(&newest))
        .await
        .unwrap();
    catalog
        .finish_run(
            run,
            RunOutcome::Unchanged,
            None,
            None,
            None,
            checked + chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    drop(catalog);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let options = DaemonOptions {
        config_path: setup.config_path(),
        config: setup.load(),
        listener: Some(listener),
        clock: Clock::tokio_at(now + chrono::Duration::days(3)),
    };
    let handle = tokio::spawn(daemon::run(options, rx));
    let response = eventually(Duration::from_secs(10), "/healthz", || async {
        reqwest::get(format!("http://{addr}/healthz")).await.ok()
    })
    .await;
    assert_eq!(response.status(), 503, "shop is stale");
    let body: serde_json::Value = response.json().await.unwrap();
    let state = |i: usize| body["databases"][i]["state"].as_str().unwrap().to_string();
    assert_eq!(
        (state(0), state(1)),
        ("fresh".to_string(), "stale".to_string()),
        "{body}"
    );
    assert!(body["databases"][0]["unchanged_at"].is_string(), "{body}");
    let metrics = metrics_text(&addr).await;
    assert!(
        metrics.contains("d1vault_last_unchanged_timestamp_seconds{database=\"blog\"}")
            && !metrics.contains("d1vault_last_unchanged_timestamp_seconds{database=\"shop\"}"),
        "{metrics}"
    );
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() {
    // Proves the escape hatch: during a long shutdown grace with an export in flight, a second SIGTERM ends
    // the process immediately (non-zero: the backup was cut short).
    let env = Bed::with_emulator(&["blog"]).await;
    let config = write_env_config(
        &env,
        "listen = \"\"\nshutdown_grace = \"5m\"",
        "schedule = \"* * * * * *\"",
    );
    env.set_faults(serde_json::json!({ "export_active_polls": 1000 }))
        .await;
    let mut daemon = DaemonProcess::spawn(&config);
    daemon
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;
    let state_dir = env.dir.path().join("state");
    wait_for_running_backup(&state_dir).await;
    daemon.signal("TERM");
    daemon
        .wait_for_line("stopping", Duration::from_secs(10))
        .await;
    let (code, took) = daemon.terminate(Duration::from_secs(10)).await;
    assert_ne!(code, 0);
    assert!(
        took < Duration::from_secs(3),
        "second SIGTERM took {took:?}"
    );
    assert!(list_ids(&config).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_binary_killed_with_sigkill_neither_loses_nor_repeats_its_run() {
    // Proves restart safety of the real process: a daemon SIGKILLed in the middle of a backup is restarted;
    // the interrupted due time is retried once (and succeeds); SIGKILLed again and restarted, it does not
    // run that due time a third time.
    let setup = Setup::new(&["blog"]);
    let due = Utc::now() + chrono::Duration::seconds(3);
    let due = due - chrono::Duration::nanoseconds(due.timestamp_subsec_nanos() as i64);
    let cron = due.format("%-S %-M %-H * * *").to_string();
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", &format!("schedule = \"{cron}\""))],
    );
    let config = setup.config_path();
    let lock = SourceLock::hold(&setup.path().join("blog.sqlite"));

    let mut daemon = DaemonProcess::spawn(&config);
    daemon
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;
    eventually(Duration::from_secs(20), "the run to start", || async {
        let runs = setup.runs("blog").await;
        runs.first()
            .is_some_and(|r| r.outcome == RunState::Running)
            .then_some(())
    })
    .await;
    daemon.signal("KILL");
    daemon.child.wait().await.unwrap();
    drop(lock);

    let mut daemon = DaemonProcess::spawn(&config);
    daemon
        .wait_for_line("catching up", Duration::from_secs(30))
        .await;
    eventually(
        Duration::from_secs(20),
        "the retried run to succeed",
        || async { (successes(&setup.runs("blog").await).len() == 1).then_some(()) },
    )
    .await;
    daemon.signal("KILL");
    daemon.child.wait().await.unwrap();

    let mut daemon = DaemonProcess::spawn(&config);
    daemon
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;
    let (code, _) = daemon.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0);
    let runs = setup.runs("blog").await;
    let states: Vec<_> = runs.iter().map(|r| (r.scheduled_for, r.outcome)).collect();
    assert_eq!(
        states,
        vec![
            (Some(due), RunState::Interrupted),
            (Some(due), RunState::Finished(RunOutcome::Success))
        ],
        "{runs:#?}"
    );
    assert_eq!(list_ids(&config).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_binary_exits_within_the_grace_when_a_sqlite_dump_is_stuck_on_a_lock() {
    // Proves the process exits soon after a short shutdown grace even when the aborted backup's SQLite dump
    // thread is still blocked (waiting on a lock held by another process for up to SQLite's busy timeout).
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"\nshutdown_grace = \"1s\"",
        &[("blog", "schedule = \"* * * * * *\"")],
    );
    let lock = SourceLock::hold(&setup.path().join("blog.sqlite"));
    let mut daemon = DaemonProcess::spawn(&setup.config_path());
    daemon
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;
    wait_for_running_backup(&setup.state_dir()).await;
    let (code, took) = daemon.terminate(Duration::from_secs(40)).await;
    drop(lock);
    assert_eq!(code, 0, "{}", daemon.log.join("\n"));
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} with a 1 s grace"
    );
    assert!(list_ids(&setup.config_path()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_dir_exits_2_naming_the_lock_and_its_holder() {
    // Proves "one daemon per state_dir": while one `d1vault run` holds state_dir/daemon.lock, a second one
    // on the same configuration exits 2 at once, naming the lock file and the first daemon's pid, and
    // leaves the first running; once the first has stopped, a new daemon starts.
    let setup = Setup::new(&["blog"]);
    setup.write_config("", &[("blog", "schedule = \"0 3 * * *\"")]);
    let mut first = DaemonProcess::spawn(&setup.config_path());
    first
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;
    let pid = first.child.id().unwrap();

    let second = tokio::time::timeout(
        Duration::from_secs(30),
        d1vault(&setup.config_path(), &["run"]),
    )
    .await
    .expect("the second daemon did not exit");
    let (code, _, stderr) = second;
    assert_eq!(code, 2, "{stderr}");
    let lock = setup.state_dir().join("daemon.lock");
    assert!(stderr.contains(&lock.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first daemon stopped"
    );

    let (code, _) = first.terminate(Duration::from_secs(30)).await;
    assert_eq!(code, 0);
    let mut third = DaemonProcess::spawn(&setup.config_path());
    third
        .wait_for_line("daemon started", Duration::from_secs(30))
        .await;
    third.terminate(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backup_processes_started_together_print_distinct_ids_that_both_verify() {
    // Proves the "two writers, one id" end to end with the real binary: two one-shot `backup` runs
    // of one database started at the same moment both succeed, print different ids (the later takes the
    // next second), and each id is a complete backup that `verify` accepts.
    let setup = Setup::new(&["blog"]);
    setup.write_config("", &[("blog", "schedule = \"0 3 * * *\"")]);
    let config = setup.config_path();
    let (a, b) = tokio::join!(
        d1vault(&config, &["backup", "blog"]),
        d1vault(&config, &["backup", "blog"])
    );
    assert_eq!(a.0, 0, "{}", a.2);
    assert_eq!(b.0, 0, "{}", b.2);
    let id = |stdout: &str| stdout.split_whitespace().next().unwrap().to_string();
    let (id_a, id_b) = (id(&a.1), id(&b.1));
    assert_ne!(id_a, id_b, "both runs printed the same id");
    let mut stored = setup.stored("blog").await;
    stored.sort();
    let mut printed = vec![id_a.clone(), id_b.clone()];
    printed.sort();
    assert_eq!(stored, printed);
    for backup_id in [&id_a, &id_b] {
        let (code, _, stderr) = d1vault(&config, &["verify", "blog", "--backup", backup_id]).await;
        assert_eq!(code, 0, "verify {backup_id}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_too_large_for_its_window_and_budget_is_said_at_start_with_the_numbers() {
    // Proves the budget planner in the real daemon: 30 tenants due daily in a one-minute window need
    // 30 x 4 x 5 = 600 requests per 5 minutes if every one changed, 150 if none did; with a budget of 300
    // the daemon says so at WARN as soon as discovery finds them (not when the window closes), and
    // /metrics carries the same numbers, with the fleet summarised rather than 30 named members.
    let names: Vec<String> = (1..=30).map(|i| format!("tenant-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let env = Bed::with_emulator(&names).await;
    let path = env.write_daemon_config(
        "d1vault",
        "listen = \"127.0.0.1:0\"\ntimezone = \"UTC\"",
        &env.s3_storage(&env.s3.endpoint, "test"),
        "[[fleet]]\nmatch = \"tenant-*\"\nschedule = \"0 3 * * *\"\nwindow = \"03:00-03:01\"\n",
    );
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[storage]",
        "requests_per_5min = 300\n\n[storage]",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let mut daemon = DaemonProcess::spawn(&path);
    let addr = daemon.http_addr().await;
    let warning = daemon
        .wait_for_line("the API budget cannot export all", Duration::from_secs(30))
        .await;
    for field in [
        "WARN",
        "fleet[0] match \"tenant-*\"",
        "databases=30",
        "worst_per_5min=600",
        "unchanged_per_5min=150",
        "requests_per_5min",
    ] {
        assert!(warning.contains(field), "{field} missing from {warning}");
    }
    let metrics = metrics_text(&addr).await;
    for line in [
        "d1vault_api_budget_requests_per_5min{need=\"limit\"} 300.0",
        "d1vault_api_budget_requests_per_5min{need=\"worst\"} 600.0",
        "d1vault_api_budget_groups_over 1",
        "d1vault_fleet_databases{fleet=\"0\",match=\"tenant-*\",state=\"pending\"} 30",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(
        !metrics.contains("database=\"tenant-01\""),
        "a pending member is named:\n{metrics}"
    );
    let (code, _) = daemon.terminate(Duration::from_secs(25)).await;
    assert_eq!(code, 0, "stderr:\n{}", daemon.log.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_stops_the_daemon_at_start_and_a_good_start_logs_each_next_run() {
    // Proves a token the API refuses is found at start (the daemon returns the reason at once, instead
    // of failing every run from the first due time, perhaps days later), and that a good start names
    // each database's next due time.
    let env = Bed::with_emulator(&["blog"]).await;
    let config = write_env_config(
        &env,
        "listen = \"\"\ntimezone = \"UTC\"",
        "schedule = \"0 3 * * *\"",
    );
    let mut wrong = config::load(&config).unwrap();
    if let Some(cf) = wrong.cloudflare.as_mut() {
        cf.api_token = d1vault::secret::Secret::new("not-the-token");
    }
    let (_tx, rx) = mpsc::channel(8);
    let options = DaemonOptions {
        config_path: config.clone(),
        config: wrong,
        listener: None,
        clock: Clock::tokio_at(Utc::now()),
    };
    let refused = tokio::time::timeout(Duration::from_secs(30), daemon::run(options, rx))
        .await
        .expect("the daemon kept running with a refused token")
        .unwrap_err();
    assert!(refused.contains("refused the token"), "{refused}");
    assert!(
        !refused.contains("not-the-token"),
        "the token is in the message: {refused}"
    );

    let mut daemon = DaemonProcess::spawn(&config);
    let line = daemon
        .wait_for_line("next run", Duration::from_secs(30))
        .await;
    assert!(line.contains("blog") && line.contains("03:00:00"), "{line}");
    let (code, _) = daemon.terminate(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "{}", daemon.log.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_backup_is_recorded_and_clears_a_stale_healthz_at_once() {
    // Proves every run counts: the on-call engineer's `d1vault backup` is a catalog row, and the
    // running daemon's /healthz, which rereads storage before it calls a database stale, turns 200 on
    // the next probe instead of paging on until the next scheduled run.
    let setup = Setup::new(&["blog"]);
    setup.write_config(
        "timezone = \"UTC\"",
        &[("blog", "schedule = \"0 3 * * *\"")],
    );
    let config = setup.load();
    let sources = d1vault::sources::open(&config).await.unwrap();
    d1vault::pipeline::run_backup(
        &config.databases[0],
        &sources,
        Utc::now() - chrono::Duration::days(3),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    let options = DaemonOptions {
        config_path: setup.config_path(),
        config,
        listener: Some(listener),
        clock: Clock::tokio_at(Utc::now()),
    };
    let handle = tokio::spawn(daemon::run(options, rx));
    let state = || async {
        let response = reqwest::get(format!("http://{addr}/healthz")).await.ok()?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.ok()?;
        Some((status, body["databases"][0]["state"].as_str()?.to_string()))
    };
    let stale = eventually(Duration::from_secs(10), "/healthz", state).await;
    assert_eq!(stale, (503, "stale".to_string()));

    let (code, stdout, stderr) = d1vault(&setup.config_path(), &["backup", "blog"]).await;
    assert_eq!(code, 0, "{stderr}");
    let backup_id = stdout.split_whitespace().next().unwrap().to_string();
    let manual: Vec<RunRecord> = setup
        .runs("blog")
        .await
        .into_iter()
        .filter(|r| r.scheduled_for.is_none())
        .collect();
    assert_eq!(manual.len(), 1, "{manual:?}");
    assert_eq!(manual[0].outcome, RunState::Finished(RunOutcome::Success));
    assert_eq!(manual[0].backup_id.as_deref(), Some(backup_id.as_str()));
    assert_eq!(state().await, Some((200, "fresh".to_string())));
    tx.send(Signal::Terminate).await.unwrap();
    handle.await.unwrap().unwrap();
}
