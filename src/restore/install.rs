//! A `--to-sqlite` restore: the backup is loaded into a temporary file next to the target (so that the
//! rename is atomic and the space needed is where the user chose to put the database), checked, and only
//! then renamed into place, with the mode of the file it replaces and an fsync of the directory.

use std::path::{Path, PathBuf};

use super::scratch::{self, ScratchFile};
use super::sqlite::{self, TargetPath};
use super::{Progress, RestoreError, download_and_prove};
use crate::repository::manifest::Manifest;
use crate::storage::Storage;

/// A `--to-sqlite` restore whose target path was checked ([`sqlite::check_target`]) and that is ready to
/// run.
#[derive(Debug)]
pub struct SqliteInstall {
    path: PathBuf,
    target: TargetPath,
    replace: bool,
}

/// What a `--to-sqlite` restore loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteRestored {
    /// The manifest's tables, found in the restored file.
    pub tables: usize,
    /// Rows in those tables.
    pub rows: u64,
}

impl SqliteInstall {
    /// Checks what is at `path` and whether the restore may write there (an existing regular file only
    /// with `replace`); nothing is changed.
    pub fn check(path: &Path, replace: bool) -> Result<SqliteInstall, RestoreError> {
        let target = sqlite::check_target(path, replace)?;
        Ok(SqliteInstall {
            path: path.to_path_buf(),
            target,
            replace,
        })
    }

    /// Whether the restore replaces an existing file (the caller asks for confirmation first).
    pub fn replaces_file(&self) -> bool {
        self.target == TargetPath::ReplaceRegularFile
    }

    /// The target path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Downloads and proves `manifest`'s backup, loads it into a temporary file next to the target,
    /// checks it, and moves it into place. On any error before the rename, the target is as it was.
    pub async fn run(
        self,
        storage: &dyn Storage,
        manifest: &Manifest,
        identities: Option<&crate::encryption::Identities>,
        progress: &mut Progress<'_>,
    ) -> Result<SqliteRestored, RestoreError> {
        let path = self.path.as_path();
        let dir = sqlite::parent_dir(path);
        let prefix = sqlite::temporary_prefix(path);
        scratch::sweep(dir, &prefix);
        let dump = download_and_prove(storage, manifest, identities, dir, progress).await?;
        // Mode 0666 less the umask, as SQLite would create it; a replaced file's mode is kept below.
        let temp = ScratchFile::create(dir, &prefix, "", 0o666).map_err(|source| {
            RestoreError::TemporaryFile {
                dir: dir.to_path_buf(),
                source,
            }
        })?;
        let report = sqlite::load_proven(dump, manifest, temp.path(), progress).await?;
        if report.integrity != ["ok"] {
            return Err(RestoreError::IntegrityFailed {
                problems: report.integrity,
            });
        }
        // What is at the path now must still be what was checked before the restore.
        if sqlite::check_target(path, self.replace)? != self.target {
            return Err(RestoreError::TargetAppeared {
                path: path.to_path_buf(),
            });
        }
        let install = keep_mode_of(path, self.target, temp.path())
            .and_then(|()| temp.file().sync_all())
            .and_then(|()| std::fs::rename(temp.path(), path));
        if install.is_ok() {
            temp.keep(); // the name is the restored database's now
        }
        install
            .and_then(|()| sync_parent(path))
            .map_err(|source| RestoreError::Install {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SqliteRestored {
            tables: report.row_counts.len(),
            rows: report.row_counts.iter().filter_map(|(_, n)| *n).sum(),
        })
    }
}

/// Gives the restored file `temp` the mode of the regular file it replaces, so that a database readable
/// only by its owner does not become readable by all.
fn keep_mode_of(path: &Path, target: TargetPath, temp: &Path) -> std::io::Result<()> {
    if target == TargetPath::ReplaceRegularFile {
        let permissions = std::fs::symlink_metadata(path)?.permissions();
        std::fs::set_permissions(temp, permissions)?;
    }
    Ok(())
}

/// Makes the rename durable: fsync of the directory the file is in.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(sqlite::parent_dir(path))?.sync_all()
}
