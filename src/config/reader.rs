//! A reader over a `toml_edit` document that knows nothing of d1vault's keys: typed values read from a
//! table together with the byte span they were written at, `${VAR}` expanded in every string, secrets
//! read inline or from `*_file` keys, and every problem collected with its line, column and dotted key
//! (see CONTRACT.md "Configuration"). Which tables and keys exist, and what they mean, is the schema's
//! business (`super::schema`).
//!
//! Each typed reader (`string`, `integer`, `duration`, ...) reports its own problem and returns `None`;
//! the caller substitutes the built-in default and carries on, so later keys are still checked.

mod expand;
mod report;
mod secret;
mod section;
mod units;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::config::ConfigError;
use crate::config::preflight::{Expect, PathCheck};

pub(crate) use report::closest;
pub(crate) use section::{At, Schema, Section, with};
pub(crate) use units::parse_size;

/// The walk over one document: collects errors and the secret values seen (so that no message can carry
/// one, even by accident).
pub(crate) struct Reader<'a> {
    file: &'a Path,
    text: &'a str,
    /// The directory relative paths are resolved against.
    base: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
    /// Set while reading the `[cloudflare]` credentials ([`Reader::deferring`]): a problem of the
    /// environment (a variable not set, a secret file missing or empty) then goes to `unresolved`.
    deferring: bool,
    /// The environment's problems met while `deferring`: they make `[cloudflare]` unavailable rather than
    /// the file invalid, so that commands that only read storage still run.
    unresolved: Vec<ConfigError>,
    secrets: Vec<String>,
    /// The local paths to check in `check-config`'s preflight, with where they were written.
    path_checks: Vec<PathCheck>,
    /// Every `${NAME}` substituted so far, as (name, value): the value is shown as `${NAME}` in messages,
    /// since a variable referenced from an ordinary key may still hold a secret.
    substitutions: Vec<(String, String)>,
}

impl<'a> Reader<'a> {
    /// A reader for `text`, read from `file` (named in messages; relative paths are resolved against its
    /// directory), taking environment variables from `env`.
    pub(crate) fn new(
        file: &'a Path,
        text: &'a str,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Reader {
            file,
            text,
            base: config_dir(file),
            env,
            errors: Vec::new(),
            deferring: false,
            unresolved: Vec::new(),
            secrets: Vec::new(),
            path_checks: Vec::new(),
            substitutions: Vec::new(),
        }
    }

    /// The file being read.
    pub(crate) fn file(&self) -> &'a Path {
        self.file
    }

    /// The environment variable `name`, from the environment the reader was given.
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// A sub-table (`[a.b]` or `b = { ... }`) under the key `schema.name`; `name` (its dotted name in
    /// messages) must outlive the section, hence passed in.
    pub(crate) fn table<'t>(
        &mut self,
        parent: Section<'t>,
        schema: &'static Schema,
        name: &'t str,
    ) -> Option<Section<'t>> {
        debug_assert!(
            parent.schema.tables.iter().any(|t| t.name == schema.name),
            "[{}] is read inside [{}] but not declared among its tables",
            schema.name,
            parent.schema.name
        );
        let (item, offset) = parent.get(schema.name)?;
        match item.as_table_like() {
            Some(table) => Some(Section {
                name,
                offset,
                table,
                schema,
            }),
            None => {
                self.wrong_type(offset, name, "a table", item);
                None
            }
        }
    }

    /// A string with `${VAR}` expanded; problems never quote the string (it may be a secret).
    pub(crate) fn string_value(&mut self, item: &Item, offset: usize, key: &str) -> Option<String> {
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
                    if problem.unset {
                        self.unresolved_error(offset, key, problem.message);
                    } else {
                        self.error(offset, key, problem.message);
                    }
                }
                None
            }
        }
    }

    /// A string, `${VAR}` expanded.
    pub(crate) fn string(&mut self, section: Section<'_>, key: &str) -> Option<At<String>> {
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
    pub(crate) fn nonempty_string(
        &mut self,
        section: Section<'_>,
        key: &str,
    ) -> Option<At<String>> {
        let at = self.string(section, key)?;
        if at.value.trim().is_empty() {
            self.error(at.offset, &at.key, "must not be empty");
            return None;
        }
        Some(at)
    }

    /// A string that must be present; a missing key is reported at the table header.
    pub(crate) fn required_string(
        &mut self,
        section: Section<'_>,
        key: &str,
        hint: &str,
    ) -> Option<At<String>> {
        if !section.contains(key) {
            self.error(
                section.offset,
                &section.key_path(key),
                format!("missing; {hint}"),
            );
            return None;
        }
        self.nonempty_string(section, key)
    }

    /// An integer.
    pub(crate) fn integer(&mut self, section: Section<'_>, key: &str) -> Option<At<i64>> {
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
    pub(crate) fn integer_in(
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

    /// A boolean.
    pub(crate) fn boolean(&mut self, section: Section<'_>, key: &str) -> Option<At<bool>> {
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
    pub(crate) fn duration(&mut self, section: Section<'_>, key: &str) -> Option<At<Duration>> {
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
    pub(crate) fn path(&mut self, section: Section<'_>, key: &str) -> Option<At<PathBuf>> {
        let at = self.nonempty_string(section, key)?;
        Some(At {
            value: self.resolve(Path::new(&at.value)),
            offset: at.offset,
            key: at.key,
        })
    }

    /// Remembers that the path `at` must be what `expect` says, for `check-config`'s preflight (the
    /// loader itself never looks at the filesystem for it).
    pub(crate) fn expect_path(&mut self, at: &At<PathBuf>, expect: Expect) {
        let site = self.error_at(at.offset, &at.key, String::new());
        self.path_checks.push(PathCheck {
            path: at.value.clone(),
            expect,
            site,
        });
    }

    /// The paths remembered by [`Reader::expect_path`].
    pub(crate) fn take_path_checks(&mut self) -> Vec<PathCheck> {
        std::mem::take(&mut self.path_checks)
    }

    /// `path` resolved against the config file's directory when relative.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
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
    pub(crate) fn string_array(
        &mut self,
        section: Section<'_>,
        key: &str,
    ) -> Option<At<Vec<String>>> {
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
}

/// The directory relative paths are resolved against: the config file's own directory.
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Reader<'_> {
    /// The tables of `key` written as `[[key]]` or as an inline array of tables, each with its offset, for
    /// the sections that repeat (`[[database]]`, `[[fleet]]`). Anything else is reported under `key` and
    /// gives `Err` with its offset; an element that is not a table is reported and left out.
    pub(crate) fn array_of_tables<'t>(
        &mut self,
        key: &str,
        item: &'t Item,
        offset: usize,
    ) -> Result<Vec<(usize, &'t dyn TableLike)>, usize> {
        match item {
            Item::ArrayOfTables(array) => Ok(array
                .iter()
                .map(|t| (t.span().map_or(0, |s| s.start), t as &dyn TableLike))
                .collect()),
            Item::Value(Value::Array(array)) => {
                let mut tables = Vec::new();
                for value in array.iter() {
                    let at = value.span().map_or(offset, |s| s.start);
                    match value.as_inline_table() {
                        Some(t) => tables.push((at, t as &dyn TableLike)),
                        None => self.error(
                            at,
                            key,
                            format!("expected a table, found {}", value.type_name()),
                        ),
                    }
                }
                Ok(tables)
            }
            Item::Table(_) => {
                self.error(
                    offset,
                    key,
                    format!("write each {key} as [[{key}]] (double brackets), not [{key}]"),
                );
                Err(offset)
            }
            item => {
                self.wrong_type(offset, key, &format!("[[{key}]] tables"), item);
                Err(offset)
            }
        }
    }
}
