//! Reading a backup back: pick it by manifest, stream it out of storage while checking its size and
//! sha256, decompress, split into statements, and hand them to a target (a SQLite file or a spool file for
//! D1's import API) in an order that always re-imports:
//!
//! 1. tables (and everything else that is not a row or a late object), in dump order;
//! 2. rows, in dump order;
//! 3. indexes, triggers and views last, so that all tables exist before any row is inserted and triggers
//!    never fire on restored rows.
//!
//! D1's own dumps put each table's rows right after its CREATE, so a row can reference a table that does
//! not exist yet (workers-sdk #5683); the ordering above is why d1vault's restores work every time.

pub mod d1;
mod progress;
pub mod sqlite;

use std::io;

use tokio::io::{AsyncReadExt, BufReader};

use crate::backups::StoredBackup;
use crate::manifest::Manifest;
use crate::pipeline::compress::decompress;
use crate::pipeline::hashing::HashingReader;
use crate::sql::{StatementKind, StatementSplitter, classify};
use crate::storage::Storage;

pub use progress::Progress;

/// Where a statement goes in the restore order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Tables and other schema that rows depend on.
    Schema,
    /// `INSERT` rows (and `DELETE FROM sqlite_sequence`, which must follow the tables).
    Rows,
    /// Indexes, triggers and views.
    Late,
    /// Not replayed: transaction control and the dump header (the target supplies its own).
    Skip,
}

/// Decides a statement's phase. Pure, so the ordering rules are table-tested.
pub fn phase_of(kind: &StatementKind) -> Phase {
    match kind {
        StatementKind::Insert { .. } | StatementKind::DeleteFrom { .. } => Phase::Rows,
        StatementKind::CreateIndex { .. }
        | StatementKind::CreateTrigger { .. }
        | StatementKind::CreateView { .. } => Phase::Late,
        StatementKind::Transaction | StatementKind::Pragma => Phase::Skip,
        _ => Phase::Schema,
    }
}

/// Why a restore or verify failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Api(#[from] crate::cloudflare::ApiError),
    /// The stored object does not match its manifest: nothing on the target was changed.
    #[error("backup {backup_id} is damaged: {detail}; nothing on the target was changed")]
    Damaged { backup_id: String, detail: String },
    #[error("{0}")]
    Target(String),
    #[error("{0}")]
    Refused(String),
}

/// A run of complete statements with their kinds, as they appear in the dump.
pub type StatementBatch = Vec<(String, StatementKind)>;

/// Reads a backup's dump out of storage as statements, checking it against the manifest on the way.
/// `on_batch` receives the statements of each chunk read, in dump order; the caller orders and applies
/// them. Returns an error, after the whole object was read, if the stored or SQL bytes do not match the
/// manifest: callers must not make a change visible before this returns `Ok`.
pub async fn read_statements(
    storage: &dyn Storage,
    manifest: &Manifest,
    progress: &mut Progress,
    mut on_batch: impl AsyncFnMut(StatementBatch) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let damaged = |detail: String| RestoreError::Damaged {
        backup_id: manifest.backup_id.clone(),
        detail,
    };
    let object = storage.get_stream(&manifest.dump.key).await?;
    let mut stored = HashingReader::new(TaggedStorageReader(object));
    let mut raw = {
        let decoded = decompress(
            BufReader::with_capacity(256 * 1024, &mut stored),
            &manifest.dump.compression,
        )
        .map_err(damaged)?;
        HashingReader::new(decoded)
    };
    let mut splitter = StatementSplitter::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match raw.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => return Err(read_error(e, manifest)),
        };
        if n == 0 {
            break;
        }
        progress.advance(n as u64);
        let mut batch = StatementBatch::new();
        splitter
            .push(&buf[..n], &mut |stmt: &str| {
                batch.push((stmt.to_string(), classify(stmt)))
            })
            .map_err(|e| damaged(format!("the SQL is not valid UTF-8: {e}")))?;
        if !batch.is_empty() {
            on_batch(batch).await?;
        }
    }
    if let Some(tail) = splitter.finish().map_err(|e| damaged(e.to_string()))? {
        let head: String = tail.chars().take(60).collect();
        return Err(damaged(format!(
            "the dump ends inside a statement: {head:?}"
        )));
    }
    // Finishing the SQL hasher drops the decoder, which ends its borrow of the stored-bytes hasher.
    let (raw_size, raw_sha256) = raw.finish();
    let (size, sha256) = stored.finish();
    if size != manifest.dump.size || sha256 != manifest.dump.sha256 {
        return Err(damaged(format!(
            "the stored object has {size} bytes with sha256 {sha256}, the manifest says {} bytes with sha256 {}",
            manifest.dump.size, manifest.dump.sha256
        )));
    }
    if raw_size != manifest.dump.raw_size || raw_sha256 != manifest.dump.raw_sha256 {
        return Err(damaged(format!(
            "the SQL has {raw_size} bytes with sha256 {raw_sha256}, the manifest says {} bytes with sha256 {}",
            manifest.dump.raw_size, manifest.dump.raw_sha256
        )));
    }
    progress.finish();
    Ok(())
}

/// A read error is an outage when it came from the storage stream (tagged by [`StorageReadError`]), and
/// damage (a truncated or foreign object the decoder refused) otherwise.
fn read_error(e: io::Error, manifest: &Manifest) -> RestoreError {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<StorageReadError>())
    {
        return RestoreError::Storage(crate::storage::StorageError::retryable(format!(
            "reading backup {} from storage failed: {e}; the backup may be fine, try again",
            manifest.backup_id
        )));
    }
    RestoreError::Damaged {
        backup_id: manifest.backup_id.clone(),
        detail: format!("reading the {} dump failed: {e}", manifest.dump.compression),
    }
}

/// Marks an I/O error as coming from the storage stream rather than from decompression.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StorageReadError(io::Error);

/// Passes the stored object through, tagging its read errors with [`StorageReadError`].
struct TaggedStorageReader(crate::storage::ObjectReader);

impl tokio::io::AsyncRead for TaggedStorageReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll_read(cx, buf)
            .map_err(|e| io::Error::new(e.kind(), StorageReadError(e)))
    }
}

/// Picks the manifest to restore: `backup_id`, or the newest complete backup of `database`. A named backup
/// whose manifest exists but cannot be trusted is refused with the reason (see [`crate::backups`]).
pub async fn select_backup(
    storage: &dyn Storage,
    prefix: &str,
    database: &str,
    backup_id: Option<&str>,
) -> Result<Manifest, RestoreError> {
    let Some(id) = backup_id else {
        let manifests = crate::backups::complete(storage, prefix, Some(database)).await?;
        return manifests.into_iter().next().ok_or_else(|| {
            RestoreError::Refused(format!(
                "no complete backup of {database} in {}",
                storage.describe()
            ))
        });
    };
    let found = crate::backups::find(storage, prefix, database, id).await?;
    match found {
        Some(StoredBackup {
            manifest: Some(manifest),
            ..
        }) => Ok(manifest),
        Some(StoredBackup {
            unreadable: Some(reason),
            ..
        }) => Err(RestoreError::Refused(format!(
            "backup {id} of {database} in {} has a manifest d1vault cannot trust: {reason}; it is not \
             restored or verified (nothing was changed)",
            storage.describe()
        ))),
        _ => Err(RestoreError::Refused(format!(
            "no complete backup {id} of {database} in {} (a backup without a manifest does not count); \
             run `d1vault list {database}` to see the backups",
            storage.describe()
        ))),
    }
}
