//! `skip_unchanged`: before exporting a D1 database, one Time Travel bookmark request; when the bookmark
//! equals the one in the newest complete backup's manifest, that backup still holds the database's
//! current data and no export is made (an export blocks the database and costs API budget).
//!
//! Never skip on a guess. The decision is pure, in two steps so that no request is spent when the answer
//! is already "export": [`plan`] decides from the configuration and storage whether a bookmark is worth
//! asking for, [`decide`] compares the answer. Anything short of an exact match (no bookmark in the
//! manifest, a manifest of another database id or other export settings, an error reading storage or the
//! bookmark, a SQLite source) means a backup.

use d1_dump::DumpOptions;
use tracing::{info, warn};

use super::backup::{BackupError, run_backup_now};
use crate::config::{DatabaseConfig, Source};
use crate::repository::backups::{self, NewestManifest};
use crate::repository::manifest::Manifest;
use crate::sources::BackupSources;

/// Why a run exports instead of skipping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportReason {
    /// `backup --force`, or a safety backup: the state right now is wanted whatever storage holds.
    Forced,
    /// `skip_unchanged = false`.
    Disabled,
    /// A SQLite source has no bookmark to compare.
    NotD1,
    /// The database has no complete backup yet.
    NoBackup,
    /// Storage could not be listed or the newest manifest not read.
    StorageFailed(String),
    /// The newest manifest is present but unreadable: it may be the newest state, so it cannot be trusted.
    NewestUnreadable {
        /// The backup whose manifest was refused.
        backup_id: String,
        /// Why it was refused.
        reason: String,
    },
    /// The newest complete backup has no bookmark (written by a SQLite source, or by hand).
    NoBookmark {
        /// The newest complete backup.
        backup_id: String,
    },
    /// The newest backup was taken with other export settings (`no_data`, `tables`) than configured now.
    SettingsChanged {
        /// The newest complete backup.
        backup_id: String,
    },
    /// The newest backup is of another D1 database (another id under the same name: it was recreated).
    OtherDatabase {
        /// The newest complete backup.
        backup_id: String,
    },
    /// The bookmark request failed.
    BookmarkFailed(String),
    /// The bookmark moved since the newest backup: the database was written to.
    Changed {
        /// The newest complete backup.
        backup_id: String,
    },
}

impl ExportReason {
    /// Whether this reason is a doubt worth a warning (something failed), rather than an ordinary export.
    pub fn is_doubt(&self) -> bool {
        matches!(
            self,
            ExportReason::StorageFailed(_)
                | ExportReason::NewestUnreadable { .. }
                | ExportReason::BookmarkFailed(_)
        )
    }
}

impl std::fmt::Display for ExportReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportReason::Forced => write!(f, "forced"),
            ExportReason::Disabled => write!(f, "skip_unchanged is off"),
            ExportReason::NotD1 => write!(f, "a SQLite source is always exported"),
            ExportReason::NoBackup => write!(f, "no complete backup yet"),
            ExportReason::StorageFailed(e) => {
                write!(f, "could not read the newest backup from storage ({e})")
            }
            ExportReason::NewestUnreadable { backup_id, reason } => {
                write!(
                    f,
                    "the manifest of the newest backup {backup_id} is unreadable ({reason})"
                )
            }
            ExportReason::NoBookmark { backup_id } => {
                write!(f, "the newest backup {backup_id} records no bookmark")
            }
            ExportReason::SettingsChanged { backup_id } => write!(
                f,
                "the newest backup {backup_id} was exported with other no_data/tables settings"
            ),
            ExportReason::OtherDatabase { backup_id } => write!(
                f,
                "the newest backup {backup_id} is of another database id (the database was recreated)"
            ),
            ExportReason::BookmarkFailed(e) => write!(f, "could not read the bookmark ({e})"),
            ExportReason::Changed { backup_id } => {
                write!(f, "the database changed since backup {backup_id}")
            }
        }
    }
}

/// A skipped export: the newest complete backup still holds the database's current data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    /// The newest complete backup, which holds the current data.
    pub backup_id: String,
    /// The bookmark it and the database share.
    pub bookmark: String,
}

/// What [`plan`] found worth a bookmark request: the newest backup's bookmark and database id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The newest complete backup.
    pub backup_id: String,
    /// Its manifest's bookmark.
    pub bookmark: String,
    /// Its manifest's database id, if recorded.
    pub database_id: Option<String>,
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Export, and why.
    Export(ExportReason),
    /// No export: the data is unchanged.
    Skip(Unchanged),
}

/// Step one, before any request: whether a bookmark comparison could skip the export. `newest` is what
/// storage said about the newest complete backup (an error as its text); `export` the dump options the
/// export would use now.
pub fn plan(
    skip_unchanged: bool,
    force: bool,
    is_d1: bool,
    export: &DumpOptions,
    newest: Result<&NewestManifest, &str>,
) -> Result<Candidate, ExportReason> {
    if force {
        return Err(ExportReason::Forced);
    }
    if !skip_unchanged {
        return Err(ExportReason::Disabled);
    }
    if !is_d1 {
        return Err(ExportReason::NotD1);
    }
    let manifest = match newest {
        Err(e) => return Err(ExportReason::StorageFailed(e.to_string())),
        Ok(NewestManifest::None) => return Err(ExportReason::NoBackup),
        Ok(NewestManifest::Unreadable { backup_id, reason }) => {
            return Err(ExportReason::NewestUnreadable {
                backup_id: backup_id.clone(),
                reason: reason.clone(),
            });
        }
        Ok(NewestManifest::Complete(m)) => m,
    };
    let backup_id = manifest.backup_id.clone();
    if manifest.database.source != "d1" {
        return Err(ExportReason::NoBookmark { backup_id });
    }
    let Some(bookmark) = manifest.bookmark.clone().filter(|b| !b.is_empty()) else {
        return Err(ExportReason::NoBookmark { backup_id });
    };
    if &manifest.export != export {
        return Err(ExportReason::SettingsChanged { backup_id });
    }
    Ok(Candidate {
        backup_id,
        bookmark,
        database_id: manifest.database.id.clone(),
    })
}

/// Step two: the database `database_id`'s current bookmark (`Err`: the request failed, as text) against
/// the candidate. Only an exact match of the same database skips.
pub fn decide(candidate: Candidate, database_id: &str, current: Result<&str, &str>) -> Decision {
    let backup_id = candidate.backup_id;
    if candidate
        .database_id
        .as_deref()
        .is_some_and(|id| !id.eq_ignore_ascii_case(database_id))
    {
        return Decision::Export(ExportReason::OtherDatabase { backup_id });
    }
    match current {
        Err(e) => Decision::Export(ExportReason::BookmarkFailed(e.to_string())),
        Ok(now) if now == candidate.bookmark => Decision::Skip(Unchanged {
            backup_id,
            bookmark: candidate.bookmark,
        }),
        Ok(_) => Decision::Export(ExportReason::Changed { backup_id }),
    }
}

/// The check for one database: reads the newest manifest, then (when worth it) resolves the database id
/// and reads its bookmark, one request each, through the shared rate limiter. Returns the decision and
/// the configuration to export with: the same, with the resolved id filled in so that an export after a
/// check looks the database up only once.
pub async fn check(
    database: &DatabaseConfig,
    sources: &BackupSources,
    force: bool,
) -> (Decision, DatabaseConfig) {
    let export = DumpOptions {
        no_data: database.no_data,
        no_schema: false,
        tables: database.tables.clone(),
    };
    // Without a client the export reports the configuration error.
    let is_d1 = matches!(database.source, Source::D1 { .. }) && sources.cloudflare.is_some();
    let newest = if force || !database.skip_unchanged || !is_d1 {
        // Not read: plan() decides without it.
        Ok(NewestManifest::None)
    } else {
        backups::newest_manifest(sources.storage.as_ref(), &sources.prefix, &database.name)
            .await
            .map_err(|e| e.to_string())
    };
    let candidate = match plan(
        database.skip_unchanged,
        force,
        is_d1,
        &export,
        newest.as_ref().map_err(String::as_str),
    ) {
        Ok(candidate) => candidate,
        Err(reason) => return (Decision::Export(reason), database.clone()),
    };
    let (Source::D1 { id }, Some(client)) = (&database.source, sources.cloudflare.as_ref()) else {
        return (Decision::Export(ExportReason::NotD1), database.clone());
    };
    let uuid = match id {
        Some(id) => id.clone(),
        None => match client.get_database(&database.name).await {
            Ok(info) => info.uuid,
            Err(e) => {
                let reason = ExportReason::BookmarkFailed(e.to_string());
                return (Decision::Export(reason), database.clone());
            }
        },
    };
    let mut resolved = database.clone();
    resolved.source = Source::D1 {
        id: Some(uuid.clone()),
    };
    let current = client.bookmark(&uuid).await.map_err(|e| e.to_string());
    let decision = decide(candidate, &uuid, current.as_deref().map_err(String::as_str));
    (decision, resolved)
}

/// Logs the decision for `database`.
pub fn log_decision(database: &str, decision: &Decision) {
    match decision {
        Decision::Skip(u) => info!(
            database,
            backup_id = %u.backup_id,
            bookmark = %u.bookmark,
            "unchanged since the newest backup; no export"
        ),
        Decision::Export(reason) if reason.is_doubt() => {
            warn!(database, reason = %reason, "cannot tell whether the database changed; backing up")
        }
        Decision::Export(reason) => info!(database, reason = %reason, "exporting"),
    }
}

/// What a one-shot backup run did.
#[derive(Debug, Clone)]
pub enum BackupRun {
    /// A new complete backup.
    Backed(Box<Manifest>),
    /// No export: the newest backup still holds the current data.
    Unchanged(Unchanged),
}

/// The one-shot `backup`: [`check`], then [`run_backup_now`] unless the database is unchanged. `force`
/// exports whatever the bookmark says (safety backups call [`run_backup_now`] directly: always an export).
pub async fn backup_unless_unchanged(
    database: &DatabaseConfig,
    sources: &BackupSources,
    force: bool,
) -> Result<BackupRun, BackupError> {
    let (decision, resolved) = check(database, sources, force).await;
    log_decision(&database.name, &decision);
    match decision {
        Decision::Skip(unchanged) => Ok(BackupRun::Unchanged(unchanged)),
        Decision::Export(_) => run_backup_now(&resolved, sources)
            .await
            .map(|m| BackupRun::Backed(Box::new(m))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::manifest::{ManifestDatabase, ManifestDump};
    use crate::test_time::utc;

    const B1: &str = "00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683";
    const B2: &str = "00000086-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683";
    const ID: &str = "1b0c4c1e-7a4b-5f3e-9d2a-3c4b5d6e7f80";

    fn manifest(bookmark: Option<&str>) -> NewestManifest {
        NewestManifest::Complete(Box::new(Manifest {
            format: 1,
            tool: "d1vault test".into(),
            database: ManifestDatabase {
                name: "blog".into(),
                id: Some(ID.into()),
                source: "d1".into(),
            },
            backup_id: "20261129T030012Z".into(),
            started_at: utc("2026-11-29T03:00:12Z"),
            finished_at: utc("2026-11-29T03:00:19Z"),
            bookmark: bookmark.map(str::to_string),
            export: DumpOptions::default(),
            dump: ManifestDump {
                key: "blog/20261129T030012Z/dump.sql.zst".into(),
                compression: "zstd".into(),
                size: 1,
                sha256: "00".into(),
                raw_size: 1,
                raw_sha256: "00".into(),
            },
            tables: Vec::new(),
            migrations: Vec::new(),
            encryption: None,
            virtual_tables: Vec::new(),
        }))
    }

    fn plan_with(
        skip: bool,
        force: bool,
        is_d1: bool,
        newest: Result<&NewestManifest, &str>,
    ) -> Result<Candidate, ExportReason> {
        plan(skip, force, is_d1, &DumpOptions::default(), newest)
    }

    fn id() -> String {
        "20261129T030012Z".to_string()
    }

    #[test]
    fn plan_asks_for_a_bookmark_only_when_a_skip_is_possible() {
        // Proves each reason to export without a request, and the one case worth a bookmark request.
        let good = manifest(Some(B1));
        assert_eq!(
            plan_with(true, true, true, Ok(&good)),
            Err(ExportReason::Forced)
        );
        assert_eq!(
            plan_with(false, false, true, Ok(&good)),
            Err(ExportReason::Disabled)
        );
        assert_eq!(
            plan_with(true, false, false, Ok(&good)),
            Err(ExportReason::NotD1)
        );
        assert_eq!(
            plan_with(true, false, true, Ok(&NewestManifest::None)),
            Err(ExportReason::NoBackup)
        );
        assert_eq!(
            plan_with(true, false, true, Err("listing failed")),
            Err(ExportReason::StorageFailed("listing failed".into()))
        );
        let unreadable = NewestManifest::Unreadable {
            backup_id: id(),
            reason: "bad json".into(),
        };
        assert_eq!(
            plan_with(true, false, true, Ok(&unreadable)),
            Err(ExportReason::NewestUnreadable {
                backup_id: id(),
                reason: "bad json".into()
            })
        );
        assert_eq!(
            plan_with(true, false, true, Ok(&manifest(None))),
            Err(ExportReason::NoBookmark { backup_id: id() })
        );
        assert_eq!(
            plan_with(true, false, true, Ok(&manifest(Some("")))),
            Err(ExportReason::NoBookmark { backup_id: id() })
        );
        let mut sqlite = manifest(Some(B1));
        if let NewestManifest::Complete(m) = &mut sqlite {
            m.database.source = "sqlite".into();
        }
        assert_eq!(
            plan_with(true, false, true, Ok(&sqlite)),
            Err(ExportReason::NoBookmark { backup_id: id() })
        );
        let schema_only = DumpOptions {
            no_data: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            plan(true, false, true, &schema_only, Ok(&good)),
            Err(ExportReason::SettingsChanged { backup_id: id() })
        );
        assert_eq!(
            plan_with(true, false, true, Ok(&good)),
            Ok(Candidate {
                backup_id: id(),
                bookmark: B1.into(),
                database_id: Some(ID.into()),
            })
        );
    }

    #[test]
    fn decide_skips_only_on_an_exact_match_of_the_same_database() {
        // Proves a skip needs the same bookmark and database id; a moved bookmark, a failed request or
        // another database id export.
        let candidate = || plan_with(true, false, true, Ok(&manifest(Some(B1)))).unwrap();
        assert_eq!(
            decide(candidate(), ID, Ok(B1)),
            Decision::Skip(Unchanged {
                backup_id: id(),
                bookmark: B1.into()
            })
        );
        assert_eq!(
            decide(candidate(), &ID.to_uppercase(), Ok(B1)),
            Decision::Skip(Unchanged {
                backup_id: id(),
                bookmark: B1.into()
            })
        );
        assert_eq!(
            decide(candidate(), ID, Ok(B2)),
            Decision::Export(ExportReason::Changed { backup_id: id() })
        );
        assert_eq!(
            decide(candidate(), ID, Err("HTTP 500")),
            Decision::Export(ExportReason::BookmarkFailed("HTTP 500".into()))
        );
        assert_eq!(
            decide(candidate(), "00000000-0000-0000-0000-000000000000", Ok(B1)),
            Decision::Export(ExportReason::OtherDatabase { backup_id: id() })
        );
        let mut no_id = candidate();
        no_id.database_id = None;
        assert!(matches!(decide(no_id, ID, Ok(B1)), Decision::Skip(_)));
    }
}
