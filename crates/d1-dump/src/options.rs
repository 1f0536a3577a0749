//! The one type for D1's `dump_options`: what an export contains. The Cloudflare client sends it, the
//! emulator and the local writer honour it, and the manifest records it (`manifest.export`).

use serde::{Deserialize, Serialize};

/// What to export, as D1's `dump_options` (`no_data`, `no_schema`, `tables`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpOptions {
    /// Export the schema only (no INSERTs).
    pub no_data: bool,
    /// Export the rows only (no CREATE statements; the first PRAGMA line is still written).
    pub no_schema: bool,
    /// Export only these tables (and indexes/triggers/views with these names); empty means all.
    pub tables: Vec<String>,
}
