//! The backup repository: what d1vault keeps in storage and every rule about it, in one place.
//!
//! A repository is a storage prefix holding `<prefix>/<database>/<backup id>/` directories, each with one
//! dump and, written last, a `manifest.json` (the layout and the manifest are in `CONTRACT.md`).
//!
//! * [`manifest`]: the storage layout (keys, backup ids) and `manifest.json`.
//! * [`backups`]: the listing of backups; the only place that decides which backups exist (complete) and
//!   which are unreadable.
//! * [`retention`]: which complete backups to keep, a pure function of their times, the policy and `now`.
//! * [`prune`]: retention applied to storage: a plan over a complete listing, then its execution.

pub mod backups;
pub mod manifest;
pub mod prune;
pub mod retention;
