//! Reading the TOML file into a [`Config`]. The document is parsed with `toml_edit`, which keeps the byte
//! span of every key and value, and walked by hand so that every problem in the file is collected (not just
//! the first) with its file, line, column and dotted key.
//!
//! Each reader below (`string`, `integer`, `duration`, ...) reports its own problem and returns `None`;
//! the caller substitutes the built-in default and carries on, so later keys are still checked. A
//! [`Config`] is only returned when no problem at all was found.

mod expand;
mod units;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml_edit::{Document, Item, TableLike, Value};

use super::{
    CloudflareConfig, Compression, Config, DEFAULT_API_BASE_URL, DaemonConfig, DatabaseConfig,
    FilesystemConfig, S3Config, Source, StorageConfig,
};
use crate::repository::retention::RetentionPolicy;
use crate::schedule::{Schedule, Window};
use crate::secret::Secret;

/// One problem in a configuration file, precise enough for an editor to jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending value (or of the table header when a key is missing); 0 when the
    /// problem concerns the whole file (it could not be read).
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted key such as `database[2].schedule` or `storage.bucket` (`[n]` counts from 0); empty for a
    /// TOML syntax error or an unreadable file.
    pub key: String,
    /// What is wrong and what to write instead. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, in file order. Displayed as one line per problem,
/// `FILE:LINE:COLUMN: KEY: MESSAGE`, which is what `check-config` and every command print before exiting 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the configuration file is, following CONTRACT.md: `--config`, else `$D1VAULT_CONFIG`, else
/// `./d1vault.toml` when it exists, else `/etc/d1vault/d1vault.toml`.
pub fn find_config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(path) = cli {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("D1VAULT_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let local = PathBuf::from("d1vault.toml");
    if local.exists() {
        return local;
    }
    PathBuf::from("/etc/d1vault/d1vault.toml")
}

/// Reads and validates the configuration file at `path`, expanding `${VAR}` from the process environment.
/// The path is made absolute first so that the relative paths inside the file stay correct whatever the
/// working directory later is.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!(
                "cannot read the configuration file: {e}; pass --config PATH or set D1VAULT_CONFIG"
            ),
        }])
    })?;
    load_str(&text, &path, &|name| std::env::var(name).ok())
}

/// Validates configuration `text` as if read from `path` (used in messages and to resolve relative paths),
/// taking environment variables from `env`. Secret files named by `*_file` keys are read.
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut loader = Loader {
        file: path,
        text,
        base: config_dir(path),
        env,
        errors: Vec::new(),
        secrets: Vec::new(),
        substitutions: Vec::new(),
        first_d1: None,
    };
    let parsed = Document::parse(text);
    let document = match parsed {
        Ok(document) => document,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().replace('\n', "; ");
            loader.error(offset, "", format!("TOML syntax error: {message}"));
            return Err(loader.finish());
        }
    };
    let config = loader.config(document.as_table());
    match config {
        Some(config) if loader.errors.is_empty() => Ok(config),
        _ => Err(loader.finish()),
    }
}

/// The directory relative paths are resolved against: the config file's own directory.
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

// The keys each table accepts. Unknown keys are errors, with the closest of these suggested.
const ROOT_KEYS: &[&str] = &["daemon", "cloudflare", "storage", "defaults", "database"];
const DAEMON_KEYS: &[&str] = &[
    "state_dir",
    "listen",
    "timezone",
    "max_concurrent",
    "shutdown_grace",
];
const CLOUDFLARE_KEYS: &[&str] = &[
    "account_id",
    "api_token",
    "api_token_file",
    "api_base_url",
    "requests_per_5min",
    "export_timeout",
];
const STORAGE_COMMON_KEYS: &[&str] = &["type", "prefix"];
const STORAGE_S3_KEYS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "force_path_style",
    "access_key_id",
    "access_key_id_file",
    "secret_access_key",
    "secret_access_key_file",
    "part_size",
    "max_parts_in_flight",
];
const STORAGE_FS_KEYS: &[&str] = &["path"];
const JOB_KEYS: &[&str] = &[
    "schedule",
    "window",
    "jitter",
    "compression",
    "compression_level",
    "retention",
    "no_data",
    "tables",
    "migrations_dir",
    "migrations_table",
];
const DATABASE_OWN_KEYS: &[&str] = &["name", "id", "sqlite_path"];
const RETENTION_KEYS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
];

// Built-in defaults (CONTRACT.md plus the documented extras).
const DEFAULT_STATE_DIR: &str = "/var/lib/d1vault";
const DEFAULT_LISTEN: &str = "127.0.0.1:9180";
const DEFAULT_MAX_CONCURRENT: usize = 2;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_REQUESTS_PER_5MIN: u32 = 1000;
/// Cloudflare's documented global limit: 1,200 requests per 5 minutes per user.
const MAX_REQUESTS_PER_5MIN: i64 = 1200;
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_REGION: &str = "auto";
const MIB: u64 = 1024 * 1024;
/// 8 MiB, as the AWS CLI: with two parts in flight and one filling, about 24 MiB of buffers per upload, and
/// room for 78 GiB objects within S3's 10,000 parts (a D1 database holds at most 10 GB).
const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// S3's smallest allowed multipart part (except the last one).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest allowed multipart part.
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
const DEFAULT_MAX_PARTS_IN_FLIGHT: usize = 2;
/// Each part in flight is held in memory; this bounds the worst case.
const MAX_PARTS_IN_FLIGHT: i64 = 64;
const DEFAULT_SCHEDULE: &str = "0 3 * * *";
const DEFAULT_COMPRESSION_LEVEL: i64 = 3;
const DEFAULT_MIGRATIONS_DIR: &str = "./migrations";
const DEFAULT_MIGRATIONS_TABLE: &str = "d1_migrations";

/// A value read from the file, with the byte offset where it was written and its dotted key, so that
/// checks across keys (jitter against window, level against compression) can point at the right place.
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    offset: usize,
    key: String,
}

/// A table of the file being read (a `[section]`, an inline table or one `[[database]]`).
#[derive(Clone, Copy)]
struct Section<'t> {
    /// Dotted name used as the key prefix in messages; empty for the root.
    name: &'t str,
    /// Byte offset of the table's header, used for problems about missing keys.
    offset: usize,
    table: &'t dyn TableLike,
}

impl<'t> Section<'t> {
    fn key_path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    /// Offset of the key itself (for unknown keys), falling back to the table header.
    fn key_offset(&self, key: &str) -> usize {
        self.table
            .key(key)
            .and_then(|k| k.span())
            .map_or(self.offset, |s| s.start)
    }

    /// The item at `key` with the offset of its value.
    fn get(&self, key: &str) -> Option<(&'t Item, usize)> {
        let item = self.table.get(key)?;
        let offset = item
            .span()
            .map_or_else(|| self.key_offset(key), |s| s.start);
        Some((item, offset))
    }
}

/// The `[defaults]` keys as written in one table (`[defaults]` or one `[[database]]`); `None` where the
/// table does not set the key.
#[derive(Debug, Clone, Default)]
struct JobSettings {
    schedule: Option<At<Schedule>>,
    window: Option<At<Window>>,
    jitter: Option<At<Duration>>,
    compression: Option<At<CompressionKind>>,
    compression_level: Option<At<i64>>,
    retention: Option<At<RetentionPolicy>>,
    no_data: Option<At<bool>>,
    tables: Option<At<Vec<String>>>,
    migrations_dir: Option<At<PathBuf>>,
    migrations_table: Option<At<String>>,
}

impl JobSettings {
    /// Keys set here win; the others come from `fallback` (the `[defaults]` table).
    fn or(self, fallback: &JobSettings) -> JobSettings {
        JobSettings {
            schedule: self.schedule.or_else(|| fallback.schedule.clone()),
            window: self.window.or_else(|| fallback.window.clone()),
            jitter: self.jitter.or_else(|| fallback.jitter.clone()),
            compression: self.compression.or_else(|| fallback.compression.clone()),
            compression_level: self
                .compression_level
                .or_else(|| fallback.compression_level.clone()),
            retention: self.retention.or_else(|| fallback.retention.clone()),
            no_data: self.no_data.or_else(|| fallback.no_data.clone()),
            tables: self.tables.or_else(|| fallback.tables.clone()),
            migrations_dir: self
                .migrations_dir
                .or_else(|| fallback.migrations_dir.clone()),
            migrations_table: self
                .migrations_table
                .or_else(|| fallback.migrations_table.clone()),
        }
    }
}

/// `compression = "..."` before the level is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompressionKind {
    Zstd,
    Gzip,
    None,
}

/// The walk over one document: collects errors and the secret values seen (so that no message can carry
/// one, even by accident).
struct Loader<'a> {
    file: &'a Path,
    text: &'a str,
    base: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
    secrets: Vec<String>,
    /// Every `${NAME}` substituted so far, as (name, value): the value is shown as `${NAME}` in messages,
    /// since a variable referenced from an ordinary key may still hold a secret.
    substitutions: Vec<(String, String)>,
    /// The first database that reads from D1 (label, header offset): it makes `[cloudflare]` required.
    first_d1: Option<(String, usize)>,
}

impl<'a> Loader<'a> {
    // ---- reporting ------------------------------------------------------------------------------------

    fn error(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let (line, column) = line_column(self.text, offset);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The collected errors in file order, duplicates (a `[defaults]` problem seen through several
    /// databases) removed, and any secret value that slipped into a message redacted.
    fn finish(mut self) -> ConfigErrors {
        let mut errors = std::mem::take(&mut self.errors);
        errors.sort_by(|a, b| {
            (a.line, a.column, &a.key, &a.message).cmp(&(b.line, b.column, &b.key, &b.message))
        });
        errors.dedup();
        for error in &mut errors {
            for secret in &self.secrets {
                // Very short values would redact ordinary words; real secrets are longer.
                if secret.len() >= 4 && error.message.contains(secret.as_str()) {
                    error.message = error.message.replace(secret.as_str(), "[redacted]");
                }
            }
            for (name, value) in &self.substitutions {
                if value.len() >= 4 && error.message.contains(value.as_str()) {
                    error.message = error
                        .message
                        .replace(value.as_str(), &format!("${{{name}}}"));
                }
            }
        }
        ConfigErrors(errors)
    }

    fn wrong_type(&mut self, offset: usize, key: &str, expected: &str, item: &Item) {
        let found = item.type_name();
        self.error(offset, key, format!("expected {expected}, found {found}"));
    }

    /// Reports every key of `section` not in any of `allowed`, suggesting the closest known key.
    fn check_keys(&mut self, section: Section<'_>, allowed: &[&[&str]]) {
        let known: Vec<&str> = allowed
            .iter()
            .flat_map(|keys| keys.iter().copied())
            .collect();
        for (key, _) in section.table.iter() {
            if known.contains(&key) {
                continue;
            }
            let mut message = format!("unknown key `{key}`");
            if let Some(suggestion) = closest(key, &known) {
                message.push_str(&format!("; did you mean `{suggestion}`?"));
            } else {
                message.push_str(&format!("; expected one of: {}", known.join(", ")));
            }
            self.error(section.key_offset(key), &section.key_path(key), message);
        }
    }

    // ---- typed readers ----------------------------------------------------------------------------------

    /// A sub-table (`[a.b]` or `b = { ... }`); `name` must outlive the section, hence passed in.
    fn table<'t>(&mut self, parent: Section<'t>, key: &str, name: &'t str) -> Option<Section<'t>> {
        let (item, offset) = parent.get(key)?;
        match item.as_table_like() {
            Some(table) => Some(Section {
                name,
                offset,
                table,
            }),
            None => {
                self.wrong_type(offset, name, "a table", item);
                None
            }
        }
    }

    /// A string with `${VAR}` expanded; problems never quote the string (it may be a secret).
    fn string_value(&mut self, item: &Item, offset: usize, key: &str) -> Option<String> {
        let Some(raw) = item.as_str() else {
            self.wrong_type(offset, key, "a string", item);
            return None;
        };
        let env = self.env;
        let used = std::cell::RefCell::new(Vec::new());
        let recording_env = |name: &str| {
            let value = env(name);
            if let Some(value) = &value {
                used.borrow_mut().push((name.to_string(), value.clone()));
            }
            value
        };
        let expanded = expand::expand(raw, &recording_env);
        self.substitutions.extend(used.into_inner());
        match expanded {
            Ok(value) => Some(value),
            Err(problems) => {
                for problem in problems {
                    self.error(offset, key, problem);
                }
                None
            }
        }
    }

    fn string(&mut self, section: Section<'_>, key: &str) -> Option<At<String>> {
        let (item, offset) = section.get(key)?;
        let path = section.key_path(key);
        let value = self.string_value(item, offset, &path)?;
        Some(At {
            value,
            offset,
            key: path,
        })
    }

    /// A string that must not be empty (after expansion).
    fn nonempty_string(&mut self, section: Section<'_>, key: &str) -> Option<At<String>> {
        let at = self.string(section, key)?;
        if at.value.trim().is_empty() {
            self.error(at.offset, &at.key, "must not be empty");
            return None;
        }
        Some(at)
    }

    /// A string that must be present; a missing key is reported at the table header.
    fn required_string(
        &mut self,
        section: Section<'_>,
        key: &str,
        hint: &str,
    ) -> Option<At<String>> {
        if section.table.get(key).is_none() {
            self.error(
                section.offset,
                &section.key_path(key),
                format!("missing; {hint}"),
            );
            return None;
        }
        self.nonempty_string(section, key)
    }

    fn integer(&mut self, section: Section<'_>, key: &str) -> Option<At<i64>> {
        let (item, offset) = section.get(key)?;
        let path = section.key_path(key);
        match item.as_integer() {
            Some(value) => Some(At {
                value,
                offset,
                key: path,
            }),
            None => {
                self.wrong_type(offset, &path, "an integer", item);
                None
            }
        }
    }

    /// An integer within `min..=max`.
    fn integer_in(
        &mut self,
        section: Section<'_>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<At<i64>> {
        let at = self.integer(section, key)?;
        if at.value < min || at.value > max {
            let range = if max == i64::MAX {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            self.error(
                at.offset,
                &at.key,
                format!("{} is out of range: must be {range}", at.value),
            );
            return None;
        }
        Some(at)
    }

    fn boolean(&mut self, section: Section<'_>, key: &str) -> Option<At<bool>> {
        let (item, offset) = section.get(key)?;
        let path = section.key_path(key);
        match item.as_bool() {
            Some(value) => Some(At {
                value,
                offset,
                key: path,
            }),
            None => {
                self.wrong_type(offset, &path, "a boolean (true or false)", item);
                None
            }
        }
    }

    /// A humantime duration such as `"5m"` or `"1h 30m"`.
    fn duration(&mut self, section: Section<'_>, key: &str) -> Option<At<Duration>> {
        let at = self.string(section, key)?;
        match humantime::parse_duration(at.value.trim()) {
            Ok(value) => Some(At {
                value,
                offset: at.offset,
                key: at.key,
            }),
            Err(e) => {
                self.error(
                    at.offset,
                    &at.key,
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"1h 30m\"",
                        at.value
                    ),
                );
                None
            }
        }
    }

    /// A path, resolved against the config file's directory when relative.
    fn path(&mut self, section: Section<'_>, key: &str) -> Option<At<PathBuf>> {
        let at = self.nonempty_string(section, key)?;
        Some(At {
            value: self.resolve(Path::new(&at.value)),
            offset: at.offset,
            key: at.key,
        })
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        // Drop `.` components only: removing `..` lexically would be wrong across symlinks.
        joined
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    }

    /// An array of strings, each expanded.
    fn string_array(&mut self, section: Section<'_>, key: &str) -> Option<At<Vec<String>>> {
        let (item, offset) = section.get(key)?;
        let path = section.key_path(key);
        let Some(array) = item.as_array() else {
            self.wrong_type(offset, &path, "an array of strings", item);
            return None;
        };
        let mut values = Vec::new();
        let mut ok = true;
        for (i, value) in array.iter().enumerate() {
            let element_offset = value.span().map_or(offset, |s| s.start);
            let element_key = format!("{path}[{i}]");
            let element = Item::Value(value.clone());
            match self.string_value(&element, element_offset, &element_key) {
                Some(s) if !s.trim().is_empty() => values.push(s),
                Some(_) => {
                    self.error(element_offset, &element_key, "must not be empty");
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(At {
            value: values,
            offset,
            key: path,
        })
    }

    /// A secret given either inline (`key`, `${VAR}` allowed) or in a file (`key_file`). Returns
    /// `Ok(None)` when neither is set, `Err(())` when a problem was reported.
    fn secret(&mut self, section: Section<'_>, key: &str) -> Result<Option<Secret>, ()> {
        let file_key = format!("{key}_file");
        // Both forms are read even when both are set, so that each value is known to `finish` and
        // redacted should it appear in another key's message.
        let inline = section
            .get(key)
            .map(|(item, offset)| self.inline_secret(item, offset, &section.key_path(key)));
        let from_file = section
            .table
            .contains_key(&file_key)
            .then(|| self.file_secret(section, &file_key));
        match (inline, from_file) {
            (Some(_), Some(_)) => {
                self.error(
                    section.key_offset(&file_key),
                    &section.key_path(&file_key),
                    format!("set either `{key}` or `{file_key}`, not both"),
                );
                Err(())
            }
            (Some(value), None) | (None, Some(value)) => value.map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A secret written in the file, usually as `"${VAR}"`.
    fn inline_secret(&mut self, item: &Item, offset: usize, key: &str) -> Result<Secret, ()> {
        let value = self.string_value(item, offset, key).ok_or(())?;
        if value.is_empty() {
            self.error(
                offset,
                key,
                "is empty; set the secret or its environment variable",
            );
            return Err(());
        }
        self.secrets.push(value.clone());
        Ok(Secret::new(value))
    }

    /// A secret read from the file named by `file_key`, without its trailing newline.
    fn file_secret(&mut self, section: Section<'_>, file_key: &str) -> Result<Secret, ()> {
        let at = self.path(section, file_key).ok_or(())?;
        let value = match std::fs::read_to_string(&at.value) {
            Ok(value) => value,
            Err(e) => {
                self.error(
                    at.offset,
                    &at.key,
                    format!("cannot read secret file {}: {e}", at.value.display()),
                );
                return Err(());
            }
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            self.error(
                at.offset,
                &at.key,
                format!("secret file {} is empty", at.value.display()),
            );
            return Err(());
        }
        self.secrets.push(value.clone());
        Ok(Secret::new(value))
    }

    // ---- sections -------------------------------------------------------------------------------------

    /// The whole document. Returns `None` when a required part could not be built; problems are in
    /// `self.errors` either way.
    fn config(&mut self, root: &toml_edit::Table) -> Option<Config> {
        let root = Section {
            name: "",
            offset: 0,
            table: root,
        };
        self.check_keys(root, &[ROOT_KEYS]);

        let daemon = self.table(root, "daemon", "daemon");
        let daemon = self.daemon(daemon);

        let defaults = match self.table(root, "defaults", "defaults") {
            Some(section) => {
                self.check_keys(section, &[JOB_KEYS]);
                self.job_settings(section)
            }
            None => JobSettings::default(),
        };
        let databases = self.databases(root, &defaults);

        let needs_cloudflare = self.first_d1.clone();
        let cloudflare = match self.table(root, "cloudflare", "cloudflare") {
            Some(section) => self.cloudflare(section),
            None => {
                if let Some((db, offset)) = needs_cloudflare {
                    let message = format!(
                        "missing [cloudflare] section: database {db:?} is a D1 source (it has no \
                         sqlite_path), which needs account_id and api_token"
                    );
                    self.error(offset, "cloudflare", message);
                }
                None
            }
        };

        let storage = match self.table(root, "storage", "storage") {
            Some(section) => self.storage(section),
            None => {
                if !root.table.contains_key("storage") {
                    self.error(
                        0,
                        "storage",
                        "missing [storage] section; add one with type = \"s3\" or type = \"filesystem\"",
                    );
                }
                None
            }
        };

        Some(Config {
            path: self.file.to_path_buf(),
            daemon,
            cloudflare,
            storage: storage?,
            databases: databases.into_iter().map(|(db, _)| db).collect(),
        })
    }

    fn daemon(&mut self, section: Option<Section<'_>>) -> DaemonConfig {
        let default_state_dir = (self.env)("STATE_DIRECTORY")
            .and_then(|dirs| dirs.split(':').next().map(str::to_string))
            .filter(|dir| !dir.is_empty())
            .map_or_else(
                || PathBuf::from(DEFAULT_STATE_DIR),
                |dir| self.resolve(Path::new(&dir)),
            );
        let mut daemon = DaemonConfig {
            state_dir: default_state_dir,
            listen: Some(
                DEFAULT_LISTEN
                    .parse()
                    .expect("default listen address parses"),
            ),
            timezone: chrono_tz::UTC,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        };
        let Some(section) = section else {
            return daemon;
        };
        self.check_keys(section, &[DAEMON_KEYS]);
        if let Some(at) = self.path(section, "state_dir") {
            daemon.state_dir = at.value;
        }
        if let Some(at) = self.string(section, "listen") {
            let text = at.value.trim();
            if text.is_empty() {
                daemon.listen = None;
            } else {
                match text.parse::<SocketAddr>() {
                    Ok(addr) => daemon.listen = Some(addr),
                    Err(_) => self.error(
                        at.offset,
                        &at.key,
                        format!(
                            "{text:?} is not a socket address; write IP:PORT such as \"127.0.0.1:9180\" \
                             or \"[::1]:9180\", or \"\" to disable"
                        ),
                    ),
                }
            }
        }
        if let Some(at) = self.string(section, "timezone") {
            match at.value.trim().parse::<chrono_tz::Tz>() {
                Ok(tz) => daemon.timezone = tz,
                Err(_) => {
                    let message = timezone_message(at.value.trim());
                    self.error(at.offset, &at.key, message);
                }
            }
        }
        if let Some(at) = self.integer_in(section, "max_concurrent", 1, i64::MAX) {
            daemon.max_concurrent = usize::try_from(at.value).unwrap_or(usize::MAX);
        }
        if let Some(at) = self.duration(section, "shutdown_grace") {
            daemon.shutdown_grace = at.value;
        }
        daemon
    }

    fn cloudflare(&mut self, section: Section<'_>) -> Option<CloudflareConfig> {
        self.check_keys(section, &[CLOUDFLARE_KEYS]);
        let account_id = self.required_string(
            section,
            "account_id",
            "set account_id = \"${CLOUDFLARE_ACCOUNT_ID}\" (the 32-character id in the dashboard URL)",
        );
        let api_token = match self.secret(section, "api_token") {
            Ok(Some(token)) => Some(token),
            Ok(None) => {
                self.error(
                    section.offset,
                    &section.key_path("api_token"),
                    "missing; set api_token = \"${CLOUDFLARE_API_TOKEN}\" or api_token_file = \"PATH\" \
                     (a token with D1 edit permission)",
                );
                None
            }
            Err(()) => None,
        };
        let mut api_base_url = DEFAULT_API_BASE_URL.to_string();
        if let Some(at) = self.nonempty_string(section, "api_base_url") {
            match http_url(&at.value) {
                Ok(url) => api_base_url = url,
                Err(message) => self.error(at.offset, &at.key, message),
            }
        }
        let requests_per_5min = self
            .integer_in(section, "requests_per_5min", 1, MAX_REQUESTS_PER_5MIN)
            .map_or(DEFAULT_REQUESTS_PER_5MIN, |at| at.value as u32);
        let mut export_timeout = DEFAULT_EXPORT_TIMEOUT;
        if let Some(at) = self.duration(section, "export_timeout") {
            if at.value.is_zero() {
                self.error(at.offset, &at.key, "must be longer than zero");
            } else {
                export_timeout = at.value;
            }
        }
        Some(CloudflareConfig {
            account_id: account_id?.value.trim().to_string(),
            api_token: api_token?,
            api_base_url,
            requests_per_5min,
            export_timeout,
        })
    }

    fn storage(&mut self, section: Section<'_>) -> Option<StorageConfig> {
        let kind = match section.get("type") {
            None => {
                self.error(
                    section.offset,
                    "storage.type",
                    "missing; set type = \"s3\" or type = \"filesystem\"",
                );
                None
            }
            Some(_) => match self.string(section, "type") {
                None => None,
                Some(at) => match at.value.as_str() {
                    "s3" | "filesystem" => Some(at.value),
                    other => {
                        let mut message =
                            format!("unknown storage type {other:?}; use \"s3\" or \"filesystem\"");
                        if let Some(s) = closest(other, &["s3", "filesystem"]) {
                            message =
                                format!("unknown storage type {other:?}; did you mean {s:?}?");
                        }
                        self.error(at.offset, &at.key, message);
                        None
                    }
                },
            },
        };
        // Keys of the other storage type are reported as such rather than as unknown.
        let (own, other, other_name): (&[&str], &[&str], &str) = match kind.as_deref() {
            Some("s3") => (STORAGE_S3_KEYS, STORAGE_FS_KEYS, "filesystem"),
            Some(_) => (STORAGE_FS_KEYS, STORAGE_S3_KEYS, "s3"),
            None => (STORAGE_S3_KEYS, STORAGE_FS_KEYS, ""),
        };
        if kind.is_some() {
            for (key, _) in section.table.iter() {
                if other.contains(&key) {
                    self.error(
                        section.key_offset(key),
                        &section.key_path(key),
                        format!("`{key}` applies only to type = \"{other_name}\""),
                    );
                }
            }
        }
        let unknown_check: Vec<&[&str]> = vec![STORAGE_COMMON_KEYS, own, other];
        self.check_keys(section, &unknown_check);

        let prefix = match self.string(section, "prefix") {
            Some(at) => match clean_prefix(&at.value) {
                Ok(prefix) => prefix,
                Err(message) => {
                    self.error(at.offset, &at.key, message);
                    String::new()
                }
            },
            None => String::new(),
        };

        match kind.as_deref() {
            Some("s3") => self.s3(section, prefix).map(StorageConfig::S3),
            Some(_) => {
                let path = if section.get("path").is_none() {
                    self.error(
                        section.offset,
                        "storage.path",
                        "missing; type = \"filesystem\" needs path = \"/var/backups/d1\"",
                    );
                    None
                } else {
                    self.path(section, "path")
                };
                Some(StorageConfig::Filesystem(FilesystemConfig {
                    path: path?.value,
                    prefix,
                }))
            }
            None => None,
        }
    }

    fn s3(&mut self, section: Section<'_>, prefix: String) -> Option<S3Config> {
        let bucket =
            self.required_string(section, "bucket", "type = \"s3\" needs bucket = \"NAME\"");
        let endpoint = match self.nonempty_string(section, "endpoint") {
            Some(at) => match http_url(&at.value) {
                Ok(url) => Some(url),
                Err(message) => {
                    self.error(at.offset, &at.key, message);
                    None
                }
            },
            None => None,
        };
        let region = self.nonempty_string(section, "region").map_or_else(
            || DEFAULT_REGION.to_string(),
            |at| at.value.trim().to_string(),
        );
        let force_path_style = self
            .boolean(section, "force_path_style")
            .is_some_and(|at| at.value);
        let access_key_id = self.secret(section, "access_key_id");
        let secret_access_key = self.secret(section, "secret_access_key");
        let half_set = matches!(
            (&access_key_id, &secret_access_key),
            (Ok(a), Ok(b)) if a.is_some() != b.is_some()
        );
        if half_set {
            let a = matches!(access_key_id, Ok(Some(_)));
            let (present, missing) = if a {
                ("access_key_id", "secret_access_key")
            } else {
                ("secret_access_key", "access_key_id")
            };
            self.error(
                section.offset,
                &section.key_path(missing),
                format!(
                    "missing; {present} is set, so set {missing} (or {missing}_file) too, or remove both \
                     to use the AWS default credential chain"
                ),
            );
        }
        let mut part_size = DEFAULT_PART_SIZE;
        if let Some((item, offset)) = section.get("part_size") {
            let key = section.key_path("part_size");
            let parsed = if let Some(n) = item.as_integer() {
                u64::try_from(n).map_err(|_| format!("{n} is negative"))
            } else if item.as_str().is_some() {
                let text = self.string_value(item, offset, &key);
                text.map(|t| units::parse_size(&t))
                    .unwrap_or(Err(String::new()))
            } else {
                self.wrong_type(offset, &key, "a size such as \"16MiB\"", item);
                Err(String::new())
            };
            match parsed {
                Ok(size) if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) => part_size = size,
                Ok(size) => self.error(
                    offset,
                    &key,
                    format!("{size} bytes is out of range: S3 parts must be between 5MiB and 5GiB"),
                ),
                Err(message) if !message.is_empty() => self.error(offset, &key, message),
                Err(_) => {}
            }
        }
        let max_parts_in_flight = self
            .integer_in(section, "max_parts_in_flight", 1, MAX_PARTS_IN_FLIGHT)
            .map_or(DEFAULT_MAX_PARTS_IN_FLIGHT, |at| at.value as usize);
        Some(S3Config {
            bucket: bucket?.value.trim().to_string(),
            prefix,
            endpoint,
            region,
            force_path_style,
            access_key_id: access_key_id.ok()?,
            secret_access_key: secret_access_key.ok()?,
            part_size: usize::try_from(part_size).ok()?,
            max_parts_in_flight,
        })
    }

    /// Reads the `[defaults]` keys present in `section` (the defaults table or one database).
    fn job_settings(&mut self, section: Section<'_>) -> JobSettings {
        let mut settings = JobSettings::default();
        if let Some(at) = self.string(section, "schedule") {
            match Schedule::parse(&at.value) {
                Ok(schedule) => settings.schedule = Some(with(at, schedule)),
                Err(message) => self.error(at.offset, &at.key, message),
            }
        }
        if let Some(at) = self.string(section, "window") {
            match at.value.parse::<Window>() {
                Ok(window) => settings.window = Some(with(at, window)),
                Err(message) => self.error(at.offset, &at.key, message),
            }
        }
        settings.jitter = self.duration(section, "jitter");
        if let Some(at) = self.string(section, "compression") {
            let kind = match at.value.as_str() {
                "zstd" => Some(CompressionKind::Zstd),
                "gzip" => Some(CompressionKind::Gzip),
                "none" => Some(CompressionKind::None),
                other => {
                    self.error(
                        at.offset,
                        &at.key,
                        format!(
                            "unknown compression {other:?}; use \"zstd\", \"gzip\" or \"none\""
                        ),
                    );
                    None
                }
            };
            settings.compression = kind.map(|kind| with(at, kind));
        }
        settings.compression_level = self.integer(section, "compression_level");
        if section.table.contains_key("retention") {
            let name = section.key_path("retention");
            settings.retention = self.retention(section, &name);
        }
        settings.no_data = self.boolean(section, "no_data");
        settings.tables = self.string_array(section, "tables");
        settings.migrations_dir = self.path(section, "migrations_dir");
        settings.migrations_table = self.nonempty_string(section, "migrations_table");
        settings
    }

    fn retention(&mut self, parent: Section<'_>, name: &str) -> Option<At<RetentionPolicy>> {
        let section = self.table(parent, "retention", name)?;
        self.check_keys(section, &[RETENTION_KEYS]);
        let mut policy = RetentionPolicy::default();
        let mut any_rule = false;
        let mut ok = true;
        for key in RETENTION_KEYS {
            if section.table.get(key).is_none() {
                continue;
            }
            any_rule = true;
            let Some(at) = self.integer(section, key) else {
                ok = false;
                continue;
            };
            let value = match u32::try_from(at.value) {
                Ok(value) => value,
                Err(_) if at.value < 0 => {
                    self.error(
                        at.offset,
                        &at.key,
                        format!("{} is negative; use a count of backups to keep, or 0 to turn the rule off", at.value),
                    );
                    ok = false;
                    continue;
                }
                Err(_) => {
                    self.error(at.offset, &at.key, format!("{} is too large", at.value));
                    ok = false;
                    continue;
                }
            };
            let rule = (value > 0).then_some(value);
            match *key {
                "keep_last" => policy.keep_last = rule,
                "keep_hourly" => policy.keep_hourly = rule,
                "keep_daily" => policy.keep_daily = rule,
                "keep_weekly" => policy.keep_weekly = rule,
                "keep_monthly" => policy.keep_monthly = rule,
                "keep_yearly" => policy.keep_yearly = rule,
                _ => unreachable!("RETENTION_KEYS lists exactly these"),
            }
        }
        if ok && any_rule && policy.is_empty() {
            self.error(
                section.offset,
                name,
                "impossible retention: every rule is 0, so it would keep nothing; set at least one \
                 keep_* above 0, or remove `retention` to keep every backup",
            );
            return None;
        }
        ok.then_some(At {
            value: policy,
            offset: section.offset,
            key: name.to_string(),
        })
    }

    /// Every `[[database]]`, with the offset of its header (for problems that concern it as a whole).
    fn databases(
        &mut self,
        root: Section<'_>,
        defaults: &JobSettings,
    ) -> Vec<(DatabaseConfig, usize)> {
        let tables: Vec<(usize, &dyn TableLike)> = match root.get("database") {
            None => {
                self.error(
                    0,
                    "database",
                    "no databases configured; add at least one [[database]] section with a name",
                );
                return Vec::new();
            }
            Some((Item::ArrayOfTables(array), _)) => array
                .iter()
                .map(|t| (t.span().map_or(0, |s| s.start), t as &dyn TableLike))
                .collect(),
            Some((Item::Value(Value::Array(array)), offset)) => {
                let mut tables = Vec::new();
                for value in array.iter() {
                    let at = value.span().map_or(offset, |s| s.start);
                    match value.as_inline_table() {
                        Some(t) => tables.push((at, t as &dyn TableLike)),
                        None => self.error(
                            at,
                            "database",
                            format!("expected a table, found {}", value.type_name()),
                        ),
                    }
                }
                tables
            }
            Some((Item::Table(_), offset)) => {
                self.error(
                    offset,
                    "database",
                    "write each database as [[database]] (double brackets), not [database]",
                );
                return Vec::new();
            }
            Some((item, offset)) => {
                self.wrong_type(offset, "database", "[[database]] tables", item);
                return Vec::new();
            }
        };
        if tables.is_empty() {
            self.error(
                0,
                "database",
                "no databases configured; add at least one [[database]]",
            );
        }
        let names: Vec<String> = (0..tables.len())
            .map(|i| format!("database[{i}]"))
            .collect();
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut databases = Vec::new();
        for ((offset, table), name) in tables.into_iter().zip(&names) {
            let section = Section {
                name,
                offset,
                table,
            };
            if let Some(db) = self.database(section, defaults, &mut seen) {
                databases.push((db, offset));
            }
        }
        databases
    }

    fn database(
        &mut self,
        section: Section<'_>,
        defaults: &JobSettings,
        seen: &mut Vec<(String, usize)>,
    ) -> Option<DatabaseConfig> {
        self.check_keys(section, &[DATABASE_OWN_KEYS, JOB_KEYS]);
        let name = self.required_string(section, "name", "set name = \"the D1 database name\"");
        let name = name.and_then(|at| {
            if at.value.chars().count() > MAX_DATABASE_NAME {
                self.error(
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
                self.error(
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
                let (line, _) = line_column(self.text, *first);
                self.error(
                    at.offset,
                    &at.key,
                    format!("duplicate database name {:?} (first defined on line {line})", at.value),
                );
                return None;
            }
            seen.push((at.value.clone(), at.offset));
            Some(at.value)
        });

        let id = self.nonempty_string(section, "id").and_then(|at| {
            match uuid::Uuid::parse_str(at.value.trim()) {
                Ok(uuid) => Some(with(at, uuid.hyphenated().to_string())),
                Err(_) => {
                    self.error(
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
        let sqlite_path = self.path(section, "sqlite_path");
        let source = match (id, sqlite_path) {
            (Some(id), Some(_)) => {
                self.error(
                    id.offset,
                    &id.key,
                    "`id` names a D1 database but `sqlite_path` makes this a SQLite source; remove one",
                );
                None
            }
            (_, Some(path)) => Some(Source::Sqlite { path: path.value }),
            // An invalid sqlite_path was reported; guessing "D1" would add a spurious [cloudflare] error.
            (_, None) if section.table.contains_key("sqlite_path") => None,
            (id, None) => {
                if self.first_d1.is_none() {
                    let label = name.clone().unwrap_or_else(|| section.name.to_string());
                    self.first_d1 = Some((label, section.offset));
                }
                // A present but invalid id was already reported.
                Some(Source::D1 {
                    id: id.map(|at| at.value),
                })
            }
        };

        let own = self.job_settings(section);
        let settings = own.or(defaults);
        let job = self.job(&settings, name.as_deref().unwrap_or("?"));
        let job = job?;
        Some(DatabaseConfig {
            name: name?,
            source: source?,
            schedule: job.schedule,
            window: job.window,
            jitter: job.jitter,
            compression: job.compression,
            retention: job.retention,
            no_data: job.no_data,
            tables: job.tables,
            migrations_dir: job.migrations_dir,
            migrations_table: job.migrations_table,
        })
    }

    /// Applies the built-in defaults and the checks that span several keys.
    fn job(&mut self, settings: &JobSettings, database: &str) -> Option<Job> {
        let schedule = match &settings.schedule {
            Some(at) => at.value.clone(),
            None => Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses"),
        };
        let window = settings.window.as_ref().map(|at| at.value);
        let jitter = settings
            .jitter
            .as_ref()
            .map_or(Duration::ZERO, |at| at.value);
        if let (Some(window_at), Some(jitter_at)) = (&settings.window, &settings.jitter) {
            let length = window_length(&window_at.value);
            if jitter_at.value > length {
                self.error(
                    jitter_at.offset,
                    &jitter_at.key,
                    format!(
                        "jitter {} is longer than the {} window ({}) of database {database:?}: a \
                         delayed start would fall outside it; shorten the jitter or widen the window",
                        humantime::format_duration(jitter_at.value),
                        humantime::format_duration(length),
                        window_at.key,
                    ),
                );
                return None;
            }
        }
        let kind = settings
            .compression
            .as_ref()
            .map_or(CompressionKind::Zstd, |at| at.value);
        let level = settings
            .compression_level
            .as_ref()
            .map_or(DEFAULT_COMPRESSION_LEVEL, |at| at.value);
        let (range, name) = match kind {
            CompressionKind::Zstd => (1..=22, "zstd"),
            CompressionKind::Gzip => (1..=9, "gzip"),
            CompressionKind::None => (i64::MIN..=i64::MAX, "none"),
        };
        if !range.contains(&level) {
            let at = settings
                .compression_level
                .as_ref()
                .expect("the default level is in range for every compression");
            self.error(
                at.offset,
                &at.key,
                format!(
                    "compression level {level} is out of range for {name} (used by database \
                     {database:?}): use {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        let compression = match kind {
            CompressionKind::Zstd => Compression::Zstd {
                level: level as i32,
            },
            CompressionKind::Gzip => Compression::Gzip {
                level: level as i32,
            },
            CompressionKind::None => Compression::None,
        };
        Some(Job {
            schedule,
            window,
            jitter,
            compression,
            retention: settings
                .retention
                .as_ref()
                .map_or_else(RetentionPolicy::default, |at| at.value),
            no_data: settings.no_data.as_ref().is_some_and(|at| at.value),
            tables: settings
                .tables
                .as_ref()
                .map_or_else(Vec::new, |at| at.value.clone()),
            migrations_dir: settings.migrations_dir.as_ref().map_or_else(
                || self.resolve(Path::new(DEFAULT_MIGRATIONS_DIR)),
                |at| at.value.clone(),
            ),
            migrations_table: settings.migrations_table.as_ref().map_or_else(
                || DEFAULT_MIGRATIONS_TABLE.to_string(),
                |at| at.value.clone(),
            ),
        })
    }
}

/// The per-database settings after defaults are applied.
struct Job {
    schedule: Schedule,
    window: Option<Window>,
    jitter: Duration,
    compression: Compression,
    retention: RetentionPolicy,
    no_data: bool,
    tables: Vec<String>,
    migrations_dir: PathBuf,
    migrations_table: String,
}

/// Re-wraps a parsed value with the position of the text it came from.
fn with<T, U>(at: At<T>, value: U) -> At<U> {
    At {
        value,
        offset: at.offset,
        key: at.key,
    }
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The known word closest to `word`, when it is close enough to be a likely typo.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// The longest database name accepted. D1 documents no limit; the name is a path segment in storage
/// (`<prefix>/<name>/<backup id>/...`), and 128 keeps it far below a file name's 255 bytes and an S3 key's
/// 1,024 while allowing any name a person would type.
pub const MAX_DATABASE_NAME: usize = 128;

/// D1 database names: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$` (also safe as a storage directory name: no `/`, no
/// `.` or `..`, no control characters).
fn is_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// How long a daily window lasts; windows whose end is before their start cross midnight.
fn window_length(window: &Window) -> Duration {
    let span = window.end - window.start;
    let seconds = if span < chrono::TimeDelta::zero() {
        span.num_seconds() + 24 * 3600
    } else {
        span.num_seconds()
    };
    Duration::from_secs(seconds as u64)
}

/// An `http://` or `https://` URL without trailing slashes.
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

/// A storage key prefix without leading or trailing slashes; `.`/`..`/empty segments are refused so a
/// prefix can never escape the filesystem root or collide with another.
fn clean_prefix(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "{text:?} is not a usable prefix: no empty, `.` or `..` segments (write e.g. \"prod\" or \
             \"team/prod\")"
        ));
    }
    Ok(trimmed.to_string())
}

/// The message for an unknown time zone, suggesting IANA names that end like the given one (`Berlin` ->
/// `Europe/Berlin`) or are spelled closely.
fn timezone_message(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let by_city: Vec<&str> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter(|name| {
            let name = name.to_ascii_lowercase();
            name == lower || name.rsplit('/').next() == Some(lower.as_str())
        })
        .take(3)
        .collect();
    let suggestion = if !by_city.is_empty() {
        Some(by_city.join("\" or \""))
    } else {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        closest(text, &names).map(str::to_string)
    };
    match suggestion {
        Some(s) => format!("unknown time zone {text:?}; did you mean \"{s}\"?"),
        None => format!(
            "unknown time zone {text:?}; use an IANA name such as \"UTC\", \"Europe/Berlin\" or \
             \"America/New_York\""
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        // Proves line/column are 1-based and columns count characters, not bytes.
        let text = "a = 1\nb = \"é\" x";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        let x = text.find('x').unwrap();
        assert_eq!(line_column(text, x), (2, 9));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        // Proves a near miss gets a suggestion and an unrelated word does not.
        assert_eq!(closest("retension", JOB_KEYS), Some("retention"));
        assert_eq!(closest("shedule", JOB_KEYS), Some("schedule"));
        assert_eq!(closest("frobnicate", JOB_KEYS), None);
        assert!(timezone_message("Berlin").contains("Europe/Berlin"));
    }

    #[test]
    fn window_length_crosses_midnight() {
        // Proves a window ending before it starts lasts until the next day.
        let w: Window = "23:00-01:00".parse().unwrap();
        assert_eq!(window_length(&w), Duration::from_secs(2 * 3600));
        let w: Window = "02:00-05:00".parse().unwrap();
        assert_eq!(window_length(&w), Duration::from_secs(3 * 3600));
    }
}
