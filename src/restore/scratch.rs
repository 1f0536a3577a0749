//! Local scratch files of restore and verify, made so that a killed run leaves nothing that piles up:
//!
//! - the downloaded dump is an unnamed file ([`unnamed`]): unlinked at once, so it disappears with the
//!   process whatever happens;
//! - where a name is unavoidable (the SQLite database being loaded, the file handed to D1's import), a
//!   [`ScratchFile`] carries a recognizable prefix and an exclusive lock (`flock`) for as long as its owner
//!   lives. [`sweep`], run when the same operation starts again, removes every file with that prefix that
//!   nobody holds locked: the leftovers of killed runs, never the file of a run still going.
//!
//! Scratch files are created with mode 0600 (the output of `restore --to-sqlite` excepted, see
//! [`ScratchFile::create`]): a spooled dump is the whole database in plain text.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Mode of every spooled dump and scratch database: readable by d1vault's user only.
pub const PRIVATE: u32 = 0o600;

/// Creates an unnamed, private (0600) file in `dir`, for bytes that only this process reads back.
pub fn unnamed(dir: &Path) -> io::Result<File> {
    // Linux makes it with O_TMPFILE (never named) and the umask's mode: narrowed at once.
    let file = tempfile::tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(PRIVATE))?;
    }
    Ok(file)
}

/// A named scratch file, locked by this process while the value lives and removed when it is dropped
/// (unless [`ScratchFile::keep`] took it over).
#[derive(Debug)]
pub struct ScratchFile {
    path: PathBuf,
    /// Open for the lock's sake: the lock lasts as long as this descriptor.
    file: File,
    remove_on_drop: bool,
}

impl ScratchFile {
    /// Creates `dir/PREFIX<random>SUFFIX` (exclusively: an existing name or a link planted there is never
    /// opened) with `mode` (reduced by the umask) and locks it. The random part makes names unguessable
    /// and unique across processes, hosts and PID namespaces.
    pub fn create(dir: &Path, prefix: &str, suffix: &str, mode: u32) -> io::Result<ScratchFile> {
        // A sweeper that saw the file before we locked it may have taken the lock and removed the name;
        // then the name no longer leads to our file, and we start again with a new one.
        for _ in 0..8 {
            let mut builder = tempfile::Builder::new();
            builder.prefix(prefix).suffix(suffix);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                builder.permissions(std::fs::Permissions::from_mode(mode));
            }
            #[cfg(not(unix))]
            let _ = mode;
            let named = builder.tempfile_in(dir)?;
            let (file, path) = named.keep().map_err(|e| e.error)?;
            if try_lock(&file) && same_file(&file, &path) {
                return Ok(ScratchFile {
                    path,
                    file,
                    remove_on_drop: true,
                });
            }
        }
        Err(io::Error::other(format!(
            "could not create a scratch file in {}: another process removed each one at once",
            dir.display()
        )))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (writable), for writing through this process's own descriptor.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives up removing the file on drop: its name has been moved elsewhere (a restored database
    /// renamed into place). The lock is released when this returns.
    pub fn keep(mut self) {
        self.remove_on_drop = false;
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            for side in SIDE_FILES {
                let _ = std::fs::remove_file(with_suffix(&self.path, side));
            }
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What SQLite may create next to a database file, removed with it.
const SIDE_FILES: [&str; 3] = ["-journal", "-wal", "-shm"];

/// Removes the leftovers of killed runs in `dir`: every regular file named `PREFIX*` that no live
/// [`ScratchFile`] holds locked (with SQLite's side files), and side files whose database is gone.
/// Returns the paths removed. A missing `dir` has nothing to sweep.
pub fn sweep(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        // Only regular files we could have made: never follow a link or touch a directory.
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        if let Some(main) = SIDE_FILES.iter().find_map(|s| name.strip_suffix(s)) {
            // A side file goes with its database: removed here only when that database is gone.
            if !dir.join(main).exists() && std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if !try_lock(&file) || !same_file(&file, &path) {
            continue; // a live run's file (or already replaced)
        }
        for side in SIDE_FILES {
            let _ = std::fs::remove_file(with_suffix(&path, side));
        }
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes an exclusive lock on `file` without waiting (`flock` on Linux, as the daemon's `state_dir` lock
/// in [`crate::catalog`]); `false` when another open file holds it, or the system cannot lock.
fn try_lock(file: &File) -> bool {
    // `File::try_lock` is std since 1.89; see the note on the declared rust-version in `catalog.rs`.
    #[allow(clippy::incompatible_msrv)]
    let locked = file.try_lock();
    locked.is_ok()
}

/// Whether `path` still names the open `file` (not a file put in its place since).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_unlocked_leftovers_and_keeps_live_files() {
        let dir = tempfile::tempdir().unwrap();
        let live = ScratchFile::create(dir.path(), "d1vault-test-", ".sqlite", PRIVATE).unwrap();
        let dead = ScratchFile::create(dir.path(), "d1vault-test-", ".sqlite", PRIVATE).unwrap();
        let dead_path = dead.path().to_path_buf();
        // A killed process: its lock went away with its descriptor, its file stayed.
        dead.keep();
        std::fs::write(with_suffix(&dead_path, "-journal"), b"j").unwrap();
        std::fs::write(dir.path().join("d1vault-test-gone.sqlite-wal"), b"w").unwrap();
        std::fs::write(dir.path().join("someone-else.sqlite"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("d1vault-test-link")).unwrap();

        let removed = sweep(dir.path(), "d1vault-test-");
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!dead_path.exists());
        assert!(!with_suffix(&dead_path, "-journal").exists());
        assert!(live.path().exists(), "a live run's file was swept");
        assert!(dir.path().join("someone-else.sqlite").exists());
        assert!(dir.path().join("d1vault-test-link").is_symlink());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "a scratch file outlived its owner");
    }

    #[cfg(unix)]
    #[test]
    fn scratch_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = ScratchFile::create(dir.path(), "d1vault-test-", "", PRIVATE).unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let unnamed = unnamed(dir.path()).unwrap();
        assert_eq!(
            unnamed.metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
