//! The state the database tasks and the HTTP handlers share: metrics, the clock, the configuration in
//! force, and the newest complete backup of each database (what `/healthz` judges).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::clock::Clock;
use super::health::{self, Health};
use super::metrics::Metrics;
use crate::config::Config;

/// State shared by the database tasks and the HTTP handlers, behind one `Arc`.
pub(crate) struct Shared {
    /// What `/metrics` renders; updated once per run.
    pub(crate) metrics: Metrics,
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
            clock,
            started_at,
            config,
            newest: Mutex::new(HashMap::new()),
            unchanged: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `database`'s newest complete backup started at `started_at`.
    pub(crate) fn set_newest(&self, database: &str, started_at: DateTime<Utc>) {
        self.newest
            .lock()
            .expect("newest lock")
            .insert(database.to_string(), started_at);
    }

    /// Notes that a run started at `at` found `database` unchanged since its newest backup.
    pub(crate) fn set_unchanged(&self, database: &str, at: DateTime<Utc>) {
        let mut unchanged = self.unchanged.lock().expect("unchanged lock");
        let entry = unchanged.entry(database.to_string()).or_insert(at);
        *entry = std::cmp::max(*entry, at);
    }

    /// The `/healthz` answer now: [`health::health`] over the configuration in force and the newest
    /// backups known.
    pub(crate) fn health(&self) -> Health {
        let config = self.config.borrow().clone();
        let now = self.clock.now();
        let newest = self.newest.lock().expect("newest lock").clone();
        let unchanged = self.unchanged.lock().expect("unchanged lock").clone();
        health::health(&config, &newest, &unchanged, self.started_at, now)
    }
}
