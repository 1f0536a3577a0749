//! The `state_dir` lock: one daemon per `state_dir`, because two would share a catalog and a store and
//! mark each other's running backups interrupted.

use std::path::{Path, PathBuf};

/// The daemon's lock file inside `state_dir`: it holds the locking daemon's pid.
pub const LOCK_FILE: &str = "daemon.lock";

/// Proof that this process is the one daemon on its `state_dir`: an exclusive lock on
/// `state_dir/daemon.lock`, released when dropped or when the process dies (however it dies). Two daemons on
/// one `state_dir` would share a catalog and a store and mark each other's running backups interrupted.
#[derive(Debug)]
pub struct StateDirLock {
    /// Holds the lock; never read.
    _file: std::fs::File,
    path: PathBuf,
}

impl StateDirLock {
    /// Where the lock lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the `state_dir` lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it: a second daemon on the same `state_dir`.
    #[error(
        "another d1vault daemon{} is running on state_dir {state_dir}: it holds the lock {path}; stop it, or \
         give this daemon a daemon.state_dir of its own",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// The contested `daemon.state_dir`.
        state_dir: PathBuf,
        /// Its lock file.
        path: PathBuf,
        /// The holder's pid as it wrote it, when readable.
        pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error(
        "cannot take the daemon lock {path}: {source}; check daemon.state_dir and its permissions"
    )]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Takes `state_dir/daemon.lock` (creating `state_dir` if needed) without waiting, and writes this
/// process's pid into it so that a second daemon can say who holds it.
pub fn lock_state_dir(state_dir: &Path) -> Result<StateDirLock, LockError> {
    use std::io::{Read, Seek, Write};
    let path = state_dir.join(LOCK_FILE);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io_err)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    // `File::try_lock` (flock on Linux) is std since 1.89. The declared rust-version (1.85) is already
    // below what the crate needs (let chains: 1.88); raising it is left to whoever owns the MSRV.
    #[allow(clippy::incompatible_msrv)]
    let locked = file.try_lock();
    match locked {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                state_dir: state_dir.to_path_buf(),
                path,
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(StateDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let lock = lock_state_dir(&state).unwrap();
        assert_eq!(lock.path(), state.join(LOCK_FILE));
        match lock_state_dir(&state) {
            Err(LockError::Held { pid, path, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, state.join(LOCK_FILE));
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        drop(lock);
        lock_state_dir(&state).expect("free again once the holder is gone");
    }
}
