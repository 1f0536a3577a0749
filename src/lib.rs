//! d1vault keeps Cloudflare D1 databases safe: it exports each database on a schedule, streams the SQL dump
//! through compression into S3-compatible storage or a filesystem, writes a manifest last, prunes by a
//! restic-style retention policy, and proves that backups restore.
//!
//! # Layout
//!
//! * [`config`]: the TOML configuration, loaded and validated with every error reported at once.
//! * [`sql`]: SQL text handling shared by everything: the statement splitter and the dump's INSERT parser.
//! * [`dump`]: the one writer of D1's export format, used by the emulator and by local SQLite sources.
//! * [`cloudflare`]: the D1 REST API client (retries, rate limiting, the export polling protocol).
//! * [`emulator`]: `d1-emulator`, a local D1 REST API served from SQLite files, with fault injection.
//! * [`idle`]: idle timeouts for download and storage streams: no read waits forever.
//! * [`storage`]: the narrow [`storage::Storage`] trait with filesystem and S3 implementations.
//! * [`pipeline`]: the streaming backup path: source -> validate + hash -> compress -> hash -> storage.
//! * [`manifest`]: the `manifest.json` that marks a backup complete, and the storage layout.
//! * [`schedule`], [`retention`]: pure policy functions that take `now` as an argument.
//! * [`catalog`]: the daemon's run history in `state_dir/catalog.sqlite`.
//! * [`restore`]: reading a backup back (proven before it runs) into SQLite or D1: plan, install, replace.
//! * [`verify`]: proving that backups restore, in scratch SQLite databases.
//! * [`migrations`]: wrangler-compatible migrations, applied all or nothing.
//! * [`logging`]: tracing to stderr, text or JSON.
//! * [`cli`], [`commands`]: the CLI layer. `cli` is the command line; `commands` has one module per
//!   subcommand, each parsing its arguments, calling one library operation and presenting the result
//!   (`commands::present` draws sizes and progress). No library module imports either; `main.rs` only
//!   parses arguments and dispatches.

pub mod catalog;
pub mod cli;
pub mod cloudflare;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod idle;
pub mod logging;
pub mod migrations;
pub mod pipeline;
pub mod repository;
pub mod restore;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod sources;
pub mod storage;
#[cfg(test)]
mod test_time;
pub mod verify;

/// The tool's name and version as written into manifests (`"d1vault 0.1.0"`).
pub const TOOL: &str = concat!("d1vault ", env!("CARGO_PKG_VERSION"));
