//! Why a migrations command failed, in words that say what state the database is in and what to do.

use std::path::PathBuf;

use crate::cloudflare::ApiError;
use crate::pipeline::BackupError;
use crate::restore::RestoreError;
use crate::sources::OpenError;

/// Why a migrations command failed. Only [`MigrationError::NoCloudflare`] is a configuration error; the
/// rest are failed operations.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// `migrations_dir` exists but cannot be read.
    #[error("reading migrations_dir {}: {source}", dir.display())]
    ReadDir {
        /// The database's migrations_dir.
        dir: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// A migration file cannot be read.
    #[error("reading {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// `migrations create` could not create `migrations_dir`.
    #[error("creating {}: {source}", dir.display())]
    CreateDir {
        /// The database's migrations_dir.
        dir: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// `migrations create` could not write the new file.
    #[error("writing {}: {source}", path.display())]
    WriteFile {
        /// The new file.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The database is in D1 and the configuration has no `[cloudflare]` section.
    #[error("[cloudflare] is not configured")]
    NoCloudflare,
    /// The storage or the Cloudflare client could not be opened.
    #[error("{0}")]
    Sources(#[from] OpenError),
    /// A D1 API call failed (looking the database up, reading the migrations table).
    #[error("{0}")]
    Api(ApiError),
    /// The SQLite source cannot be opened (it is never created: a mistyped path must fail).
    #[error("opening the SQLite source {}: {source}", path.display())]
    OpenSqlite {
        /// The source's path.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The SQLite source's schema cannot be read.
    #[error("reading {}: {source}", path.display())]
    ReadSqlite {
        /// The source's path.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Any other SQLite error.
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    /// The D1 database could not be looked up before the run; nothing was applied.
    #[error("looking up the database before migrating (nothing applied): {0}")]
    LookUp(ApiError),
    /// Only the backup could undo a failed run on this database, and `--no-backup` skips it.
    #[error(
        "D1 database {database} has no Time Travel (version alpha), so only the backup taken before the run \
         could undo a failed run, and --no-backup skips it: run without --no-backup (nothing was applied)"
    )]
    UndoNeedsBackup {
        /// The configured database.
        database: String,
    },
    /// The backup before the run failed; nothing was applied.
    #[error("the backup before migrating failed, nothing was applied: {0}")]
    Backup(BackupError),
    /// The Time Travel bookmark could not be read before the run; nothing was applied.
    #[error("reading the Time Travel bookmark before migrating (nothing applied): {0}")]
    Bookmark(ApiError),
    /// SQLite: the migrations table could not be created; the run's transaction was rolled back.
    #[error("creating the migrations table {table}: {source}; nothing was applied")]
    CreateTable {
        /// The migrations table.
        table: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// SQLite: a migration failed and the run's one transaction was rolled back.
    #[error("{0}; the database was rolled back to its state before this run")]
    RolledBack(FailedAt),
    /// SQLite: the run's transaction could not be committed.
    #[error("committing the migrations: {0}")]
    Commit(rusqlite::Error),
    /// D1: the run failed, and was undone (or not: `undo` says).
    #[error("{failure}; {undo}")]
    D1RunFailed {
        /// What failed.
        failure: RunFailure,
        /// How the database was put back (boxed: it can hold a whole restore error).
        undo: Box<UndoOutcome>,
    },
}

/// What failed in a D1 run.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// Creating the migrations table failed.
    #[error("creating the migrations table {table} failed: {source}")]
    CreateTable {
        /// The migrations table.
        table: String,
        /// What D1 said.
        source: ApiError,
    },
    /// A migration file failed.
    #[error("{0}")]
    Migration(FailedAt),
}

/// How a failed D1 run was put back.
#[derive(Debug, thiserror::Error)]
pub enum UndoOutcome {
    /// Time Travel restored the bookmark read before the run.
    #[error("the database was restored to bookmark {bookmark}, as before this run")]
    BookmarkRestored {
        /// The bookmark.
        bookmark: String,
    },
    /// Restoring the bookmark failed too: the database needs a hand.
    #[error(
        "restoring bookmark {bookmark} ALSO FAILED ({source}): restore it by hand with \
         `wrangler d1 time-travel restore DB --bookmark={bookmark}` or from the backup taken before"
    )]
    BookmarkFailed {
        /// The bookmark.
        bookmark: String,
        /// Why the restore failed.
        source: ApiError,
    },
    /// The backup taken before the run was imported over the database.
    #[error("the database was restored from backup {backup_id}, taken before this run")]
    BackupRestored {
        /// The backup.
        backup_id: String,
    },
    /// Restoring the backup failed too: the database needs a hand.
    #[error(
        "restoring backup {backup_id} ALSO FAILED ({source}): restore it by hand with \
         `d1vault restore {database} --backup {backup_id} --to-d1 {database} --replace --yes`"
    )]
    BackupFailed {
        /// The backup.
        backup_id: String,
        /// The database it is a backup of.
        database: String,
        /// Why the restore failed.
        source: RestoreError,
    },
}

/// Where in a migration file a run failed, for the report.
#[derive(Debug)]
pub struct FailedAt {
    /// The migration file's name.
    pub file: String,
    /// 1-based statement number within the file and its text, when known.
    pub statement: Option<(usize, String)>,
    /// What the database said.
    pub error: String,
}

impl std::fmt::Display for FailedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "migration {} failed", self.file)?;
        if let Some((number, text)) = &self.statement {
            write!(f, " at statement {number} ({})", shorten(text))?;
        }
        write!(f, ": {}", self.error)
    }
}

impl std::error::Error for FailedAt {}

/// A statement cut to one readable line for error messages.
fn shorten(statement: &str) -> String {
    let line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}
