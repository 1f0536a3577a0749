//! One backup of one database, from source to manifest.

use crate::progress_log::ProgressLog;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, SubsecRound, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{Instrument, info, info_span, warn};

use std::sync::atomic::Ordering;

use super::completion::{self, Completion};
use super::compress::{Compressor, StoredDigest};
use super::inspect::{DumpError, DumpInspector, DumpReport, InspectorThread};
use super::source::sqlite_dump;
use crate::cloudflare::ApiError;
use crate::config::{Compression, DatabaseConfig, Source};
use crate::encryption::Recipients;
use crate::repository::manifest::{
    self, Manifest, ManifestDatabase, ManifestDump, ManifestEncryption,
};
use crate::sources::BackupSources;
use crate::storage::{Storage, StorageError, StorageErrorKind};
use d1_dump::DumpOptions;

/// Why a backup failed. Every variant leaves storage without a manifest for this backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The D1 API refused or failed (export, poll, download).
    #[error("Cloudflare: {0}")]
    Api(#[from] ApiError),
    /// Storage refused or failed the upload.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The dump is not a usable backup (empty, HTML, truncated, would not restore ...).
    #[error("{0}")]
    InvalidDump(#[from] DumpError),
    /// The local SQLite source could not be read.
    #[error("source: {0}")]
    Source(String),
    /// Reading the dump failed part-way (an interrupted download); nothing was stored.
    #[error("reading the dump: {0}")]
    Read(String),
    /// The database entry cannot be backed up as configured (e.g. a D1 database without `[cloudflare]`).
    #[error("configuration: {0}")]
    Config(String),
    /// Another backup of the same database already uses this second's id.
    #[error("{0}")]
    Conflict(String),
    /// The database holds what no backup could restore (a virtual table of another module than FTS5, a
    /// contentless FTS5 table ...); the message names it and the `tables` workaround.
    #[error("{0}")]
    Unsupported(String),
    /// The database changed between the export and the reads that complete it, on every attempt.
    #[error("{0}")]
    Inconsistent(String),
}

impl BackupError {
    /// Whether running the backup again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackupError::Api(e) => e.is_retryable(),
            BackupError::Storage(e) => e.is_retryable(),
            BackupError::InvalidDump(e) => e.is_retryable(),
            BackupError::Conflict(_) | BackupError::Read(_) | BackupError::Inconsistent(_) => true,
            BackupError::Source(_) | BackupError::Config(_) | BackupError::Unsupported(_) => false,
        }
    }
}

/// Backs up `database` now: streams its dump into storage and writes the manifest last. `started_at`
/// names the backup (its id is the UTC start time). One attempt: when another writer already holds this
/// id, fails with [`BackupError::Conflict`] and leaves that writer's objects alone; [`run_backup_from`]
/// moves on to the next free id instead.
pub async fn run_backup(
    database: &DatabaseConfig,
    sources: &BackupSources,
    started_at: DateTime<Utc>,
) -> Result<Manifest, BackupError> {
    run_backup_with_clock(database, sources, started_at, &Utc::now).await
}

/// [`run_backup`] on the caller's clock: `now` gives the manifest's `finished_at`, so that the daemon's
/// manifests and catalog rows read the same (injected) clock.
pub async fn run_backup_with_clock(
    database: &DatabaseConfig,
    sources: &BackupSources,
    started_at: DateTime<Utc>,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
) -> Result<Manifest, BackupError> {
    let backup_id = manifest::backup_id(started_at);
    let span = info_span!("backup", database = %database.name, backup_id = %backup_id);
    async move {
        info!("backup started");
        let result = backup_inner(database, sources, started_at, &backup_id, now).await;
        match &result {
            Ok(m) => info!(
                raw_bytes = m.dump.raw_size,
                stored_bytes = m.dump.size,
                "backup complete"
            ),
            Err(BackupError::Conflict(e)) => info!(reason = %e, "backup id taken"),
            // Not the failure's report: the caller decides whether it is final (the daemon's run event and
            // the one-shot `backup` log it at ERROR) or tried again (another id after a conflict).
            Err(e) => info!(error = %e, "backup attempt ended with an error"),
        }
        result
    }
    .instrument(span)
    .await
}

/// How many backup ids one backup tries before giving up: each conflict means another writer took the
/// id (its second), so a handful covers any realistic race while bounding a misbehaving store.
pub const MAX_ID_ATTEMPTS: usize = 5;

/// The start time to try after `previous` lost its id: the next whole second, or now if that is later
/// (a conflict found at the end of a long upload). Pure, so the rule is testable.
pub fn next_start(previous: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    std::cmp::max(
        previous.trunc_subsecs(0) + chrono::Duration::seconds(1),
        now,
    )
}

/// Backs up `database` starting at `started_at`; when the id is taken by another writer (another
/// process or host backing up the same database in the same second), waits for the next second and
/// starts again with that id, at most [`MAX_ID_ATTEMPTS`] ids in all. The id stays the UTC start time.
pub async fn run_backup_from(
    database: &DatabaseConfig,
    sources: &BackupSources,
    started_at: DateTime<Utc>,
) -> Result<Manifest, BackupError> {
    let mut started_at = started_at;
    let mut attempt = 1;
    loop {
        match run_backup(database, sources, started_at).await {
            Err(BackupError::Conflict(why)) if attempt < MAX_ID_ATTEMPTS => {
                attempt += 1;
                let next = next_start(started_at, Utc::now());
                if let Ok(wait) = (next - Utc::now()).to_std() {
                    tokio::time::sleep(wait).await;
                }
                info!(database = %database.name, reason = %why, next_id = %manifest::backup_id(next), "backup id taken; trying the next second");
                started_at = next;
            }
            Err(BackupError::Conflict(why)) => {
                return Err(BackupError::Conflict(format!(
                    "{why}; gave up after {MAX_ID_ATTEMPTS} backup ids were taken"
                )));
            }
            other => return other,
        }
    }
}

/// Backs up `database` now, for one-shot commands (`backup`, safety backups, `migrations apply`): see
/// [`run_backup_from`] for what happens when another writer holds this second's id.
pub async fn run_backup_now(
    database: &DatabaseConfig,
    sources: &BackupSources,
) -> Result<Manifest, BackupError> {
    run_backup_from(database, sources, Utc::now()).await
}

/// Unfinished uploads older than this under a database's prefix belong to a killed run and are cleared
/// when the next backup of that database starts. A running upload's temporary file is written to every
/// few seconds, and a multipart upload this old would be a 10 GB dump on a slow uplink: long enough for
/// any live writer, short enough that a killed one-shot `backup` leaves nothing for long.
pub const STALE_UPLOAD_AGE: chrono::Duration = chrono::Duration::hours(6);

async fn backup_inner(
    database: &DatabaseConfig,
    sources: &BackupSources,
    started_at: DateTime<Utc>,
    backup_id: &str,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
) -> Result<Manifest, BackupError> {
    let storage = &sources.storage;
    // Fail on a missing bucket or bad credentials before an export blocks the database.
    storage.check().await?;
    // A killed earlier run (a one-shot `backup`, not only the daemon) may have left a full-size temporary
    // file or an open multipart upload: clear them now. Best effort: a failure here costs no backup.
    let database_prefix = manifest::database_prefix(&sources.prefix, &database.name);
    match storage
        .abort_stale_uploads(&database_prefix, started_at - STALE_UPLOAD_AGE)
        .await
    {
        Ok(0) => {}
        Ok(cleared) => info!(
            cleared,
            "cleared unfinished uploads left by an interrupted backup"
        ),
        Err(e) => warn!(error = %e, "could not clear unfinished uploads of earlier backups"),
    }
    // Backup ids have one-second resolution: never write into a directory that already holds anything
    // (a backup started in the same second, or a leftover), or a complete backup could be overwritten.
    let directory = format!(
        "{}/",
        manifest::join_key(&[&sources.prefix, &database.name, backup_id])
    );
    // This look is only the cheap early answer; the guarantee is that every object below is created
    // exclusively, so of two writers racing past it only one can store its dump and its manifest.
    if !storage.list(&directory).await?.is_empty() {
        return Err(conflict(database, backup_id));
    }

    let encryption = sources.encryption.as_ref();
    let dump_key = manifest::object_key(
        &sources.prefix,
        &database.name,
        backup_id,
        &manifest::dump_file_name(database.compression, encryption.is_some()),
    );
    let export = DumpOptions {
        no_data: database.no_data,
        no_schema: false,
        tables: database.tables.clone(),
    };

    let mut attempt = 1;
    let (source_kind, database_id, bookmark, stored) = loop {
        let completion = Completion::default();
        let (source_kind, database_id, bookmark, body, announced) =
            open_source(database, sources, &export, &completion).await?;
        let result = store_dump(
            storage.as_ref(),
            &dump_key,
            body,
            announced,
            database.compression,
            encryption,
            &database.migrations_table,
        )
        .await
        .map_err(|e| match e {
            BackupError::Storage(e) if e.kind == StorageErrorKind::AlreadyExists => {
                conflict(database, backup_id)
            }
            other => other,
        });
        let moved = completion.moved.load(Ordering::SeqCst);
        match result {
            Err(e) if moved && attempt < MAX_CONSISTENCY_ATTEMPTS => {
                info!(attempt, reason = %e, "the database changed during the backup; taking it again");
                attempt += 1;
            }
            Err(_) if moved => {
                return Err(BackupError::Inconsistent(format!(
                    "the database changed during every attempt ({MAX_CONSISTENCY_ATTEMPTS}) between the \
                     export and the reads of its FTS5 tables; nothing was stored. Try again when it is \
                     quieter"
                )));
            }
            Err(e) => return Err(e),
            Ok(stored) => break (source_kind, database_id, bookmark, stored),
        }
    };
    let report = stored.report;

    let manifest = Manifest {
        format: manifest::FORMAT,
        tool: crate::TOOL.to_string(),
        database: ManifestDatabase {
            name: database.name.clone(),
            id: database_id,
            source: source_kind.into(),
        },
        backup_id: backup_id.to_string(),
        // Whole seconds, as stored (the contract's time format); the id is the same second.
        started_at: started_at.trunc_subsecs(0),
        finished_at: now().trunc_subsecs(0),
        bookmark,
        export: export.clone(),
        dump: ManifestDump {
            key: dump_key.clone(),
            compression: database.compression.name().into(),
            size: stored.size,
            sha256: stored.sha256,
            raw_size: report.raw_size,
            raw_sha256: report.raw_sha256,
        },
        tables: report.tables,
        virtual_tables: report.virtual_tables,
        migrations: report.migrations,
        encryption: encryption.map(|recipients| ManifestEncryption {
            kind: "age".into(),
            recipients: recipients.public(),
        }),
    };
    let manifest_key = manifest::object_key(
        &sources.prefix,
        &database.name,
        backup_id,
        manifest::MANIFEST_FILE,
    );
    if let Err(e) = storage
        .create_bytes(&manifest_key, manifest.to_json())
        .await
    {
        if e.kind == StorageErrorKind::AlreadyExists {
            // Another writer's manifest is there. On a store that creates atomically this cannot follow an
            // exclusive dump; on one that only checks first (Garage) the dump key may be that writer's
            // too, so it is left alone: deleting it could break the backup that won.
            return Err(conflict(database, backup_id));
        }
        // Without its manifest the dump is not a backup; remove it rather than leave it for prune.
        let _ = storage.delete(&dump_key).await;
        return Err(e.into());
    }
    Ok(manifest)
}

/// How many times a backup of a D1 database with virtual tables is taken when the database changes
/// between its export and the reads that complete it, before it fails.
pub const MAX_CONSISTENCY_ATTEMPTS: usize = 3;

/// Where one attempt's dump comes from: (source kind, D1 id, bookmark, the dump, its announced size).
type OpenedSource = (
    &'static str,
    Option<String>,
    Option<String>,
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Option<u64>,
);

/// Opens the dump of `database`: a D1 export download (completed with its virtual tables, see
/// [`super::completion`]), or a local SQLite file's dump.
async fn open_source(
    database: &DatabaseConfig,
    sources: &BackupSources,
    export: &DumpOptions,
    completion: &Completion,
) -> Result<OpenedSource, BackupError> {
    match &database.source {
        Source::D1 { id } => {
            let client = sources.cloudflare.as_ref().ok_or_else(|| {
                BackupError::Config(format!(
                    "database {} is a D1 source but [cloudflare] is not configured",
                    database.name
                ))
            })?;
            let uuid = match id {
                Some(id) => id.clone(),
                None => client.get_database(&database.name).await?.uuid,
            };
            // D1 refuses a whole export of a database with virtual tables (and may then answer every query
            // with "Currently processing a long-running export"): read the schema first, never ask for it.
            let planned = if export.tables.is_empty() {
                let schema = completion::read_schema(client, &uuid).await?;
                completion::plan(&schema, export)
                    .map_err(|e| BackupError::Unsupported(e.to_string()))?
            } else {
                None
            };
            let before = match &planned {
                Some(_) => Some(client.bookmark(&uuid).await?),
                None => None,
            };
            let by_tables = planned.as_ref().map(|plan| DumpOptions {
                tables: plan.export_tables.clone(),
                ..export.clone()
            });
            let ready = client
                .export(&uuid, by_tables.as_ref().unwrap_or(export))
                .await?;
            let download = client.download(&ready.signed_url).await?;
            if let Some(kind) = download.content_type.as_deref()
                && kind.to_ascii_lowercase().starts_with("text/html")
            {
                return Err(DumpError::Html {
                    start: format!("Content-Type: {kind}"),
                }
                .into());
            }
            match (planned, before) {
                (Some(plan), Some(before)) => {
                    let body = completion::complete(
                        client.clone(),
                        uuid.clone(),
                        plan,
                        export.clone(),
                        before,
                        download,
                        completion,
                    );
                    // The completed dump is longer than the download: no size to announce.
                    Ok((
                        "d1",
                        Some(uuid),
                        Some(ready.at_bookmark),
                        Box::new(body),
                        None,
                    ))
                }
                _ => Ok((
                    "d1",
                    Some(uuid),
                    Some(ready.at_bookmark),
                    download.body,
                    Some(download.content_length),
                )),
            }
        }
        Source::Sqlite { path } => {
            let reader = sqlite_dump(path, export.clone())
                .map_err(|e| BackupError::Source(e.to_string()))?;
            Ok(("sqlite", None, None, Box::new(reader), None))
        }
    }
}

/// The error for a backup id another writer holds.
fn conflict(database: &DatabaseConfig, backup_id: &str) -> BackupError {
    BackupError::Conflict(format!(
        "a backup of {} with id {backup_id} already exists or is being written by another process \
         (ids are the start second)",
        database.name
    ))
}

/// A dump that is stored and checked, but has no manifest yet.
#[derive(Debug, Clone)]
pub struct StoredDump {
    /// What the validation learned about the SQL (sizes, hashes, row counts, migrations).
    pub report: DumpReport,
    /// Bytes stored (after compression).
    pub size: u64,
    /// sha256 (hex) of the stored bytes.
    pub sha256: String,
}

/// Streams a SQL dump into `key`: validated, hashed, compressed, encrypted to `encryption`'s recipients
/// when given, hashed again. A dump that fails validation
/// is removed again, so only valid dumps remain in storage; the manifest is the caller's to write. The key
/// is created exclusively: an existing object there fails the store with
/// [`StorageErrorKind::AlreadyExists`] and is left as it was.
///
/// Three stages run at once: this task reads the dump in chunks and hands each to the inspector thread and
/// the compression thread (shared, not copied); the upload reads the compressed stream. The compressed
/// stream only ends cleanly once the inspector has accepted the whole dump, so an invalid or interrupted
/// dump fails the upload and leaves nothing behind.
pub async fn store_dump(
    storage: &dyn Storage,
    key: &str,
    body: impl AsyncRead + Send + Unpin,
    announced: Option<u64>,
    compression: Compression,
    encryption: Option<&Recipients>,
    migrations_table: &str,
) -> Result<StoredDump, BackupError> {
    let inspector = InspectorThread::spawn(DumpInspector::new(announced, migrations_table));
    let (compressor, compressed) = Compressor::spawn(compression, encryption.cloned());
    let upload = async {
        // Owned here, so the stream is dropped as soon as the upload ends (a failed upload must stop the
        // compression thread, which waits for room in the stream).
        let mut compressed = compressed;
        storage.create_stream(key, &mut compressed).await
    };
    let progress = ProgressLog::new("backup", announced);
    let (fed, upload) = tokio::join!(feed(body, inspector, compressor, progress), upload);
    match (fed, upload) {
        (Ok((report, digest)), Ok(_)) => Ok(StoredDump {
            report,
            size: digest.size,
            sha256: digest.sha256,
        }),
        (Err(FeedError::Dump(dump_error)), upload) => {
            // Only an object this call created is removed: after a failed exclusive create the key may
            // hold another writer's dump.
            if upload.is_ok() {
                let _ = storage.delete(key).await;
            }
            Err(dump_error.into())
        }
        (Err(FeedError::Read(e)), _) => Err(BackupError::Read(e.to_string())),
        (_, Err(e)) => Err(e.into()),
        (Err(FeedError::Compression(e)), Ok(_)) => {
            let _ = storage.delete(key).await;
            Err(BackupError::Source(format!("compressing the dump: {e}")))
        }
    }
}

/// Why the feed stopped before the end of a valid dump.
enum FeedError {
    /// The dump is not a valid backup.
    Dump(DumpError),
    /// Reading the dump failed (an interrupted download, a failed SQLite read).
    Read(std::io::Error),
    /// The compression thread stopped: the upload stopped reading (its error comes first) or compressing
    /// failed.
    Compression(std::io::Error),
}

/// Bytes read from the dump per chunk handed to the inspector and the compressor: one channel hand-over
/// per network read (often 16 KiB) cost more than the bytes it carried.
const FEED_CHUNK: usize = 256 * 1024;

/// Reads `body` to its end, handing every chunk to the inspector and the compressor; tells the compressor
/// the dump ended only once the inspector accepted it. Returns the inspector's report and the stored bytes'
/// digest. Every minute of a long dump, `progress` logs how far it got.
async fn feed(
    mut body: impl AsyncRead + Send + Unpin,
    inspector: InspectorThread,
    compressor: Compressor,
    mut progress: ProgressLog,
) -> Result<(DumpReport, StoredDigest), FeedError> {
    let mut buffers = ChunkBuffers::default();
    loop {
        let mut chunk = buffers.take();
        let mut at_end = false;
        while chunk.len() < FEED_CHUNK {
            if body.read_buf(&mut chunk).await.map_err(FeedError::Read)? == 0 {
                at_end = true;
                break;
            }
        }
        let chunk = chunk.freeze();
        progress.advance(chunk.len() as u64);
        if !chunk.is_empty() {
            buffers.lend(chunk.clone());
            if !inspector.push(chunk.clone()).await {
                // The inspector found the dump bad; dropping the compressor fails the upload.
                break;
            }
            if !compressor.push(chunk).await {
                // The upload stopped reading or compressing failed: finishing the thread reports which.
                let why = compressor.finish().await.err();
                return Err(FeedError::Compression(why.unwrap_or_else(|| {
                    std::io::Error::other("the compression thread stopped early")
                })));
            }
        }
        if at_end {
            break;
        }
    }
    let report = inspector.verdict().await.map_err(FeedError::Dump)?;
    let digest = compressor.finish().await.map_err(FeedError::Compression)?;
    Ok((report, digest))
}

/// Chunks lent to the inspector and the compressor, kept so that each buffer is refilled once both are done
/// with it. A fresh 256 KiB buffer per chunk made the kernel fault in and zero new pages for every chunk
/// (`clear_page_erms`, about 2.4% of a backup's CPU in a profile of scripts/bench-backup).
#[derive(Default)]
struct ChunkBuffers {
    /// Oldest first. A buffer is free again when its `Bytes` here is the last reference to it.
    lent: VecDeque<Bytes>,
}

impl ChunkBuffers {
    /// Lent chunks remembered at most: a few more than the two channels hold, so that the oldest is
    /// normally free by the time it is looked at. Older ones are forgotten (their memory is freed as usual).
    const REMEMBERED: usize = 16;

    /// An empty buffer of [`FEED_CHUNK`] bytes' capacity: the oldest lent one if it is free again.
    fn take(&mut self) -> BytesMut {
        if let Some(oldest) = self.lent.pop_front() {
            match oldest.try_into_mut() {
                Ok(mut buffer) if buffer.capacity() >= FEED_CHUNK => {
                    buffer.clear();
                    return buffer;
                }
                Ok(_) => {}
                Err(still_lent) if self.lent.len() + 1 < Self::REMEMBERED => {
                    self.lent.push_front(still_lent)
                }
                Err(_) => {}
            }
        }
        BytesMut::with_capacity(FEED_CHUNK)
    }

    /// Remembers a chunk handed out, to take its buffer back later.
    fn lend(&mut self, chunk: Bytes) {
        self.lent.push_back(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_buffer_is_refilled_only_once_nobody_else_holds_it() {
        let mut buffers = ChunkBuffers::default();
        let mut first = buffers.take();
        first.extend_from_slice(b"PRAGMA defer_foreign_keys=TRUE;");
        let first = first.freeze();
        let address = first.as_ptr();
        buffers.lend(first.clone());

        // The inspector or the compressor still holds the first chunk: a new buffer, the first kept.
        let second = buffers.take();
        assert_ne!(second.as_ptr(), address);
        assert_eq!(buffers.lent.len(), 1);

        // Once they let go, the same memory comes back, empty and as large as ever.
        drop(first);
        let reused = buffers.take();
        assert_eq!(reused.as_ptr(), address);
        assert!(reused.is_empty());
        assert!(reused.capacity() >= FEED_CHUNK);
    }

    #[test]
    fn chunks_held_too_long_are_forgotten_not_hoarded() {
        let mut buffers = ChunkBuffers::default();
        let held: Vec<Bytes> = (0..40)
            .map(|_| {
                let chunk = buffers.take().freeze();
                buffers.lend(chunk.clone());
                chunk
            })
            .collect();
        assert!(buffers.lent.len() <= ChunkBuffers::REMEMBERED);
        drop(held);
    }
}
