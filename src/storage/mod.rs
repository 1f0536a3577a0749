//! Where backups live, behind one narrow async trait with a filesystem and an S3 implementation.
//!
//! Keys are `/`-separated relative paths (`prod/blog/20261129T030012Z/dump.sql.zst`); the layout itself is
//! decided in [`crate::repository::manifest`], not here. Implementations promise:
//! * a streamed object becomes visible only when its whole body was read without error; a failed read, a
//!   failed upload or a dropped future leaves nothing behind (temporary file removed, multipart aborted);
//! * a listing either returns every object under the prefix or an error, never a partial list;
//! * [`Storage::create_stream`] and [`Storage::create_bytes`] never replace an existing object: of two
//!   writers racing for one key, one wins and the other gets [`StorageErrorKind::AlreadyExists`] (where the
//!   store cannot guarantee it, the implementation says so once at WARN and checks before writing);
//! * every error says what failed, on which key, and whether trying again can help.

mod fs;
mod s3;

pub use fs::FilesystemStorage;
pub use s3::S3Storage;

use std::fmt;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a read of a stored object ([`Storage::get_stream`]: restore and verify downloads) may wait
/// without a byte before it fails as retryable ([`crate::idle::Stalled`]): a store that sends part of an
/// object and goes silent must not hold a restore, a verify or a daemon slot forever.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the configured store.
pub async fn open(config: &crate::config::StorageConfig) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(match config {
        crate::config::StorageConfig::S3(s3) => Arc::new(S3Storage::new(s3).await?),
        crate::config::StorageConfig::Filesystem(fs) => Arc::new(FilesystemStorage::new(&fs.path)),
    })
}

/// One stored object as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full storage key (prefix included).
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// When the store last wrote it, when it says.
    pub last_modified: Option<DateTime<Utc>>,
}

/// A boxed byte stream read from storage.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// The storage operations d1vault needs, and no more.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// A short human description for messages, e.g. `s3://d1-backups/prod` or `/var/backups/d1`.
    fn describe(&self) -> String;

    /// Streams `body` into `key` and returns the number of bytes stored. The object appears only if the
    /// body reached EOF without error and the upload succeeded; otherwise nothing is left behind. Dropping
    /// the returned future also leaves nothing behind (an S3 implementation aborts its multipart upload).
    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError>;

    /// Writes a small object (a manifest) in one request.
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError>;

    /// Like [`Storage::put_stream`], but only creates: when `key` already exists (or another writer
    /// creates it first), fails with [`StorageErrorKind::AlreadyExists`] and leaves the existing object as
    /// it was. Backups write their objects this way, so that two writers can never share a backup id and
    /// d1vault never overwrites an object it wrote.
    async fn create_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError>;

    /// Like [`Storage::put_bytes`], but only creates (see [`Storage::create_stream`]): a manifest is
    /// written this way.
    async fn create_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let mut reader = bytes.as_slice();
        self.create_stream(key, &mut reader).await.map(|_| ())
    }

    /// Opens `key` for a streaming read.
    async fn get_stream(&self, key: &str) -> Result<ObjectReader, StorageError>;

    /// Every object whose key starts with `prefix`, recursively, in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;

    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Aborts unfinished uploads under `prefix` that started before `older_than` (S3 multipart uploads,
    /// filesystem temporary files) and returns how many were cleared.
    async fn abort_stale_uploads(
        &self,
        prefix: &str,
        older_than: DateTime<Utc>,
    ) -> Result<usize, StorageError>;

    /// Checks that the store is reachable and writable in principle (the bucket or directory exists and the
    /// credentials are accepted), so that a misconfiguration fails before a D1 export blocks a database.
    async fn check(&self) -> Result<(), StorageError>;

    /// Writes a small object that the caller deletes again at once (the `check-config --online` write
    /// probe): like [`Storage::put_bytes`], but never under Object Lock, so that the delete can succeed.
    async fn put_probe(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.put_bytes(key, bytes).await
    }

    /// Until when `key` is under Object Lock retention (`storage.object_lock`), so that prune keeps a
    /// locked backup and says so instead of failing to delete it. `None` when the object is not locked or
    /// the store does not lock objects.
    async fn locked_until(&self, _key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        Ok(None)
    }

    /// Reads a whole small object (a manifest) into memory.
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let mut reader = self.get_stream(key).await?;
        let mut buf = Vec::new();
        reader
            .read_to_end(&mut buf)
            .await
            .map_err(|e| StorageError::retryable(format!("reading {key}: {e}")))?;
        Ok(buf)
    }
}

/// What kind of failure a storage operation met; decides whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The object does not exist.
    NotFound,
    /// Retrying will not help: missing bucket, denied credentials, bad configuration, disk full.
    Permanent,
    /// A transient failure: a dropped connection, a 5xx or `SlowDown`, a timeout.
    Retryable,
    /// An exclusive create found the key taken (another writer got there first); nothing was changed.
    AlreadyExists,
}

/// A storage failure with a message that names the operation, the key and, where known, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// What kind of failure, for retry decisions and for "not found" handling.
    pub kind: StorageErrorKind,
    /// What failed, the key, and what to do, phrased for the user.
    pub message: String,
}

impl StorageError {
    /// The object does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        StorageError {
            kind: StorageErrorKind::NotFound,
            message: message.into(),
        }
    }

    /// An exclusive create found the key already there.
    pub fn already_exists(message: impl Into<String>) -> Self {
        StorageError {
            kind: StorageErrorKind::AlreadyExists,
            message: message.into(),
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        StorageError {
            kind: StorageErrorKind::Permanent,
            message: message.into(),
        }
    }

    /// A transient failure.
    pub fn retryable(message: impl Into<String>) -> Self {
        StorageError {
            kind: StorageErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == StorageErrorKind::Retryable
    }
}
