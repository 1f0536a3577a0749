//! `check-config`'s preflight: the local paths the file names are checked against the filesystem, without
//! changing anything (nothing is created, opened for writing or locked). A `sqlite_path` must be a SQLite
//! file, a filesystem `storage.path` a writable directory, and a `state_dir` written in the file a
//! writable directory or one that can be created. Plain [`super::load`] never checks them: the daemon and
//! the other commands start with a missing local file and report it per backup.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, ConfigErrors};

/// What a local path named in the file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// `sqlite_path`: an existing SQLite database file.
    SqliteFile,
    /// A filesystem `storage.path`: an existing writable directory (d1vault never creates it).
    StorageRoot,
    /// `daemon.state_dir`: a writable directory, or one whose nearest existing parent is writable.
    StateDir,
}

/// One path to check, with where the file names it (`site`: file, line, column and key; no message yet).
#[derive(Debug, Clone)]
pub(crate) struct PathCheck {
    /// The path, resolved against the config file's directory.
    pub(crate) path: PathBuf,
    /// What it must be.
    pub(crate) expect: Expect,
    /// The position and key of the value in the file.
    pub(crate) site: ConfigError,
}

/// The header every SQLite 3 database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Checks every local path of `config` against the filesystem, reading only; the problems found, in file
/// order, in the loader's `FILE:LINE:COLUMN: KEY: MESSAGE` form.
pub fn preflight(config: &Config) -> ConfigErrors {
    let errors: Vec<ConfigError> = config
        .preflight
        .iter()
        .filter_map(|check| {
            problem(&check.path, check.expect).map(|message| ConfigError {
                message,
                ..check.site.clone()
            })
        })
        .collect();
    ConfigErrors::in_file_order(errors)
}

/// What is wrong with `path` for `expect`, if anything.
fn problem(path: &Path, expect: Expect) -> Option<String> {
    let shown = path.display();
    match expect {
        Expect::SqliteFile => {
            let mut file = match std::fs::File::open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Some(format!(
                        "{shown} does not exist; point sqlite_path at the SQLite file to back up"
                    ));
                }
                Err(e) => return Some(format!("cannot read {shown}: {e}")),
            };
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Some(format!(
                    "{shown} is not a file; sqlite_path names a SQLite file"
                ));
            }
            let mut header = [0u8; 16];
            match file.read_exact(&mut header) {
                Ok(()) if &header == SQLITE_HEADER => None,
                Ok(()) | Err(_) => Some(format!(
                    "{shown} is not a SQLite database (it does not start with \"SQLite format 3\")"
                )),
            }
        }
        Expect::StorageRoot => match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "{shown} does not exist; create it (d1vault never creates the storage root)"
            )),
            Err(e) => Some(format!("cannot read {shown}: {e}")),
            Ok(m) => writable_dir(path, &m),
        },
        Expect::StateDir => {
            let mut dir = path;
            loop {
                match std::fs::metadata(dir) {
                    Ok(m) if dir == path => return writable_dir(path, &m),
                    Ok(m) => {
                        return writable_dir(dir, &m).map(|why| {
                            format!("{shown} does not exist and cannot be created: {why}")
                        });
                    }
                    // Not there, or under a file: climb to the nearest thing that exists.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        match dir.parent() {
                            Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
                            _ => return Some(format!("{shown} does not exist")),
                        }
                    }
                    Err(e) => {
                        return Some(format!("cannot read {dir:?}: {e}", dir = dir.display()));
                    }
                }
            }
        }
    }
}

/// `None` when `path` (with metadata `m`) is a directory whose permissions allow writing; the reason
/// otherwise. Only the permission bits are read (no probe file is written): a directory without any
/// write bit is refused, one whose bits allow someone to write is accepted.
fn writable_dir(path: &Path, m: &std::fs::Metadata) -> Option<String> {
    if !m.is_dir() {
        return Some(format!("{} is not a directory", path.display()));
    }
    if m.permissions().readonly() {
        return Some(format!(
            "{} is not writable (no write permission)",
            path.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_expectation_accepts_the_right_path_and_refuses_the_wrong_one() {
        // Proves a SQLite file passes and a text file, a directory or a missing path does not; a storage
        // root must exist; a state_dir may be missing when its parent can hold it.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.sqlite");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let text = dir.path().join("a.txt");
        std::fs::write(&text, "hello, not a database at all").unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(problem(&db, Expect::SqliteFile), None);
        assert!(
            problem(&text, Expect::SqliteFile)
                .unwrap()
                .contains("not a SQLite database")
        );
        assert!(
            problem(dir.path(), Expect::SqliteFile)
                .unwrap()
                .contains("not a file")
        );
        assert!(
            problem(&missing, Expect::SqliteFile)
                .unwrap()
                .contains("does not exist")
        );
        assert_eq!(problem(dir.path(), Expect::StorageRoot), None);
        assert!(
            problem(&missing, Expect::StorageRoot)
                .unwrap()
                .contains("does not exist")
        );
        assert!(
            problem(&text, Expect::StorageRoot)
                .unwrap()
                .contains("not a directory")
        );
        assert_eq!(problem(&missing.join("deeper"), Expect::StateDir), None);
        assert!(
            problem(&text, Expect::StateDir)
                .unwrap()
                .contains("not a directory")
        );
        let under_file = problem(&text.join("state"), Expect::StateDir).unwrap();
        assert!(under_file.contains("cannot be created"), "{under_file}");
    }
}
