//! D1's limits that shape a dump, as Cloudflare documents them (all of them, with what they mean for a
//! restore, are in `docs/d1-dump-format.md`, "Limits"). Only the statement length is checked in code: the
//! emulator enforces it and d1vault checks a dump against it before it asks D1 to import it.

/// The longest SQL statement D1 accepts, in bytes (`SQLITE_LIMIT_SQL_LENGTH`); a longer one fails with
/// `SQLITE_TOOBIG`, so a dump row over it cannot be imported.
pub const MAX_STATEMENT_BYTES: usize = 100_000;
