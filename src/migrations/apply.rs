//! `migrations apply`: back up, then apply every pending migration, all or nothing. SQLite sources run
//! the whole run in one transaction; D1 runs each file in one atomic request (as wrangler does) and, on a
//! failure, puts the database back by the Time Travel bookmark read before the run or, on an old `alpha`
//! database without Time Travel, by restoring the backup taken before it (see [`crate::restore::replace`]).

use rusqlite::OpenFlags;

use super::error::{FailedAt, MigrationError, RunFailure, UndoOutcome};
use super::target::{MigrationTarget, open_sqlite};
use super::{apply_sql, create_table_sql, pending, probe, read_files};
use crate::cloudflare::{Client, DatabaseInfo};
use crate::config::{Config, DatabaseConfig};
use crate::pipeline::run_backup_now;
use crate::repository::manifest::Manifest;
use crate::restore::{self, Progress, RestoreError};
use crate::sources::{self, BackupSources};

/// What `migrations apply` is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    /// The configured database to migrate.
    pub database: &'a DatabaseConfig,
    /// Skip the backup before the run (refused where that backup is the only undo).
    pub no_backup: bool,
    /// Only say what would be applied.
    pub dry_run: bool,
}

/// A step of a run, reported as it happens (so that a killed run has already shown how to undo it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyEvent<'a> {
    /// The backup before the run was taken.
    BackupTaken {
        /// Its id.
        backup_id: &'a str,
    },
    /// The Time Travel bookmark a failed D1 run will be put back to.
    BookmarkRead {
        /// The bookmark.
        bookmark: &'a str,
    },
    /// A migration file was applied (on SQLite: within the run's transaction).
    Applied {
        /// The file's name.
        name: &'a str,
    },
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Nothing was pending.
    NothingPending,
    /// A dry run: these would be applied, in order.
    WouldApply(Vec<String>),
    /// These were applied, in order.
    Applied(Vec<String>),
}

/// How a failed D1 run is put back.
#[allow(clippy::large_enum_variant)] // one value per run: its size does not matter
enum Undo {
    /// Restore this Time Travel bookmark, read just before the run.
    Bookmark(String),
    /// No Time Travel: replace the database's contents with the backup taken before the run.
    Backup {
        sources: BackupSources,
        manifest: Manifest,
        spool_dir: std::path::PathBuf,
    },
}

/// Applies every pending migration of `request.database`, after a backup; on any failure the database
/// is put back as it was before the run, and the error says how (or that it could not be).
pub async fn apply(
    config: &Config,
    request: ApplyRequest<'_>,
    mut on_event: impl FnMut(ApplyEvent<'_>),
) -> Result<ApplyOutcome, MigrationError> {
    let db = request.database;
    let files = read_files(db)?;
    let target = MigrationTarget::open(config, db).await?;
    // Nothing is written before the backup: the migrations table is created inside the run, so that a
    // failed run leaves no trace of it either.
    let applied_now = target.applied(&db.migrations_table).await?;
    let pending = pending(&files, &applied_now);
    if pending.is_empty() {
        return Ok(ApplyOutcome::NothingPending);
    }
    if request.dry_run {
        return Ok(ApplyOutcome::WouldApply(
            pending.iter().map(|f| f.name.clone()).collect(),
        ));
    }
    let mut contents = Vec::new();
    for file in &pending {
        let text =
            std::fs::read_to_string(&file.path).map_err(|source| MigrationError::ReadFile {
                path: file.path.clone(),
                source,
            })?;
        contents.push((file.name.clone(), text));
    }
    // How a failed D1 run will be undone, decided before anything changes: by the Time Travel bookmark, or,
    // on an old `alpha` database that has no Time Travel, from the backup taken first. (On SQLite, one
    // transaction undoes a failed run.)
    let undo_from_backup = match &target {
        MigrationTarget::D1 { client, id, .. } => !has_time_travel(client, id).await?,
        MigrationTarget::Sqlite { .. } => false,
    };
    if undo_from_backup && request.no_backup {
        return Err(MigrationError::UndoNeedsBackup {
            database: db.name.clone(),
        });
    }
    let mut backup = None;
    if !request.no_backup {
        let sources = match &target {
            MigrationTarget::D1 { sources, .. } => sources.as_ref().clone(),
            MigrationTarget::Sqlite { .. } => sources::open(config).await?,
        };
        let manifest = run_backup_now(db, &sources)
            .await
            .map_err(MigrationError::Backup)?;
        on_event(ApplyEvent::BackupTaken {
            backup_id: &manifest.backup_id,
        });
        backup = Some((sources, manifest));
    }
    match &target {
        MigrationTarget::Sqlite { path } => {
            apply_sqlite(path, &db.migrations_table, &contents, &mut on_event)?
        }
        MigrationTarget::D1 { client, id, .. } => {
            let undo = match backup {
                Some((sources, manifest)) if undo_from_backup => Undo::Backup {
                    sources,
                    manifest,
                    spool_dir: restore::spool_dir(config),
                },
                _ => {
                    let bookmark = client
                        .bookmark(id)
                        .await
                        .map_err(MigrationError::Bookmark)?;
                    on_event(ApplyEvent::BookmarkRead {
                        bookmark: &bookmark,
                    });
                    Undo::Bookmark(bookmark)
                }
            };
            let target = DatabaseInfo {
                uuid: id.clone(),
                name: db.name.clone(),
                version: None,
            };
            apply_d1(
                client,
                &target,
                &db.migrations_table,
                &contents,
                undo,
                &mut on_event,
            )
            .await?
        }
    }
    Ok(ApplyOutcome::Applied(
        contents.into_iter().map(|(name, _)| name).collect(),
    ))
}

/// Whether the D1 database has Time Travel: every database does except the old `alpha` ones (wrangler makes
/// the same check before `d1 time-travel`).
async fn has_time_travel(client: &Client, id: &str) -> Result<bool, MigrationError> {
    let info = client
        .get_database(id)
        .await
        .map_err(MigrationError::LookUp)?;
    Ok(info.version.as_deref() != Some("alpha"))
}

/// SQLite sources: the migrations table (when missing) and every pending file with its bookkeeping insert
/// in one transaction, statement by statement; any failure rolls the whole run back, so the file is
/// exactly as before.
fn apply_sqlite(
    path: &std::path::Path,
    table: &str,
    contents: &[(String, String)],
    on_event: &mut impl FnMut(ApplyEvent<'_>),
) -> Result<(), MigrationError> {
    let mut conn = open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let tx = conn.transaction().map_err(MigrationError::Sqlite)?;
    tx.execute_batch(&create_table_sql(table))
        .map_err(|source| MigrationError::CreateTable {
            table: table.to_string(),
            source,
        })?;
    for (name, text) in contents {
        let sql = apply_sql(text, table, name);
        // Statement by statement so that the report can name the failing one; a file the splitter cannot
        // read runs whole and SQLite's error is reported alone.
        let statements = d1_dump::split_statements(&sql).unwrap_or_else(|_| vec![sql.clone()]);
        let numbered = statements.len() > 1;
        for (index, statement) in statements.iter().enumerate() {
            if let Err(e) = tx.execute_batch(statement) {
                drop(tx); // rolls back every file of this run
                return Err(MigrationError::RolledBack(FailedAt {
                    file: name.clone(),
                    statement: numbered.then(|| (index + 1, statement.clone())),
                    error: e.to_string(),
                }));
            }
        }
        on_event(ApplyEvent::Applied { name });
    }
    tx.commit().map_err(MigrationError::Commit)?;
    Ok(())
}

/// D1: each file with its insert in one atomic request, as wrangler does; on a failure, undo the whole run
/// (see [`Undo`]) so that earlier files of this run are undone too.
async fn apply_d1(
    client: &Client,
    target: &DatabaseInfo,
    table: &str,
    contents: &[(String, String)],
    undo: Undo,
    on_event: &mut impl FnMut(ApplyEvent<'_>),
) -> Result<(), MigrationError> {
    let id = target.uuid.as_str();
    let failure = 'run: {
        if let Err(source) = client.query(id, &create_table_sql(table), &[]).await {
            break 'run RunFailure::CreateTable {
                table: table.to_string(),
                source,
            };
        }
        for (name, text) in contents {
            let sql = apply_sql(text, table, name);
            if let Err(e) = client.query(id, &sql, &[]).await {
                // The failed request changed nothing (D1 runs it as one transaction), so the database is as
                // the failing statement found it: find that statement before undoing the run.
                let statement = if e.is_retryable() {
                    None
                } else {
                    probe::failing_statement(client, id, &sql).await
                };
                break 'run RunFailure::Migration(FailedAt {
                    file: name.clone(),
                    statement,
                    error: e.to_string(),
                });
            }
            on_event(ApplyEvent::Applied { name });
        }
        return Ok(());
    };
    let undo = match undo {
        Undo::Bookmark(bookmark) => match client.time_travel_restore(id, &bookmark).await {
            Ok(_) => UndoOutcome::BookmarkRestored { bookmark },
            Err(source) => UndoOutcome::BookmarkFailed { bookmark, source },
        },
        Undo::Backup {
            sources,
            manifest,
            spool_dir,
        } => match restore::replace::spool_then_import(
            client,
            target,
            &sources,
            &manifest,
            &spool_dir,
            None,
            &mut Progress::hidden(),
        )
        .await
        {
            Ok(_) => UndoOutcome::BackupRestored {
                backup_id: manifest.backup_id,
            },
            Err(e) => UndoOutcome::BackupFailed {
                backup_id: manifest.backup_id,
                database: manifest.database.name,
                // The undo's error as the step that failed reports it, without the restore's wording.
                source: match e {
                    RestoreError::ImportFailed { source, .. } => *source,
                    e => e,
                },
            },
        },
    };
    Err(MigrationError::D1RunFailed {
        failure,
        undo: Box::new(undo),
    })
}
