//! Finding the configuration file and turning its text into a [`Config`]: the entry points. The document
//! is parsed with `toml_edit`, which keeps the byte span of every key and value; the reader
//! (`super::reader`) reads typed values from it and collects every problem with its position, and the
//! schema (`super::schema`) says which tables and keys d1vault accepts and what they mean. A [`Config`] is
//! only returned when no problem at all was found.

use std::path::{Path, PathBuf};

use toml_edit::Document;

use super::reader::Reader;
use super::{Config, ConfigError, ConfigErrors, schema};

/// Where the configuration file is, following CONTRACT.md: `--config`, else `$D1VAULT_CONFIG`, else
/// `./d1vault.toml` when it exists, else the user's `$XDG_CONFIG_HOME/d1vault/d1vault.toml` (by default
/// `~/.config/d1vault/d1vault.toml`) when it exists, else `/etc/d1vault/d1vault.toml`.
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
    if let Some(user) = user_config_path().filter(|p| p.exists()) {
        return user;
    }
    PathBuf::from("/etc/d1vault/d1vault.toml")
}

/// `$XDG_CONFIG_HOME/d1vault/d1vault.toml`, or `$HOME/.config/d1vault/d1vault.toml` when that variable
/// is unset or not absolute (the XDG base directory rules).
fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("d1vault").join("d1vault.toml"))
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
    let mut reader = Reader::new(path, text, env);
    let parsed = Document::parse(text);
    let document = match parsed {
        Ok(document) => document,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().replace('\n', "; ");
            reader.error(offset, "", format!("TOML syntax error: {message}"));
            return Err(reader.finish());
        }
    };
    let config = schema::config(&mut reader, document.as_table());
    match config {
        Some(mut config) if !reader.has_errors() => {
            config.cloudflare_unavailable = reader.take_unresolved();
            config.preflight = reader.take_path_checks();
            Ok(config)
        }
        _ => Err(reader.finish()),
    }
}
