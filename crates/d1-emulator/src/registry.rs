//! The databases: one SQLite file per database in the data directory, with bookmarks kept in memory.
//!
//! Time Travel: before anything may write to a database (a `/query` or `/raw` request, an import, a
//! restore), the state at the current bookmark is copied to
//! `DATA_DIR/.d1-emulator/time-travel/NAME/` unless that state already has a copy. A restore to a bookmark
//! copies back the state of the newest bookmark at or before it. History is bounded: at most
//! [`MAX_SNAPSHOTS`] copies and [`MAX_SNAPSHOT_BYTES`] bytes per database (oldest dropped first; a database
//! larger than the byte budget is not copied), and it starts afresh when the emulator starts. Restoring to a
//! state that has no copy answers a 400, as D1 does for a bookmark outside its retention window.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use uuid::Uuid;

/// Namespace of the emulator's database ids: `id = UUID v5(NAMESPACE, name)`, stable across runs.
pub(crate) const DATABASE_ID_NAMESPACE: Uuid =
    Uuid::from_u128(0x6d1e_0a7e_5c4b_4f00_9d1e_a7e5_0000_d1d1);

/// The id of the database called `name`: a UUID v5 of the name, the same on every run, so a test or script
/// can address a database by id without listing them first.
pub fn database_id(name: &str) -> Uuid {
    Uuid::new_v5(&DATABASE_ID_NAMESPACE, name.as_bytes())
}

/// Whether `name` is a valid D1 database name (`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`).
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 64
}

/// One point in a database's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookmarkEntry {
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// D1-style bookmark `%08x-%08x-%08x-%32x`.
    pub bookmark: String,
}

/// Most Time Travel copies kept per database.
pub(crate) const MAX_SNAPSHOTS: usize = 50;
/// Most bytes of Time Travel copies kept per database.
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

/// A copy of the database file as it was at `bookmark`.
#[derive(Debug)]
struct Snapshot {
    bookmark: String,
    path: PathBuf,
    bytes: u64,
}

/// Where a Time Travel restore goes.
#[derive(Debug, Clone)]
pub(crate) enum RestorePoint {
    Bookmark(String),
    Timestamp(DateTime<Utc>),
}

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    /// The bookmark or timestamp precedes the kept history, or its state was not kept.
    #[error("{0}")]
    Unavailable(String),
    #[error("restoring the database file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("restoring the database file failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A database served by the emulator.
#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) name: String,
    pub(crate) uuid: Uuid,
    pub(crate) path: PathBuf,
    pub(crate) created_at: String,
    /// Opened at first use, not when the file is found: an account of 100,000 databases
    /// (scripts/bench-fleet) would otherwise hold 100,000 open files to answer a listing.
    conn: Mutex<Option<Connection>>,
    /// Bookmarks, oldest first; a new one after every change.
    history: Mutex<Vec<BookmarkEntry>>,
    /// Where this database's Time Travel copies live.
    snapshot_dir: PathBuf,
    /// Time Travel copies, oldest first, at most one per bookmark.
    snapshots: Mutex<VecDeque<Snapshot>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exclusive use of a database's open connection (see [`Database::connection`]).
pub(crate) struct ConnectionGuard<'a> {
    guard: MutexGuard<'a, Option<Connection>>,
}

impl std::ops::Deref for ConnectionGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.guard.as_ref().expect("Database::connection opens it")
    }
}

impl std::ops::DerefMut for ConnectionGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.guard.as_mut().expect("Database::connection opens it")
    }
}

/// Opens the database file (creating it when absent) as the emulator uses it.
fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn)
}

/// The D1-style bookmark for `at` and the database `uuid`: seconds, microseconds, a sequence, and a hash.
fn make_bookmark(at: DateTime<Utc>, sequence: u32, uuid: &Uuid) -> String {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    hasher.update(uuid.as_bytes());
    hasher.update(at.timestamp_micros().to_be_bytes());
    hasher.update(sequence.to_be_bytes());
    let hash = u128::from_be_bytes(hasher.finalize().into());
    format!(
        "{:08x}-{:08x}-{:08x}-{:032x}",
        at.timestamp() as u32,
        at.timestamp_subsec_micros(),
        sequence,
        hash
    )
}

impl Database {
    /// The database of the file at `path` (the file is opened, or created, at first use); Time Travel
    /// copies of an earlier run are dropped.
    fn open(name: &str, path: PathBuf, snapshot_dir: PathBuf) -> Database {
        let _ = std::fs::remove_dir_all(&snapshot_dir);
        let modified: DateTime<Utc> = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(DateTime::from)
            .unwrap_or_else(|_| Utc::now());
        let created: DateTime<Utc> = std::fs::metadata(&path)
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .map(DateTime::from)
            .unwrap_or(modified);
        let uuid = database_id(name);
        Database {
            name: name.to_owned(),
            uuid,
            created_at: created.to_rfc3339_opts(SecondsFormat::Micros, true),
            history: Mutex::new(vec![BookmarkEntry {
                at: modified,
                bookmark: make_bookmark(modified, 0, &uuid),
            }]),
            path,
            conn: Mutex::new(None),
            snapshot_dir,
            snapshots: Mutex::new(VecDeque::new()),
        }
    }

    /// Exclusive use of the connection (blocking: call from a blocking task). Holding it blocks the
    /// database, as D1's imports and exports do.
    pub(crate) fn connection(&self) -> rusqlite::Result<ConnectionGuard<'_>> {
        let mut guard = lock(&self.conn);
        if guard.is_none() {
            *guard = Some(open_connection(&self.path)?);
        }
        Ok(ConnectionGuard { guard })
    }

    /// The newest bookmark.
    pub(crate) fn current_bookmark(&self) -> String {
        lock(&self.history)
            .last()
            .map(|e| e.bookmark.clone())
            .unwrap_or_default()
    }

    /// The newest bookmark at or before `at` (the oldest known when `at` precedes them all).
    pub(crate) fn bookmark_at(&self, at: DateTime<Utc>) -> String {
        let history = lock(&self.history);
        history
            .iter()
            .rev()
            .find(|e| e.at <= at)
            .or_else(|| history.first())
            .map(|e| e.bookmark.clone())
            .unwrap_or_default()
    }

    /// Records a change and returns its new bookmark (strictly greater than every earlier one).
    pub(crate) fn note_change(&self) -> String {
        let mut history = lock(&self.history);
        let mut at = Utc::now();
        if let Some(last) = history.last()
            && at <= last.at
        {
            at = last.at + chrono::Duration::microseconds(1);
        }
        let bookmark = make_bookmark(at, history.len() as u32, &self.uuid);
        history.push(BookmarkEntry {
            at,
            bookmark: bookmark.clone(),
        });
        bookmark
    }

    /// The whole history, oldest first.
    pub(crate) fn history(&self) -> Vec<BookmarkEntry> {
        lock(&self.history).clone()
    }

    /// Keeps a copy of the state at the current bookmark, so that Time Travel can return to it. Call it
    /// holding [`Database::connection`] (passed in) before anything that may write. A failed copy only
    /// costs that restore point, so it is logged, not returned.
    pub(crate) fn before_write(&self, conn: &Connection) {
        if !conn.is_autocommit() {
            // Never copy a file mid-transaction; a request always ends its own transaction.
            tracing::warn!(database = %self.name, "Time Travel copy skipped: a transaction is open");
            return;
        }
        let bookmark = self.current_bookmark();
        let mut snapshots = lock(&self.snapshots);
        if snapshots.back().is_some_and(|s| s.bookmark == bookmark) {
            return;
        }
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if bytes > MAX_SNAPSHOT_BYTES {
            return;
        }
        let path = self.snapshot_dir.join(format!("{bookmark}.sqlite"));
        let copied = std::fs::create_dir_all(&self.snapshot_dir)
            .and_then(|()| std::fs::copy(&self.path, &path));
        if let Err(e) = copied {
            tracing::warn!(database = %self.name, error = %e, "Time Travel copy failed");
            return;
        }
        snapshots.push_back(Snapshot {
            bookmark,
            path,
            bytes,
        });
        let mut total: u64 = snapshots.iter().map(|s| s.bytes).sum();
        while snapshots.len() > MAX_SNAPSHOTS || total > MAX_SNAPSHOT_BYTES {
            let Some(oldest) = snapshots.pop_front() else {
                break;
            };
            total -= oldest.bytes;
            let _ = std::fs::remove_file(&oldest.path);
        }
    }

    /// Puts the database back to its state at `point` (the newest bookmark at or before it) and records
    /// the change; returns `(new bookmark, bookmark before the restore)`. The state before the restore is
    /// kept too, so the returned previous bookmark undoes the restore.
    pub(crate) fn restore(&self, point: &RestorePoint) -> Result<(String, String), RestoreError> {
        let mut conn = self.connection()?;
        let previous = self.current_bookmark();
        let target = {
            let history = lock(&self.history);
            let found = match point {
                RestorePoint::Bookmark(b) => history.iter().rev().find(|e| e.bookmark <= *b),
                RestorePoint::Timestamp(at) => history.iter().rev().find(|e| e.at <= *at),
            };
            let oldest = history
                .first()
                .map(|e| e.bookmark.clone())
                .unwrap_or_default();
            found.map(|e| e.bookmark.clone()).ok_or_else(|| {
                RestoreError::Unavailable(format!(
                    "Cannot restore to {point}: it precedes the oldest available bookmark {oldest}"
                ))
            })?
        };
        // The state before the restore is a restore point too: `previous` must undo this restore.
        self.before_write(&conn);
        if target != previous {
            let source = lock(&self.snapshots)
                .iter()
                .find(|s| s.bookmark == target)
                .map(|s| s.path.clone())
                .ok_or_else(|| {
                    RestoreError::Unavailable(format!(
                        "Cannot restore to {point}: the state at bookmark {target} is no longer retained"
                    ))
                })?;
            self.replace_file(&mut conn, &source)?;
        }
        drop(conn);
        Ok((self.note_change(), previous))
    }

    /// Replaces the database file with a copy of `source`: the connection is closed, the copy renamed
    /// into place, and a new connection opened.
    fn replace_file(
        &self,
        conn: &mut ConnectionGuard<'_>,
        source: &Path,
    ) -> Result<(), RestoreError> {
        let mut staging = self.path.clone().into_os_string();
        staging.push(".restoring");
        let staging = PathBuf::from(staging);
        std::fs::copy(source, &staging)?;
        let old = std::mem::replace(&mut **conn, Connection::open_in_memory()?);
        if let Err((old, e)) = old.close() {
            **conn = old;
            let _ = std::fs::remove_file(&staging);
            return Err(e.into());
        }
        let renamed = std::fs::rename(&staging, &self.path);
        // Reopen whatever is in place, so the database stays usable even when the rename failed.
        **conn = open_connection(&self.path)?;
        renamed?;
        Ok(())
    }

    /// Drops every Time Travel copy (the database is being deleted).
    fn forget_snapshots(&self) {
        lock(&self.snapshots).clear();
        let _ = std::fs::remove_dir_all(&self.snapshot_dir);
    }
}

impl std::fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestorePoint::Bookmark(b) => write!(f, "bookmark {b}"),
            RestorePoint::Timestamp(at) => {
                write!(
                    f,
                    "timestamp {}",
                    at.to_rfc3339_opts(SecondsFormat::Millis, true)
                )
            }
        }
    }
}

/// All databases of the data directory, refreshed from disk on demand.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
    databases: Mutex<BTreeMap<String, Arc<Database>>>,
}

/// Why a database could not be created.
#[derive(Debug)]
pub(crate) enum CreateError {
    Exists,
    Sqlite(rusqlite::Error),
}

impl Registry {
    pub(crate) fn new(dir: &Path) -> Registry {
        Registry {
            dir: dir.to_owned(),
            databases: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where the Time Travel copies of database `name` live.
    fn snapshot_dir(&self, name: &str) -> PathBuf {
        self.dir.join(".d1-emulator").join("time-travel").join(name)
    }

    /// Picks up `NAME.sqlite` files added to (or removed from) the directory.
    pub(crate) fn refresh(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut on_disk = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("sqlite") || !path.is_file() {
                continue;
            }
            if let Some(name) = path.file_stem().and_then(|s| s.to_str())
                && valid_name(name)
            {
                on_disk.push((name.to_owned(), path));
            }
        }
        let mut databases = lock(&self.databases);
        // A set, not a scan per database: a fleet benchmark holds 10,000 of them.
        let names: std::collections::HashSet<&str> =
            on_disk.iter().map(|(n, _)| n.as_str()).collect();
        databases.retain(|name, _| names.contains(name.as_str()));
        for (name, path) in on_disk {
            if let std::collections::btree_map::Entry::Vacant(slot) = databases.entry(name) {
                let name = slot.key();
                let db = Database::open(name, path, self.snapshot_dir(name));
                slot.insert(Arc::new(db));
            }
        }
    }

    /// Every database, by name.
    pub(crate) fn list(&self) -> Vec<Arc<Database>> {
        self.refresh();
        lock(&self.databases).values().cloned().collect()
    }

    /// The database with this UUID (or, when `allow_name`, this name).
    pub(crate) fn find(&self, id_or_name: &str, allow_name: bool) -> Option<Arc<Database>> {
        let lookup = |dbs: &BTreeMap<String, Arc<Database>>| {
            let by_uuid = Uuid::parse_str(id_or_name)
                .ok()
                .and_then(|uuid| dbs.values().find(|d| d.uuid == uuid).cloned());
            by_uuid.or_else(|| {
                if allow_name {
                    dbs.get(id_or_name).cloned()
                } else {
                    None
                }
            })
        };
        if let Some(db) = lookup(&lock(&self.databases))
            && db.path.exists()
        {
            return Some(db);
        }
        self.refresh();
        lookup(&lock(&self.databases))
    }

    /// Creates an empty database file.
    pub(crate) fn create(&self, name: &str) -> Result<Arc<Database>, CreateError> {
        self.refresh();
        let mut databases = lock(&self.databases);
        if databases.contains_key(name) {
            return Err(CreateError::Exists);
        }
        let db = Arc::new(Database::open(
            name,
            self.dir.join(format!("{name}.sqlite")),
            self.snapshot_dir(name),
        ));
        // Write the header now so the file is a valid SQLite database even before any table exists.
        db.connection()
            .map_err(CreateError::Sqlite)?
            .execute_batch("PRAGMA user_version = 0; VACUUM;")
            .map_err(CreateError::Sqlite)?;
        databases.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Removes a database and its file.
    pub(crate) fn delete(&self, db: &Database) -> std::io::Result<()> {
        lock(&self.databases).remove(&db.name);
        db.forget_snapshots();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = db.path.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_sort_in_change_order() {
        // Proves bookmarks have D1's shape and sort lexicographically oldest to newest.
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path());
        let db = registry.create("books").unwrap();
        let mut seen = vec![db.current_bookmark()];
        for _ in 0..50 {
            seen.push(db.note_change());
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, seen);
        let parts: Vec<usize> = seen[1].split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 8, 8, 32]);
        assert_eq!(db.uuid, database_id("books"));
    }
}
