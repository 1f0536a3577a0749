//! The problems a configuration file can have, as the loader reports them: each one precise enough for an
//! editor to jump to, all of them together in file order.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration file, precise enough for an editor to jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file the problem is in.
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

impl ConfigErrors {
    /// `errors` in file order (line, column, key, message) without repeats: how every list of problems
    /// is shown, whichever checks found them.
    pub fn in_file_order(mut errors: Vec<ConfigError>) -> ConfigErrors {
        errors.sort_by(|a, b| {
            (a.line, a.column, &a.key, &a.message).cmp(&(b.line, b.column, &b.key, &b.message))
        });
        errors.dedup();
        ConfigErrors(errors)
    }
}

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
