//! The streaming backup path:
//!
//! ```text
//! source (D1 download | SQLite dump thread)
//!   -> InspectingReader  (validates the dump, sha256 + size of the SQL, row counts, migrations)
//!   -> compression       (zstd | gzip | none)
//!   -> HashingReader     (sha256 + size of the stored bytes)
//!   -> Storage::put_stream
//! then manifest.json, written last.
//! ```
//!
//! Nothing holds the whole dump: each stage pulls bounded chunks from the one before. A bad dump becomes a
//! read error inside the upload, so the store keeps nothing of it.

pub mod compress;
pub mod hashing;
pub mod inspect;
pub mod source;

mod backup;

pub use backup::{BackupError, BackupSources, StoredDump, run_backup, store_dump};
