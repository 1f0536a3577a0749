//! Reporting problems: each with its line, column and dotted key, unknown keys with the closest known key
//! suggested, and the final list sorted, deduplicated and scrubbed of secret values.

use toml_edit::Item;

use super::Reader;
use super::section::Section;
use crate::config::{ConfigError, ConfigErrors};

impl Reader<'_> {
    /// Records a problem at byte `offset` of the file.
    pub(crate) fn error(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let error = self.error_at(offset, key, message);
        self.errors.push(error);
    }

    /// A problem at byte `offset` of the file, not recorded.
    pub(crate) fn error_at(
        &self,
        offset: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Records a problem of the environment rather than of the file (a variable not set, a secret file
    /// missing or empty): kept apart while [`Reader::deferring`], an ordinary error otherwise.
    pub(crate) fn unresolved_error(
        &mut self,
        offset: usize,
        key: &str,
        message: impl Into<String>,
    ) {
        let error = self.error_at(offset, key, message);
        if self.deferring {
            self.unresolved.push(error);
        } else {
            self.errors.push(error);
        }
    }

    /// Runs `read` with the environment's problems kept apart ([`Reader::unresolved_error`]): the
    /// `[cloudflare]` credentials, which only the commands that talk to D1 need.
    pub(crate) fn deferring<T>(&mut self, read: impl FnOnce(&mut Self) -> T) -> T {
        self.deferring = true;
        let value = read(self);
        self.deferring = false;
        value
    }

    /// The environment's problems kept apart by [`Reader::deferring`], scrubbed like [`Reader::finish`];
    /// `None` when there were none. Only asked when the file has no error of its own.
    pub(crate) fn take_unresolved(&mut self) -> Option<ConfigErrors> {
        let unresolved = std::mem::take(&mut self.unresolved);
        (!unresolved.is_empty()).then(|| self.scrub(unresolved))
    }

    /// Whether any problem was recorded so far.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The 1-based line of byte `offset`, for messages that point at another place in the file.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        line_column(self.text, offset).0
    }

    /// The collected errors in file order, duplicates (a `[defaults]` problem seen through several
    /// databases) removed, and any secret value that slipped into a message redacted.
    pub(crate) fn finish(mut self) -> ConfigErrors {
        let mut errors = std::mem::take(&mut self.errors);
        errors.append(&mut self.unresolved);
        self.scrub(errors)
    }

    /// `errors` in file order, deduplicated, with secret values redacted.
    fn scrub(&self, errors: Vec<ConfigError>) -> ConfigErrors {
        let mut errors = ConfigErrors::in_file_order(errors);
        for error in &mut errors.0 {
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
        errors
    }

    /// Reports a value of the wrong TOML type.
    pub(crate) fn wrong_type(&mut self, offset: usize, key: &str, expected: &str, item: &Item) {
        let found = item.type_name();
        self.error(offset, key, format!("expected {expected}, found {found}"));
    }

    /// Reports every key of `section` that its schema does not accept, suggesting the closest known key.
    pub(crate) fn check_keys(&mut self, section: Section<'_>) {
        self.check_keys_among(section, section.schema.keys);
    }

    /// Reports every key of `section` not in any of `allowed` (listed and suggested in that order),
    /// suggesting the closest known key.
    pub(crate) fn check_keys_among(&mut self, section: Section<'_>, allowed: &[&[&str]]) {
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
pub(crate) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
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
}
