//! What a notification tells: one [`Event`] per thing a receiver may want to hear about, and the
//! [`EventKind`]s that `[[notify]].on` filters by (CONTRACT.md "`[[notify]]`").

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// The kinds of event a `[[notify]]` entry can ask for in `on`, plus the test event of `d1vault notify
/// test`, which every target receives whatever its `on` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A backup of the database started.
    Start,
    /// A backup completed and its manifest was written.
    Success,
    /// A backup failed (or was aborted at shutdown).
    Failure,
    /// The database had not changed since its newest backup; no export was needed.
    Unchanged,
    /// The database turned stale in the daemon (`/healthz`), or recovered from it ([`Event::stale`]).
    Stale,
    /// A verification of a backup failed.
    VerifyFailure,
    /// `d1vault notify test`.
    Test,
}

impl EventKind {
    /// The kinds `on` may name, as the configuration spells them.
    pub const CONFIGURABLE: [EventKind; 6] = [
        EventKind::Start,
        EventKind::Success,
        EventKind::Failure,
        EventKind::Unchanged,
        EventKind::Stale,
        EventKind::VerifyFailure,
    ];

    /// The name used in `on` and in the webhook body's `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Success => "success",
            EventKind::Failure => "failure",
            EventKind::Unchanged => "unchanged",
            EventKind::Stale => "stale",
            EventKind::VerifyFailure => "verify_failure",
            EventKind::Test => "test",
        }
    }

    /// The configurable kind spelled `name`, if any.
    pub fn parse(name: &str) -> Option<EventKind> {
        Self::CONFIGURABLE
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Whether this event is bad news (what chat messages lead with and ntfy sends at high priority).
    pub fn is_alarm(self) -> bool {
        matches!(self, EventKind::Failure | EventKind::VerifyFailure)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification, as the webhook's JSON body carries it; every other format is rendered from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The database it happened to.
    pub database: String,
    /// The backup concerned: the new one, the failed attempt's id, or for `unchanged` the newest backup
    /// (which holds the current data).
    pub backup_id: Option<String>,
    /// The dump's SQL size in bytes, for a success.
    pub raw_bytes: Option<u64>,
    /// The stored dump's size in bytes, for a success.
    pub stored_bytes: Option<u64>,
    /// How long the backup or verification took.
    pub duration_seconds: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// For `stale`: `true` when the database turned stale, `false` when it recovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
    /// The host d1vault runs on.
    pub host: String,
    /// When it happened (RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub time: DateTime<Utc>,
}

impl Event {
    /// An event of `kind` for `database` at `time`, every optional field empty.
    pub fn new(kind: EventKind, database: impl Into<String>, time: DateTime<Utc>) -> Event {
        Event {
            event: kind,
            database: database.into(),
            backup_id: None,
            raw_bytes: None,
            stored_bytes: None,
            duration_seconds: None,
            error: None,
            stale: None,
            host: host_name(),
            time,
        }
    }

    /// With the backup it concerns.
    pub fn with_backup(mut self, backup_id: impl Into<String>) -> Event {
        self.backup_id = Some(backup_id.into());
        self
    }

    /// With the sizes of a complete backup: the SQL and the stored object.
    pub fn with_sizes(mut self, raw_bytes: u64, stored_bytes: u64) -> Event {
        self.raw_bytes = Some(raw_bytes);
        self.stored_bytes = Some(stored_bytes);
        self
    }

    /// With how long the work took, from `started_at` to the event's time.
    pub fn with_duration_since(mut self, started_at: DateTime<Utc>) -> Event {
        self.duration_seconds = Some((self.time - started_at).num_milliseconds() as f64 / 1000.0);
        self
    }

    /// With the reason it failed.
    pub fn with_error(mut self, error: impl Into<String>) -> Event {
        self.error = Some(error.into());
        self
    }

    /// The webhook body (and the command's standard input): the event as one JSON object.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    /// One line for a person: what happened to which database, and why when it failed.
    pub fn summary(&self) -> String {
        let what = match (self.event, self.stale) {
            (EventKind::Start, _) => "backup started".to_string(),
            (EventKind::Success, _) => match &self.backup_id {
                Some(id) => format!("backup {id} completed"),
                None => "backup completed".to_string(),
            },
            (EventKind::Failure, _) => "backup FAILED".to_string(),
            (EventKind::Unchanged, _) => "unchanged since its newest backup".to_string(),
            (EventKind::Stale, Some(false)) => "recovered: fresh again".to_string(),
            (EventKind::Stale, _) => "STALE: no recent backup".to_string(),
            (EventKind::VerifyFailure, _) => "verification FAILED".to_string(),
            (EventKind::Test, _) => "test notification".to_string(),
        };
        match &self.error {
            Some(error) => format!("{}: {what}: {error}", self.database),
            None => format!("{}: {what}", self.database),
        }
    }
}

fn rfc3339<S: serde::Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// This machine's host name (Linux: the kernel's; elsewhere `HOSTNAME`), `"unknown"` when neither says.
/// Read once per process: every event carries it, and a fleet run makes many.
pub fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_time::utc;

    #[test]
    fn the_json_body_names_every_field_the_contract_lists() {
        // Proves the webhook body carries event, database, backup id, sizes, duration, error, host and
        // time, with the event spelled as `on` spells it and the time in RFC 3339.
        let mut event = Event::new(
            EventKind::VerifyFailure,
            "blog",
            utc("2026-12-02T03:00:07Z"),
        );
        event.backup_id = Some("20261202T030000Z".into());
        event.error = Some("sha256 mismatch".into());
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["event"], "verify_failure");
        assert_eq!(json["database"], "blog");
        assert_eq!(json["backup_id"], "20261202T030000Z");
        assert_eq!(json["error"], "sha256 mismatch");
        assert_eq!(json["time"], "2026-12-02T03:00:07Z");
        for key in ["raw_bytes", "stored_bytes", "duration_seconds", "host"] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert!(json.get("stale").is_none());
    }

    #[test]
    fn every_configurable_kind_parses_back_from_its_name() {
        for kind in EventKind::CONFIGURABLE {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("test"), None);
        assert_eq!(EventKind::parse("failed"), None);
    }
}
