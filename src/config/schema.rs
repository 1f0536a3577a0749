//! d1vault's configuration schema: which tables and keys the file has, their defaults, and the checks
//! that give them meaning (CONTRACT.md "Configuration", docs/configuration.md). One module per table;
//! each declares the keys it accepts once, in its [`Schema`], which the unknown-key check reads and the
//! documentation test below walks.

mod cloudflare;
mod daemon;
mod database;
mod encryption;
mod fleet;
mod job;
mod notify;
mod object_lock;
mod retention;
mod storage;

use super::Config;
use super::reader::{Reader, Schema, Section};

pub(crate) use database::is_database_name;

/// The document root: its keys are the top-level tables.
pub(super) static ROOT: Schema = Schema {
    name: "",
    keys: &[&[
        "daemon",
        "cloudflare",
        "storage",
        "defaults",
        "database",
        "fleet",
        "notify",
        "encryption",
    ]],
    tables: &[
        &daemon::SCHEMA,
        &cloudflare::SCHEMA,
        &storage::SCHEMA,
        &job::DEFAULTS,
        &database::SCHEMA,
        &fleet::SCHEMA,
        &notify::SCHEMA,
        &encryption::SCHEMA,
    ],
};

/// The whole document. Returns `None` when a required part could not be built; problems are in the
/// reader either way.
pub(super) fn config(reader: &mut Reader<'_>, root: &toml_edit::Table) -> Option<Config> {
    let root = Section {
        name: "",
        offset: 0,
        table: root,
        schema: &ROOT,
    };
    reader.check_keys(root);

    let daemon = reader.table(root, &daemon::SCHEMA, "daemon");
    let daemon = daemon::read(reader, daemon);

    let defaults = match reader.table(root, &job::DEFAULTS, "defaults") {
        Some(section) => {
            reader.check_keys(section);
            job::read(reader, section)
        }
        None => job::JobSettings::default(),
    };
    let databases = database::read_all(reader, root, &defaults);
    let (fleets, first_fleet) = fleet::read_all(reader, root, &defaults);
    let notify = notify::read_all(reader, root);
    // Read whenever the table is written, even empty: `[encryption]` with nothing in it must fail, not
    // silently store plaintext.
    let encryption = if root.contains("encryption") {
        match reader.table(root, &encryption::SCHEMA, "encryption") {
            Some(section) => Some(encryption::read(reader, section)),
            None => Some(None),
        }
    } else {
        None
    };

    let cloudflare = match reader.table(root, &cloudflare::SCHEMA, "cloudflare") {
        Some(section) => cloudflare::read(reader, section),
        // Without the section, the environment may hold the account and the token, as for wrangler.
        None if databases.first_d1.is_some() || first_fleet.is_some() => {
            let from_env = cloudflare::from_env(reader);
            if from_env.is_none() && !root.contains("cloudflare") {
                let also =
                    "(or set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN in the environment)";
                if let Some((why, offset)) = &databases.first_d1 {
                    let message = format!(
                        "missing [cloudflare] section: {why}, which needs account_id and api_token {also}"
                    );
                    reader.error(*offset, "cloudflare", message);
                } else if let Some(offset) = first_fleet {
                    let message = format!(
                        "missing [cloudflare] section: a [[fleet]] finds its members by listing the \
                         account's D1 databases, which needs account_id and api_token {also}"
                    );
                    reader.error(offset, "cloudflare", message);
                }
            }
            from_env
        }
        None => None,
    };

    let storage = match reader.table(root, &storage::SCHEMA, "storage") {
        Some(section) => storage::read(reader, section),
        None => {
            if !root.contains("storage") {
                reader.error(
                    0,
                    "storage",
                    "missing [storage] section; add one with type = \"s3\" or type = \"filesystem\"",
                );
            }
            None
        }
    };

    Some(Config {
        path: reader.file().to_path_buf(),
        daemon,
        cloudflare,
        cloudflare_unavailable: None,
        preflight: Vec::new(),
        storage: storage?,
        databases: databases.configs,
        fleets,
        notify,
        encryption: match encryption {
            Some(read) => Some(read?),
            None => None,
        },
        index: Default::default(),
    })
}

/// An `http://` or `https://` URL without trailing slashes (`cloudflare.api_base_url`, `storage.endpoint`).
fn http_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_string())
        }
        _ => Err(format!("{text:?} is not an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::closest;

    #[test]
    fn suggestions_catch_typos_only() {
        // Proves a near miss gets a suggestion and an unrelated word does not.
        assert_eq!(closest("retension", job::KEYS), Some("retention"));
        assert_eq!(closest("shedule", job::KEYS), Some("schedule"));
        assert_eq!(closest("frobnicate", job::KEYS), None);
        assert!(daemon::timezone_message("Berlin").contains("Europe/Berlin"));
    }

    /// The part of `doc` under the `## ` heading that names table `name` (`[name]` or `[[name]]`), up to
    /// the next `## ` heading.
    fn doc_part<'d>(doc: &'d str, name: &str) -> Option<&'d str> {
        let bracketed = format!("[{name}]");
        let mut parts = doc.split("\n## ").skip(1);
        parts.find(|part| part.lines().next().is_some_and(|h| h.contains(&bracketed)))
    }

    /// The row of the key table in `part` that documents `key`: a line starting `` | `key` | ``.
    fn doc_row<'d>(part: &'d str, key: &str) -> Option<&'d str> {
        let start = format!("| `{key}` |");
        part.lines().find(|line| line.starts_with(&start))
    }

    #[test]
    fn every_accepted_key_is_documented() {
        // Proves docs/configuration.md documents every key the loader accepts, walking the same schema
        // the unknown-key check reads. A top-level table counts as documented when a `## ` heading names
        // it (`[daemon]`, `[[database]]`); each of its keys when that heading's part has a table row
        // starting `` | `key` | ``; each key of a table nested under a key (retention's `keep_*`) when it
        // appears as `` `key` `` in that key's row.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md is readable");
        let mut undocumented = Vec::new();
        for key in ROOT.keys.iter().flat_map(|group| group.iter()) {
            assert!(
                ROOT.tables.iter().any(|t| t.name == *key),
                "top-level key `{key}` is not a table; teach this test how it is documented"
            );
        }
        for table in ROOT.tables {
            assert!(
                ROOT.accepts(table.name),
                "[{}] is not a root key",
                table.name
            );
            let Some(part) = doc_part(&doc, table.name) else {
                undocumented.push(format!("[{}] (no `## ` heading names it)", table.name));
                continue;
            };
            for nested in table.tables {
                assert!(
                    table.accepts(nested.name) && nested.tables.is_empty(),
                    "[{}.{}] is not a key of its table, or nests tables itself; teach this test",
                    table.name,
                    nested.name
                );
            }
            for key in table.keys.iter().flat_map(|group| group.iter()) {
                let Some(row) = doc_row(part, key) else {
                    undocumented.push(format!("{}.{key}", table.name));
                    continue;
                };
                let nested = table.tables.iter().filter(|t| t.name == *key);
                for inner in nested.flat_map(|t| t.keys.iter().flat_map(|group| group.iter())) {
                    if !row.contains(&format!("`{inner}`")) {
                        undocumented.push(format!("{}.{key}.{inner}", table.name));
                    }
                }
            }
        }
        assert!(
            undocumented.is_empty(),
            "accepted by the loader but not documented in docs/configuration.md: {undocumented:?}"
        );
    }
}
