//! wrangler-compatible schema migrations: numbered `.sql` files in `migrations_dir`, applied in order and
//! recorded in the `d1_migrations` table (wrangler's definition), each exactly once. A database migrated by
//! wrangler shows nothing pending here, and the reverse.
//!
//! d1vault adds what wrangler lacks: a normal backup before anything changes, and all-or-nothing apply. D1
//! rolls back only the failing file; on any failure d1vault puts the database back to the Time Travel
//! bookmark recorded before the run (D1), imports the backup taken before the run over it (old `alpha` D1
//! databases, which have no Time Travel), or rolls back one transaction covering every file (SQLite
//! sources), so that the schema, the rows and `d1_migrations` are as before.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use d1_dump::quote_identifier;

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The name wrangler records: the file name relative to `migrations_dir`.
    pub name: String,
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
