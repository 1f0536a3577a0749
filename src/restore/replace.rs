//! Replacing a D1 database's contents with a backup: `restore --to-d1` and the undo of a failed
//! `migrations apply` on a D1 database without Time Travel. One sequence ([`spool_then_import`]): the
//! backup is checked and spooled in restore order first, while nothing on the target has changed; then,
//! for a restore, the safety backup of what is about to be replaced; then one atomic import that clears
//! the target and loads the backup (see [`super::d1`]).

use std::path::Path;

use super::d1::{self, SchemaObject};
use super::{Progress, ProgressEvent, RestoreError};
use crate::cloudflare::{Client, DatabaseInfo};
use crate::config::{Config, DatabaseConfig, Source};
use crate::pipeline::run_backup_now;
use crate::repository::manifest::Manifest;
use crate::sources::BackupSources;

/// A `--to-d1` restore whose target was looked up and checked, ready to run.
#[derive(Debug)]
pub struct D1Replace<'a> {
    client: &'a Client,
    target: DatabaseInfo,
    /// What the target holds now: a restore drops all of it.
    objects: Vec<SchemaObject>,
}

/// What a `--to-d1` restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct D1Restored {
    /// The target's name.
    pub target: String,
    /// How many queries D1's import ran, when it says.
    pub num_queries: Option<u64>,
    /// The id of the safety backup taken of the target before it was replaced, if one was.
    pub safety_backup: Option<String>,
}

/// The safety backup to take between spooling and importing, and where to store it.
#[derive(Debug, Clone, Copy)]
pub struct SafetyBackup<'a> {
    /// The configuration of the backup (see [`safety_backup_config`]).
    pub database: &'a DatabaseConfig,
    /// Where it goes.
    pub sources: &'a BackupSources,
}

impl<'a> D1Replace<'a> {
    /// Looks up the D1 database `target` (name or id) and what it holds. A target that holds anything
    /// (tables, views or triggers count) is refused unless `replace`; nothing is changed.
    pub async fn check(
        client: &'a Client,
        target: &str,
        replace: bool,
    ) -> Result<D1Replace<'a>, RestoreError> {
        let info =
            client
                .get_database(target)
                .await
                .map_err(|source| RestoreError::TargetNotFound {
                    target: target.to_string(),
                    source,
                })?;
        let objects = d1::user_objects(client, &info.uuid).await?;
        // Views and triggers count: a database holding only those is not empty, and a restore drops them.
        if !objects.is_empty() && !replace {
            return Err(RestoreError::NotEmpty {
                target: info.name,
                objects: objects
                    .iter()
                    .map(|o| format!("{} {}", o.kind, o.name))
                    .collect(),
            });
        }
        Ok(D1Replace {
            client,
            target: info,
            objects,
        })
    }

    /// Whether the restore replaces existing contents (the caller asks for confirmation first).
    pub fn replaces_contents(&self) -> bool {
        !self.objects.is_empty()
    }

    /// The target's name.
    pub fn target_name(&self) -> &str {
        &self.target.name
    }

    /// The bookmark Time Travel can put the target back to for `manifest`'s backup, when it can: the
    /// backup is of this very database (its D1 id, or its name when the manifest has no id), it names the
    /// bookmark its dump holds, and the database has Time Travel (not an `alpha` database). Whether the
    /// bookmark is still inside Time Travel's retention only D1 knows: [`D1Replace::time_travel`] asks.
    pub fn time_travel_bookmark<'m>(&self, manifest: &'m Manifest) -> Option<&'m str> {
        let same = match &manifest.database.id {
            Some(id) => id.eq_ignore_ascii_case(&self.target.uuid),
            None => manifest.database.name == self.target.name,
        };
        let has_time_travel = self.target.version.as_deref() != Some("alpha");
        (same && has_time_travel && manifest.database.source == "d1")
            .then_some(manifest.bookmark.as_deref())
            .flatten()
    }

    /// Puts the target back to `bookmark` with Time Travel (seconds, exact: no data moves); returns the
    /// bookmark that undoes it, as D1 answers it.
    pub async fn time_travel(
        &self,
        bookmark: &str,
    ) -> Result<Option<String>, crate::cloudflare::ApiError> {
        self.client
            .time_travel_restore(&self.target.uuid, bookmark)
            .await
    }

    /// Restores `manifest`'s backup into the target: checked and spooled into `config`'s spool
    /// directory, a safety backup of the target taken first when it holds anything (unless
    /// `safety_backup` is false), then one atomic import. `source_db` is the database whose backup it
    /// is: its settings shape the safety backup.
    pub async fn run(
        self,
        config: &Config,
        sources: &BackupSources,
        manifest: &Manifest,
        source_db: &str,
        safety_backup: bool,
        progress: &mut Progress<'_>,
    ) -> Result<D1Restored, RestoreError> {
        let safety_config = (self.replaces_contents() && safety_backup)
            .then(|| safety_backup_config(config, source_db, &self.target.name, &self.target.uuid));
        let safety = safety_config
            .as_ref()
            .map(|database| SafetyBackup { database, sources });
        let (outcome, safety_backup) = spool_then_import(
            self.client,
            &self.target,
            sources,
            manifest,
            &super::spool_dir(config),
            safety,
            progress,
        )
        .await?;
        Ok(D1Restored {
            target: self.target.name,
            num_queries: outcome.num_queries,
            safety_backup,
        })
    }
}

/// Replaces the contents of D1 database `target` with `manifest`'s backup, in three steps:
///
/// 1. download, prove and spool the backup in restore order into `spool_dir`: nothing on the target has
///    changed yet, and a backup that fails its checks changes nothing;
/// 2. take the `safety` backup, if any, of what is about to be replaced (reported as
///    [`ProgressEvent::SafetyBackupTaken`]); if it fails, nothing was changed;
/// 3. one atomic import: clear what is there now, then load.
///
/// Returns D1's import outcome and the safety backup's id. An import failure is
/// [`RestoreError::ImportFailed`], naming the target.
pub async fn spool_then_import(
    client: &Client,
    target: &DatabaseInfo,
    sources: &BackupSources,
    manifest: &Manifest,
    spool_dir: &Path,
    safety: Option<SafetyBackup<'_>>,
    progress: &mut Progress<'_>,
) -> Result<(crate::cloudflare::ImportOutcome, Option<String>), RestoreError> {
    let identities = super::identities_for(sources, manifest)?;
    let body = d1::spool_import_body(
        sources.storage.as_ref(),
        manifest,
        identities.as_ref(),
        client.import_limit(),
        spool_dir,
        progress,
    )
    .await?;
    let mut safety_id = None;
    if let Some(safety) = safety {
        match run_backup_now(safety.database, safety.sources).await {
            Ok(m) => {
                progress.report(ProgressEvent::SafetyBackupTaken {
                    target: &target.name,
                    backup_id: &m.backup_id,
                });
                safety_id = Some(m.backup_id);
            }
            Err(source) => {
                drop(body);
                return Err(RestoreError::SafetyBackupFailed {
                    target: target.name.clone(),
                    source,
                });
            }
        }
    }
    let outcome = d1::import_replacing(client, &target.uuid, body)
        .await
        .map_err(|e| RestoreError::ImportFailed {
            target: target.name.clone(),
            source: Box::new(e),
        })?;
    Ok((outcome, safety_id))
}

/// The configuration of the safety backup of a D1 target: the source database's settings (compression),
/// stored under the target's name, always a full export.
pub fn safety_backup_config(
    config: &Config,
    source_db: &str,
    target_name: &str,
    target_id: &str,
) -> DatabaseConfig {
    let base = config
        .database(source_db)
        .or_else(|| config.databases.first())
        .expect("config has a database");
    let mut safety = base.clone();
    safety.name = target_name.to_string();
    safety.source = Source::D1 {
        id: Some(target_id.to_string()),
    };
    safety.no_data = false;
    safety.tables = Vec::new();
    safety.fleet = None;
    safety
}
