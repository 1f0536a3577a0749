//! The daemon's run history in `state_dir/catalog.sqlite`, and the `state_dir` lock that keeps it to one
//! daemon.
//!
//! Only the daemon (`d1vault run`) writes it, one row per scheduled due time it dealt with: a run attempt
//! (started, then finished as success, failed or aborted, or as unchanged when `skip_unchanged` found no
//! write since the newest backup, or found still running at the next start and marked interrupted), with its backup id and sizes, or a skipped due time with the reason (outside its
//! window, superseded by the next due time, no free slot before the window closed). One-shot commands
//! (`backup`, `migrations apply`, the safety backup of `restore`) do not record their runs here; storage
//! and its manifests stay the record of which backups exist.
//!
//! Two readers: `status` (last success, last failure with its reason, last skip), and the daemon's
//! catch-up at start-up ([`Catalog::last_scheduled`]: which due time was last dealt with). `/metrics` and
//! `/healthz` do not read it: they keep their own state in memory since the daemon started, seeded from
//! the manifests in storage.
//!
//! The lock lives in `lock` (re-exported here): [`lock_state_dir`] and [`StateDirLock`].
//!
//! # Threading
//!
//! SQLite calls block, so they never run on the async runtime. [`Catalog`] is a cheap-clone handle around one
//! connection behind a mutex, and every method runs its SQLite work in `tokio::task::spawn_blocking`. Chosen
//! over a dedicated thread with a channel because the calls are rare (a few per backup), it needs no
//! shutdown protocol, and tokio's paused test clock does not auto-advance while a `spawn_blocking` task runs,
//! so daemon tests with paused time see catalog writes complete at the instant they were made.
//!
//! # Storage
//!
//! One table `runs`, WAL journal, schema version in `PRAGMA user_version` (migrated forward on open; a file
//! from a newer d1vault is refused). Times are stored as UTC text `YYYY-MM-DDTHH:MM:SS.mmmZ`, which sorts
//! chronologically and stays readable for an engineer with the `sqlite3` shell.
//!
//! # Catch-up and crashes
//!
//! [`Catalog::last_scheduled`] is the latest due time the daemon has dealt with: a skip, or a run that started
//! (whatever its outcome, so a backup that keeps failing is not re-run at every restart). One exception: a
//! due time whose only attempt was interrupted (the daemon died while it ran; see
//! [`Catalog::mark_interrupted`]) does not count, so the next start retries it once; after a second attempt
//! it counts whatever happened, so a run that crashes the daemon cannot cause a crash loop of retries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

mod lock;

pub use lock::{LOCK_FILE, LockError, StateDirLock, lock_state_dir};

/// The catalog's file name inside `state_dir`.
pub const CATALOG_FILE: &str = "catalog.sqlite";

/// Schema migrations; entry `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY,
        database      TEXT NOT NULL,
        scheduled_for TEXT,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        outcome       TEXT NOT NULL CHECK (outcome IN
                          ('running', 'success', 'failed', 'aborted', 'interrupted', 'skipped')),
        error         TEXT,
        raw_bytes     INTEGER,
        stored_bytes  INTEGER,
        backup_id     TEXT
    );
    CREATE INDEX runs_by_database ON runs (database, started_at);
    CREATE INDEX runs_by_schedule ON runs (database, scheduled_for);
", "
    -- 'unchanged' joins the outcomes (skip_unchanged): SQLite cannot alter a CHECK, so the table is rebuilt.
    CREATE TABLE runs_new (
        id            INTEGER PRIMARY KEY,
        database      TEXT NOT NULL,
        scheduled_for TEXT,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        outcome       TEXT NOT NULL CHECK (outcome IN
                          ('running', 'success', 'failed', 'aborted', 'interrupted', 'skipped',
                           'unchanged')),
        error         TEXT,
        raw_bytes     INTEGER,
        stored_bytes  INTEGER,
        backup_id     TEXT
    );
    INSERT INTO runs_new (id, database, scheduled_for, started_at, finished_at, outcome, error, raw_bytes,
                          stored_bytes, backup_id)
        SELECT id, database, scheduled_for, started_at, finished_at, outcome, error, raw_bytes,
               stored_bytes, backup_id FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_new RENAME TO runs;
    CREATE INDEX runs_by_database ON runs (database, started_at);
    CREATE INDEX runs_by_schedule ON runs (database, scheduled_for);
"];

/// Identifies one run attempt between [`Catalog::start_run`] and [`Catalog::finish_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(pub i64);

/// How a finished run ended (what the daemon reports to [`Catalog::finish_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The backup is complete (manifest written).
    Success,
    /// The backup failed; `error` says why.
    Failed,
    /// Stopped on purpose (the shutdown grace period ended while it ran): no manifest was written.
    Aborted,
    /// No export (`skip_unchanged`): the database's bookmark equals its newest backup's, which still
    /// holds its current data; `backup_id` names that backup.
    Unchanged,
}

/// The state of a catalog row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Started and not finished (or the daemon died; see [`Catalog::mark_interrupted`]).
    Running,
    /// Ran to an end: success, failure, or aborted at shutdown.
    Finished(RunOutcome),
    /// Was running when the daemon stopped without finishing it.
    Interrupted,
    /// A due time that was not run; `error` holds the reason.
    Skipped,
}

impl RunState {
    /// The `outcome` column's text; also used for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished(RunOutcome::Success) => "success",
            RunState::Finished(RunOutcome::Failed) => "failed",
            RunState::Finished(RunOutcome::Aborted) => "aborted",
            RunState::Finished(RunOutcome::Unchanged) => "unchanged",
            RunState::Interrupted => "interrupted",
            RunState::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "running" => RunState::Running,
            "success" => RunState::Finished(RunOutcome::Success),
            "failed" => RunState::Finished(RunOutcome::Failed),
            "aborted" => RunState::Finished(RunOutcome::Aborted),
            "unchanged" => RunState::Finished(RunOutcome::Unchanged),
            "interrupted" => RunState::Interrupted,
            "skipped" => RunState::Skipped,
            _ => return None,
        })
    }
}

/// One row of the catalog: a run attempt or a skipped due time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The row id, to finish the run it records.
    pub id: RunId,
    /// The configured database name.
    pub database: String,
    /// The schedule's due time; `None` for a run without one (the daemon's runs always have one).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When the run started; for a skip, when the decision to skip was made.
    pub started_at: DateTime<Utc>,
    /// When the run ended; `None` while running or when interrupted.
    pub finished_at: Option<DateTime<Utc>>,
    /// How the run ended (or that it is still running, was interrupted or skipped).
    pub outcome: RunState,
    /// The failure message, or the skip reason.
    pub error: Option<String>,
    /// Bytes of SQL in the dump, for a success.
    pub raw_bytes: Option<u64>,
    /// Bytes stored after compression, for a success.
    pub stored_bytes: Option<u64>,
    /// The backup the run made, for a success.
    pub backup_id: Option<String>,
}

/// What went wrong with the catalog, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "cannot create the state directory {path}: {source}; check daemon.state_dir and its permissions"
    )]
    /// `daemon.state_dir` cannot be created.
    CreateDir {
        /// The state directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    #[error("cannot open the catalog {path}: {source}; check daemon.state_dir and its permissions")]
    /// The catalog file cannot be opened.
    Open {
        /// The catalog file.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    #[error(
        "the catalog {path} has schema version {found}, newer than this d1vault supports ({supported}); \
         upgrade d1vault or move the file away"
    )]
    /// A newer d1vault wrote the catalog; this one will not guess at its schema.
    NewerSchema {
        /// The catalog file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A query failed (busy, locked, disk full ...).
    #[error("catalog query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Finishing a run that is not running: a bug, or a row another process marked interrupted.
    #[error("run {0:?} is not running (already finished or marked interrupted)")]
    NotRunning(RunId),
    #[error("catalog row {id} has an unreadable {column}: {value:?}")]
    /// A row holds a value this d1vault cannot read back.
    Corrupt {
        /// The row id.
        id: i64,
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// The blocking task that runs catalog queries panicked or was cancelled.
    #[error("catalog task failed: {0}")]
    Task(String),
}

impl CatalogError {
    /// True when the same call may succeed later (the database file is busy or locked).
    pub fn is_retryable(&self) -> bool {
        match self {
            CatalogError::Sqlite(e) | CatalogError::Open { source: e, .. } => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

/// Cheap-clone async handle to the run history (see the module documentation).
#[derive(Debug, Clone)]
pub struct Catalog {
    conn: Arc<Mutex<Connection>>,
}

impl Catalog {
    /// Opens (creating if needed) `state_dir/catalog.sqlite`, switches it to WAL and migrates the schema.
    pub async fn open(state_dir: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let state_dir = state_dir.as_ref().to_path_buf();
        let conn = spawn_blocking(move || open_blocking(&state_dir)).await??;
        Ok(Catalog {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Records that a run of `database` started; `scheduled_for` is its due time (`None`: a run without
    /// one, which catch-up ignores).
    pub async fn start_run(
        &self,
        database: &str,
        scheduled_for: Option<DateTime<Utc>>,
        started_at: DateTime<Utc>,
        backup_id: Option<&str>,
    ) -> Result<RunId, CatalogError> {
        let database = database.to_string();
        let backup_id = backup_id.map(str::to_string);
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO runs (database, scheduled_for, started_at, outcome, backup_id)
                 VALUES (?1, ?2, ?3, 'running', ?4)",
                params![
                    database,
                    scheduled_for.map(fmt_time),
                    fmt_time(started_at),
                    backup_id
                ],
            )?;
            Ok(RunId(conn.last_insert_rowid()))
        })
        .await
    }

    /// Records how a started run ended. Fails with [`CatalogError::NotRunning`] if it was already finished
    /// or marked interrupted.
    pub async fn finish_run(
        &self,
        run: RunId,
        outcome: RunOutcome,
        error: Option<String>,
        raw_bytes: Option<u64>,
        stored_bytes: Option<u64>,
        finished_at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        self.with_conn(move |conn| {
            let changed = conn.execute(
                "UPDATE runs SET outcome = ?2, error = ?3, raw_bytes = ?4, stored_bytes = ?5, finished_at = ?6
                 WHERE id = ?1 AND outcome = 'running'",
                params![
                    run.0,
                    RunState::Finished(outcome).as_str(),
                    error,
                    raw_bytes.map(to_sql_bytes),
                    stored_bytes.map(to_sql_bytes),
                    fmt_time(finished_at),
                ],
            )?;
            if changed == 0 {
                return Err(CatalogError::NotRunning(run));
            }
            Ok(())
        })
        .await
    }

    /// Sets the backup id of a started run, for callers that only learn it after [`Catalog::start_run`].
    pub async fn set_backup_id(&self, run: RunId, backup_id: &str) -> Result<(), CatalogError> {
        let backup_id = backup_id.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "UPDATE runs SET backup_id = ?2 WHERE id = ?1",
                params![run.0, backup_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Records that the run due at `scheduled_for` was not run, and why (outside its window, superseded, no
    /// free slot before the window closed).
    pub async fn record_skipped(
        &self,
        database: &str,
        scheduled_for: DateTime<Utc>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<RunId, CatalogError> {
        let database = database.to_string();
        let reason = reason.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO runs (database, scheduled_for, started_at, finished_at, outcome, error)
                 VALUES (?1, ?2, ?3, ?3, 'skipped', ?4)",
                params![database, fmt_time(scheduled_for), fmt_time(at), reason],
            )?;
            Ok(RunId(conn.last_insert_rowid()))
        })
        .await
    }

    /// At daemon start: marks runs still `running` (left by a crash or kill) as `interrupted`, finished at
    /// `at`. Returns how many were marked. Call it before [`Catalog::last_scheduled`].
    pub async fn mark_interrupted(&self, at: DateTime<Utc>) -> Result<usize, CatalogError> {
        self.with_conn(move |conn| {
            Ok(conn.execute(
                "UPDATE runs SET outcome = 'interrupted', finished_at = ?1,
                     error = 'interrupted: d1vault stopped while this run was in progress'
                 WHERE outcome = 'running'",
                params![fmt_time(at)],
            )?)
        })
        .await
    }

    /// The latest due time of `database` already dealt with, for [`crate::schedule::catch_up`]: the latest
    /// `scheduled_for` of any skip or run attempt, except a due time whose single attempt was interrupted
    /// (it gets one retry; see the module documentation). `None` without scheduled history.
    pub async fn last_scheduled(
        &self,
        database: &str,
    ) -> Result<Option<DateTime<Utc>>, CatalogError> {
        let database = database.to_string();
        self.with_conn(move |conn| {
            let text: Option<String> = conn.query_row(
                "SELECT MAX(scheduled_for) FROM (
                     SELECT scheduled_for FROM runs
                     WHERE database = ?1 AND scheduled_for IS NOT NULL
                     GROUP BY scheduled_for
                     HAVING COUNT(*) >= 2 OR SUM(outcome <> 'interrupted') > 0
                 )",
                params![database],
                |row| row.get(0),
            )?;
            text.map(|t| parse_time(0, "scheduled_for", &t)).transpose()
        })
        .await
    }

    /// The most recent successful run of `database`.
    pub async fn last_success(&self, database: &str) -> Result<Option<RunRecord>, CatalogError> {
        self.latest_where(database, "outcome = 'success'").await
    }

    /// The most recent run of `database` that found it unchanged (no export; see [`RunOutcome::Unchanged`]).
    pub async fn last_unchanged(&self, database: &str) -> Result<Option<RunRecord>, CatalogError> {
        self.latest_where(database, "outcome = 'unchanged'").await
    }

    /// The most recent run of `database` that failed, was aborted or was interrupted (skips are not failures).
    pub async fn last_failure(&self, database: &str) -> Result<Option<RunRecord>, CatalogError> {
        self.latest_where(database, "outcome IN ('failed', 'aborted', 'interrupted')")
            .await
    }

    /// The newest `limit` rows of `database` (runs and skips), newest first.
    pub async fn recent_runs(
        &self,
        database: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, CatalogError> {
        let database = database.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM runs WHERE database = ?1
                 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![database, limit], read_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn latest_where(
        &self,
        database: &str,
        condition: &'static str,
    ) -> Result<Option<RunRecord>, CatalogError> {
        let database = database.to_string();
        self.with_conn(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM runs WHERE database = ?1 AND {condition}
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                params![database],
                read_row,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    /// Runs `f` with the connection on the blocking thread pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, CatalogError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        spawn_blocking(move || f(&mut lock(&conn))).await?
    }
}

const COLUMNS: &str = "id, database, scheduled_for, started_at, finished_at, outcome, error, raw_bytes, \
                       stored_bytes, backup_id";

fn open_blocking(state_dir: &Path) -> Result<Connection, CatalogError> {
    std::fs::create_dir_all(state_dir).map_err(|source| CatalogError::CreateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let path = state_dir.join(CATALOG_FILE);
    let open_err = |source| CatalogError::Open {
        path: path.clone(),
        source,
    };
    let mut conn = Connection::open(&path).map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    // journal_mode returns the resulting mode as a row.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some network filesystems cannot do WAL; the catalog still works, with more locking.
        tracing::warn!(path = %path.display(), %mode, "catalog could not switch to WAL journal mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;

    let supported = MIGRATIONS.len() as i64;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_err)?;
    if version > supported {
        return Err(CatalogError::NewerSchema {
            path,
            found: version,
            supported,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(open_err)?;
        tx.execute_batch(sql).map_err(open_err)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(open_err)?;
        tx.commit().map_err(open_err)?;
    }
    Ok(conn)
}

/// A panic while holding the lock leaves SQLite itself consistent (transactions roll back), so a poisoned
/// mutex is still usable.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn spawn_blocking<T, F>(f: F) -> Result<T, CatalogError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CatalogError::Task(e.to_string()))
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(id: i64, column: &'static str, text: &str) -> Result<DateTime<Utc>, CatalogError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| CatalogError::Corrupt {
            id,
            column,
            value: text.to_string(),
        })
}

/// SQLite integers are signed; sizes past i64::MAX (8 EiB) are stored saturated.
fn to_sql_bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row selected with [`COLUMNS`], as SQLite returns it, before its values are checked.
struct RawRow {
    id: i64,
    database: String,
    scheduled_for: Option<String>,
    started_at: String,
    finished_at: Option<String>,
    outcome: String,
    error: Option<String>,
    raw_bytes: Option<i64>,
    stored_bytes: Option<i64>,
    backup_id: Option<String>,
}

/// Reads one row selected with [`COLUMNS`]; the outer error is SQLite's, the inner one a bad value.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<RunRecord, CatalogError>> {
    let raw = RawRow {
        id: row.get(0)?,
        database: row.get(1)?,
        scheduled_for: row.get(2)?,
        started_at: row.get(3)?,
        finished_at: row.get(4)?,
        outcome: row.get(5)?,
        error: row.get(6)?,
        raw_bytes: row.get(7)?,
        stored_bytes: row.get(8)?,
        backup_id: row.get(9)?,
    };
    Ok(record_from_raw(raw))
}

fn record_from_raw(raw: RawRow) -> Result<RunRecord, CatalogError> {
    let id = raw.id;
    let time = |column, text: Option<String>| text.map(|t| parse_time(id, column, &t)).transpose();
    let outcome = RunState::parse(&raw.outcome).ok_or_else(|| CatalogError::Corrupt {
        id,
        column: "outcome",
        value: raw.outcome.clone(),
    })?;
    Ok(RunRecord {
        id: RunId(id),
        database: raw.database,
        scheduled_for: time("scheduled_for", raw.scheduled_for)?,
        started_at: parse_time(id, "started_at", &raw.started_at)?,
        finished_at: time("finished_at", raw.finished_at)?,
        outcome,
        error: raw.error,
        raw_bytes: raw.raw_bytes.map(|n| u64::try_from(n).unwrap_or(0)),
        stored_bytes: raw.stored_bytes.map(|n| u64::try_from(n).unwrap_or(0)),
        backup_id: raw.backup_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_time::utc;

    #[tokio::test]
    async fn records_runs_and_survives_reopening() {
        // Proves a finished run is stored with every column and is still there after reopening the file.
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let catalog = Catalog::open(&state_dir).await.unwrap();
        let run = catalog
            .start_run(
                "blog",
                Some(utc("2025-01-05T03:00:00Z")),
                utc("2025-01-05T03:00:12Z"),
                Some("20250105T030012Z"),
            )
            .await
            .unwrap();
        catalog
            .finish_run(
                run,
                RunOutcome::Success,
                None,
                Some(1_000_000),
                Some(200_000),
                utc("2025-01-05T03:00:19.250Z"),
            )
            .await
            .unwrap();
        drop(catalog);

        let reopened = Catalog::open(&state_dir).await.unwrap();
        let want = RunRecord {
            id: run,
            database: "blog".into(),
            scheduled_for: Some(utc("2025-01-05T03:00:00Z")),
            started_at: utc("2025-01-05T03:00:12Z"),
            finished_at: Some(utc("2025-01-05T03:00:19.250Z")),
            outcome: RunState::Finished(RunOutcome::Success),
            error: None,
            raw_bytes: Some(1_000_000),
            stored_bytes: Some(200_000),
            backup_id: Some("20250105T030012Z".into()),
        };
        assert_eq!(
            reopened.last_success("blog").await.unwrap(),
            Some(want.clone())
        );
        assert_eq!(reopened.recent_runs("blog", 10).await.unwrap(), vec![want]);
        assert_eq!(reopened.last_success("other").await.unwrap(), None);
        assert_eq!(reopened.last_failure("blog").await.unwrap(), None);

        // The file is WAL and carries the schema version.
        let conn = Connection::open(state_dir.join(CATALOG_FILE)).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), version), ("wal", MIGRATIONS.len() as i64));
    }

    #[tokio::test]
    async fn success_failure_and_recent_order() {
        // Proves last_success/last_failure pick the right rows and recent_runs is newest first and limited.
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).await.unwrap();
        let t = |h: u32| utc(&format!("2025-01-05T{h:02}:00:00Z"));
        let ok = catalog
            .start_run("blog", Some(t(1)), t(1), None)
            .await
            .unwrap();
        catalog
            .finish_run(ok, RunOutcome::Success, None, Some(10), Some(5), t(1))
            .await
            .unwrap();
        let bad = catalog
            .start_run("blog", Some(t(2)), t(2), None)
            .await
            .unwrap();
        catalog
            .finish_run(
                bad,
                RunOutcome::Failed,
                Some("export failed: 502".into()),
                None,
                None,
                t(2),
            )
            .await
            .unwrap();
        catalog
            .record_skipped("blog", t(3), t(3), "window closed")
            .await
            .unwrap();
        let manual = catalog.start_run("blog", None, t(4), None).await.unwrap();
        catalog
            .set_backup_id(manual, "20250105T040000Z")
            .await
            .unwrap();

        assert_eq!(catalog.last_success("blog").await.unwrap().unwrap().id, ok);
        let failure = catalog.last_failure("blog").await.unwrap().unwrap();
        assert_eq!(
            (failure.id, failure.error.as_deref()),
            (bad, Some("export failed: 502"))
        );
        let recent = catalog.recent_runs("blog", 3).await.unwrap();
        let states: Vec<_> = recent.iter().map(|r| r.outcome).collect();
        assert_eq!(
            states,
            [
                RunState::Running,
                RunState::Skipped,
                RunState::Finished(RunOutcome::Failed)
            ]
        );
        assert_eq!(recent[0].backup_id.as_deref(), Some("20250105T040000Z"));
        assert_eq!(recent[1].error.as_deref(), Some("window closed"));
        // A finished run cannot be finished again.
        assert!(matches!(
            catalog.finish_run(ok, RunOutcome::Failed, None, None, None, t(5)).await,
            Err(CatalogError::NotRunning(id)) if id == ok
        ));
        // ... and the refused second finish left the history as it was.
        let all = catalog.recent_runs("blog", 10).await.unwrap();
        let count = |state| all.iter().filter(|r| r.outcome == state).count();
        assert_eq!(count(RunState::Finished(RunOutcome::Success)), 1);
        assert_eq!(count(RunState::Skipped), 1);
    }

    #[tokio::test]
    async fn interrupted_runs_are_marked_and_retried_once() {
        // Proves runs left running by a crash become interrupted on restart, and catch-up retries such a
        // due time once but not after a second interrupted attempt.
        let dir = tempfile::tempdir().unwrap();
        let day1 = utc("2025-01-04T03:00:00Z");
        let day2 = utc("2025-01-05T03:00:00Z");
        {
            let catalog = Catalog::open(dir.path()).await.unwrap();
            let r = catalog
                .start_run("blog", Some(day1), day1, None)
                .await
                .unwrap();
            catalog
                .finish_run(r, RunOutcome::Failed, Some("boom".into()), None, None, day1)
                .await
                .unwrap();
            catalog
                .start_run("blog", Some(day2), day2, None)
                .await
                .unwrap();
            // While it runs, the due time counts as dealt with.
            assert_eq!(catalog.last_scheduled("blog").await.unwrap(), Some(day2));
            // The daemon is killed here: the row stays 'running'.
        }
        let catalog = Catalog::open(dir.path()).await.unwrap();
        let restart = utc("2025-01-05T03:10:00Z");
        assert_eq!(catalog.mark_interrupted(restart).await.unwrap(), 1);
        let record = catalog.recent_runs("blog", 1).await.unwrap().remove(0);
        assert_eq!(record.outcome, RunState::Interrupted);
        assert_eq!(record.finished_at, Some(restart));
        assert_eq!(
            catalog.last_failure("blog").await.unwrap().unwrap().id,
            record.id
        );
        // A failed attempt counts (no retry of day 1); the single interrupted one does not (retry day 2).
        assert_eq!(catalog.last_scheduled("blog").await.unwrap(), Some(day1));

        // The retry is interrupted as well: now day 2 counts, no third attempt.
        catalog
            .start_run("blog", Some(day2), restart, None)
            .await
            .unwrap();
        catalog
            .mark_interrupted(utc("2025-01-05T03:20:00Z"))
            .await
            .unwrap();
        assert_eq!(catalog.last_scheduled("blog").await.unwrap(), Some(day2));
        // Nothing left running to mark.
        assert_eq!(
            catalog
                .mark_interrupted(utc("2025-01-05T03:30:00Z"))
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn last_scheduled_counts_skips_and_ignores_manual_runs() {
        // Proves skips count for catch-up, manual runs do not, and databases are kept apart.
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).await.unwrap();
        assert_eq!(catalog.last_scheduled("blog").await.unwrap(), None);
        let due = utc("2025-01-05T03:00:00Z");
        catalog
            .record_skipped("blog", due, utc("2025-01-05T03:00:01Z"), "superseded")
            .await
            .unwrap();
        catalog
            .start_run("blog", None, utc("2025-01-06T09:00:00Z"), None)
            .await
            .unwrap();
        catalog
            .start_run(
                "shop",
                Some(utc("2025-01-07T03:00:00Z")),
                utc("2025-01-07T03:00:00Z"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(catalog.last_scheduled("blog").await.unwrap(), Some(due));
        assert_eq!(
            catalog.last_scheduled("shop").await.unwrap(),
            Some(utc("2025-01-07T03:00:00Z"))
        );
    }

    #[tokio::test]
    async fn a_version_1_catalog_is_migrated_and_records_unchanged_runs() {
        // Proves an existing catalog keeps its rows through the rebuild that admits 'unchanged', and that
        // an unchanged run is stored, read back and found by last_unchanged (not as a success).
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(CATALOG_FILE)).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs (database, scheduled_for, started_at, finished_at, outcome, backup_id)
             VALUES ('blog', '2025-01-05T03:00:00.000Z', '2025-01-05T03:00:00.000Z',
                     '2025-01-05T03:00:09.000Z', 'success', '20250105T030000Z')",
            [],
        )
        .unwrap();
        drop(conn);
        let catalog = Catalog::open(dir.path()).await.unwrap();
        let old = catalog.last_success("blog").await.unwrap().unwrap();
        assert_eq!(old.backup_id.as_deref(), Some("20250105T030000Z"));
        let run = catalog
            .start_run(
                "blog",
                Some(utc("2025-01-06T03:00:00Z")),
                utc("2025-01-06T03:00:00Z"),
                Some("20250105T030000Z"),
            )
            .await
            .unwrap();
        catalog
            .finish_run(
                run,
                RunOutcome::Unchanged,
                None,
                None,
                None,
                utc("2025-01-06T03:00:01Z"),
            )
            .await
            .unwrap();
        let unchanged = catalog.last_unchanged("blog").await.unwrap().unwrap();
        assert_eq!(unchanged.outcome, RunState::Finished(RunOutcome::Unchanged));
        assert_eq!(unchanged.backup_id.as_deref(), Some("20250105T030000Z"));
        assert_eq!(catalog.last_success("blog").await.unwrap(), Some(old));
        assert_eq!(
            catalog.last_scheduled("blog").await.unwrap(),
            Some(utc("2025-01-06T03:00:00Z"))
        );
    }

    #[tokio::test]
    async fn refuses_a_catalog_from_a_newer_version() {
        // Proves a file with a newer schema version is refused with an actionable, permanent error.
        let dir = tempfile::tempdir().unwrap();
        Catalog::open(dir.path()).await.unwrap();
        let conn = Connection::open(dir.path().join(CATALOG_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Catalog::open(dir.path()).await.unwrap_err();
        assert!(
            matches!(err, CatalogError::NewerSchema { found: 99, .. }),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("upgrade d1vault"));
    }
}
