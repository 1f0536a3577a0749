//! wrangler-compatible schema migrations: numbered `.sql` files in `migrations_dir`, applied in order and
//! recorded in the `d1_migrations` table (wrangler's definition), each exactly once. A database migrated by
//! wrangler shows nothing pending here, and the reverse.
//!
//! d1vault adds what wrangler lacks: a normal backup before anything changes, and all-or-nothing apply. D1
//! rolls back only the failing file; on any failure d1vault puts the database back to the Time Travel
//! bookmark recorded before the run (D1), imports the backup taken before the run over it (old `alpha` D1
//! databases, which have no Time Travel), or rolls back one transaction covering every file (SQLite
//! sources), so that the schema, the rows and `d1_migrations` are as before.
//!
//! Here: the files, what is pending and the SQL text wrangler uses, plus the operations the `migrations`
//! subcommands call: [`create`], [`status`] and [`apply()`] (in [`mod@apply`]); [`target`] reads what a
//! database has applied, [`error`] says why a command failed.

pub mod apply;
pub mod error;
mod probe;
pub mod target;

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::{Config, DatabaseConfig};
use d1_dump::quote_identifier;

pub use apply::{ApplyEvent, ApplyOutcome, ApplyRequest, apply};
pub use error::MigrationError;
pub use target::MigrationTarget;

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The name wrangler records: the file name relative to `migrations_dir`.
    pub name: String,
    /// Where the file is.
    pub path: PathBuf,
    /// The leading number of the name, if it has one.
    pub number: Option<u64>,
}

/// The files in `dir`, in wrangler's order: numbered files by their leading number, then unnumbered ones,
/// ties broken by name. A missing directory has no migrations.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<MigrationFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") || !entry.file_type()?.is_file() {
            continue;
        }
        files.push(MigrationFile {
            number: leading_number(&name),
            path: entry.path(),
            name,
        });
    }
    files.sort_by(|a, b| match (a.number, b.number) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.name.cmp(&b.name)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
    Ok(files)
}

fn leading_number(name: &str) -> Option<u64> {
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The files not yet recorded in `applied`, in order.
pub fn pending<'a>(files: &'a [MigrationFile], applied: &[String]) -> Vec<&'a MigrationFile> {
    files
        .iter()
        .filter(|f| !applied.contains(&f.name))
        .collect()
}

/// The next file name for `description` as wrangler names it: `NNNN_description_with_underscores.sql`.
pub fn next_file_name(files: &[MigrationFile], description: &str) -> String {
    let next = files.iter().filter_map(|f| f.number).max().unwrap_or(0) + 1;
    format!("{next:04}_{}.sql", description.trim().replace(' ', "_"))
}

/// The first line wrangler writes into a new migration file.
pub fn file_header(number: u64, now: DateTime<Utc>) -> String {
    format!(
        "-- Migration number: {number:04} \t {}\n",
        now.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// wrangler's definition of the migrations table.
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}(\n\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n\t\tname       TEXT UNIQUE,\n\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n);",
        quote_identifier(table)
    )
}

/// The applied names, in applied order.
pub fn select_applied_sql(table: &str) -> String {
    format!("SELECT name FROM {} ORDER BY id", quote_identifier(table))
}

/// A migration file followed by its bookkeeping insert, as wrangler sends it in one atomic request.
pub fn apply_sql(contents: &str, table: &str, name: &str) -> String {
    format!(
        "{contents}\nINSERT INTO {} (name)\nvalues ('{}');",
        quote_identifier(table),
        name.replace('\'', "''")
    )
}

/// The migration files of `db`, in wrangler's order.
pub fn read_files(db: &DatabaseConfig) -> Result<Vec<MigrationFile>, MigrationError> {
    list_files(&db.migrations_dir).map_err(|source| MigrationError::ReadDir {
        dir: db.migrations_dir.clone(),
        source,
    })
}

/// Writes the next `NNNN_DESCRIPTION.sql` into `db`'s migrations_dir (created when missing), with
/// wrangler's header dated `now`; returns its path.
pub fn create(
    db: &DatabaseConfig,
    description: &str,
    now: DateTime<Utc>,
) -> Result<PathBuf, MigrationError> {
    let files = read_files(db)?;
    let file_name = next_file_name(&files, description);
    let number = files.iter().filter_map(|f| f.number).max().unwrap_or(0) + 1;
    std::fs::create_dir_all(&db.migrations_dir).map_err(|source| MigrationError::CreateDir {
        dir: db.migrations_dir.clone(),
        source,
    })?;
    let path = db.migrations_dir.join(&file_name);
    std::fs::write(&path, file_header(number, now)).map_err(|source| {
        MigrationError::WriteFile {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

/// What a database has applied and what is pending, as wrangler decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The applied names, in applied order.
    pub applied: Vec<String>,
    /// The files not applied yet, in order.
    pub pending: Vec<MigrationFile>,
}

/// Reads `db`'s migration files and its migrations table (changing nothing).
pub async fn status(
    config: &Config,
    db: &DatabaseConfig,
) -> Result<MigrationStatus, MigrationError> {
    let files = read_files(db)?;
    let target = MigrationTarget::open(config, db).await?;
    let applied = target.applied(&db.migrations_table).await?;
    let pending = pending(&files, &applied).into_iter().cloned().collect();
    Ok(MigrationStatus { applied, pending })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> MigrationFile {
        MigrationFile {
            name: name.into(),
            path: PathBuf::from(name),
            number: leading_number(name),
        }
    }

    #[test]
    fn order_is_numbered_by_value_then_unnumbered() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "0010_c.sql",
            "0002_b.sql",
            "seed.sql",
            "0001_a.sql",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = list_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            ["0001_a.sql", "0002_b.sql", "0010_c.sql", "seed.sql"]
        );
    }

    #[test]
    fn next_name_follows_the_highest_number() {
        let files = vec![file("0001_a.sql"), file("0007_b.sql")];
        assert_eq!(
            next_file_name(&files, "add users table"),
            "0008_add_users_table.sql"
        );
        assert_eq!(next_file_name(&[], "init"), "0001_init.sql");
    }

    #[test]
    fn pending_excludes_applied_names() {
        let files = vec![file("0001_a.sql"), file("0002_b.sql")];
        let p = pending(&files, &["0001_a.sql".to_string()]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "0002_b.sql");
    }

    #[test]
    fn apply_sql_matches_wrangler_and_escapes_quotes() {
        assert_eq!(
            apply_sql("CREATE TABLE t(x);", "d1_migrations", "0001_it's.sql"),
            "CREATE TABLE t(x);\nINSERT INTO \"d1_migrations\" (name)\nvalues ('0001_it''s.sql');"
        );
    }
}
