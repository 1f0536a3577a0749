//! The databases: one SQLite file per database in the data directory, with bookmarks kept in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use uuid::Uuid;

/// Namespace of the emulator's database ids: `id = UUID v5(NAMESPACE, name)`, stable across runs.
pub const DATABASE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1e_0a7e_5c4b_4f00_9d1e_a7e5_0000_d1d1);

/// The stable id of the database called `name`.
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

/// A database served by the emulator.
#[derive(Debug)]
pub(crate) struct Database {
    pub name: String,
    pub uuid: Uuid,
    pub path: PathBuf,
    pub created_at: String,
    conn: Mutex<Connection>,
    /// Bookmarks, oldest first; a new one after every change. Kept for `time_travel` (restore may use it).
    history: Mutex<Vec<BookmarkEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Opens (creating when absent) the database file.
    fn open(name: &str, path: PathBuf) -> rusqlite::Result<Database> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let modified: DateTime<Utc> = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(DateTime::from)
            .unwrap_or_else(|_| Utc::now());
        let created: DateTime<Utc> = std::fs::metadata(&path)
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .map(DateTime::from)
            .unwrap_or(modified);
        let uuid = database_id(name);
        Ok(Database {
            name: name.to_owned(),
            uuid,
            created_at: created.to_rfc3339_opts(SecondsFormat::Micros, true),
            history: Mutex::new(vec![BookmarkEntry {
                at: modified,
                bookmark: make_bookmark(modified, 0, &uuid),
            }]),
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Exclusive use of the connection (blocking: call from a blocking task). Holding it blocks the
    /// database, as D1's imports and exports do.
    pub fn connection(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// The newest bookmark.
    pub fn current_bookmark(&self) -> String {
        lock(&self.history)
            .last()
            .map(|e| e.bookmark.clone())
            .unwrap_or_default()
    }

    /// The newest bookmark at or before `at` (the oldest known when `at` precedes them all).
    pub fn bookmark_at(&self, at: DateTime<Utc>) -> String {
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
    pub fn note_change(&self) -> String {
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
    pub fn history(&self) -> Vec<BookmarkEntry> {
        lock(&self.history).clone()
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
    pub fn new(dir: &Path) -> Registry {
        Registry {
            dir: dir.to_owned(),
            databases: Mutex::new(BTreeMap::new()),
        }
    }

    /// Picks up `NAME.sqlite` files added to (or removed from) the directory.
    pub fn refresh(&self) {
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
        databases.retain(|name, _| on_disk.iter().any(|(n, _)| n == name));
        for (name, path) in on_disk {
            if !databases.contains_key(&name) {
                match Database::open(&name, path) {
                    Ok(db) => {
                        databases.insert(name, Arc::new(db));
                    }
                    Err(e) => {
                        tracing::warn!(database = %name, error = %e, "cannot open database file")
                    }
                }
            }
        }
    }

    /// Every database, by name.
    pub fn list(&self) -> Vec<Arc<Database>> {
        self.refresh();
        lock(&self.databases).values().cloned().collect()
    }

    /// The database with this UUID (or, when `allow_name`, this name).
    pub fn find(&self, id_or_name: &str, allow_name: bool) -> Option<Arc<Database>> {
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
    pub fn create(&self, name: &str) -> Result<Arc<Database>, CreateError> {
        self.refresh();
        let mut databases = lock(&self.databases);
        if databases.contains_key(name) {
            return Err(CreateError::Exists);
        }
        let db = Arc::new(
            Database::open(name, self.dir.join(format!("{name}.sqlite")))
                .map_err(CreateError::Sqlite)?,
        );
        // Write the header now so the file is a valid SQLite database even before any table exists.
        db.connection()
            .execute_batch("PRAGMA user_version = 0; VACUUM;")
            .map_err(CreateError::Sqlite)?;
        databases.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Removes a database and its file.
    pub fn delete(&self, db: &Database) -> std::io::Result<()> {
        lock(&self.databases).remove(&db.name);
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
