//! `storage.object_lock = { mode, days }`: S3 Object Lock retention set on every object a backup writes, so
//! that a leaked storage key cannot delete backups before their time (docs/configuration.md
//! "`[storage]`", docs/runbook.md "Backups a leaked key cannot delete").

use crate::config::reader::{Reader, Schema, Section};
use crate::config::{LockMode, ObjectLock};

/// The keys an `object_lock` table accepts.
pub(super) static SCHEMA: Schema = Schema {
    name: "object_lock",
    keys: &[&["mode", "days"]],
    tables: &[],
};

/// A hundred years: S3 accepts longer, but a longer lock is a typo, and it can never be shortened in
/// compliance mode.
const MAX_DAYS: i64 = 36_500;

/// The `object_lock` table of `[storage]`; `None` when it is absent or invalid (the problems are in the
/// reader, so the configuration fails and nothing is written unlocked).
pub(super) fn read(reader: &mut Reader<'_>, storage: Section<'_>) -> Option<ObjectLock> {
    let name = storage.key_path("object_lock");
    let section = reader.table(storage, &SCHEMA, &name)?;
    reader.check_keys(section);
    let mode = match reader.string(section, "mode") {
        None => {
            if !section.contains("mode") {
                reader.error(
                    section.offset,
                    &section.key_path("mode"),
                    "missing; set mode = \"governance\" (a key with s3:BypassGovernanceRetention can \
                     still delete) or mode = \"compliance\" (nobody can, not even the account root, until \
                     the days have passed)",
                );
            }
            None
        }
        Some(at) => {
            match at.value.as_str() {
                "governance" => Some(LockMode::Governance),
                "compliance" => Some(LockMode::Compliance),
                other => {
                    reader.error(
                    at.offset,
                    &at.key,
                    format!("unknown Object Lock mode {other:?}; use \"governance\" or \"compliance\""),
                );
                    None
                }
            }
        }
    };
    let days = if section.contains("days") {
        reader
            .integer_in(section, "days", 1, MAX_DAYS)
            .map(|at| at.value as u32)
    } else {
        reader.error(
            section.offset,
            &section.key_path("days"),
            "missing; set days = N, how long each backup object stays undeletable after it is written \
             (at least as long as retention keeps backups, or prune keeps them longer)",
        );
        None
    };
    Some(ObjectLock {
        mode: mode?,
        days: days?,
    })
}
