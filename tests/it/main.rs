//! d1vault's integration tests, one binary for the whole root package (one link of the crate, not one per
//! file). Each module is a suite; `support` is the harness they share: the in-process S3 server and the
//! external ones (Garage, moto), the D1 emulator, the fixture, and the `d1vault` binary runner.
//!
//! Run one suite with `cargo test --test it SUITE::`, for example `cargo test --test it faults::`.

mod backup;
mod cli;
mod config;
mod daemon;
mod drills;
mod encryption;
mod faults;
mod fleet;
mod fleet_members;
mod fts;
mod migrations;
mod notify;
mod object_lock;
mod preflight;
mod restore;
mod ship;
mod storage;
mod storage_only;
mod support;
mod unchanged;
mod wrangler;
