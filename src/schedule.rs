//! When backups run: cron schedules in the daemon's time zone and low-traffic windows.
//!
//! Everything here is a pure function of its inputs (`now` is always an argument), so the arithmetic is
//! table-tested with fixed clocks, DST changes included.

use std::str::FromStr;

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;

/// A parsed cron schedule: 5 fields (minute first), 6 fields (seconds first), or `@hourly`, `@daily`,
/// `@weekly` (and the other croner nicknames).
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    /// Parses a schedule expression; the error says what is wrong in words a user can act on.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let trimmed = expr.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(fields == 5 || fields == 6) {
            return Err(format!(
                "cron expression {trimmed:?} has {fields} fields; use 5 (minute hour day month weekday), \
                 6 (with seconds first) or @hourly/@daily/@weekly"
            ));
        }
        let cron = croner::Cron::new(trimmed)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("invalid cron expression {trimmed:?}: {e}"))?;
        Ok(Schedule {
            expr: trimmed.to_string(),
            cron,
        })
    }

    /// The expression as written in the configuration.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first scheduled instant strictly after `after`, evaluated in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A daily local-time window `HH:MM-HH:MM` in which backups may start; `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("window {s:?} must look like \"02:00-05:00\""))?;
        let parse = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("window {s:?}: {t:?} is not a time of day as HH:MM"))
        };
        let (start, end) = (parse(a)?, parse(b)?);
        if start == end {
            return Err(format!(
                "window {s:?} is empty: start and end are the same time"
            ));
        }
        Ok(Window { start, end })
    }
}
