//! Filesystem storage: one file per key under a root directory.
//!
//! A streamed object is written to a hidden temporary file next to its destination
//! (`.<name>.d1vault-tmp-<random>`, mode 0600), fsynced, renamed into place (hard-linked for an exclusive
//! create, which fails if the name is taken) and the directory fsynced, so a reader never sees a partial
//! object and a crash leaves at most a temporary file that listings skip and
//! [`Storage::abort_stale_uploads`] removes. The root directory itself is never created: a missing root
//! (deleted, or a volume that is not mounted) fails every operation with a permanent error.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{ObjectInfo, ObjectReader, Storage, StorageError};

/// Marks temporary files; listings skip names containing it and stale-upload cleanup removes them.
const TEMP_MARKER: &str = ".d1vault-tmp-";

/// Bytes read from the body per write; large enough to keep syscalls cheap, small enough to stay bounded.
const COPY_BUFFER: usize = 256 * 1024;

/// Backups stored as plain files under a directory (a local disk, NFS, a mounted volume).
#[derive(Debug, Clone)]
pub struct FilesystemStorage {
    root: PathBuf,
    /// See [`super::READ_IDLE_TIMEOUT`]: a hung mount (NFS, a dead volume) fails a read instead of holding it.
    read_idle: std::time::Duration,
}

impl FilesystemStorage {
    /// A store rooted at `root`, which must exist: it is never created (see the module docs). Nothing is
    /// touched until the first operation; [`Storage::check`] reports a missing or unusable directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FilesystemStorage {
            root: root.into(),
            read_idle: super::READ_IDLE_TIMEOUT,
        }
    }

    /// Replaces the read idle timeout (tests use a short one).
    pub fn with_read_idle_timeout(mut self, limit: std::time::Duration) -> Self {
        self.read_idle = limit;
        self
    }

    /// The path of `key`, after refusing keys that could escape the root or collide with temporary files.
    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        let valid = !key.is_empty()
            && !key.contains('\\')
            && !key.contains(TEMP_MARKER)
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !valid {
            return Err(StorageError::permanent(format!(
                "invalid storage key {key:?}: keys are relative `/`-separated paths without empty, `.` or `..` parts"
            )));
        }
        Ok(self.root.join(key))
    }

    /// Creates `dir` and any missing directories between it and the root, but never the root itself: a
    /// missing root (a deleted directory, an unmounted volume) is a permanent error, so that backups never
    /// silently fill the disk the mount point lives on. A directory removed by a concurrent delete between
    /// two steps is created again; the root vanishing is reported.
    async fn create_below_root(&self, dir: &Path) -> Result<(), StorageError> {
        let Ok(relative) = dir.strip_prefix(&self.root) else {
            return Err(StorageError::permanent(format!(
                "{} is outside the backup directory {}",
                dir.display(),
                self.root.display()
            )));
        };
        let mut attempt = 0;
        'climb: loop {
            attempt += 1;
            self.require_root().await?;
            let mut path = self.root.clone();
            for part in relative.components() {
                path.push(part);
                match tokio::fs::create_dir(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    // The parent vanished: the root (reported as such by `require_root`), or a directory
                    // that a concurrent delete emptied and removed (climb again, once).
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue 'climb,
                    Err(e) => {
                        self.require_root().await?;
                        return Err(io_error(
                            &format!("creating directory {}", path.display()),
                            &e,
                        ));
                    }
                }
            }
            return Ok(());
        }
    }

    /// Streams `body` into `key` through a temporary file. `exclusive`: the final step refuses to replace
    /// an existing object (a hard link, which fails if the name exists, instead of a rename).
    async fn write(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        exclusive: bool,
    ) -> Result<u64, StorageError> {
        let dest = self.path_of(key)?;
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let temp = temp_path_for(&dest);
        let where_ = format!("writing {key} in {}", self.root.display());
        if exclusive && tokio::fs::symlink_metadata(&dest).await.is_ok() {
            return Err(already_exists(key, &self.root));
        }

        // A concurrent delete may remove an emptied directory between the two calls: try twice.
        let mut attempt = 0;
        let mut file = loop {
            attempt += 1;
            self.create_below_root(&dir).await?;
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                // Dumps hold whole databases: readable by the owner only, whatever the umask.
                .mode(0o600)
                .open(&temp)
                .await
            {
                Ok(file) => break file,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                Err(e) => return Err(io_error(&where_, &e)),
            }
        };
        let mut guard = TempFileGuard {
            path: Some(temp.clone()),
        };

        let mut buf = vec![0u8; COPY_BUFFER];
        let mut total: u64 = 0;
        loop {
            let n = body
                .read(&mut buf)
                .await
                .map_err(|e| StorageError::retryable(format!("reading the body for {key}: {e}")))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .await
                .map_err(|e| io_error(&where_, &e))?;
            total += n as u64;
        }
        file.flush().await.map_err(|e| io_error(&where_, &e))?;
        file.sync_all().await.map_err(|e| io_error(&where_, &e))?;
        drop(file);

        if exclusive {
            publish_exclusive(&temp, &dest)
                .await
                .map_err(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => already_exists(key, &self.root),
                    _ => io_error(&where_, &e),
                })?;
            // The object is in place under its own name; the guard removes the temporary name.
            drop(guard);
        } else {
            tokio::fs::rename(&temp, &dest)
                .await
                .map_err(|e| io_error(&where_, &e))?;
            guard.disarm();
        }
        sync_dir(&dir).await.map_err(|e| io_error(&where_, &e))?;
        Ok(total)
    }

    /// Fails with an actionable message when the root directory is missing.
    async fn require_root(&self) -> Result<(), StorageError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StorageError::permanent(format!(
                "backup path {} is not a directory: fix storage.path",
                self.root.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::permanent(format!(
                "backup directory {} does not exist: create it or fix storage.path",
                self.root.display()
            ))),
            Err(e) => Err(io_error(
                &format!("reading backup directory {}", self.root.display()),
                &e,
            )),
        }
    }
}

/// Classifies an I/O error: a full disk, denied permissions or a read-only filesystem cannot be fixed by
/// retrying; interrupted or timed-out calls can.
fn io_error(what: &str, e: &io::Error) -> StorageError {
    use io::ErrorKind::*;
    match e.kind() {
        StorageFull | QuotaExceeded => StorageError::permanent(format!(
            "{what}: the disk is full ({e}): free space or point storage.path at a larger volume"
        )),
        PermissionDenied => StorageError::permanent(format!(
            "{what}: permission denied ({e}): check the owner and mode of the backup directory"
        )),
        ReadOnlyFilesystem => {
            StorageError::permanent(format!("{what}: the filesystem is read-only ({e})"))
        }
        NotFound => StorageError::not_found(format!("{what}: {e}")),
        Interrupted | TimedOut | WouldBlock | ResourceBusy | StaleNetworkFileHandle => {
            StorageError::retryable(format!("{what}: {e}"))
        }
        _ => StorageError::permanent(format!("{what}: {e}")),
    }
}

/// Removes the temporary file when a write fails or its future is dropped; disarmed after the rename.
struct TempFileGuard {
    path: Option<PathBuf>,
}

impl TempFileGuard {
    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Synchronous on purpose: Drop cannot await, and unlinking one file is quick.
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove temporary file");
            }
        }
    }
}

/// `.<name>.d1vault-tmp-<random>` in the destination's directory.
fn temp_path_for(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let random: u64 = rand::random();
    dest.with_file_name(format!(".{name}{TEMP_MARKER}{random:016x}"))
}

/// The error for an exclusive create whose key is taken.
fn already_exists(key: &str, root: &Path) -> StorageError {
    StorageError::already_exists(format!(
        "{key} already exists in {}: another writer created it first; nothing was replaced",
        root.display()
    ))
}

/// Gives the finished temporary file its final name without ever replacing an existing file: a hard link
/// fails with `AlreadyExists` when the name is taken, atomically, also on NFS. On a filesystem without hard
/// links (FAT, some FUSE and SMB mounts) it falls back to a check, then a rename, and says once at WARN that
/// two writers racing for one name cannot be told apart there.
async fn publish_exclusive(temp: &Path, dest: &Path) -> io::Result<()> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let (temp, dest) = (temp.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || match std::fs::hard_link(&temp, &dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // EPERM is how Linux's FAT and several FUSE filesystems say "no hard links"; EOPNOTSUPP others.
        Err(e)
            if e.kind() == io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(1 | 95)) =>
        {
            WARNED.call_once(|| {
                tracing::warn!(
                    path = %dest.display(),
                    error = %e,
                    "this filesystem cannot hard-link: backup ids are checked before writing instead of \
                     claimed exclusively, so two writers racing for one id are not detected"
                )
            });
            if std::fs::symlink_metadata(&dest).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(&temp, &dest)
        }
        Err(e) => Err(e),
    })
    .await
    .map_err(io::Error::other)?
}

/// Makes a rename durable: fsync of the directory that holds the new entry.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// One regular file found by a walk, with its path relative to the root as a `/`-separated key.
struct WalkEntry {
    key: String,
    path: PathBuf,
    meta: std::fs::Metadata,
}

/// Walks `root` recursively (blocking), starting at the directory part of `prefix`, and returns every
/// regular file whose key starts with `prefix`. `temp` selects temporary files instead of objects. A missing
/// start directory yields an empty list; any other error fails the whole walk.
fn walk(root: &Path, prefix: &str, temp: bool) -> io::Result<Vec<WalkEntry>> {
    let start_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let start_rel = start_rel.trim_end_matches('/');
    let start = if start_rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(start_rel)
    };
    let mut out = Vec::new();
    let mut stack = vec![(start, start_rel.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound && rel == start_rel => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                // Not UTF-8: never written by d1vault, so not a key.
                continue;
            };
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                // Descend only where keys under the prefix can be.
                if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                    stack.push((entry.path(), key));
                }
            } else if file_type.is_file()
                && key.starts_with(prefix)
                && name.contains(TEMP_MARKER) == temp
            {
                out.push(WalkEntry {
                    key,
                    path: entry.path(),
                    meta: entry.metadata()?,
                });
            }
        }
    }
    Ok(out)
}

fn modified(meta: &std::fs::Metadata) -> Option<DateTime<Utc>> {
    meta.modified().ok().map(DateTime::<Utc>::from)
}

#[async_trait]
impl Storage for FilesystemStorage {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError> {
        self.write(key, body, false).await
    }

    async fn create_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError> {
        self.write(key, body, true).await
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let mut reader = bytes.as_slice();
        self.put_stream(key, &mut reader).await.map(|_| ())
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectReader, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Box::new(crate::idle::IdleTimeout::new(
                file,
                self.read_idle,
                format!("{key} in {}", self.root.display()),
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::not_found(format!(
                "no object {key} in {}",
                self.root.display()
            ))),
            Err(e) => Err(io_error(
                &format!("reading {key} in {}", self.root.display()),
                &e,
            )),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.require_root().await?;
        let root = self.root.clone();
        let prefix_owned = prefix.to_string();
        let entries = tokio::task::spawn_blocking(move || walk(&root, &prefix_owned, false))
            .await
            .map_err(|e| StorageError::permanent(format!("listing task failed: {e}")))?
            .map_err(|e| {
                io_error(
                    &format!("listing {prefix:?} in {}", self.root.display()),
                    &e,
                )
            })?;
        Ok(entries
            .into_iter()
            .map(|entry| ObjectInfo {
                size: entry.meta.len(),
                last_modified: modified(&entry.meta),
                key: entry.key,
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(io_error(
                    &format!("deleting {key} in {}", self.root.display()),
                    &e,
                ));
            }
        }
        // Remove directories the delete emptied (a pruned backup's directory), never the root itself.
        // `remove_dir` fails on a non-empty directory, which ends the climb.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) {
                break;
            }
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    async fn abort_stale_uploads(
        &self,
        prefix: &str,
        older_than: DateTime<Utc>,
    ) -> Result<usize, StorageError> {
        self.require_root().await?;
        let root = self.root.clone();
        let cutoff = SystemTime::from(older_than);
        let prefix_dir = match prefix.rfind('/') {
            Some(i) => prefix[..=i].to_string(),
            None => String::new(),
        };
        // Temporary names do not start with the object's name, so walk the prefix's directory and match
        // on the key the temporary file would have become.
        let prefix_owned = prefix.to_string();
        let removed = tokio::task::spawn_blocking(move || -> io::Result<usize> {
            let mut removed = 0;
            for entry in walk(&root, &prefix_dir, true)? {
                let target = target_key_of_temp(&entry.key);
                if !target.is_some_and(|t| t.starts_with(&prefix_owned)) {
                    continue;
                }
                let stale = entry.meta.modified().map(|m| m < cutoff).unwrap_or(false);
                if stale {
                    match std::fs::remove_file(&entry.path) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| StorageError::permanent(format!("cleanup task failed: {e}")))?
        .map_err(|e| {
            io_error(
                &format!("removing stale temporary files in {}", self.root.display()),
                &e,
            )
        })?;
        Ok(removed)
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.require_root().await?;
        // Prove the directory is writable with a probe file that carries the temporary marker, so a crash
        // between create and remove leaves something stale cleanup recognises.
        let probe = self
            .root
            .join(format!(".check{TEMP_MARKER}{:016x}", rand::random::<u64>()));
        let where_ = format!("writing to backup directory {}", self.root.display());
        let guard = TempFileGuard {
            path: Some(probe.clone()),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .await
            .map_err(|e| io_error(&where_, &e))?;
        file.write_all(b"d1vault write check")
            .await
            .map_err(|e| io_error(&where_, &e))?;
        drop(file);
        drop(guard);
        Ok(())
    }
}

/// The key a temporary file would have been renamed to: `a/b/.name.d1vault-tmp-123` -> `a/b/name`.
fn target_key_of_temp(temp_key: &str) -> Option<String> {
    let (dir, name) = match temp_key.rfind('/') {
        Some(i) => (&temp_key[..=i], &temp_key[i + 1..]),
        None => ("", temp_key),
    };
    let name = name.strip_prefix('.')?;
    let end = name.find(TEMP_MARKER)?;
    Some(format!("{dir}{}", &name[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_map_back_to_their_target_key() {
        // Proves stale cleanup can match a temporary file against a key prefix.
        let temp = temp_path_for(Path::new("/r/prod/db/x/dump.sql.zst"));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".dump.sql.zst.d1vault-tmp-"), "{name}");
        assert_eq!(
            target_key_of_temp(&format!("prod/db/x/{name}")).as_deref(),
            Some("prod/db/x/dump.sql.zst")
        );
        assert_eq!(target_key_of_temp("prod/db/x/dump.sql"), None);
    }

    #[test]
    fn keys_that_escape_the_root_are_refused() {
        // Proves a key cannot point outside the root or at a temporary file.
        let fs = FilesystemStorage::new("/r");
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "./a",
            "a/",
            "a\\b",
            "a/.b.d1vault-tmp-1",
        ] {
            assert!(fs.path_of(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(fs.path_of("a/b.sql").unwrap(), PathBuf::from("/r/a/b.sql"));
    }
}
