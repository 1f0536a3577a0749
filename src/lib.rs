//! d1vault keeps Cloudflare D1 databases safe: it exports each database on a schedule, streams the SQL dump
//! through compression into S3-compatible storage or a filesystem, writes a manifest last, prunes by a
//! restic-style retention policy, and proves that backups restore.
//!
//! # Layout
//!
//! D1's dump format is the `d1_dump` crate (`crates/d1-dump`): the statement splitter, the INSERT parser,
//! the one dump writer, D1's limits and the one `DumpOptions`. The D1 emulator the tests run against is the
//! `d1_emulator` crate (`crates/d1-emulator`), a dev-dependency only. This crate is the product:
//!
//! * [`config`]: the TOML configuration, loaded and validated with every error reported at once.
//! * [`secret`]: a string that never prints (tokens, keys, signed URLs).
//! * [`encryption`]: `[encryption]`: age recipients for backups, identities for restore and verify.
//! * [`schedule`]: when backups are due: cron, start window, jitter; pure functions of `now`.
//! * [`glob`]: the shell-style patterns `[[fleet]]` matches database names with.
//! * [`fleet`]: fleet members: the account listed page by page, and which entry governs each database.
//! * [`budget`]: whether the API budget holds every backup the schedules make due; pure.
//! * [`retry`]: the retry policy shared by the Cloudflare client and storage.
//! * [`idle`]: idle timeouts for download and storage streams: no read waits forever.
//! * [`cloudflare`]: the D1 REST API client (retries, rate limiting, the export polling protocol).
//! * [`storage`]: the narrow [`storage::Storage`] trait with filesystem and S3 implementations.
//! * [`sources`]: the storage plus the Cloudflare client, opened once from the configuration.
//! * [`repository`]: the backups in storage: layout and manifest, listing, retention, prune.
//! * [`pipeline`]: the streaming backup path: source -> validate + hash -> compress -> hash -> storage.
//! * [`restore`]: reading a backup back (proven before it runs) into SQLite or D1: plan, install, replace.
//! * [`verify`]: proving that backups restore, in scratch SQLite databases.
//! * [`migrations`]: wrangler-compatible migrations, applied all or nothing.
//! * [`online`]: `check-config --online`: the token, each D1 database, storage write access.
//! * [`notify`]: notifications (`[[notify]]`): webhook, healthchecks, chat, command; off the backup's path.
//! * [`status`]: what `status` reports: per database its runs and condition, per fleet a summary.
//! * [`catalog`]: the daemon's run history in `state_dir/catalog.sqlite`, and the `state_dir` lock.
//! * [`daemon`]: the scheduler: one task per database, `/healthz` and `/metrics`, reload and shutdown.
//! * [`logging`]: tracing to stderr, text or JSON.
//! * [`cli`], [`commands`]: the CLI layer. `cli` is the command line; `commands` has one module per
//!   subcommand, each parsing its arguments, calling one library operation and presenting the result
//!   (`commands::present` draws sizes and progress). No library module imports either; `main.rs` only
//!   parses arguments and dispatches.

pub mod budget;
pub mod catalog;
pub mod cli;
pub mod cloudflare;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod encryption;
pub mod fleet;
pub mod glob;
pub mod human;
pub mod idle;
pub mod logging;
pub mod man;
pub mod migrations;
pub mod notify;
pub mod online;
pub mod pipeline;
pub mod progress_log;
pub mod repository;
pub mod restore;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod sources;
pub mod status;
pub mod storage;
#[cfg(test)]
mod test_time;
pub mod verify;

/// The tool's name and version as written into manifests (`"d1vault 0.1.0"`).
pub const TOOL: &str = concat!("d1vault ", env!("CARGO_PKG_VERSION"));
