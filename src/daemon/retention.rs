//! Retention after a successful backup: the daemon's side of `prune`, run for one database at a time.

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use crate::config::DatabaseConfig;
use crate::repository::prune;
use crate::sources::BackupSources;

/// Applies `db`'s retention policy at `now`. A listing failure deletes nothing; a backup whose manifest
/// cannot be read is kept and logged at ERROR after every run, so that someone looks at it.
pub(super) async fn apply_retention(
    sources: &BackupSources,
    db: &DatabaseConfig,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) {
    if db.retention.is_empty() {
        return;
    }
    let storage = sources.storage.as_ref();
    match prune::plan(storage, &sources.prefix, &db.name, &db.retention, tz, now).await {
        Ok(plan) => {
            let outcome = prune::execute(storage, &sources.prefix, &plan, now).await;
            for kept in &plan.unreadable {
                error!(
                    database = %db.name,
                    backup_id = %kept.backup_id,
                    reason = kept.unreadable.as_deref().unwrap_or_default(),
                    "manifest unreadable: backup kept, not counted by retention, not restorable; repair or remove it by hand"
                );
            }
            if outcome.kept_locked > 0 {
                info!(database = %db.name, kept = outcome.kept_locked, "retention kept backups still under Object Lock");
            }
            if outcome.deleted_backups + outcome.removed_incomplete > 0 {
                info!(database = %db.name, deleted = outcome.deleted_backups, incomplete = outcome.removed_incomplete, "retention applied");
            }
            for e in outcome.errors {
                warn!(database = %db.name, error = %e, "retention");
            }
        }
        Err(e) => {
            warn!(database = %db.name, error = %e, "listing failed; retention deleted nothing")
        }
    }
}
