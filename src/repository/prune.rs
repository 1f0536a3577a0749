//! Applying retention to storage: plan (pure decisions over a complete listing) and execute. A listing that
//! fails deletes nothing; only complete backups are counted; incomplete leftovers (no manifest) are removed
//! once they are older than a day; keys that do not fit the layout are never touched.
//!
//! Prune never deletes what it cannot read: a backup whose `manifest.json` exists but is not accepted (it
//! does not parse, has a newer `format`, lacks a field, or names another backup's dump) is kept, reported
//! and left out of retention, as if it were not there. Leaving it out can only keep more of the other
//! backups, never fewer: it takes no `keep_*` slot and is not the "newest" that protects another. Inside a
//! backup directory only the names d1vault writes (the dump and `manifest.json`) are ever deleted; any
//! other object there is reported and left alone.
//!
//! Prune never tries to delete an object still under Object Lock retention (`storage.object_lock`): a
//! backup that retention lets go but whose objects are locked is kept, with the date its lock ends, and
//! counted apart; it takes no `keep_*` slot, so it goes at the first prune after that date.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use tracing::{info, warn};

use crate::repository::backups::{self, StoredBackup};
use crate::repository::manifest;
use crate::repository::retention::{self, BackupRef, RetentionPolicy};
use crate::storage::{Storage, StorageError};

/// Incomplete backups younger than this are left alone: they may be uploads still in progress.
pub const INCOMPLETE_GRACE: Duration = Duration::hours(24);

/// What prune will do for one database.
#[derive(Debug, Clone)]
pub struct PrunePlan {
    /// The storage prefix the plan was made under.
    pub prefix: String,
    /// The database the plan is for.
    pub database: String,
    /// One entry per complete backup, newest first.
    pub complete: Vec<PlannedBackup>,
    /// Incomplete backups old enough to remove (only their d1vault-named objects are removed).
    pub incomplete: Vec<StoredBackup>,
    /// Backups whose manifest exists but cannot be read or trusted ([`StoredBackup::unreadable`] says
    /// why), newest first: always kept, never counted by retention.
    pub unreadable: Vec<StoredBackup>,
    /// Backup directories that hold objects d1vault did not write, with those objects' keys: prune never
    /// deletes them (when their backup is deleted, they stay), and says so.
    pub foreign: Vec<(String, Vec<String>)>,
}

/// A complete backup and the decision about it.
#[derive(Debug, Clone)]
pub struct PlannedBackup {
    /// The backup as listed.
    pub backup: StoredBackup,
    /// Whether retention keeps it.
    pub keep: bool,
    /// Which rules keep it (`keep_daily 3/14`), or why it goes; printed by `prune`.
    pub reasons: Vec<String>,
    /// When retention lets it go but its objects are locked: the latest retain-until date among them.
    /// Such a backup is kept (`keep` is true) until then.
    pub locked_until: Option<DateTime<Utc>>,
}

/// What executing a plan did.
#[derive(Debug, Clone, Default)]
pub struct PruneOutcome {
    /// Complete backups deleted (dump first, manifest last).
    pub deleted_backups: usize,
    /// Incomplete leftovers removed (older than [`INCOMPLETE_GRACE`]).
    pub removed_incomplete: usize,
    /// Stale unfinished multipart uploads aborted.
    pub aborted_uploads: usize,
    /// Backups kept because their manifest is unreadable.
    pub kept_unreadable: usize,
    /// Backups retention let go but kept because their objects are still under Object Lock.
    pub kept_locked: usize,
    /// Deletions that failed, in words; they are retried by the next prune.
    pub errors: Vec<String>,
}

/// Builds the plan for `database` from one complete listing of its backups.
pub async fn plan(
    storage: &dyn Storage,
    prefix: &str,
    database: &str,
    policy: &RetentionPolicy,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<PrunePlan, StorageError> {
    let stored = backups::scan(storage, prefix, Some(database)).await?;
    let mut plan = plan_from_listing(prefix, database, stored, policy, tz, now);
    keep_locked(storage, &mut plan, now).await?;
    Ok(plan)
}

/// Keeps every backup the plan would delete whose objects are still locked at `now`, and drops locked
/// incomplete leftovers from the removals: one lock query per backup to delete (see [`lock_end`]), none
/// when the store locks nothing. A query that fails fails the plan, so nothing is deleted on a guess.
async fn keep_locked(
    storage: &dyn Storage,
    plan: &mut PrunePlan,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    for planned in plan.complete.iter_mut().filter(|p| !p.keep) {
        if let Some(until) = lock_end(storage, &plan.prefix, &planned.backup, now).await? {
            planned.keep = true;
            planned.locked_until = Some(until);
            planned.reasons.push(format!(
                "Object Lock until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    let mut removable = Vec::with_capacity(plan.incomplete.len());
    for leftover in std::mem::take(&mut plan.incomplete) {
        if lock_end(storage, &plan.prefix, &leftover, now)
            .await?
            .is_none()
        {
            removable.push(leftover);
        }
    }
    plan.incomplete = removable;
    Ok(())
}

/// The latest retain-until date after `now` among the d1vault-written objects of `backup`, if any. A
/// complete backup's manifest is written last with the same retention, so its date is the latest and one
/// query serves; an incomplete backup's objects are each asked.
async fn lock_end(
    storage: &dyn Storage,
    prefix: &str,
    backup: &StoredBackup,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StorageError> {
    let manifest_key = backup.manifest_key(prefix);
    let objects = backup.d1vault_objects(prefix);
    let asked: Vec<_> = match objects.iter().find(|o| o.key == manifest_key) {
        Some(manifest) => vec![*manifest],
        None => objects,
    };
    let mut latest = None;
    for object in asked {
        if let Some(until) = storage.locked_until(&object.key).await?
            && until > now
        {
            latest = latest.max(Some(until));
        }
    }
    Ok(latest)
}

/// The pure part of [`plan`]: decisions from a listing of the backups of `database` under `prefix`.
pub fn plan_from_listing(
    prefix: &str,
    database: &str,
    stored: Vec<StoredBackup>,
    policy: &RetentionPolicy,
    tz: Tz,
    now: DateTime<Utc>,
) -> PrunePlan {
    let foreign: Vec<(String, Vec<String>)> = stored
        .iter()
        .filter_map(|b| {
            let keys: Vec<String> = b
                .foreign_objects(prefix)
                .into_iter()
                .map(|o| o.key.clone())
                .collect();
            (!keys.is_empty()).then(|| (b.backup_id.clone(), keys))
        })
        .collect();
    let (mut unreadable, readable): (Vec<_>, Vec<_>) =
        stored.into_iter().partition(|b| b.unreadable.is_some());
    unreadable.sort_by(|a, b| b.backup_id.cmp(&a.backup_id));
    let (complete, incomplete): (Vec<_>, Vec<_>) =
        readable.into_iter().partition(|b| b.manifest.is_some());
    let refs: Vec<BackupRef> = complete
        .iter()
        .map(|b| BackupRef {
            id: b.backup_id.clone(),
            time: b
                .manifest
                .as_ref()
                .map(|m| m.started_at)
                .expect("complete backups have a manifest"),
        })
        .collect();
    let decisions = retention::apply(policy, &refs, tz, now);
    let mut planned: Vec<PlannedBackup> = decisions
        .into_iter()
        .filter_map(|d| {
            let backup = complete.iter().find(|b| b.backup_id == d.id)?.clone();
            Some(PlannedBackup {
                backup,
                keep: d.keep,
                reasons: d.reasons,
                locked_until: None,
            })
        })
        .collect();
    planned.sort_by(|a, b| b.backup.backup_id.cmp(&a.backup.backup_id));
    let incomplete = incomplete
        .into_iter()
        .filter(|b| {
            manifest::parse_backup_id(&b.backup_id).is_some_and(|t| now - t >= INCOMPLETE_GRACE)
                && !b.d1vault_objects(prefix).is_empty()
        })
        .collect();
    PrunePlan {
        prefix: prefix.to_string(),
        database: database.to_string(),
        complete: planned,
        incomplete,
        unreadable,
        foreign,
    }
}

/// Deletes what the plan says. A complete backup loses its manifest first, so it stops existing in one
/// step; a failure after that leaves an incomplete leftover that the next prune removes. Only objects under
/// names d1vault writes are deleted; unreadable backups are never touched.
pub async fn execute(
    storage: &dyn Storage,
    prefix: &str,
    plan: &PrunePlan,
    now: DateTime<Utc>,
) -> PruneOutcome {
    let mut outcome = PruneOutcome {
        kept_unreadable: plan.unreadable.len(),
        kept_locked: plan
            .complete
            .iter()
            .filter(|p| p.locked_until.is_some())
            .count(),
        ..PruneOutcome::default()
    };
    for planned in plan.complete.iter().filter(|p| !p.keep) {
        match delete_backup(storage, prefix, &planned.backup).await {
            Ok(()) => {
                outcome.deleted_backups += 1;
                info!(database = %plan.database, backup_id = %planned.backup.backup_id, "deleted backup");
            }
            Err(e) => outcome
                .errors
                .push(format!("deleting {}: {e}", planned.backup.backup_id)),
        }
    }
    for leftover in &plan.incomplete {
        match delete_backup(storage, prefix, leftover).await {
            Ok(()) => outcome.removed_incomplete += 1,
            Err(e) => outcome
                .errors
                .push(format!("removing incomplete {}: {e}", leftover.backup_id)),
        }
    }
    let db_prefix = manifest::database_prefix(prefix, &plan.database);
    match storage
        .abort_stale_uploads(&db_prefix, now - INCOMPLETE_GRACE)
        .await
    {
        Ok(n) => outcome.aborted_uploads = n,
        // Not a prune failure: some S3-compatible stores do not implement ListMultipartUploads, and an
        // unfinished upload is never a listed backup. Bucket lifecycle rules can clear them instead.
        Err(e) => {
            warn!(error = %e, "could not clear stale multipart uploads; consider a bucket lifecycle rule")
        }
    }
    outcome
}

/// Deletes the d1vault-named objects of `backup`, its manifest first (a crash after that leaves a dump
/// without a manifest: incomplete, never listed as complete). Objects d1vault did not write stay.
async fn delete_backup(
    storage: &dyn Storage,
    prefix: &str,
    backup: &StoredBackup,
) -> Result<(), StorageError> {
    if let Some(reason) = &backup.unreadable {
        // Never reached through a plan; a guard for callers that build their own.
        return Err(StorageError::permanent(format!(
            "refusing to delete backup {}: its manifest cannot be read ({reason})",
            backup.backup_id
        )));
    }
    let manifest_key = backup.manifest_key(prefix);
    let ours = backup.d1vault_objects(prefix);
    if ours.iter().any(|o| o.key == manifest_key) {
        storage.delete(&manifest_key).await?;
    }
    for object in ours.into_iter().filter(|o| o.key != manifest_key) {
        storage.delete(&object.key).await?;
    }
    Ok(())
}
