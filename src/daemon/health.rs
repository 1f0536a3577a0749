//! The freshness rule behind `GET /healthz` (CONTRACT.md, "Daemon endpoints"): a database is fresh while
//! its newest complete backup is younger than twice its schedule's interval plus its window. A run that
//! found the database unchanged (`skip_unchanged`) at time T counts as a backup at T: the newest backup
//! still held the current data then. Pure: the caller passes the configuration, the newest backups and
//! unchanged runs it knows, when the daemon started, and `now`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::schedule;

/// One database's state in the `/healthz` body; the JSON names are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// No backup yet, and the daemon is younger than the freshness limit: it has not had its chance.
    Pending,
    /// The newest complete backup is no older than the freshness limit.
    Fresh,
    /// The newest backup is older than the limit, or there is none and the daemon has run for longer.
    Stale,
    /// Fresh or pending, but the latest scheduled verification (`verify_schedule`) failed and no backup
    /// or verification has succeeded since: the backups may not restore.
    #[serde(rename = "verify_failed")]
    VerifyFailed,
}

impl Freshness {
    /// The state of a database whose newest complete backup started at `newest` (`None`: no backup), for a
    /// daemon that started at `started_at`, with freshness limit `limit`. Both bounds are inclusive.
    pub fn of(
        newest: Option<DateTime<Utc>>,
        limit: Duration,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Freshness {
        match newest {
            Some(t) if now - t <= limit => Freshness::Fresh,
            Some(_) => Freshness::Stale,
            None if now - started_at <= limit => Freshness::Pending,
            None => Freshness::Stale,
        }
    }

    /// Whether this state lets `/healthz` answer `200` (`stale` and `verify_failed` make it `503`).
    pub fn is_healthy(self) -> bool {
        matches!(self, Freshness::Fresh | Freshness::Pending)
    }

    /// The state as the `/healthz` body and the `state` label of `d1vault_fleet_databases` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Pending => "pending",
            Freshness::Stale => "stale",
            Freshness::VerifyFailed => "verify_failed",
        }
    }
}

/// One database in the `/healthz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseHealth {
    /// The configured database name.
    pub name: String,
    /// `fresh`, `stale`, or `pending`.
    pub state: Freshness,
    /// Start time of the newest complete backup (RFC 3339), if any.
    pub newest_backup: Option<String>,
    /// How old that backup is at `now`, in seconds.
    pub age_seconds: Option<i64>,
    /// The latest run that found the database unchanged since that backup (RFC 3339), if any: the state
    /// is judged from the later of the two.
    pub unchanged_at: Option<String>,
    /// The freshness limit at `now`, in seconds.
    pub limit_seconds: i64,
    /// Runs that failed in a row since the last success (or unchanged run) of this daemon.
    pub consecutive_failures: u64,
    /// Why the latest of those failed: what an on-call engineer reads first.
    pub last_error: Option<String>,
}

/// The `/healthz` body: healthy (`200`) unless some database is stale (`503`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// True when no database is [`Freshness::Stale`].
    pub healthy: bool,
    /// Every configured database, in configuration order.
    pub databases: Vec<DatabaseHealth>,
}

/// The freshness of every database in `config` at `now`, given the start time of each database's newest
/// complete backup (`newest`, by name), the latest run that found it unchanged (`unchanged`, by name) and
/// the daemon's own start time `started_at`.
pub fn health(
    config: &Config,
    newest: &HashMap<String, DateTime<Utc>>,
    unchanged: &HashMap<String, DateTime<Utc>>,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Health {
    // Members of one fleet share its schedule and window: their limit is worked out once per fleet,
    // not once per member (a fleet may have 100,000).
    let mut fleet_limits: HashMap<usize, Duration> = HashMap::new();
    let databases: Vec<DatabaseHealth> = config
        .databases
        .iter()
        .map(|db| {
            let limit_of =
                || schedule::freshness_limit(&db.schedule, db.window, config.daemon.timezone, now);
            let limit = match db.fleet {
                Some(index) => *fleet_limits.entry(index).or_insert_with(limit_of),
                None => limit_of(),
            };
            let newest_backup = newest.get(&db.name).copied();
            let unchanged_at = unchanged.get(&db.name).copied();
            // Option's order puts None first: the later of the two known times.
            let current_as_of = std::cmp::max(newest_backup, unchanged_at);
            DatabaseHealth {
                name: db.name.clone(),
                state: Freshness::of(current_as_of, limit, started_at, now),
                newest_backup: newest_backup.map(|t| t.to_rfc3339()),
                age_seconds: newest_backup.map(|t| (now - t).num_seconds()),
                unchanged_at: unchanged_at.map(|t| t.to_rfc3339()),
                limit_seconds: limit.num_seconds(),
                consecutive_failures: 0,
                last_error: None,
            }
        })
        .collect();
    let healthy = databases.iter().all(|d| d.state.is_healthy());
    Health { healthy, databases }
}

/// `health` with each database whose latest scheduled verification failed (`verify_failed`, by name;
/// cleared by a later success of either kind) marked [`Freshness::VerifyFailed`], unless it is stale
/// already. Pure.
pub fn with_verify_failures(mut health: Health, verify_failed: &HashSet<String>) -> Health {
    if verify_failed.is_empty() {
        return health;
    }
    for db in &mut health.databases {
        if db.state.is_healthy() && verify_failed.contains(&db.name) {
            db.state = Freshness::VerifyFailed;
        }
    }
    health.healthy = health.databases.iter().all(|d| d.state.is_healthy());
    health
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::test_time::utc;

    /// `blog` runs daily at 03:00 with no window (limit 2 days); `shop` daily with a 02:00-05:00 window
    /// (limit 2 days 3 hours).
    fn config() -> Config {
        let text = r#"
            [daemon]
            timezone = "UTC"
            [cloudflare]
            account_id = "acc"
            api_token = "tok"
            [storage]
            type = "s3"
            bucket = "b"
            access_key_id = "id"
            secret_access_key = "key"
            [[database]]
            name = "blog"
            schedule = "0 3 * * *"
            [[database]]
            name = "shop"
            schedule = "0 3 * * *"
            window = "02:00-05:00"
        "#;
        crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None).unwrap()
    }

    const DAY: i64 = 86_400;

    #[test]
    fn the_limit_is_twice_the_interval_plus_the_window() {
        // Proves the limit each database is judged by, as `limit_seconds` reports it.
        let now = utc("2025-01-10T12:00:00Z");
        let h = health(&config(), &HashMap::new(), &HashMap::new(), now, now);
        let limits: Vec<_> = h
            .databases
            .iter()
            .map(|d| (d.name.as_str(), d.limit_seconds))
            .collect();
        assert_eq!(limits, [("blog", 2 * DAY), ("shop", 2 * DAY + 3 * 3600)]);
    }

    #[test]
    fn a_backup_is_fresh_up_to_the_limit_and_stale_one_second_after() {
        // Proves the fresh/stale boundary: age equal to the limit is still fresh.
        let backup = utc("2025-01-10T03:00:00Z");
        let started_at = utc("2025-01-01T00:00:00Z");
        let newest = HashMap::from([("blog".to_string(), backup), ("shop".to_string(), backup)]);
        let at_limit = backup + Duration::seconds(2 * DAY);
        let h = health(&config(), &newest, &HashMap::new(), started_at, at_limit);
        assert_eq!(h.databases[0].state, Freshness::Fresh);
        assert_eq!(h.databases[0].age_seconds, Some(2 * DAY));
        assert_eq!(
            h.databases[0].newest_backup.as_deref(),
            Some("2025-01-10T03:00:00+00:00")
        );
        assert!(h.healthy);

        let h = health(
            &config(),
            &newest,
            &HashMap::new(),
            started_at,
            at_limit + Duration::seconds(1),
        );
        assert_eq!(h.databases[0].state, Freshness::Stale);
        assert_eq!(
            h.databases[1].state,
            Freshness::Fresh,
            "the window extends shop's limit"
        );
        assert!(!h.healthy, "one stale database makes the daemon unhealthy");
    }

    #[test]
    fn without_a_backup_a_database_is_pending_up_to_the_limit_after_start_then_stale() {
        // Proves the pending/stale boundary, measured from the daemon's start, and that pending is healthy.
        let started_at = utc("2025-01-10T12:00:00Z");
        let at_limit = started_at + Duration::seconds(2 * DAY);
        let h = health(
            &config(),
            &HashMap::new(),
            &HashMap::new(),
            started_at,
            at_limit,
        );
        assert_eq!(h.databases[0].state, Freshness::Pending);
        assert_eq!(
            (
                h.databases[0].newest_backup.as_deref(),
                h.databases[0].age_seconds
            ),
            (None, None)
        );
        assert!(h.healthy);

        let h = health(
            &config(),
            &HashMap::new(),
            &HashMap::new(),
            started_at,
            at_limit + Duration::seconds(1),
        );
        assert_eq!(h.databases[0].state, Freshness::Stale);
        assert_eq!(h.databases[1].state, Freshness::Pending);
        assert!(!h.healthy);
    }

    #[test]
    fn an_old_backup_is_stale_even_while_the_daemon_is_young() {
        // Proves the daemon's own age only matters when there is no backup at all.
        let now = utc("2025-01-10T12:00:00Z");
        let newest = HashMap::from([("blog".to_string(), now - Duration::days(3))]);
        let h = health(&config(), &newest, &HashMap::new(), now, now);
        assert_eq!(h.databases[0].state, Freshness::Stale);
        assert_eq!(h.databases[1].state, Freshness::Pending);
    }

    #[test]
    fn an_unchanged_run_keeps_an_old_backup_fresh_from_its_own_time() {
        // Proves an unchanged run at T counts as fresh as of T (the newest backup still held the data),
        // and goes stale one limit after T like a backup would.
        let backup = utc("2025-01-01T03:00:00Z");
        let checked = utc("2025-01-09T03:00:00Z");
        let newest = HashMap::from([("blog".to_string(), backup)]);
        let unchanged = HashMap::from([("blog".to_string(), checked)]);
        let started_at = utc("2024-12-01T00:00:00Z");
        let now = checked + Duration::seconds(DAY);
        let h = health(&config(), &newest, &unchanged, started_at, now);
        assert_eq!(h.databases[0].state, Freshness::Fresh);
        assert_eq!(h.databases[0].age_seconds, Some(9 * DAY));
        assert_eq!(
            h.databases[0].unchanged_at.as_deref(),
            Some("2025-01-09T03:00:00+00:00")
        );
        let without = health(&config(), &newest, &HashMap::new(), started_at, now);
        assert_eq!(without.databases[0].state, Freshness::Stale);
        let later = checked + Duration::seconds(2 * DAY + 1);
        let h = health(&config(), &newest, &unchanged, started_at, later);
        assert_eq!(h.databases[0].state, Freshness::Stale);
    }

    #[test]
    fn states_serialize_as_the_contract_names_them() {
        // Proves the JSON text of each state in the /healthz body, and that `as_str` agrees with it.
        for (state, text) in [
            (Freshness::Pending, "\"pending\""),
            (Freshness::Fresh, "\"fresh\""),
            (Freshness::Stale, "\"stale\""),
            (Freshness::VerifyFailed, "\"verify_failed\""),
        ] {
            assert_eq!(serde_json::to_string(&state).unwrap(), text);
            assert_eq!(format!("\"{}\"", state.as_str()), text);
        }
    }

    #[test]
    fn a_failed_verification_makes_a_fresh_database_unhealthy_but_leaves_a_stale_one_stale() {
        // Proves `verify_failed` replaces fresh (and turns /healthz 503), a stale database stays stale,
        // and the others are untouched.
        let config = config();
        let now = utc("2025-01-05T04:00:00Z");
        let started = utc("2025-01-01T00:00:00Z");
        let newest: HashMap<String, DateTime<Utc>> = [
            ("blog".to_string(), utc("2025-01-05T03:00:00Z")),
            ("shop".to_string(), utc("2025-01-01T03:00:00Z")),
        ]
        .into();
        let plain = health(&config, &newest, &HashMap::new(), started, now);
        assert!(!plain.healthy, "shop is stale");
        let failed: HashSet<String> = ["blog".to_string(), "shop".to_string()].into();
        let judged = with_verify_failures(plain.clone(), &failed);
        assert_eq!(judged.databases[0].state, Freshness::VerifyFailed);
        assert_eq!(judged.databases[1].state, Freshness::Stale);
        let only_blog = health(
            &config,
            &newest,
            &HashMap::new(),
            started,
            utc("2025-01-02T04:00:00Z"),
        );
        assert!(only_blog.healthy);
        let judged = with_verify_failures(only_blog, &["blog".to_string()].into());
        assert!(!judged.healthy);
        assert_eq!(judged.databases[1].state, Freshness::Fresh);
    }
}
