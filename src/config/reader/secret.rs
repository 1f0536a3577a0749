//! Secrets: given inline (`key`, usually `"${VAR}"`) or in a file (`key_file`), and remembered so that no
//! problem message can ever carry one (CONTRACT.md: secrets are never logged).

use toml_edit::Item;

use super::Reader;
use super::section::Section;
use crate::secret::Secret;

impl Reader<'_> {
    /// A secret given either inline (`key`, `${VAR}` allowed) or in a file (`key_file`). Returns
    /// `Ok(None)` when neither is set, `Err(())` when a problem was reported.
    pub(crate) fn secret(&mut self, section: Section<'_>, key: &str) -> Result<Option<Secret>, ()> {
        let file_key = format!("{key}_file");
        // Both forms are read even when both are set, so that each value is known to `finish` and
        // redacted should it appear in another key's message.
        let inline = section
            .get(key)
            .map(|(item, offset)| self.inline_secret(item, offset, &section.key_path(key)));
        let from_file = section
            .contains(&file_key)
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

    /// A secret taken from the environment variable `name` (as wrangler reads `CLOUDFLARE_API_TOKEN`),
    /// remembered like every other so that no message carries it; `None` when unset or empty.
    pub(crate) fn env_secret(&mut self, name: &str) -> Option<Secret> {
        let value = self.env(name).filter(|v| !v.trim().is_empty())?;
        self.secrets.push(value.clone());
        Some(Secret::new(value))
    }

    /// A secret written in the file, usually as `"${VAR}"`.
    fn inline_secret(&mut self, item: &Item, offset: usize, key: &str) -> Result<Secret, ()> {
        let value = self.string_value(item, offset, key).ok_or(())?;
        if value.is_empty() {
            self.unresolved_error(
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
                self.unresolved_error(
                    at.offset,
                    &at.key,
                    format!("cannot read secret file {}: {e}", at.value.display()),
                );
                return Err(());
            }
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            self.unresolved_error(
                at.offset,
                &at.key,
                format!("secret file {} is empty", at.value.display()),
            );
            return Err(());
        }
        self.secrets.push(value.clone());
        Ok(Secret::new(value))
    }
}
