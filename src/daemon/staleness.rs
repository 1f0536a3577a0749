//! The `stale` notification: told once when a database turns stale (`/healthz`), once when it recovers,
//! never every minute. [`StaleWatch`] remembers which databases were stale at the last look; the daemon
//! looks once a minute.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::context::TaskContext;
use super::health::{Freshness, Health};
use crate::notify::{Event, EventKind};

/// How often the daemon looks for databases turning stale or recovering.
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// Stale databases whose backups are reread from storage per look (a fleet may have thousands stale).
const REREAD_AT_MOST: usize = 50;

/// Looks at `/healthz`'s judgement at start and every [`LOOK_EVERY`] until the daemon stops taking new
/// work, and logs and notifies each change (a database already stale at start is told at once).
pub(super) async fn watch(ctx: Arc<TaskContext>) {
    let mut watch = StaleWatch::default();
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = ctx.stop_new.cancelled() => return,
            }
        }
        first = false;
        let now = ctx.shared.clock.now();
        // A backup this daemon did not take counts too: stale databases are looked up in storage again
        // (a bounded number per look) before they are told stale.
        let health = ctx.health_rereading_stale(REREAD_AT_MOST).await;
        for change in watch.look(&health) {
            if change.stale {
                warn!(database = %change.database, "database turned stale: no recent backup");
            } else {
                info!(database = %change.database, "database fresh again");
            }
            let mut event = Event::new(EventKind::Stale, change.database, now);
            event.stale = Some(change.stale);
            ctx.notifier.send(&event);
        }
    }
}

/// Which databases were stale at the last look.
#[derive(Debug, Default)]
pub(crate) struct StaleWatch {
    stale: HashSet<String>,
}

/// A change in a database's staleness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaleChange {
    /// The database.
    pub(crate) database: String,
    /// `true`: it turned stale; `false`: it recovered.
    pub(crate) stale: bool,
}

impl StaleWatch {
    /// The changes since the last look, given `health` now. A database that left the configuration is
    /// forgotten without a word (it was not fixed, it is no longer watched). Pure.
    pub(crate) fn look(&mut self, health: &Health) -> Vec<StaleChange> {
        let now: HashSet<&str> = health
            .databases
            .iter()
            .filter(|d| d.state == Freshness::Stale)
            .map(|d| d.name.as_str())
            .collect();
        let watched: HashSet<&str> = health.databases.iter().map(|d| d.name.as_str()).collect();
        let mut changes: Vec<StaleChange> = now
            .iter()
            .filter(|name| !self.stale.contains(**name))
            .map(|name| StaleChange {
                database: name.to_string(),
                stale: true,
            })
            .collect();
        changes.extend(
            self.stale
                .iter()
                .filter(|name| watched.contains(name.as_str()) && !now.contains(name.as_str()))
                .map(|name| StaleChange {
                    database: name.clone(),
                    stale: false,
                }),
        );
        changes.sort_by(|a, b| a.database.cmp(&b.database));
        self.stale = now.into_iter().map(str::to_string).collect();
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::health::DatabaseHealth;

    fn health(states: &[(&str, Freshness)]) -> Health {
        Health {
            healthy: states.iter().all(|(_, s)| s.is_healthy()),
            databases: states
                .iter()
                .map(|(name, state)| DatabaseHealth {
                    name: name.to_string(),
                    state: *state,
                    newest_backup: None,
                    age_seconds: None,
                    unchanged_at: None,
                    limit_seconds: 0,
                    consecutive_failures: 0,
                    last_error: None,
                })
                .collect(),
        }
    }

    fn change(database: &str, stale: bool) -> StaleChange {
        StaleChange {
            database: database.into(),
            stale,
        }
    }

    #[test]
    fn a_database_is_told_stale_once_and_recovered_once() {
        // Proves the transition is reported on the look that sees it and never again while it lasts, a
        // recovery likewise, and a stale database that leaves the configuration is dropped silently.
        use Freshness::*;
        let mut watch = StaleWatch::default();
        assert_eq!(
            watch.look(&health(&[("blog", Fresh), ("shop", Pending)])),
            []
        );
        assert_eq!(
            watch.look(&health(&[("blog", Stale), ("shop", Stale)])),
            [change("blog", true), change("shop", true)]
        );
        assert_eq!(watch.look(&health(&[("blog", Stale), ("shop", Stale)])), []);
        assert_eq!(
            watch.look(&health(&[("blog", Fresh), ("shop", Stale)])),
            [change("blog", false)]
        );
        assert_eq!(watch.look(&health(&[("blog", Fresh)])), []);
        assert_eq!(watch.look(&health(&[("blog", Fresh), ("shop", Fresh)])), []);
    }
}
