//! The streaming backup path:
//!
//! ```text
//! source (D1 download, completed by `completion` when the database has virtual tables | SQLite dump thread)
//!   -> feed (the backup task): 256 KiB chunks, each shared by
//!        -> InspectorThread  (validates the dump, sha256 + size of the SQL, row counts, migrations)
//!        -> Compressor       (zstd | gzip | none on a thread of its own; sha256 + size of the stored bytes)
//!             -> Storage::put_stream
//! then manifest.json, written last.
//! ```
//!
//! Nothing holds the whole dump: every hand-over is a bounded channel. The compressed stream ends cleanly
//! only after the inspector accepted the whole dump; a bad or interrupted dump ends it with an error, so
//! the store keeps nothing of it.

pub mod completion;
pub mod compress;
pub mod hashing;
pub mod inspect;
pub mod source;
pub mod unchanged;

mod backup;

pub use backup::{
    BackupError, MAX_CONSISTENCY_ATTEMPTS, MAX_ID_ATTEMPTS, STALE_UPLOAD_AGE, StoredDump,
    next_start, run_backup, run_backup_from, run_backup_now, run_backup_with_clock, store_dump,
};
