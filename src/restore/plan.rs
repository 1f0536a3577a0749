//! A restore from request to result, the one operation `d1vault restore` calls, in two halves so that the
//! caller can ask for confirmation in between: [`plan`] picks the backup and checks the target, changing
//! nothing; [`RestorePlan::run`] restores.

use std::path::PathBuf;

use super::install::SqliteInstall;
use super::replace::D1Replace;
use super::{BackupChoice, Progress, RestoreError, select_backup};
use crate::config::Config;
use crate::repository::manifest::Manifest;
use crate::sources::BackupSources;

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// A new SQLite file (or, with `replace`, an existing regular file) at this path.
    Sqlite(PathBuf),
    /// This D1 database (name or id), which must exist.
    D1(String),
}

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The configured database whose backups to restore from.
    pub database: String,
    /// Which backup: the newest, by id, or by time.
    pub backup: BackupChoice,
    /// Where the backup goes.
    pub target: RestoreTarget,
    /// Whether a target that is not empty (D1) or an existing regular file (SQLite) may be replaced.
    pub replace: bool,
    /// Whether to take a safety backup of a D1 target before replacing it (the import path only: Time
    /// Travel's answer is its own undo).
    pub safety_backup: bool,
    /// How a backup goes back into its own source D1 database.
    pub via: RestoreVia,
}

/// How a restore into a D1 database runs (`restore --via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreVia {
    /// Time Travel when the target is the backup's own source and D1 still holds the backup's bookmark,
    /// else the import.
    #[default]
    Auto,
    /// Always the import of the dump.
    Import,
    /// Time Travel or nothing.
    TimeTravel,
}

/// A restore whose backup was chosen and whose target was checked; nothing has changed yet.
#[derive(Debug)]
pub struct RestorePlan<'a> {
    config: &'a Config,
    sources: &'a BackupSources,
    request: RestoreRequest,
    manifest: Manifest,
    identities: Option<crate::encryption::Identities>,
    target: PlannedTarget<'a>,
}

#[derive(Debug)]
enum PlannedTarget<'a> {
    Sqlite(SqliteInstall),
    D1(D1Replace<'a>),
}

/// What a planned restore destroys, for the caller to confirm before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destructive {
    /// The SQLite file at this path is replaced.
    ReplaceFile(PathBuf),
    /// Every table, view, trigger and index of the D1 database with this name is replaced.
    ReplaceD1(String),
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The database the backup is of.
    pub database: String,
    /// The backup restored.
    pub backup_id: String,
    /// Where it went, with what the target reports.
    pub into: RestoredInto,
}

/// Where a backup was restored, with what the target reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoredInto {
    /// A SQLite file, checked with `integrity_check`.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What it holds.
        restored: super::install::SqliteRestored,
    },
    /// A D1 database, through an import of the dump.
    D1(super::replace::D1Restored),
    /// A D1 database put back to the backup's bookmark with Time Travel.
    TimeTravel {
        /// The target's name.
        target: String,
        /// The bookmark it was put back to: the state the backup holds.
        bookmark: String,
        /// The bookmark that undoes the restore, as D1 answered it.
        previous_bookmark: Option<String>,
    },
}

/// Picks the backup `request` names (or the newest) and checks its target: a SQLite path must be free or,
/// with `replace`, a regular file; a D1 target must exist and, unless `replace`, be empty. Changes nothing.
pub async fn plan<'a>(
    config: &'a Config,
    sources: &'a BackupSources,
    request: RestoreRequest,
) -> Result<RestorePlan<'a>, RestoreError> {
    let manifest = select_backup(
        sources.storage.as_ref(),
        &sources.prefix,
        &request.database,
        &request.backup,
    )
    .await?;
    let target = match &request.target {
        RestoreTarget::Sqlite(path) => {
            PlannedTarget::Sqlite(SqliteInstall::check(path, request.replace)?)
        }
        RestoreTarget::D1(target) => {
            let client = sources
                .cloudflare
                .as_ref()
                .ok_or_else(|| RestoreError::NoCloudflare {
                    config: config.path.clone(),
                })?;
            PlannedTarget::D1(D1Replace::check(client, target, request.replace).await?)
        }
    };
    // An encrypted backup without a usable identity is refused before anything changes, unless Time
    // Travel may restore it (it reads no data); a fallback to the import then refuses the same way.
    let by_time_travel = match &target {
        PlannedTarget::D1(replace) => {
            request.via != RestoreVia::Import && replace.time_travel_bookmark(&manifest).is_some()
        }
        PlannedTarget::Sqlite(_) => false,
    };
    if request.via == RestoreVia::TimeTravel && !by_time_travel {
        return Err(RestoreError::Refused(format!(
            "--via time-travel: backup {} cannot go back by Time Travel here: that needs a D1 backup \
             restored into its own source database (with a bookmark in its manifest), on a database \
             that has Time Travel",
            manifest.backup_id
        )));
    }
    let identities = match super::identities_for(sources, &manifest) {
        Ok(identities) => identities,
        Err(_) if by_time_travel => None,
        Err(e) => return Err(e),
    };
    Ok(RestorePlan {
        config,
        sources,
        request,
        manifest,
        identities,
        target,
    })
}

impl RestorePlan<'_> {
    /// The backup that will be restored.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What the restore replaces, if anything: the caller confirms it before [`RestorePlan::run`].
    pub fn destructive(&self) -> Option<Destructive> {
        match &self.target {
            PlannedTarget::Sqlite(install) if install.replaces_file() => {
                Some(Destructive::ReplaceFile(install.path().to_path_buf()))
            }
            PlannedTarget::D1(replace) if replace.replaces_contents() => {
                Some(Destructive::ReplaceD1(replace.target_name().to_string()))
            }
            _ => None,
        }
    }

    /// Restores: the backup is downloaded and proven against its manifest before any of it runs or
    /// anything on the target changes (see [`super::install`] and [`super::replace`]).
    pub async fn run(self, progress: &mut Progress<'_>) -> Result<Restored, RestoreError> {
        let RestorePlan {
            config,
            sources,
            request,
            manifest,
            identities,
            target,
        } = self;
        let into = match target {
            PlannedTarget::Sqlite(install) => {
                let path = install.path().to_path_buf();
                let restored = install
                    .run(
                        sources.storage.as_ref(),
                        &manifest,
                        identities.as_ref(),
                        progress,
                    )
                    .await?;
                RestoredInto::Sqlite { path, restored }
            }
            PlannedTarget::D1(replace) => match time_travel(&request, &manifest, &replace).await? {
                Some(into) => into,
                None => RestoredInto::D1(
                    replace
                        .run(
                            config,
                            sources,
                            &manifest,
                            &request.database,
                            request.safety_backup,
                            progress,
                        )
                        .await?,
                ),
            },
        };
        Ok(Restored {
            database: manifest.database.name,
            backup_id: manifest.backup_id,
            into,
        })
    }
}

/// The Time Travel path, when it applies: `Some` when the target was put back to the backup's bookmark;
/// `None` when the import must run instead (not applicable, or D1 refused the bookmark, for example
/// because it is older than Time Travel's retention: said on stderr).
async fn time_travel(
    request: &RestoreRequest,
    manifest: &Manifest,
    replace: &D1Replace<'_>,
) -> Result<Option<RestoredInto>, RestoreError> {
    if request.via == RestoreVia::Import {
        return Ok(None);
    }
    let Some(bookmark) = replace.time_travel_bookmark(manifest) else {
        return Ok(None);
    };
    match replace.time_travel(bookmark).await {
        Ok(previous_bookmark) => Ok(Some(RestoredInto::TimeTravel {
            target: replace.target_name().to_string(),
            bookmark: bookmark.to_string(),
            previous_bookmark,
        })),
        Err(e) if request.via == RestoreVia::TimeTravel => Err(e.into()),
        Err(e) => {
            tracing::warn!(
                backup_id = %manifest.backup_id,
                error = %e,
                "Time Travel could not go back to the backup's bookmark; restoring through an import instead"
            );
            Ok(None)
        }
    }
}
