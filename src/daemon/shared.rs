//! The state the database tasks and the HTTP handlers share: metrics, the clock, the configuration in
//! force, and the newest complete backup of each database (what `/healthz` judges and `/metrics`
//! summarises per fleet).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::clock::Clock;
use super::health::{self, Health};
use super::metrics::{Metrics, Standing};
use crate::config::Config;
use crate::notify::NotificationCounts;

/// State shared by the database tasks and the HTTP handlers, behind one `Arc`.
pub(crate) struct Shared {
    /// What `/metrics` renders; updated once per run.
    pub(crate) metrics: Metrics,
    /// `d1vault_notifications_total`, counted by the notifier.
    pub(crate) notifications: Arc<NotificationCounts>,
    /// The daemon's notion of now (the wall clock, or paused tokio time in tests).
    pub(crate) clock: Clock,
    /// When the daemon started: a database without a backup is `pending` for its first freshness limit.
    pub(crate) started_at: DateTime<Utc>,
    /// The configuration in force; a reload sends a new one.
    pub(crate) config: watch::Receiver<Arc<Config>>,
    /// Newest complete backup per database (its start time): seeded from storage at start, updated after
    /// each success. A std mutex: it is held for a clone or an insert, never across an `.await`.
    newest: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The latest run per database that found it unchanged since its newest backup (its start time):
    /// seeded from the catalog at start, updated after each such run. Same locking as `newest`.
    unchanged: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The databases whose latest scheduled verification failed, until a backup or a verification of
    /// theirs succeeds. Same locking as `newest`.
    verify_failed: Mutex<HashSet<String>>,
    /// Per database, the runs failed in a row and the latest error, until a run succeeds. Same locking.
    failures: Mutex<HashMap<String, (u64, String)>>,
}

impl Shared {
    /// Shared state for a daemon that started at `started_at`, knowing no backups yet.
    pub(crate) fn new(
        clock: Clock,
        started_at: DateTime<Utc>,
        config: watch::Receiver<Arc<Config>>,
    ) -> Shared {
        Shared {
            metrics: Metrics::default(),
            notifications: Arc::default(),
            clock,
            started_at,
            config,
            newest: Mutex::new(HashMap::new()),
            unchanged: Mutex::new(HashMap::new()),
            verify_failed: Mutex::new(HashSet::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `database`'s newest complete backup started at `started_at`; a new backup clears a
    /// failed verification.
    pub(crate) fn set_newest(&self, database: &str, started_at: DateTime<Utc>) {
        self.newest
            .lock()
            .expect("newest lock")
            .insert(database.to_string(), started_at);
        self.verify_failed
            .lock()
            .expect("verify lock")
            .remove(database);
    }

    /// Notes how a run of `database` ended: `Some(error)` for a failure (counted, its error kept for
    /// `/healthz`), `None` for a success or an unchanged run (which clears them).
    pub(crate) fn set_run_result(&self, database: &str, error: Option<&str>) {
        let mut failures = self.failures.lock().expect("failures lock");
        match error {
            Some(error) => {
                let entry = failures
                    .entry(database.to_string())
                    .or_insert((0, String::new()));
                entry.0 += 1;
                entry.1 = error.to_string();
            }
            None => {
                failures.remove(database);
            }
        }
    }

    /// Notes how `database`'s scheduled verification ended: a failure holds until a later success.
    pub(crate) fn set_verified(&self, database: &str, ok: bool) {
        let mut failed = self.verify_failed.lock().expect("verify lock");
        if ok {
            failed.remove(database);
        } else {
            failed.insert(database.to_string());
        }
    }

    /// Notes that a run started at `at` found `database` unchanged since its newest backup.
    pub(crate) fn set_unchanged(&self, database: &str, at: DateTime<Utc>) {
        let mut unchanged = self.unchanged.lock().expect("unchanged lock");
        let entry = unchanged.entry(database.to_string()).or_insert(at);
        *entry = std::cmp::max(*entry, at);
    }

    /// Since when storage has held `database`'s current data: the later of its newest backup and its
    /// latest unchanged check (`None`: no backup known). Waiting runs get slots oldest first.
    pub(crate) fn protected_since(&self, database: &str) -> Option<DateTime<Utc>> {
        let newest = self
            .newest
            .lock()
            .expect("newest lock")
            .get(database)
            .copied();
        let unchanged = self
            .unchanged
            .lock()
            .expect("unchanged lock")
            .get(database)
            .copied();
        std::cmp::max(newest, unchanged)
    }

    /// The `/healthz` answer now: [`health::health`] over the configuration in force and the newest
    /// backups known.
    pub(crate) fn health(&self) -> Health {
        let config = self.config.borrow().clone();
        self.health_of(&config)
    }

    /// [`Shared::health`] judged against `config`, so that a caller pairing the answer with the
    /// configuration's databases sees the same configuration even if a reload lands meanwhile.
    fn health_of(&self, config: &Config) -> Health {
        let now = self.clock.now();
        let newest = self.newest.lock().expect("newest lock").clone();
        let unchanged = self.unchanged.lock().expect("unchanged lock").clone();
        let judged = health::health(config, &newest, &unchanged, self.started_at, now);
        let failed = self.verify_failed.lock().expect("verify lock").clone();
        let mut judged = health::with_verify_failures(judged, &failed);
        let failures = self.failures.lock().expect("failures lock");
        if !failures.is_empty() {
            for db in &mut judged.databases {
                if let Some((count, error)) = failures.get(&db.name) {
                    db.consecutive_failures = *count;
                    db.last_error = Some(error.clone());
                }
            }
        }
        judged
    }

    /// The `/metrics` answer now: the counters of the databases in force, with each fleet summarised
    /// from its members' `/healthz` states.
    pub(crate) fn metrics_text(&self) -> String {
        let config = self.config.borrow().clone();
        let health = self.health_of(&config);
        let standing = Standing {
            fleets: config
                .fleets
                .iter()
                .map(|f| (f.index, f.pattern.as_str().to_string()))
                .collect(),
            // health() judges config.databases in order, one entry each.
            databases: config
                .databases
                .iter()
                .zip(health.databases)
                .map(|(db, judged)| (judged.name, (db.fleet, judged.state)))
                .collect(),
        };
        let mut text = self.metrics.render(&standing);
        text.push_str(&self.notifications.render());
        text
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cloudflare::DatabaseInfo;
    use crate::daemon::metrics::RunResult;
    use crate::test_time::utc;

    #[tokio::test(start_paused = true)]
    async fn healthz_says_why_a_database_fails_and_how_often_until_a_run_succeeds() {
        // Proves /healthz's `consecutive_failures` and `last_error`: counted per failed run, the latest
        // error kept, both cleared by a success.
        let text = "[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\
                    [[database]]\nname = \"blog\"\nsqlite_path = \"/srv/blog.sqlite\"\n";
        let config =
            crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
                .unwrap();
        let now = utc("2026-01-10T12:00:00Z");
        let (_tx, rx) = watch::channel(Arc::new(config));
        let shared = Shared::new(Clock::tokio_at(now), now, rx);
        let blog = |shared: &Shared| shared.health().databases.remove(0);
        assert_eq!(
            (blog(&shared).consecutive_failures, blog(&shared).last_error),
            (0, None)
        );
        shared.set_run_result("blog", Some("disk full"));
        shared.set_run_result("blog", Some("bucket missing"));
        let judged = blog(&shared);
        assert_eq!(judged.consecutive_failures, 2);
        assert_eq!(judged.last_error.as_deref(), Some("bucket missing"));
        shared.set_run_result("blog", None);
        assert_eq!(
            (blog(&shared).consecutive_failures, blog(&shared).last_error),
            (0, None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_summarise_fleet_members_by_their_health_and_name_the_stale_ones() {
        // Proves the composition behind `GET /metrics`: the configuration in force (a configured
        // database plus the members a listing gave a daily fleet) and each member's newest backup decide
        // the fleet summary, and only the member whose backup is too old is named.
        let text = "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n\
                    [storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\
                    [[database]]\nname = \"blog\"\nschedule = \"0 3 * * *\"\n\
                    [[fleet]]\nmatch = \"tenant-*\"\nschedule = \"0 3 * * *\"\n";
        let file = crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
            .unwrap();
        let listed: Vec<DatabaseInfo> = ["tenant-a", "tenant-b", "tenant-c", "other"]
            .map(|name| DatabaseInfo {
                uuid: format!("id-{name}"),
                name: name.into(),
                version: None,
            })
            .into();
        let effective = crate::fleet::resolve(&file, &listed).effective(&file);
        let now = utc("2026-01-10T12:00:00Z");
        let (_tx, rx) = watch::channel(Arc::new(effective));
        let shared = Shared::new(Clock::tokio_at(now), utc("2026-01-01T00:00:00Z"), rx);
        for (db, newest) in [
            ("blog", "2026-01-10T03:00:00Z"),
            ("tenant-a", "2026-01-10T03:00:00Z"),
            ("tenant-b", "2026-01-09T03:00:00Z"),
            ("tenant-c", "2026-01-05T03:00:00Z"),
        ] {
            shared.set_newest(db, utc(newest));
            shared.metrics.record(
                db,
                RunResult::Success,
                1.0,
                Some((10, 5)),
                utc(newest).timestamp() as f64,
            );
        }
        let metrics = shared.metrics_text();
        let fleet = "fleet=\"0\",match=\"tenant-*\"";
        for line in [
            format!("d1vault_fleet_databases{{{fleet},state=\"fresh\"}} 2"),
            format!("d1vault_fleet_databases{{{fleet},state=\"stale\"}} 1"),
            format!("d1vault_fleet_oldest_success_timestamp_seconds{{{fleet}}} 1767582000"),
            "d1vault_last_success_timestamp_seconds{database=\"blog\"}".to_string(),
            "d1vault_last_success_timestamp_seconds{database=\"tenant-c\"}".to_string(),
        ] {
            assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        }
        for member in ["tenant-a", "tenant-b", "other"] {
            assert!(
                !metrics.contains(&format!("database=\"{member}\"")),
                "{member} is named in\n{metrics}"
            );
        }
    }
}
