//! Fixed instants for the policy tests (schedule, retention, catalog), written as RFC 3339 text.

use chrono::{DateTime, Utc};

/// The UTC instant `s` (RFC 3339, any offset); panics on a typo, naming it.
pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
        .with_timezone(&Utc)
}
