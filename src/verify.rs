//! Proving that backups restore (`d1vault verify`, CONTRACT.md "Command line"). Each chosen backup is
//! downloaded, checked for size and sha256 against its manifest, and only then loaded into a scratch SQLite
//! database (`state_dir/spool/d1vault-verify-*.sqlite`, locked down, deleted after, and swept by the next
//! verify if the process was killed), and checked with `integrity_check`, `foreign_key_check` and the
//! manifest's row counts, and every FTS5 table with FTS5's own integrity-check and the manifest's
//! `virtual_tables` counts (`sqlite::LoadReport::problems`). Production is never touched.

use std::path::PathBuf;

use crate::config::Config;
use crate::repository::backups;
use crate::repository::manifest::Manifest;
use crate::restore::scratch::{self, PRIVATE, ScratchFile};
use crate::restore::{self, Progress, RestoreError, sqlite};
use crate::sources::BackupSources;

/// Which backups of each database to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The newest complete backup.
    Newest,
    /// Every complete backup.
    All,
    /// The backup with this id.
    Backup(String),
}

/// What one verify run checks: the databases (by name, as given) and which of their backups.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// The databases whose backups to verify.
    pub databases: Vec<String>,
    /// Which backups of each.
    pub selection: Selection,
}

/// The result of verifying one backup, or of looking for one to verify. Serialized (for `verify --json`)
/// as an object whose `result` is `ok`, `failed`, `refused` or `missing`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verdict {
    /// The backup restores and matches its manifest.
    Ok {
        /// The database it is a backup of.
        database: String,
        /// The backup's id.
        backup_id: String,
        /// How many tables the manifest lists (each found with its row count).
        tables: usize,
        /// Rows in all those tables.
        rows: u64,
    },
    /// The backup was checked and does not restore as its manifest says.
    Failed {
        /// The database it is a backup of.
        database: String,
        /// The backup's id.
        backup_id: String,
        /// Every mismatch found, in words.
        problems: Vec<String>,
    },
    /// The named backup's manifest cannot be trusted (or is missing), so it was not verified.
    Refused {
        /// The database named.
        database: String,
        /// The backup id named.
        backup_id: String,
        /// Why, in words.
        why: String,
    },
    /// There is no backup to verify.
    Missing {
        /// The database named.
        database: String,
        /// The backup id named, if one was.
        backup_id: Option<String>,
        /// The storage searched, as `Storage::describe` says it.
        storage: String,
    },
}

/// Why a verify run stopped before it had a verdict for every database.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `state_dir` (where the scratch databases go) could not be created.
    #[error("creating state_dir {}: {source}", path.display())]
    StateDir {
        /// The configured state_dir.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The backups of a database could not be listed (storage unreachable, ...).
    #[error("listing backups of {database}: {source}")]
    Listing {
        /// The database whose backups were being listed.
        database: String,
        /// What went wrong.
        source: RestoreError,
    },
}

/// Verifies the backups `request` selects, one database after the other, and returns a verdict per
/// backup (or per database without one). `on_verdict` sees each verdict as soon as it is known, so that a
/// long `--all` run shows its results as it goes.
pub async fn verify(
    config: &Config,
    sources: &BackupSources,
    request: &VerifyRequest,
    progress: &mut Progress<'_>,
    on_verdict: impl FnMut(&Verdict),
) -> Result<Vec<Verdict>, VerifyError> {
    std::fs::create_dir_all(&config.daemon.state_dir).map_err(|source| VerifyError::StateDir {
        path: config.daemon.state_dir.clone(),
        source,
    })?;
    let spool = restore::spool_dir(config);
    scratch::sweep(&spool, sqlite::VERIFY_PREFIX);
    let mut decided = Decided {
        verdicts: Vec::new(),
        on_verdict,
    };
    for name in &request.databases {
        let manifests = match &request.selection {
            // A named backup is looked up on its own, so that an untrusted manifest is reported with its
            // reason rather than as a missing backup.
            Selection::Backup(id) => match restore::select_backup(
                sources.storage.as_ref(),
                &sources.prefix,
                name,
                &restore::BackupChoice::Id(id.clone()),
            )
            .await
            {
                Ok(manifest) => vec![manifest],
                Err(RestoreError::Refused(why)) => {
                    let verdict = Verdict::Refused {
                        database: name.clone(),
                        backup_id: id.clone(),
                        why,
                    };
                    decided.push(verdict);
                    continue;
                }
                Err(e) => return Err(listing_failed(name, e)),
            },
            _ => backups::complete(sources.storage.as_ref(), &sources.prefix, Some(name))
                .await
                .map_err(|e| listing_failed(name, e.into()))?,
        };
        let chosen: Vec<&Manifest> = match &request.selection {
            // select_backup chose it (a unique prefix names the whole id).
            Selection::Backup(_) => manifests.iter().collect(),
            Selection::All => manifests.iter().collect(),
            Selection::Newest => manifests.iter().take(1).collect(),
        };
        if chosen.is_empty() {
            let verdict = Verdict::Missing {
                database: name.clone(),
                backup_id: match &request.selection {
                    Selection::Backup(id) => Some(id.clone()),
                    _ => None,
                },
                storage: sources.storage.describe(),
            };
            decided.push(verdict);
            continue;
        }
        for manifest in chosen {
            let verdict = match verify_one(&spool, sources, manifest, progress).await {
                Ok(()) => Verdict::Ok {
                    database: name.clone(),
                    backup_id: manifest.backup_id.clone(),
                    tables: manifest.tables.len(),
                    rows: manifest.tables.iter().map(|t| t.rows).sum(),
                },
                Err(problems) => Verdict::Failed {
                    database: name.clone(),
                    backup_id: manifest.backup_id.clone(),
                    problems,
                },
            };
            decided.push(verdict);
        }
    }
    Ok(decided.verdicts)
}

/// The verdicts so far, each shown to `on_verdict` as it is decided.
struct Decided<F> {
    verdicts: Vec<Verdict>,
    on_verdict: F,
}

impl<F: FnMut(&Verdict)> Decided<F> {
    fn push(&mut self, verdict: Verdict) {
        (self.on_verdict)(&verdict);
        self.verdicts.push(verdict);
    }
}

/// The error of a database whose backups could not be listed.
fn listing_failed(database: &str, source: RestoreError) -> VerifyError {
    VerifyError::Listing {
        database: database.to_string(),
        source,
    }
}

/// Downloads, proves, loads and checks one backup in a scratch database under `spool`; the problems found
/// when it does not check out.
async fn verify_one(
    spool: &std::path::Path,
    sources: &BackupSources,
    manifest: &Manifest,
    progress: &mut Progress<'_>,
) -> Result<(), Vec<String>> {
    // Without an identity an encrypted backup is still checked for size and sha256, then reported as
    // not decrypted (the download's `Locked` error says both).
    let identities = match restore::identities_for(sources, manifest) {
        Ok(identities) => identities,
        // An identity file that was given but does not load is the answer itself.
        Err(e) if sources.identity_file.is_some() => return Err(vec![e.to_string()]),
        Err(_) => None,
    };
    let identities = identities.as_ref();
    let dump = restore::download_and_prove(
        sources.storage.as_ref(),
        manifest,
        identities,
        spool,
        progress,
    )
    .await
    .map_err(|e| vec![e.to_string()])?;
    let scratch =
        ScratchFile::create(spool, sqlite::VERIFY_PREFIX, ".sqlite", PRIVATE).map_err(|e| {
            vec![format!(
                "creating a scratch database in {}: {e}",
                spool.display()
            )]
        })?;
    let report = sqlite::load_proven(dump, manifest, scratch.path(), progress)
        .await
        .map_err(|e| vec![e.to_string()])?;
    let problems = report.problems(manifest);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
