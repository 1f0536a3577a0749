//! The API budget against the schedule: can `cloudflare.requests_per_5min` hold every backup the
//! configuration in force makes due? Worked out when the daemon starts, after a reload and when fleet
//! members change, so that a fleet too large for its window is said plainly then (a log line and a metric
//! with the numbers), not found out when its window closes with databases still waiting.
//!
//! The estimate is per group of databases that are due together: a fleet's members share its schedule
//! and window, and configured databases with the same schedule and window are one group. A group due at
//! once must be done within its span (its window's length, or the interval to its next due time when it
//! has no window), so it needs its requests spread over that span. Pure: the caller passes the
//! configuration in force, the number of databases the account lists, and `now`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::config::{Config, Source};
use crate::fleet::LIST_PAGE_SIZE;

/// API requests of a scheduled run that exports: the bookmark check, the schema read, the export request
/// and one poll. d1-emulator answers a small export at once (`scripts/bench-fleet` counts 3); D1 polls
/// at least once, and more for a large database.
pub const REQUESTS_PER_EXPORT: u64 = 4;
/// API requests of a scheduled run that finds the database unchanged: the bookmark check.
pub const REQUESTS_PER_UNCHANGED: u64 = 1;
/// The budget's window: Cloudflare counts requests per 5 minutes.
const BUDGET_WINDOW_SECONDS: f64 = 300.0;

/// What one group of databases due together needs, in requests per 5 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNeed {
    /// Which databases: `fleet[0] match "tenant-*"`, or `N configured database(s) with schedule "…"`.
    pub label: String,
    /// D1 databases in the group (local SQLite sources use no API).
    pub databases: usize,
    /// The time a run of the group has: its window's length, or the interval between due times.
    pub span: Duration,
    /// Requests per 5 minutes over that span if every database changed (each one exports).
    pub worst: f64,
    /// Requests per 5 minutes if none changed (`skip_unchanged`: one bookmark request each).
    pub unchanged: f64,
}

/// The budget against every group in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// `cloudflare.requests_per_5min`.
    pub limit: u32,
    /// Requests per 5 minutes fleet discovery takes (list pages every `discovery_interval`).
    pub discovery: f64,
    /// Every group with a D1 database, most demanding first.
    pub groups: Vec<GroupNeed>,
}

impl Assessment {
    /// What the budget leaves for backups once discovery has taken its share.
    pub fn available(&self) -> f64 {
        (f64::from(self.limit) - self.discovery).max(0.0)
    }

    /// The groups that cannot all be exported within their span even if nothing else used the budget.
    pub fn over_budget(&self) -> impl Iterator<Item = &GroupNeed> {
        self.groups.iter().filter(|g| g.worst > self.available())
    }

    /// Every group's worst case added up: an upper bound (groups whose windows do not overlap never
    /// compete), so exceeding it is a possibility to check, not a certainty.
    pub fn worst_total(&self) -> f64 {
        self.groups.iter().map(|g| g.worst).sum()
    }

    /// Every group's unchanged case added up (an upper bound, as [`Assessment::worst_total`]).
    pub fn unchanged_total(&self) -> f64 {
        self.groups.iter().map(|g| g.unchanged).sum()
    }
}

/// The budget needed by `config` (the configuration in force, fleet members included) at `now`, with
/// `listed` databases in the account (0 when it has no fleet: nothing is listed).
pub fn assess(config: &Config, listed: usize, now: DateTime<Utc>) -> Assessment {
    let limit = config
        .cloudflare
        .as_ref()
        .map_or(0, |cf| cf.requests_per_5min);
    let discovery = if config.fleets.is_empty() {
        0.0
    } else {
        let pages = listed.div_ceil(LIST_PAGE_SIZE as usize).max(1) as f64;
        let interval = config.daemon.discovery_interval.as_secs_f64().max(1.0);
        pages * BUDGET_WINDOW_SECONDS / interval
    };
    let tz = config.daemon.timezone;
    let mut groups: BTreeMap<String, GroupNeed> = BTreeMap::new();
    for db in &config.databases {
        if !matches!(db.source, Source::D1 { .. }) {
            continue;
        }
        let label = match db
            .fleet
            .and_then(|i| config.fleets.iter().find(|f| f.index == i))
        {
            Some(fleet) => format!("fleet[{}] match {:?}", fleet.index, fleet.pattern.as_str()),
            None => format!(
                "configured databases with schedule {:?}{}",
                db.schedule.expr(),
                db.window
                    .map(|w| format!(
                        " and window {}-{}",
                        w.start.format("%H:%M"),
                        w.end.format("%H:%M")
                    ))
                    .unwrap_or_default()
            ),
        };
        let group = groups.entry(label.clone()).or_insert_with(|| {
            let interval = db
                .schedule
                .next_after(now, tz)
                .and_then(|next| Some(db.schedule.next_after(next, tz)? - next));
            let span = match (db.window, interval) {
                (Some(window), Some(interval)) => std::cmp::min(window.nominal_length(), interval),
                (Some(window), None) => window.nominal_length(),
                (None, Some(interval)) => interval,
                // A schedule with at most one more run: spread over a day.
                (None, None) => Duration::days(1),
            };
            GroupNeed {
                label,
                databases: 0,
                span,
                worst: 0.0,
                unchanged: 0.0,
            }
        });
        group.databases += 1;
    }
    let mut groups: Vec<GroupNeed> = groups
        .into_values()
        .map(|mut g| {
            let per_5min = BUDGET_WINDOW_SECONDS / (g.span.num_seconds().max(1) as f64);
            g.worst = g.databases as f64 * REQUESTS_PER_EXPORT as f64 * per_5min;
            g.unchanged = g.databases as f64 * REQUESTS_PER_UNCHANGED as f64 * per_5min;
            g
        })
        .collect();
    groups.sort_by(|a, b| b.worst.total_cmp(&a.worst));
    Assessment {
        limit,
        discovery,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cloudflare::DatabaseInfo;
    use crate::test_time::utc;

    fn config(fleet: &str, budget: u32) -> Config {
        let text = format!(
            "[daemon]\ntimezone = \"UTC\"\ndiscovery_interval = \"10m\"\n\
             [cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\nrequests_per_5min = {budget}\n\
             [storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\
             [[database]]\nname = \"blog\"\nschedule = \"0 */6 * * *\"\n\
             [[database]]\nname = \"local\"\nsqlite_path = \"/srv/a.sqlite\"\n\
             [[fleet]]\nmatch = \"tenant-*\"\n{fleet}\n"
        );
        let file =
            crate::config::load_str(&text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
                .unwrap();
        let listed: Vec<DatabaseInfo> = (0..10_000)
            .map(|i| DatabaseInfo {
                uuid: format!("id-{i}"),
                name: format!("tenant-{i:05}"),
                version: None,
            })
            .collect();
        crate::fleet::resolve(&file, &listed).effective(&file)
    }

    #[test]
    fn a_fleet_too_large_for_its_window_is_over_budget_and_a_daily_one_is_not() {
        // Proves the arithmetic: 10,000 members due daily in a 2-hour window need 10,000 x 4 requests
        // over 24 five-minute periods (1,666.7 per 5 minutes), more than 1,000 less discovery (10 pages
        // every 10 minutes: 5 per 5 minutes); without the window the same fleet needs 4 x 10,000 / 288
        // (138.9) and fits. Unchanged databases need a quarter of that. The configured D1 database every 6
        // hours is its own group; the local SQLite source needs no API and is in none.
        let tight = assess(
            &config("schedule = \"0 1 * * *\"\nwindow = \"01:00-03:00\"", 1000),
            10_000,
            utc("2026-01-10T12:00:00Z"),
        );
        assert_eq!(tight.limit, 1000);
        assert!((tight.discovery - 5.0).abs() < 1e-9, "{tight:?}");
        assert_eq!(tight.groups.len(), 2, "{tight:?}");
        let fleet = &tight.groups[0];
        assert_eq!(fleet.label, "fleet[0] match \"tenant-*\"");
        assert_eq!((fleet.databases, fleet.span), (10_000, Duration::hours(2)));
        assert!((fleet.worst - 40_000.0 / 24.0).abs() < 1e-6, "{fleet:?}");
        assert!(
            (fleet.unchanged - 10_000.0 / 24.0).abs() < 1e-6,
            "{fleet:?}"
        );
        let blog = &tight.groups[1];
        assert_eq!(blog.databases, 1);
        assert_eq!(blog.span, Duration::hours(6));
        assert_eq!(
            tight
                .over_budget()
                .map(|g| g.label.as_str())
                .collect::<Vec<_>>(),
            ["fleet[0] match \"tenant-*\""]
        );

        let daily = assess(
            &config("schedule = \"0 1 * * *\"", 1000),
            10_000,
            utc("2026-01-10T12:00:00Z"),
        );
        assert_eq!(daily.groups[0].span, Duration::days(1));
        assert!((daily.groups[0].worst - 40_000.0 / 288.0).abs() < 1e-6);
        assert_eq!(daily.over_budget().count(), 0);
        assert!(daily.worst_total() < daily.available());
    }
}
