//! Which backup a restore takes: the newest, one named by id, or the newest that started at or before a
//! point in time (`restore --at`), as people think on the day ("before the bad deploy at 14:10"). The
//! parsing and the choice are pure: they take `now` and the listed manifests.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::repository::manifest::Manifest;

/// Which backup a restore takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupChoice {
    /// The newest complete backup.
    Newest,
    /// The backup with this id.
    Id(String),
    /// The newest complete backup that started at or before this time.
    At(DateTime<Utc>),
}

/// Reads `--at`: an RFC 3339 time (`2026-12-01T14:10:00+01:00`, `2026-12-01 13:10:00Z`) or a duration
/// ago (`36h`, `2d 4h`, `90min`), measured from `now`.
pub fn parse_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!(
            "--at {text:?} is neither an RFC 3339 time (such as 2026-12-01T14:10:00Z, with its offset) \
             nor a duration ago (such as 36h or 2d)"
        )
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| format!("--at {text:?} reaches back before any possible backup"))
}

/// The newest of `manifests` that started at or before `at`, or why there is none (`database` names it
/// in the message). `manifests` may come in any order.
pub fn newest_at_or_before(
    manifests: Vec<Manifest>,
    at: DateTime<Utc>,
    database: &str,
) -> Result<Manifest, String> {
    let oldest = manifests.iter().map(|m| m.started_at).min();
    manifests
        .into_iter()
        .filter(|m| m.started_at <= at)
        .max_by_key(|m| m.started_at)
        .ok_or_else(|| {
            let at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
            match oldest {
                Some(oldest) => format!(
                    "no complete backup of {database} started at or before {at}; the oldest started at {}",
                    oldest.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                None => format!("no complete backup of {database}"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_time::utc;

    fn manifest(started: &str) -> Manifest {
        let started_at = utc(started);
        Manifest {
            backup_id: crate::repository::manifest::backup_id(started_at),
            started_at,
            finished_at: started_at,
            ..crate::repository::manifest::example_manifest("blog/x/dump.sql", "none")
        }
    }

    #[test]
    fn at_takes_an_rfc3339_time_or_a_duration_ago() {
        // Proves both forms of --at, an offset converted to UTC, and a clear refusal of anything else.
        let now = utc("2026-12-02T12:00:00Z");
        assert_eq!(
            parse_at("2026-12-01T14:10:00+01:00", now).unwrap(),
            utc("2026-12-01T13:10:00Z")
        );
        assert_eq!(parse_at("36h", now).unwrap(), utc("2026-12-01T00:00:00Z"));
        assert_eq!(
            parse_at("1d 30m", now).unwrap(),
            utc("2026-12-01T11:30:00Z")
        );
        let err = parse_at("yesterday", now).unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(
            parse_at("2026-12-01T14:10:00", now).is_err(),
            "a time without offset is ambiguous"
        );
    }

    #[test]
    fn the_newest_backup_started_at_or_before_the_time_is_chosen() {
        // Proves the bound is inclusive, later backups are passed over whatever the order, and a time
        // before every backup says which is the oldest.
        let all = || {
            vec![
                manifest("2026-12-01T03:00:00Z"),
                manifest("2026-11-30T03:00:00Z"),
                manifest("2026-12-02T03:00:00Z"),
            ]
        };
        let pick = |at: &str| newest_at_or_before(all(), utc(at), "blog").map(|m| m.backup_id);
        assert_eq!(pick("2026-12-01T14:10:00Z").unwrap(), "20261201T030000Z");
        assert_eq!(pick("2026-12-01T03:00:00Z").unwrap(), "20261201T030000Z");
        assert_eq!(pick("2026-12-01T02:59:59Z").unwrap(), "20261130T030000Z");
        assert_eq!(pick("2027-01-01T00:00:00Z").unwrap(), "20261202T030000Z");
        let err = pick("2026-11-29T00:00:00Z").unwrap_err();
        assert!(
            err.contains("the oldest started at 2026-11-30T03:00:00Z"),
            "{err}"
        );
    }
}
