//! The database a migrations command talks to, and what its migrations table says is applied.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::{MigrationError, select_applied_sql};
use crate::cloudflare::Client;
use crate::config::{Config, DatabaseConfig, Source};
use crate::sources::{self, BackupSources};

/// The database a migrations command talks to.
pub enum MigrationTarget {
    /// A D1 database, with the sources opened to reach it (reused for the backup before a run).
    D1 {
        /// The storage and the client, as opened.
        sources: Box<BackupSources>,
        /// The D1 client.
        client: Client,
        /// The database's id.
        id: String,
    },
    /// A SQLite source.
    Sqlite {
        /// The source's path.
        path: PathBuf,
    },
}

impl MigrationTarget {
    /// The target of database `db`: its SQLite file, or its D1 database (looked up by name when the
    /// configuration gives no id).
    pub async fn open(config: &Config, db: &DatabaseConfig) -> Result<Self, MigrationError> {
        match &db.source {
            Source::Sqlite { path } => Ok(MigrationTarget::Sqlite { path: path.clone() }),
            Source::D1 { id } => {
                let sources = sources::open(config).await?;
                let client = sources
                    .cloudflare
                    .clone()
                    .ok_or(MigrationError::NoCloudflare)?;
                let id = match id {
                    Some(id) => id.clone(),
                    None => {
                        client
                            .get_database(&db.name)
                            .await
                            .map_err(MigrationError::Api)?
                            .uuid
                    }
                };
                Ok(MigrationTarget::D1 {
                    sources: Box::new(sources),
                    client,
                    id,
                })
            }
        }
    }

    /// The applied names, in applied order; a missing table means nothing is applied. Reads only:
    /// wrangler creates the table before listing, d1vault creates it inside the apply run, so that a
    /// failed run leaves no trace of it.
    pub async fn applied(&self, table: &str) -> Result<Vec<String>, MigrationError> {
        match self {
            MigrationTarget::D1 { client, id, .. } => {
                let exists = client
                    .query(
                        id,
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                        &[Value::String(table.into())],
                    )
                    .await
                    .map_err(MigrationError::Api)?;
                if exists.first().is_none_or(|r| r.results.is_empty()) {
                    return Ok(Vec::new());
                }
                let results = client
                    .query(id, &select_applied_sql(table), &[])
                    .await
                    .map_err(MigrationError::Api)?;
                Ok(results
                    .into_iter()
                    .next()
                    .map(|r| {
                        r.results
                            .into_iter()
                            .filter_map(|row| row.get("name")?.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default())
            }
            MigrationTarget::Sqlite { path } => {
                let conn = open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                let exists: bool = conn
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                        [table],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n > 0)
                    .map_err(|source| MigrationError::ReadSqlite {
                        path: path.clone(),
                        source,
                    })?;
                if !exists {
                    return Ok(Vec::new());
                }
                let mut stmt = conn
                    .prepare(&select_applied_sql(table))
                    .map_err(MigrationError::Sqlite)?;
                let names = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(MigrationError::Sqlite)?;
                Ok(names)
            }
        }
    }
}

/// Opens an existing SQLite source (never creates one: a mistyped `sqlite_path` must fail, not migrate a
/// new empty file), waiting up to 10 s for a lock held by the application.
pub(super) fn open_sqlite(path: &Path, mode: OpenFlags) -> Result<Connection, MigrationError> {
    let flags = mode | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|source| MigrationError::OpenSqlite {
            path: path.to_path_buf(),
            source,
        })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(MigrationError::Sqlite)?;
    Ok(conn)
}
