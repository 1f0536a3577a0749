//! `[[database]]`: one database to back up, its own keys (`name`, `id`, `sqlite_path`) plus the job keys
//! that override `[defaults]` (docs/configuration.md "`[defaults]` and `[[database]]`").

use toml_edit::TableLike;

use super::{job, retention};
use crate::config::preflight::Expect;
use crate::config::reader::{Reader, Schema, Section, with};
use crate::config::{DatabaseConfig, Source};

/// The keys only a `[[database]]` has.
const OWN_KEYS: &[&str] = &["name", "id", "sqlite_path", "drill_to_d1"];

/// The keys a `[[database]]` accepts: its own, then the job keys.
pub(super) static SCHEMA: Schema = Schema {
    name: "database",
    keys: &[OWN_KEYS, job::KEYS],
    tables: &[&retention::SCHEMA],
};

/// The longest database name accepted. D1 documents no limit; the name is a path segment in storage
/// (`<prefix>/<name>/<backup id>/...`), and 128 keeps it far below a file name's 255 bytes and an S3 key's
/// 1,024 while allowing any name a person would type.
const MAX_DATABASE_NAME: usize = 128;

/// Every valid `[[database]]` of the file, and what the schema needs to know about them as a whole.
pub(super) struct Databases {
    /// The valid databases, in file order.
    pub(super) configs: Vec<DatabaseConfig>,
    /// The first database that needs the D1 API (why, in words, and the offset to point at): it makes
    /// `[cloudflare]` required.
    pub(super) first_d1: Option<(String, usize)>,
}

/// Every `[[database]]`, with `defaults` applied.
pub(super) fn read_all(
    reader: &mut Reader<'_>,
    root: Section<'_>,
    defaults: &job::JobSettings,
) -> Databases {
    let mut databases = Databases {
        configs: Vec::new(),
        first_d1: None,
    };
    // A file with a `[[fleet]]` may configure no database by name.
    let fleets = root.contains("fleet");
    let tables: Vec<(usize, &dyn TableLike)> = match root.get("database") {
        None if fleets => return databases,
        None => {
            reader.error(
                0,
                "database",
                "no databases configured; add at least one [[database]] section with a name (or a [[fleet]])",
            );
            return databases;
        }
        Some((item, offset)) => match reader.array_of_tables("database", item, offset) {
            Ok(tables) => tables,
            Err(_) => return databases,
        },
    };
    if tables.is_empty() && !fleets {
        reader.error(
            0,
            "database",
            "no databases configured; add at least one [[database]]",
        );
    }
    let names: Vec<String> = (0..tables.len())
        .map(|i| format!("database[{i}]"))
        .collect();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for ((offset, table), name) in tables.into_iter().zip(&names) {
        let section = Section {
            name,
            offset,
            table,
            schema: &SCHEMA,
        };
        if let Some(db) = read(
            reader,
            section,
            defaults,
            &mut seen,
            &mut databases.first_d1,
        ) {
            databases.configs.push(db);
        }
    }
    databases
}

/// One `[[database]]`. `seen` holds the names (and their offsets) of the databases before it;
/// `first_d1` is set when this is the first database that needs the D1 API (a D1 source or a drill).
fn read(
    reader: &mut Reader<'_>,
    section: Section<'_>,
    defaults: &job::JobSettings,
    seen: &mut Vec<(String, usize)>,
    first_d1: &mut Option<(String, usize)>,
) -> Option<DatabaseConfig> {
    reader.check_keys(section);
    let name = reader.required_string(section, "name", "set name = \"the D1 database name\"");
    let name = name.and_then(|at| {
        if at.value.chars().count() > MAX_DATABASE_NAME {
            reader.error(
                at.offset,
                &at.key,
                format!(
                    "database name is {} characters long; the limit is {MAX_DATABASE_NAME} (it names a \
                     directory in storage)",
                    at.value.chars().count()
                ),
            );
            return None;
        }
        if !is_database_name(&at.value) {
            reader.error(
                at.offset,
                &at.key,
                format!(
                    "{:?} is not a valid database name: use letters, digits, `_` and `-`, starting \
                     with a letter or digit",
                    at.value
                ),
            );
            return None;
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == at.value) {
            let line = reader.line_of(*first);
            reader.error(
                at.offset,
                &at.key,
                format!("duplicate database name {:?} (first defined on line {line})", at.value),
            );
            return None;
        }
        seen.push((at.value.clone(), at.offset));
        Some(at.value)
    });

    let id = reader.nonempty_string(section, "id").and_then(|at| {
        match uuid::Uuid::parse_str(at.value.trim()) {
            Ok(uuid) => Some(with(at, uuid.hyphenated().to_string())),
            Err(_) => {
                reader.error(
                    at.offset,
                    &at.key,
                    format!(
                        "{:?} is not a database UUID such as \"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\" \
                         (see `wrangler d1 list`); remove `id` to look the database up by name",
                        at.value
                    ),
                );
                None
            }
        }
    });
    let sqlite_path = reader.path(section, "sqlite_path");
    let source = match (id, sqlite_path) {
        (Some(id), Some(_)) => {
            reader.error(
                id.offset,
                &id.key,
                "`id` names a D1 database but `sqlite_path` makes this a SQLite source; remove one",
            );
            None
        }
        (_, Some(path)) => {
            reader.expect_path(&path, Expect::SqliteFile);
            Some(Source::Sqlite { path: path.value })
        }
        // An invalid sqlite_path was reported; guessing "D1" would add a spurious [cloudflare] error.
        (_, None) if section.contains("sqlite_path") => None,
        (id, None) => {
            if first_d1.is_none() {
                let label = name.clone().unwrap_or_else(|| section.name.to_string());
                let why = format!("database {label:?} is a D1 source (it has no sqlite_path)");
                *first_d1 = Some((why, section.offset));
            }
            // A present but invalid id was already reported.
            Some(Source::D1 {
                id: id.map(|at| at.value),
            })
        }
    };

    let drill_to_d1 = match reader.nonempty_string(section, "drill_to_d1") {
        Some(at) if !is_database_name(at.value.trim()) => {
            reader.error(
                at.offset,
                &at.key,
                format!("{:?} is not a D1 database name", at.value),
            );
            return None;
        }
        Some(at) if name.as_deref() == Some(at.value.trim()) => {
            reader.error(
                at.offset,
                &at.key,
                "names the database itself: a drill replaces its target, so it must be a scratch \
                 database of its own (wrangler d1 create NAME-drill)",
            );
            return None;
        }
        Some(at) => {
            // The drill restores through the D1 API, whatever the source.
            if first_d1.is_none() {
                let label = name.clone().unwrap_or_else(|| section.name.to_string());
                let why = format!(
                    "database {label:?} drills its restores into the D1 database {:?} (drill_to_d1)",
                    at.value.trim()
                );
                *first_d1 = Some((why, at.offset));
            }
            Some(at.value.trim().to_string())
        }
        None => None,
    };

    let own = job::read(reader, section);
    let settings = own.or(defaults);
    let job = job::resolve(reader, &settings, name.as_deref().unwrap_or("?"));
    let job = job?;
    Some(DatabaseConfig {
        drill_to_d1,
        name: name?,
        source: source?,
        job: std::sync::Arc::new(job),
        fleet: None,
    })
}

/// D1 database names: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$` (also safe as a storage directory name: no `/`, no
/// `.` or `..`, no control characters).
pub(crate) fn is_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
