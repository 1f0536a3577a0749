//! Reading a backup back: pick it by manifest, download the stored object into an unnamed local spool
//! file while checking its size and sha256, and only once it is proven, decompress it, split it into
//! statements, and hand them to a target (a SQLite file or a spool file for D1's import API) in an order
//! that always re-imports:
//!
//! 1. tables and views (and everything else that is not a row or a late object), in dump order;
//! 2. rows, in dump order;
//! 3. indexes and triggers last, so that all tables exist before any row is inserted, triggers never fire
//!    on restored rows, and an `INSTEAD OF` trigger finds its view (D1's dump writes triggers before views;
//!    SQLite creates a view without checking what it reads, so views can come first).
//!
//! D1's own dumps put each table's rows right after its CREATE, so a row can reference a table that does
//! not exist yet (workers-sdk #5683); the ordering above is why d1vault's restores work every time.
//!
//! Nothing from storage runs before its hash is proven, and a statement that no D1 dump holds (`ATTACH`,
//! `VACUUM INTO`, ...) is refused before it runs ([`refusal`]); [`sqlite`] also locks its connection down.

mod choice;
pub mod d1;
pub mod install;
mod pieces;
mod plan;
mod progress;
pub mod replace;
pub mod scratch;
pub mod sqlite;

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};

use crate::config::Config;
use crate::encryption::Identities;
use crate::pipeline::compress::decompress;
use crate::pipeline::hashing::HashingReader;
use crate::repository::backups::StoredBackup;
use crate::repository::manifest::Manifest;
use crate::sources::BackupSources;
use crate::storage::Storage;
use d1_dump::{StatementKind, StatementSplitter, classify};

pub use choice::{BackupChoice, newest_at_or_before, parse_at};
pub use plan::{
    Destructive, RestorePlan, RestoreRequest, RestoreTarget, RestoreVia, Restored, RestoredInto,
    plan,
};
pub use progress::{Progress, ProgressEvent, ProgressSink};

/// Where a statement goes in the restore order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Tables and other schema that rows depend on.
    Schema,
    /// `INSERT` rows (and `DELETE FROM sqlite_sequence`, which must follow the tables).
    Rows,
    /// Indexes and triggers.
    Late,
    /// Not replayed: transaction control and the dump header (the target supplies its own).
    Skip,
}

/// Decides a statement's phase. Pure, so the ordering rules are table-tested.
pub fn phase_of(kind: &StatementKind) -> Phase {
    match kind {
        StatementKind::Insert { .. } | StatementKind::DeleteFrom { .. } => Phase::Rows,
        StatementKind::CreateIndex { .. } | StatementKind::CreateTrigger { .. } => Phase::Late,
        StatementKind::Transaction | StatementKind::Pragma => Phase::Skip,
        _ => Phase::Schema,
    }
}

/// Why a statement is refused before it runs, or `None` when a D1 dump can hold it. D1's dumps (and
/// d1vault's) hold only `CREATE` statements, rows (`INSERT`, `REPLACE`, `DELETE FROM sqlite_sequence`),
/// `ANALYZE sqlite_schema`, `PRAGMA defer_foreign_keys` and transaction control; anything else in a backup
/// (`ATTACH`, `VACUUM INTO`, `DROP`, ...) was put there by someone else and must not run, on any target.
/// Pure, so the rule is table-tested; the SQLite target's authorizer backs it up inside statements.
///
/// A `CREATE VIRTUAL TABLE` is let through only for FTS5, the one module a dump holds
/// (`docs/d1-dump-format.md`, "Virtual tables"): another module could read or write outside the database
/// (a D1 target has no authorizer of d1vault's to stop it).
pub fn refusal(stmt: &str, kind: &StatementKind) -> Option<String> {
    if let StatementKind::CreateVirtualTable { name } = kind {
        return match d1_dump::parse_virtual_table(stmt) {
            Some(table) if table.is_fts5() => None,
            Some(table) => Some(format!(
                "a virtual table {name:?} of module {:?} (a dump holds FTS5 virtual tables only)",
                table.module
            )),
            None => Some(format!(
                "a virtual table {name:?} of no module d1vault reads"
            )),
        };
    }
    if !matches!(kind, StatementKind::Other) {
        return None;
    }
    let words = d1_dump::words(stmt);
    match words.first() {
        Some(first) if first.eq_ignore_ascii_case("ANALYZE") => None,
        Some(first) => Some(format!(
            "a statement starting with {}",
            first.to_ascii_uppercase()
        )),
        None => Some("a statement that is not SQL".into()),
    }
}

/// Why a restore or verify failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the backup from storage failed.
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    /// A D1 API call failed (import, query, Time Travel).
    #[error("{0}")]
    Api(#[from] crate::cloudflare::ApiError),
    /// The stored object does not match its manifest: nothing on the target was changed.
    #[error("backup {backup_id} is damaged: {detail}; nothing on the target was changed")]
    Damaged {
        /// The backup.
        backup_id: String,
        /// What does not match.
        detail: String,
    },
    /// An encrypted backup cannot be opened: no identity was given, or none of those given opens it. Its
    /// size and sha256 were checked first; nothing on the target was changed.
    #[error(
        "backup {backup_id} is encrypted and its size and sha256 match its manifest, but it cannot be \
         decrypted: {why}; nothing on the target was changed"
    )]
    Locked {
        /// The backup.
        backup_id: String,
        /// Why it cannot be opened.
        why: String,
    },
    /// The target cannot be used as asked (not empty, not a regular file, not found ...).
    #[error("{0}")]
    Target(String),
    /// The dump holds something a restore refuses to run (see [`refusal`]).
    #[error("{0}")]
    Refused(String),
    /// A `--to-d1` restore needs the Cloudflare client, and the configuration has none.
    #[error("--to-d1 needs a [cloudflare] section in {}", config.display())]
    NoCloudflare {
        /// The configuration file read.
        config: PathBuf,
    },
    /// The D1 database to restore into does not exist (or cannot be looked up).
    #[error(
        "the target D1 database {target:?} was not found ({source}); d1vault never creates one implicitly: \
         create it first (wrangler d1 create {target})"
    )]
    TargetNotFound {
        /// The name or id given.
        target: String,
        /// What the API said.
        source: crate::cloudflare::ApiError,
    },
    /// The D1 target holds objects and `--replace` was not given: nothing was changed.
    #[error(
        "the target D1 database {target} is not empty ({}); pass --replace to replace its contents (a safety \
         backup is taken first)",
        objects.join(", ")
    )]
    NotEmpty {
        /// The target's name.
        target: String,
        /// What it holds, as "KIND NAME".
        objects: Vec<String>,
    },
    /// The safety backup of a D1 target failed, so the restore stopped before changing it.
    #[error(
        "the safety backup of {target} failed, so nothing was changed: {source} (use --no-safety-backup to \
         restore without one)"
    )]
    SafetyBackupFailed {
        /// The target's name.
        target: String,
        /// Why the backup failed.
        source: crate::pipeline::BackupError,
    },
    /// D1's import of the checked backup failed (D1 applies an import atomically: see the cause for
    /// whether it may still finish).
    #[error("restoring into {target}: {source}")]
    ImportFailed {
        /// The target's name.
        target: String,
        /// Why the import failed.
        source: Box<RestoreError>,
    },
    /// A restore too large for one D1 import failed after some of its imports: the target holds those.
    #[error(
        "import {} of {total} failed after {done} succeeded: {source}. The database now holds part of the \
         backup: run the same restore again to finish (it clears the database and starts over), or \
         restore the safety backup to undo",
        done + 1
    )]
    PartlyImported {
        /// Imports that succeeded.
        done: usize,
        /// Imports in all.
        total: usize,
        /// Why the next failed.
        source: crate::cloudflare::ApiError,
    },
    /// The temporary file a `--to-sqlite` restore loads into could not be created.
    #[error("creating a temporary file in {}: {source}; nothing was changed", dir.display())]
    TemporaryFile {
        /// The target's directory.
        dir: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// The restored SQLite database fails `integrity_check`, so it was not moved into place.
    #[error("the restored database fails integrity_check: {}; nothing was changed", problems.join("; "))]
    IntegrityFailed {
        /// What `integrity_check` said.
        problems: Vec<String>,
    },
    /// Something appeared at the `--to-sqlite` path while the restore ran: it was left alone.
    #[error("{} appeared while the restore ran; nothing was replaced: run the restore again", path.display())]
    TargetAppeared {
        /// The target path.
        path: PathBuf,
    },
    /// The restored SQLite database could not be moved into place.
    #[error("moving the restored database into place at {}: {source}", path.display())]
    Install {
        /// The target path.
        path: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// The backup's hash checks out but it holds SQL that no D1 dump holds: it was edited after it was
    /// taken, together with its manifest, or was not written by d1vault. Nothing of it ran.
    #[error(
        "backup {backup_id} holds {what}, which no D1 dump holds, so it was refused before it ran: {statement:?}; \
         nothing on the target was changed. Someone edited the backup and its manifest in storage, or it was \
         not written by d1vault: restore an older backup and find out who can write to the bucket"
    )]
    Hostile {
        /// The backup.
        backup_id: String,
        /// What kind of statement it is.
        what: String,
        /// The statement's start.
        statement: String,
    },
}

/// A run of complete statements with their kinds, as they appear in the dump.
pub type StatementBatch = Vec<(String, StatementKind)>;

/// A backup's stored object, downloaded into an unnamed local spool file and proven to match its
/// manifest's size and sha256. Only [`download_and_prove`] makes one, so whatever takes a `ProvenDump`
/// cannot run a byte that was not proven first.
#[derive(Debug)]
pub struct ProvenDump {
    file: tokio::fs::File,
    backup_id: String,
    /// For an encrypted backup: the identities already shown to open it.
    identities: Option<Identities>,
}

/// Reads a proven dump as statements: decompresses and splits it. `on_batch` receives the statements of
/// each chunk read, in dump order; the caller orders and applies them. A statement that no D1 dump holds
/// fails the read before `on_batch` sees it ([`refusal`]). Returns an error, after the whole dump was read,
/// if the SQL does not match the manifest's `raw_size`/`raw_sha256`: callers must not make a change visible
/// before this returns `Ok`.
pub async fn read_statements(
    dump: ProvenDump,
    manifest: &Manifest,
    progress: &mut Progress<'_>,
    mut on_batch: impl AsyncFnMut(StatementBatch) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    debug_assert_eq!(dump.backup_id, manifest.backup_id);
    let damaged = |detail: String| RestoreError::Damaged {
        backup_id: manifest.backup_id.clone(),
        detail,
    };
    progress.stage(&manifest.backup_id, "loading", manifest.dump.raw_size);
    let spooled = BufReader::with_capacity(256 * 1024, dump.file);
    let mut raw = {
        let decoded = match &dump.identities {
            // Opened once already by `download_and_prove`: a failure now is damage, not a wrong key.
            Some(identities) => decompress(
                BufReader::with_capacity(
                    256 * 1024,
                    identities.decrypt(spooled).await.map_err(damaged)?,
                ),
                &manifest.dump.compression,
            ),
            None => decompress(spooled, &manifest.dump.compression),
        }
        .map_err(damaged)?;
        HashingReader::new(decoded)
    };
    let mut splitter = StatementSplitter::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match raw.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                return Err(damaged(format!(
                    "the stored object matches its manifest but reading it as {} failed: {e}",
                    manifest.dump.compression
                )));
            }
        };
        if n == 0 {
            break;
        }
        progress.advance(n as u64);
        let mut batch = StatementBatch::new();
        splitter
            .push(&buf[..n], &mut |stmt: &str| {
                batch.push((stmt.to_string(), classify(stmt)))
            })
            .map_err(|e| damaged(format!("the SQL is not valid UTF-8: {e}")))?;
        for (stmt, kind) in &batch {
            if let Some(what) = refusal(stmt, kind) {
                return Err(RestoreError::Hostile {
                    backup_id: manifest.backup_id.clone(),
                    what,
                    statement: stmt.chars().take(120).collect(),
                });
            }
        }
        if !batch.is_empty() {
            on_batch(batch).await?;
        }
    }
    if let Some(tail) = splitter.finish().map_err(|e| damaged(e.to_string()))? {
        let head: String = tail.chars().take(60).collect();
        return Err(damaged(format!(
            "the dump ends inside a statement: {head:?}"
        )));
    }
    let (raw_size, raw_sha256) = raw.finish();
    if raw_size != manifest.dump.raw_size || raw_sha256 != manifest.dump.raw_sha256 {
        return Err(damaged(format!(
            "the SQL has {raw_size} bytes with sha256 {raw_sha256}, the manifest says {} bytes with sha256 {}",
            manifest.dump.raw_size, manifest.dump.raw_sha256
        )));
    }
    progress.finish();
    Ok(())
}

/// Downloads the stored object of `manifest` into an unnamed, private file in `spool_dir` (it vanishes
/// with the process, killed or not) while hashing it, and proves its size and sha256 against the
/// manifest. Returns the file, positioned at its start, only when both match; an object longer than the
/// manifest says is refused as soon as it is, without spooling the rest. An encrypted backup must then
/// open with `identities` ([`RestoreError::Locked`] otherwise), before anything reads its SQL.
pub async fn download_and_prove(
    storage: &dyn Storage,
    manifest: &Manifest,
    identities: Option<&Identities>,
    spool_dir: &Path,
    progress: &mut Progress<'_>,
) -> Result<ProvenDump, RestoreError> {
    let damaged = |detail: String| RestoreError::Damaged {
        backup_id: manifest.backup_id.clone(),
        detail,
    };
    let spool_error = |e: io::Error| {
        RestoreError::Target(format!(
            "spooling backup {} into {}: {e}; free some space there, or point daemon.state_dir elsewhere",
            manifest.backup_id,
            spool_dir.display()
        ))
    };
    tokio::fs::create_dir_all(spool_dir)
        .await
        .map_err(spool_error)?;
    let dir = spool_dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || scratch::unnamed(&dir))
        .await
        .map_err(|e| RestoreError::Target(format!("creating the spool file: {e}")))?
        .map_err(spool_error)?;
    let mut file = tokio::fs::File::from_std(file);
    progress.stage(&manifest.backup_id, "downloading", manifest.dump.size);
    let object = storage.get_stream(&manifest.dump.key).await?;
    let mut stored = HashingReader::new(object);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match stored.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => return Err(storage_read_error(e, manifest)),
        };
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > manifest.dump.size {
            return Err(damaged(format!(
                "the stored object is longer than the {} bytes the manifest says",
                manifest.dump.size
            )));
        }
        file.write_all(&buf[..n]).await.map_err(spool_error)?;
        progress.advance(n as u64);
    }
    let (size, sha256) = stored.finish();
    if size != manifest.dump.size || sha256 != manifest.dump.sha256 {
        return Err(damaged(format!(
            "the stored object has {size} bytes with sha256 {sha256}, the manifest says {} bytes with sha256 {}",
            manifest.dump.size, manifest.dump.sha256
        )));
    }
    file.flush().await.map_err(spool_error)?;
    file.rewind().await.map_err(spool_error)?;
    let identities = match &manifest.encryption {
        None => None,
        Some(encryption) => {
            let identities = identities.ok_or_else(|| RestoreError::Locked {
                backup_id: manifest.backup_id.clone(),
                why: format!(
                    "no age identity was given (it was encrypted to {}): pass --identity FILE or set                      encryption.identity_file",
                    encryption.recipients.join(", ")
                ),
            })?;
            // Open the header now, so that a wrong key fails before any target is touched. The clone
            // shares the file's position: rewind after.
            let probe = file.try_clone().await.map_err(spool_error)?;
            if let Err(why) = identities.decrypt(BufReader::new(probe)).await {
                return Err(RestoreError::Locked {
                    backup_id: manifest.backup_id.clone(),
                    why,
                });
            }
            file.rewind().await.map_err(spool_error)?;
            Some(identities.clone())
        }
    };
    Ok(ProvenDump {
        file,
        backup_id: manifest.backup_id.clone(),
        identities,
    })
}

/// The identities that open `manifest`'s backup: `None` for an unencrypted one; for an encrypted one, those
/// of `sources.identity_file` (`--identity`, else `encryption.identity_file`), or why there are none. Only
/// read for a backup that needs them, so a broken identity setting never stops a plain restore.
pub fn identities_for(
    sources: &BackupSources,
    manifest: &Manifest,
) -> Result<Option<Identities>, RestoreError> {
    let Some(encryption) = &manifest.encryption else {
        return Ok(None);
    };
    let locked = |why: String| RestoreError::Locked {
        backup_id: manifest.backup_id.clone(),
        why,
    };
    match &sources.identity_file {
        Some(path) => Identities::load(path).map(Some).map_err(locked),
        None => Err(locked(format!(
            "no age identity was given (it was encrypted to {}): pass --identity FILE or set \
             encryption.identity_file",
            encryption.recipients.join(", ")
        ))),
    }
}

/// Where restore, verify and a migration run's undo spool downloads and keep their scratch files:
/// `state_dir/spool` (a `--to-sqlite` restore excepted, which works next to its target).
pub fn spool_dir(config: &Config) -> PathBuf {
    config.daemon.state_dir.join("spool")
}

/// A failed read of the stored object is an outage, not damage: the backup may be fine.
fn storage_read_error(e: io::Error, manifest: &Manifest) -> RestoreError {
    RestoreError::Storage(crate::storage::StorageError::retryable(format!(
        "reading backup {} from storage failed: {e}; the backup may be fine, try again",
        manifest.backup_id
    )))
}

/// Picks the manifest to restore: the newest complete backup of `database`, the one started last at or
/// before a time, or one by id (or a prefix of exactly one id). A named backup whose manifest exists but cannot be trusted is refused with
/// the reason (see [`crate::repository::backups`]).
pub async fn select_backup(
    storage: &dyn Storage,
    prefix: &str,
    database: &str,
    choice: &BackupChoice,
) -> Result<Manifest, RestoreError> {
    let id = match choice {
        BackupChoice::Id(id) => id,
        BackupChoice::Newest | BackupChoice::At(_) => {
            let manifests =
                crate::repository::backups::complete(storage, prefix, Some(database)).await?;
            let where_ = storage.describe();
            return match choice {
                BackupChoice::At(at) => newest_at_or_before(manifests, *at, database)
                    .map_err(|why| RestoreError::Refused(format!("{why} (in {where_})"))),
                _ => match manifests.into_iter().next() {
                    Some(newest) => Ok(newest),
                    None => {
                        let hint =
                            crate::repository::backups::name_hint(storage, prefix, database).await;
                        Err(RestoreError::Refused(format!(
                            "no complete backup of {database} in {where_}{hint}"
                        )))
                    }
                },
            };
        }
    };
    let mut found = crate::repository::backups::find(storage, prefix, database, id).await?;
    if found.is_none() {
        // Not a whole id: a unique prefix of one (`--backup 20261129T03`), as git and restic take them.
        let stored = crate::repository::backups::scan(storage, prefix, Some(database)).await?;
        let matching: Vec<&str> = stored
            .iter()
            .filter(|b| b.manifest.is_some() || b.unreadable.is_some())
            .map(|b| b.backup_id.as_str())
            .filter(|candidate| candidate.starts_with(id.as_str()))
            .collect();
        match matching.as_slice() {
            [] => {}
            [one] => {
                found = crate::repository::backups::find(storage, prefix, database, one).await?
            }
            several => {
                const SHOWN: usize = 5;
                let mut names = several[..several.len().min(SHOWN)].join(", ");
                if several.len() > SHOWN {
                    names.push_str(&format!(" and {} more", several.len() - SHOWN));
                }
                return Err(RestoreError::Refused(format!(
                    "backup id {id} of {database} is ambiguous: it begins {} backups ({names}); give \
                     more of the id",
                    several.len()
                )));
            }
        }
    }
    match found {
        Some(StoredBackup {
            manifest: Some(manifest),
            ..
        }) => Ok(manifest),
        Some(StoredBackup {
            unreadable: Some(reason),
            ..
        }) => Err(RestoreError::Refused(format!(
            "backup {id} of {database} in {} has a manifest d1vault cannot trust: {reason}; it is not \
             restored or verified (nothing was changed)",
            storage.describe()
        ))),
        _ => Err(RestoreError::Refused(format!(
            "no complete backup {id} of {database} in {} (a backup without a manifest does not count); \
             run `d1vault list {database}` to see the backups",
            storage.describe()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_statements_a_d1_dump_holds_are_let_through() {
        let allowed = [
            "PRAGMA defer_foreign_keys=TRUE;",
            "CREATE TABLE t (x);",
            "CREATE TABLE IF NOT EXISTS \"t\" (x);",
            "CREATE INDEX i ON t(x);",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t; END;",
            "CREATE VIEW v AS SELECT 1;",
            "CREATE VIRTUAL TABLE f USING fts5(body);",
            "CREATE VIRTUAL TABLE IF NOT EXISTS \"g\" USING FTS5(a, content='t', tokenize='trigram');",
            "INSERT INTO \"f\" (\"f\") VALUES('rebuild');",
            "INSERT INTO \"f\" (\"rowid\",\"body\") VALUES(3,'x');",
            "INSERT INTO \"t\" (\"x\") VALUES(1);",
            "REPLACE INTO t VALUES(1);",
            "DELETE FROM sqlite_sequence;",
            "ANALYZE sqlite_schema;",
            "BEGIN TRANSACTION;",
            "COMMIT;",
        ];
        for stmt in allowed {
            assert_eq!(refusal(stmt, &classify(stmt)), None, "{stmt}");
        }
        let refused = [
            ("ATTACH '/tmp/victim.db' AS v;", "ATTACH"),
            ("/* hidden */ attach database '/x' as v;", "ATTACH"),
            ("DETACH v;", "DETACH"),
            ("VACUUM INTO '/tmp/x';", "VACUUM"),
            ("DROP TABLE v.t;", "DROP"),
            ("UPDATE t SET x = 1;", "UPDATE"),
            ("SELECT load_extension('/tmp/evil.so');", "SELECT"),
            ("ALTER TABLE t RENAME TO u;", "ALTER"),
            ("REINDEX;", "REINDEX"),
            ("CREATE VIRTUAL TABLE g USING rtree(id, a, b);", "rtree"),
            ("CREATE VIRTUAL TABLE s USING dbstat;", "dbstat"),
            (
                "CREATE VIRTUAL TABLE c USING csv(filename='/etc/passwd');",
                "csv",
            ),
            (";", "not SQL"),
        ];
        for (stmt, word) in refused {
            let why = refusal(stmt, &classify(stmt));
            assert!(
                why.as_deref().is_some_and(|w| w.contains(word)),
                "{stmt}: {why:?}"
            );
        }
    }
}
