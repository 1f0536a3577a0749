//! When backups run: cron schedules in the daemon's time zone and low-traffic windows.
//!
//! Everything here is a pure function of its inputs (`now` is always an argument), so the arithmetic is
//! table-tested with fixed clocks, DST changes included.
//!
//! # Wall-clock rules (DST)
//!
//! Cron expressions and windows are written in local wall-clock time of the daemon's zone. Local times map to
//! instants with two rules, used everywhere in this module:
//!
//! * A local time that does not exist (skipped by a spring-forward change) maps to the first instant after the
//!   gap. A daily `30 2 * * *` in Europe/Berlin fires at 03:00 CEST on the day clocks jump from 02:00 to 03:00;
//!   several due times inside the gap (`*/15`) collapse into that one firing.
//! * A local time that exists twice (the hour repeated by a fall-back change) maps to its first occurrence.
//!   The repeated hour therefore fires once: `30 2 * * *` fires at 02:30 CEST only, and an hourly schedule
//!   skips the second pass through the repeated hour.
//!
//! # Windows
//!
//! A [`Window`] `HH:MM-HH:MM` is a daily local-time range, start inclusive and end exclusive; `end < start`
//! crosses midnight. Each local date has one window *occurrence*, from the instant the wall clock first shows
//! `start` on that date to the first instant afterwards that it shows `end` (with the rules above). On the
//! fall-back day a `02:00-03:00` occurrence in Berlin therefore lasts two hours (both passes through 02:xx);
//! on the spring-forward day it does not occur at all (its start and end both map to 03:00 CEST, so it is
//! empty and skipped), and a `02:30-04:00` occurrence lasts one hour, from 03:00 to 04:00 CEST.
//!
//! # Planning rule
//!
//! [`plan_run`] decides what happens to one due time. A run due inside a window occurrence starts at once. A
//! run due outside is moved to the next (non-empty) window opening, unless the schedule is due again before
//! that occurrence closes: then the later due time will start in the same window, and this one is
//! [`PlannedRun::Skipped`] as superseded (so an hourly schedule with a 02:00-05:00 window runs at 02:00, 03:00
//! and 04:00 and skips the other 21 due times, instead of piling them up at 02:00).

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// Safety bound on the loops that walk due times; real schedules need a handful of steps.
const MAX_STEPS: usize = 100_000;

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
        if !trimmed.starts_with('@') && !matches!(fields, 5 | 6) {
            return Err(format!(
                "cron expression {trimmed:?} has {fields} fields; use 5 (minute hour day month weekday), \
                 6 (with seconds first) or @hourly/@daily/@weekly"
            ));
        }
        let cron = croner::Cron::new(trimmed)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("invalid cron expression {trimmed:?}: {e}"))?;
        let schedule = Schedule {
            expr: trimmed.to_string(),
            cron,
        };
        // Expressions like `0 0 30 2 *` parse but never fire; refuse them here rather than let the daemon
        // wait forever (and every search walk thousands of years of dates).
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid constant date");
        if schedule.next_naive(epoch).is_none() {
            return Err(format!(
                "cron expression {trimmed:?} never fires: no calendar date matches it"
            ));
        }
        Ok(schedule)
    }

    /// The expression as written in the configuration.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first due instant strictly after `after`, evaluated in `tz` with the module's DST rules.
    /// `None` only for expressions that never match (such as February 30th).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let after = truncate_to_second(after);
        // Walk candidates in wall-clock time; skip those whose instant is not after `after` (the second
        // pass through a repeated hour maps back to the first pass, which has already fired).
        let mut cursor = after.with_timezone(&tz).naive_local();
        for _ in 0..MAX_STEPS {
            let candidate = self.next_naive(cursor)?;
            let instant = local_to_utc(candidate, tz);
            if instant > after {
                return Some(instant);
            }
            cursor = candidate;
        }
        None
    }

    /// The most recent due instant at or before `at` (the same instants [`Schedule::next_after`] yields).
    /// `None` if the schedule did not fire in the eight years before `at`.
    pub fn prev_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // croner only searches forwards: look back over a doubling span until it holds a due time.
        let mut lookback = Duration::minutes(1);
        let horizon = Duration::days(8 * 366);
        while lookback <= horizon * 2 {
            let mut found = None;
            let mut cursor = at - lookback - Duration::seconds(1);
            for _ in 0..MAX_STEPS {
                match self.next_after(cursor, tz) {
                    Some(t) if t <= at => {
                        found = Some(t);
                        cursor = t;
                    }
                    _ => break,
                }
            }
            if found.is_some() {
                return found;
            }
            lookback = lookback * 2;
        }
        None
    }

    /// The next wall-clock time strictly after `after` that matches the expression, ignoring time zones.
    fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        // Utc has no DST, so croner does plain calendar arithmetic on the wall-clock fields.
        let as_utc = Utc.from_utc_datetime(&after);
        self.cron
            .find_next_occurrence(&as_utc, false)
            .ok()
            .map(|t| t.naive_utc())
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// A daily local-time window `HH:MM-HH:MM` in which backups may start; `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Local time the window opens.
    pub start: NaiveTime,
    /// Local time the window closes (exclusive).
    pub end: NaiveTime,
}

/// One occurrence of a [`Window`] on the timeline: the run may start in `[opens_at, closes_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOccurrence {
    /// The first instant a run may start.
    pub opens_at: DateTime<Utc>,
    /// The first instant a run may no longer start.
    pub closes_at: DateTime<Utc>,
}

impl Window {
    /// Whether a local time of day lies in the window (start inclusive, end exclusive).
    pub fn contains(&self, local: NaiveTime) -> bool {
        if self.crosses_midnight() {
            local >= self.start || local < self.end
        } else {
            local >= self.start && local < self.end
        }
    }

    /// True for windows such as `22:00-04:00` whose end is on the next day.
    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    /// The window's length on the wall clock (a DST change can make one occurrence an hour longer or shorter).
    pub fn nominal_length(&self) -> Duration {
        let length = self.end - self.start;
        if length <= Duration::zero() {
            length + Duration::days(1)
        } else {
            length
        }
    }

    /// The occurrence that opens on local date `date`, or `None` if a DST change leaves it empty.
    pub fn occurrence_on(&self, date: NaiveDate, tz: Tz) -> Option<WindowOccurrence> {
        let opens_at = local_to_utc(date.and_time(self.start), tz);
        let end_date = if self.crosses_midnight() {
            date.succ_opt()?
        } else {
            date
        };
        let closes_at = local_to_utc(end_date.and_time(self.end), tz);
        (closes_at > opens_at).then_some(WindowOccurrence {
            opens_at,
            closes_at,
        })
    }

    /// The occurrence that contains instant `t`, if any.
    pub fn occurrence_containing(&self, t: DateTime<Utc>, tz: Tz) -> Option<WindowOccurrence> {
        let date = t.with_timezone(&tz).date_naive();
        [date.pred_opt(), Some(date), date.succ_opt()]
            .into_iter()
            .flatten()
            .filter_map(|d| self.occurrence_on(d, tz))
            .find(|o| o.opens_at <= t && t < o.closes_at)
    }

    /// The first non-empty occurrence that opens strictly after `t`.
    pub fn next_occurrence_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<WindowOccurrence> {
        let mut date = t.with_timezone(&tz).date_naive().pred_opt()?;
        // A window is empty at most on a DST day, so a few days always suffice; allow a week.
        for _ in 0..9 {
            if let Some(o) = self.occurrence_on(date, tz)
                && o.opens_at > t
            {
                return Some(o);
            }
            date = date.succ_opt()?;
        }
        None
    }
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

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// What the daemon does about one due time of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedRun {
    /// Start the backup at `start` (`due` itself, or the window's next opening).
    Run {
        /// The schedule's due time; recorded in the catalog as `scheduled_for`.
        due: DateTime<Utc>,
        /// When to start (before jitter).
        start: DateTime<Utc>,
        /// The end of the window occurrence containing `start`; `None` without a window.
        window_closes_at: Option<DateTime<Utc>>,
    },
    /// Do not run for this due time; `reason` says why, for the catalog and the log.
    Skipped {
        /// The due time that is skipped.
        due: DateTime<Utc>,
        /// Why, in words.
        reason: String,
    },
}

impl PlannedRun {
    /// The schedule's due time this plan is for.
    pub fn due(&self) -> DateTime<Utc> {
        match self {
            PlannedRun::Run { due, .. } | PlannedRun::Skipped { due, .. } => *due,
        }
    }

    /// When the run starts, or `None` if it is skipped.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        match self {
            PlannedRun::Run { start, .. } => Some(*start),
            PlannedRun::Skipped { .. } => None,
        }
    }
}

/// Plans the run due at `due` against the window, with the rule in the module documentation: start at `due`
/// inside the window, else at the next opening, unless the schedule is due again before that occurrence
/// closes (then this run is skipped as superseded).
pub fn plan_run(
    schedule: &Schedule,
    window: Option<Window>,
    tz: Tz,
    due: DateTime<Utc>,
) -> PlannedRun {
    let Some(window) = window else {
        return PlannedRun::Run {
            due,
            start: due,
            window_closes_at: None,
        };
    };
    if let Some(occurrence) = window.occurrence_containing(due, tz) {
        return PlannedRun::Run {
            due,
            start: due,
            window_closes_at: Some(occurrence.closes_at),
        };
    }
    let Some(occurrence) = window.next_occurrence_after(due, tz) else {
        return PlannedRun::Skipped {
            due,
            reason: format!(
                "window {window} does not open in the week after {}",
                local(due, tz)
            ),
        };
    };
    match schedule.next_after(due, tz) {
        Some(next_due) if next_due < occurrence.closes_at => PlannedRun::Skipped {
            due,
            reason: format!(
                "due at {} outside window {window}; the run due at {} can start in the same window \
                 ({} to {}), so this one is superseded",
                local(due, tz),
                local(next_due, tz),
                local(occurrence.opens_at, tz),
                local(occurrence.closes_at, tz),
            ),
        },
        _ => PlannedRun::Run {
            due,
            start: occurrence.opens_at,
            window_closes_at: Some(occurrence.closes_at),
        },
    }
}

/// Plans a missed run found by [`catch_up`] when the daemon starts at `now`: it is planned as if it were due
/// now (at once inside the window, else at the next opening, or superseded by the next regular due time),
/// but keeps `missed_due` as its due time so the catalog records which tick it covers. The daemon's regular
/// loop then continues with the first due time after `now`.
pub fn plan_catch_up(
    schedule: &Schedule,
    window: Option<Window>,
    tz: Tz,
    missed_due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> PlannedRun {
    match plan_run(schedule, window, tz, missed_due.max(now)) {
        PlannedRun::Run {
            start,
            window_closes_at,
            ..
        } => PlannedRun::Run {
            due: missed_due,
            start,
            window_closes_at,
        },
        PlannedRun::Skipped { reason, .. } => PlannedRun::Skipped {
            due: missed_due,
            reason: format!("missed run due at {}: {reason}", local(missed_due, tz)),
        },
    }
}

/// Delays `start` by `jitter * fraction` (the caller draws `fraction` in `0..1` from its RNG), without ever
/// leaving the window: the delay is scaled to the time left before `window_closes_at`, and the result is
/// always strictly before the close. Whole seconds, so logs stay readable.
pub fn jittered_start(
    start: DateTime<Utc>,
    window_closes_at: Option<DateTime<Utc>>,
    jitter: std::time::Duration,
    fraction: f64,
) -> DateTime<Utc> {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut span = Duration::from_std(jitter).unwrap_or(Duration::MAX);
    if let Some(close) = window_closes_at {
        // Leave at least one second so the start stays inside the half-open window.
        let room = close - start - Duration::seconds(1);
        span = span.min(room.max(Duration::zero()));
    }
    let delay_seconds = (span.num_seconds() as f64 * fraction).floor() as i64;
    start + Duration::seconds(delay_seconds)
}

/// The missed due time to run once when the daemon starts: the most recent due time at or before `now`, if
/// it is later than `last_scheduled` (the catalog's latest scheduled run attempt or skip). Several missed
/// ticks give one run, not one per tick. `None` when nothing was missed, and also when there is no history
/// at all: a database seen for the first time waits for its next due time instead of running at start-up
/// (a fresh install or a newly added database should not export the moment the daemon starts).
pub fn catch_up(
    schedule: &Schedule,
    tz: Tz,
    last_scheduled: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let last = last_scheduled?;
    let latest_due = schedule.prev_at_or_before(now, tz)?;
    (latest_due > last).then_some(latest_due)
}

/// The next `n` runs that will start after `after` (skipped due times are left out), for `check-config`
/// and `status`.
pub fn next_runs(
    schedule: &Schedule,
    window: Option<Window>,
    tz: Tz,
    after: DateTime<Utc>,
    n: usize,
) -> Vec<PlannedRun> {
    let mut runs = Vec::with_capacity(n);
    let mut due = schedule.next_after(after, tz);
    for _ in 0..MAX_STEPS {
        if runs.len() >= n {
            break;
        }
        let Some(d) = due else { break };
        let plan = plan_run(schedule, window, tz, d);
        if matches!(plan, PlannedRun::Run { .. }) {
            runs.push(plan);
            due = schedule.next_after(d, tz);
            continue;
        }
        // Skipped: every due time up to the next opening is skipped too, except possibly the last one before
        // it, so jump there instead of walking (a per-second schedule would otherwise take a day of steps).
        let jump = window
            .and_then(|w| w.next_occurrence_after(d, tz))
            .and_then(|o| schedule.prev_at_or_before(o.opens_at, tz))
            .filter(|&p| p > d);
        due = jump.or_else(|| schedule.next_after(d, tz));
    }
    runs
}

/// How old a database's newest complete backup may be and still count as fresh at `at`: twice the schedule's
/// interval plus the window's length (the contract's `/healthz` rule). The interval is the longer of the gap
/// between due times that contains `at` and the gap before it, so an irregular schedule (weekdays only) is
/// judged by its long gap right after that gap ends. Without any due time around `at`, the limit is unbounded.
pub fn freshness_limit(
    schedule: &Schedule,
    window: Option<Window>,
    tz: Tz,
    at: DateTime<Utc>,
) -> Duration {
    let prev = schedule.prev_at_or_before(at, tz);
    let next = schedule.next_after(at, tz);
    let before_prev = prev.and_then(|p| schedule.prev_at_or_before(p - Duration::seconds(1), tz));
    let gaps = [
        prev.zip(next).map(|(p, n)| n - p),
        before_prev.zip(prev).map(|(b, p)| p - b),
    ];
    let Some(interval) = gaps.into_iter().flatten().max() else {
        return Duration::MAX;
    };
    interval * 2 + window.map_or(Duration::zero(), |w| w.nominal_length())
}

/// Maps a wall-clock time in `tz` to an instant with the module's DST rules: the first occurrence of a
/// repeated time, the first instant after the gap for a skipped one.
pub fn local_to_utc(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first valid wall-clock minute after it is the transition instant (zones change
            // offset on whole minutes). Gaps last at most a day (Samoa, 2011).
            let mut probe = local.with_second(0).unwrap_or(local);
            for _ in 0..(2 * 24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            // Unreachable for real zones; reading the time with the offset before the gap is still sane.
            Utc.from_utc_datetime(&local)
        }
    }
}

/// `2025-03-30 03:00 CEST`: how times appear in reasons.
fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_time::utc;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;
    use chrono_tz::UTC;

    fn sched(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap_or_else(|e| panic!("{e}"))
    }

    fn win(s: &str) -> Window {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_accepts_cron_forms_and_rejects_bad_ones() {
        // Proves the accepted forms (5 and 6 fields, @-nicknames) parse and wrong field counts are refused.
        for ok in [
            "0 3 * * *",
            "*/10 0 3 * * *",
            "@hourly",
            "@daily",
            "@weekly",
            " 0 */6 * * * ",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok} should parse");
        }
        for bad in [
            "0 3 * *",
            "1 2 3 4 5 6 7",
            "61 * * * *",
            "@fortnightly",
            "",
            "0 0 30 2 *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(sched(" @daily ").expr(), "@daily");
    }

    #[test]
    fn next_after_table() {
        // Proves next-time arithmetic for plain, seconds, nickname and DST cases in Berlin and New York.
        let cases: &[(&str, Tz, &str, &str)] = &[
            (
                "0 3 * * *",
                UTC,
                "2025-01-01T03:00:00Z",
                "2025-01-02T03:00:00Z",
            ),
            (
                "0 3 * * *",
                UTC,
                "2025-01-01T02:59:59.9Z",
                "2025-01-01T03:00:00Z",
            ),
            (
                "*/10 * * * * *",
                UTC,
                "2025-01-01T00:00:05Z",
                "2025-01-01T00:00:10Z",
            ),
            (
                "@hourly",
                UTC,
                "2025-01-01T10:00:00Z",
                "2025-01-01T11:00:00Z",
            ),
            (
                "@daily",
                UTC,
                "2025-01-01T10:00:00Z",
                "2025-01-02T00:00:00Z",
            ),
            // 2025-01-01 is a Wednesday; @weekly is Sunday midnight.
            (
                "@weekly",
                UTC,
                "2025-01-01T10:00:00Z",
                "2025-01-05T00:00:00Z",
            ),
            // Berlin in winter (CET, +1).
            (
                "0 3 * * *",
                Berlin,
                "2025-01-10T00:00:00Z",
                "2025-01-10T02:00:00Z",
            ),
            // Berlin spring forward 2025-03-30: 02:00 CET -> 03:00 CEST at 01:00Z; 02:30 does not exist.
            (
                "30 2 * * *",
                Berlin,
                "2025-03-29T23:00:00Z",
                "2025-03-30T01:00:00Z",
            ),
            (
                "30 2 * * *",
                Berlin,
                "2025-03-30T01:00:00Z",
                "2025-03-31T00:30:00Z",
            ),
            // Every 15 minutes: 02:00..02:45 collapse into the 03:00 CEST firing, then 03:15 CEST.
            (
                "*/15 * * * *",
                Berlin,
                "2025-03-30T00:45:00Z",
                "2025-03-30T01:00:00Z",
            ),
            (
                "*/15 * * * *",
                Berlin,
                "2025-03-30T01:00:00Z",
                "2025-03-30T01:15:00Z",
            ),
            // Berlin fall back 2025-10-26: 03:00 CEST -> 02:00 CET at 01:00Z; 02:30 happens twice.
            (
                "30 2 * * *",
                Berlin,
                "2025-10-25T22:00:00Z",
                "2025-10-26T00:30:00Z",
            ),
            (
                "30 2 * * *",
                Berlin,
                "2025-10-26T00:30:00Z",
                "2025-10-27T01:30:00Z",
            ),
            // Starting inside the second pass does not fire 02:30 again.
            (
                "30 2 * * *",
                Berlin,
                "2025-10-26T01:10:00Z",
                "2025-10-27T01:30:00Z",
            ),
            // Hourly: 02:00 CEST (00:00Z) fires, the repeated 02:00 CET (01:00Z) does not, 03:00 CET does.
            (
                "0 * * * *",
                Berlin,
                "2025-10-26T00:00:00Z",
                "2025-10-26T02:00:00Z",
            ),
            // New York spring forward 2025-03-09: 02:00 EST -> 03:00 EDT at 07:00Z.
            (
                "30 2 * * *",
                New_York,
                "2025-03-09T05:00:00Z",
                "2025-03-09T07:00:00Z",
            ),
            (
                "30 2 * * *",
                New_York,
                "2025-03-09T07:00:00Z",
                "2025-03-10T06:30:00Z",
            ),
            // New York fall back 2025-11-02: 02:00 EDT -> 01:00 EST at 06:00Z; 01:30 fires once (EDT).
            (
                "30 1 * * *",
                New_York,
                "2025-11-02T04:00:00Z",
                "2025-11-02T05:30:00Z",
            ),
            (
                "30 1 * * *",
                New_York,
                "2025-11-02T05:30:00Z",
                "2025-11-03T06:30:00Z",
            ),
        ];
        for (expr, tz, after, want) in cases {
            let got = sched(expr).next_after(utc(after), *tz);
            assert_eq!(got, Some(utc(want)), "{expr} in {tz} after {after}");
        }
    }

    #[test]
    fn prev_at_or_before_matches_next_after() {
        // Proves the backwards search finds the latest due time, inclusive, across DST and long gaps.
        let cases: &[(&str, Tz, &str, &str)] = &[
            (
                "0 3 * * *",
                UTC,
                "2025-01-02T03:00:00Z",
                "2025-01-02T03:00:00Z",
            ),
            (
                "0 3 * * *",
                UTC,
                "2025-01-02T02:59:59Z",
                "2025-01-01T03:00:00Z",
            ),
            (
                "*/10 * * * * *",
                UTC,
                "2025-01-01T00:00:19Z",
                "2025-01-01T00:00:10Z",
            ),
            (
                "0 0 1 1 *",
                UTC,
                "2025-06-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "0 0 29 2 *",
                UTC,
                "2027-06-01T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                "30 2 * * *",
                Berlin,
                "2025-03-30T12:00:00Z",
                "2025-03-30T01:00:00Z",
            ),
            (
                "30 2 * * *",
                Berlin,
                "2025-10-26T12:00:00Z",
                "2025-10-26T00:30:00Z",
            ),
        ];
        for (expr, tz, at, want) in cases {
            let got = sched(expr).prev_at_or_before(utc(at), *tz);
            assert_eq!(got, Some(utc(want)), "{expr} in {tz} at {at}");
        }
    }

    #[test]
    fn window_parse_contains_and_length() {
        // Proves window parsing, half-open containment, midnight crossing and nominal length.
        let w = win("02:00-05:00");
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert!(w.contains(t("02:00")) && w.contains(t("04:59")));
        assert!(!w.contains(t("05:00")) && !w.contains(t("01:59")));
        assert_eq!(w.nominal_length(), Duration::hours(3));
        assert_eq!(w.to_string(), "02:00-05:00");

        let night = win("22:30-04:00");
        assert!(night.crosses_midnight());
        assert!(
            night.contains(t("23:00")) && night.contains(t("00:00")) && night.contains(t("03:59"))
        );
        assert!(
            !night.contains(t("04:00"))
                && !night.contains(t("12:00"))
                && !night.contains(t("22:29"))
        );
        assert_eq!(night.nominal_length(), Duration::minutes(330));

        for bad in ["02:00", "02:00-02:00", "2am-5am", "25:00-03:00"] {
            assert!(bad.parse::<Window>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn window_occurrences_across_dst() {
        // Proves the defined behaviour of window occurrences on DST change days.
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let occ = |o: &str, c: &str| WindowOccurrence {
            opens_at: utc(o),
            closes_at: utc(c),
        };
        let w = win("02:00-03:00");
        // Spring forward: 02:00-03:00 does not exist in Berlin, so there is no occurrence that day.
        assert_eq!(w.occurrence_on(day("2025-03-30"), Berlin), None);
        assert_eq!(
            w.occurrence_on(day("2025-03-31"), Berlin),
            Some(occ("2025-03-31T00:00:00Z", "2025-03-31T01:00:00Z"))
        );
        // Partly eaten by the gap: 02:30-04:00 runs 03:00-04:00 CEST.
        assert_eq!(
            win("02:30-04:00").occurrence_on(day("2025-03-30"), Berlin),
            Some(occ("2025-03-30T01:00:00Z", "2025-03-30T02:00:00Z"))
        );
        // Fall back: both passes through 02:xx are in the window, two hours long.
        assert_eq!(
            w.occurrence_on(day("2025-10-26"), Berlin),
            Some(occ("2025-10-26T00:00:00Z", "2025-10-26T02:00:00Z"))
        );
        // A midnight-crossing window over the fall-back night is nine hours long.
        assert_eq!(
            win("22:00-06:00").occurrence_on(day("2025-10-25"), Berlin),
            Some(occ("2025-10-25T20:00:00Z", "2025-10-26T05:00:00Z"))
        );
        // New York spring forward: 01:30-02:30 closes at the gap, 03:00 EDT.
        assert_eq!(
            win("01:30-02:30").occurrence_on(day("2025-03-09"), New_York),
            Some(occ("2025-03-09T06:30:00Z", "2025-03-09T07:00:00Z"))
        );
        // Containment uses the occurrence that started the previous local day for midnight crossers.
        let night = win("22:00-04:00");
        assert_eq!(
            night.occurrence_containing(utc("2025-01-02T02:00:00Z"), Berlin),
            Some(occ("2025-01-01T21:00:00Z", "2025-01-02T03:00:00Z"))
        );
        assert_eq!(
            night.occurrence_containing(utc("2025-01-02T03:00:00Z"), Berlin),
            None
        );
    }

    #[test]
    fn plan_run_table() {
        // Proves start/close/skip decisions for due times inside, before and after windows.
        struct Case {
            expr: &'static str,
            window: Option<&'static str>,
            tz: Tz,
            due: &'static str,
            // Some((start, close)) for a run, None for a skip.
            want: Option<(&'static str, Option<&'static str>)>,
        }
        let cases = [
            // No window: start at due.
            Case {
                expr: "0 3 * * *",
                window: None,
                tz: UTC,
                due: "2025-01-01T03:00:00Z",
                want: Some(("2025-01-01T03:00:00Z", None)),
            },
            // Inside the window.
            Case {
                expr: "0 3 * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T03:00:00Z",
                want: Some(("2025-01-01T03:00:00Z", Some("2025-01-01T05:00:00Z"))),
            },
            // Due after the window: moved to the next day's opening (next due is after that close).
            Case {
                expr: "0 12 * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T12:00:00Z",
                want: Some(("2025-01-02T02:00:00Z", Some("2025-01-02T05:00:00Z"))),
            },
            // Due before the window the same day.
            Case {
                expr: "0 1 * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T01:00:00Z",
                want: Some(("2025-01-01T02:00:00Z", Some("2025-01-01T05:00:00Z"))),
            },
            // Due exactly at the close is outside (half-open window).
            Case {
                expr: "0 5 * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T05:00:00Z",
                want: Some(("2025-01-02T02:00:00Z", Some("2025-01-02T05:00:00Z"))),
            },
            // Hourly outside the window: superseded, the 02:00 due time runs instead.
            Case {
                expr: "0 * * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T01:00:00Z",
                want: None,
            },
            Case {
                expr: "0 * * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T06:00:00Z",
                want: None,
            },
            Case {
                expr: "0 * * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T04:00:00Z",
                want: Some(("2025-01-01T04:00:00Z", Some("2025-01-01T05:00:00Z"))),
            },
            // Every six hours: only 00:00 runs (moved to 02:00); 06, 12, 18 are superseded by the next 00:00.
            Case {
                expr: "0 */6 * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T00:00:00Z",
                want: Some(("2025-01-01T02:00:00Z", Some("2025-01-01T05:00:00Z"))),
            },
            Case {
                expr: "0 */6 * * *",
                window: Some("02:00-05:00"),
                tz: UTC,
                due: "2025-01-01T18:00:00Z",
                want: None,
            },
            // Window across midnight, due in the evening before it opens, and in its early-morning part.
            Case {
                expr: "0 20 * * *",
                window: Some("22:00-04:00"),
                tz: UTC,
                due: "2025-01-01T20:00:00Z",
                want: Some(("2025-01-01T22:00:00Z", Some("2025-01-02T04:00:00Z"))),
            },
            Case {
                expr: "0 1 * * *",
                window: Some("22:00-04:00"),
                tz: UTC,
                due: "2025-01-02T01:00:00Z",
                want: Some(("2025-01-02T01:00:00Z", Some("2025-01-02T04:00:00Z"))),
            },
            // Berlin local time: 12:00 CET due moves to 02:00 CET = 01:00Z next day.
            Case {
                expr: "0 12 * * *",
                window: Some("02:00-05:00"),
                tz: Berlin,
                due: "2025-01-01T11:00:00Z",
                want: Some(("2025-01-02T01:00:00Z", Some("2025-01-02T04:00:00Z"))),
            },
            // Berlin spring forward: 02:00-03:00 does not occur on 2025-03-30. The 01:30 CET run would move
            // to 2025-03-31 02:00 CEST, but the 01:30 CEST run that day falls in that same window: skipped.
            Case {
                expr: "30 1 * * *",
                window: Some("02:00-03:00"),
                tz: Berlin,
                due: "2025-03-30T00:30:00Z",
                want: None,
            },
            // The day before, the same schedule moves to 02:00 CET.
            Case {
                expr: "30 1 * * *",
                window: Some("02:00-03:00"),
                tz: Berlin,
                due: "2025-03-29T00:30:00Z",
                want: Some(("2025-03-29T01:00:00Z", Some("2025-03-29T02:00:00Z"))),
            },
            // Fall back: a run due 02:30 CET (second pass, 01:30Z) is still inside the two-hour occurrence.
            Case {
                expr: "*/30 * * * *",
                window: Some("02:00-03:00"),
                tz: Berlin,
                due: "2025-10-26T01:30:00Z",
                want: Some(("2025-10-26T01:30:00Z", Some("2025-10-26T02:00:00Z"))),
            },
        ];
        for c in cases {
            let window = c.window.map(win);
            let plan = plan_run(&sched(c.expr), window, c.tz, utc(c.due));
            assert_eq!(plan.due(), utc(c.due));
            match (c.want, &plan) {
                (
                    Some((start, close)),
                    PlannedRun::Run {
                        start: s,
                        window_closes_at,
                        ..
                    },
                ) => {
                    assert_eq!(*s, utc(start), "{} {:?} due {}", c.expr, c.window, c.due);
                    assert_eq!(
                        *window_closes_at,
                        close.map(utc),
                        "{} {:?} due {}",
                        c.expr,
                        c.window,
                        c.due
                    );
                }
                (None, PlannedRun::Skipped { reason, .. }) => {
                    assert!(reason.contains("superseded"), "{reason}");
                }
                _ => panic!(
                    "{} {:?} due {}: unexpected {plan:?}",
                    c.expr, c.window, c.due
                ),
            }
        }
    }

    #[test]
    fn jitter_stays_inside_the_window() {
        // Proves jitter scales with the fraction and never reaches the window's close.
        let start = utc("2025-01-01T02:00:00Z");
        let close = Some(utc("2025-01-01T02:10:00Z"));
        let five_min = std::time::Duration::from_secs(300);
        let hour = std::time::Duration::from_secs(3600);
        let cases = [
            (None, five_min, 0.0, "2025-01-01T02:00:00Z"),
            (None, five_min, 0.5, "2025-01-01T02:02:30Z"),
            (None, five_min, 1.0, "2025-01-01T02:05:00Z"),
            (close, five_min, 0.5, "2025-01-01T02:02:30Z"),
            // An hour of jitter in a ten-minute window is scaled to the 9m59s left.
            (close, hour, 0.5, "2025-01-01T02:04:59Z"),
            (close, hour, 1.0, "2025-01-01T02:09:59Z"),
            (close, hour, f64::NAN, "2025-01-01T02:00:00Z"),
            (close, hour, 7.0, "2025-01-01T02:09:59Z"),
        ];
        for (i, (closes, jitter, fraction, want)) in cases.into_iter().enumerate() {
            let got = jittered_start(start, closes, jitter, fraction);
            assert_eq!(got, utc(want), "case {i}");
            if let Some(c) = closes {
                assert!(got < c, "case {i} left the window");
            }
        }
        // Starting in the last second of the window leaves no room: no delay.
        let last = utc("2025-01-01T02:09:59Z");
        assert_eq!(jittered_start(last, close, hour, 0.9), last);
    }

    #[test]
    fn catch_up_runs_the_latest_missed_tick_once() {
        // Proves catch-up returns one due time for many missed ticks, and nothing without history.
        let s = sched("0 3 * * *");
        let now = utc("2025-01-05T10:00:00Z");
        // Down for three days: one run, for the most recent tick.
        assert_eq!(
            catch_up(&s, UTC, Some(utc("2025-01-02T03:00:00Z")), now),
            Some(utc("2025-01-05T03:00:00Z"))
        );
        // Today's tick already attempted.
        assert_eq!(
            catch_up(&s, UTC, Some(utc("2025-01-05T03:00:00Z")), now),
            None
        );
        // No history: wait for the next due time.
        assert_eq!(catch_up(&s, UTC, None, now), None);
        // Due exactly now counts as missed.
        assert_eq!(
            catch_up(
                &s,
                UTC,
                Some(utc("2025-01-04T03:00:00Z")),
                utc("2025-01-05T03:00:00Z")
            ),
            Some(utc("2025-01-05T03:00:00Z"))
        );
        // In Berlin the tick is 03:00 local = 02:00Z.
        assert_eq!(
            catch_up(&s, Berlin, Some(utc("2025-01-04T02:00:00Z")), now),
            Some(utc("2025-01-05T02:00:00Z"))
        );
    }

    #[test]
    fn plan_catch_up_keeps_due_and_respects_window() {
        // Proves a missed run starts now inside its window, waits for the opening outside, keeps its due time.
        let s = sched("0 3 * * *");
        let w = Some(win("02:00-05:00"));
        let missed = utc("2025-01-05T03:00:00Z");
        assert_eq!(
            plan_catch_up(&s, w, UTC, missed, utc("2025-01-05T04:00:00Z")),
            PlannedRun::Run {
                due: missed,
                start: utc("2025-01-05T04:00:00Z"),
                window_closes_at: Some(utc("2025-01-05T05:00:00Z")),
            }
        );
        // After the window closed: the next window also holds the next regular tick, so skip the missed one.
        let plan = plan_catch_up(&s, w, UTC, missed, utc("2025-01-05T06:00:00Z"));
        assert!(
            matches!(&plan, PlannedRun::Skipped { due, .. } if *due == missed),
            "{plan:?}"
        );
        // A daily noon schedule missed: runs at the next opening.
        let noon = sched("0 12 * * *");
        let missed = utc("2025-01-05T12:00:00Z");
        assert_eq!(
            plan_catch_up(&noon, w, UTC, missed, utc("2025-01-05T13:00:00Z")),
            PlannedRun::Run {
                due: missed,
                start: utc("2025-01-06T02:00:00Z"),
                window_closes_at: Some(utc("2025-01-06T05:00:00Z")),
            }
        );
        // Without a window: at once.
        assert_eq!(
            plan_catch_up(&noon, None, UTC, missed, utc("2025-01-05T13:00:00Z")).start(),
            Some(utc("2025-01-05T13:00:00Z"))
        );
    }

    #[test]
    fn next_runs_lists_only_runs_that_start() {
        // Proves next_runs skips superseded due times and handles per-second schedules quickly.
        let starts =
            |expr: &str, window: Option<&str>, after: &str, n: usize| -> Vec<DateTime<Utc>> {
                next_runs(&sched(expr), window.map(win), UTC, utc(after), n)
                    .iter()
                    .map(|p| p.start().expect("only runs"))
                    .collect()
            };
        assert_eq!(
            starts("0 * * * *", Some("02:00-04:00"), "2025-01-01T12:00:00Z", 3),
            vec![
                utc("2025-01-02T02:00:00Z"),
                utc("2025-01-02T03:00:00Z"),
                utc("2025-01-03T02:00:00Z")
            ]
        );
        assert_eq!(
            starts(
                "*/5 * * * * *",
                Some("02:00-02:01"),
                "2025-01-01T12:00:00Z",
                2
            ),
            vec![utc("2025-01-02T02:00:00Z"), utc("2025-01-02T02:00:05Z")]
        );
        assert_eq!(
            starts("0 3 * * *", None, "2025-01-01T03:00:00Z", 2),
            vec![utc("2025-01-02T03:00:00Z"), utc("2025-01-03T03:00:00Z")]
        );
    }

    #[test]
    fn freshness_limit_table() {
        // Proves the limit is twice the surrounding interval plus the window, with irregular schedules.
        let cases: &[(&str, Option<&str>, Tz, &str, Duration)] = &[
            (
                "0 3 * * *",
                None,
                UTC,
                "2025-01-05T10:00:00Z",
                Duration::days(2),
            ),
            (
                "0 3 * * *",
                Some("02:00-05:00"),
                UTC,
                "2025-01-05T10:00:00Z",
                Duration::hours(51),
            ),
            (
                "*/30 * * * * *",
                None,
                UTC,
                "2025-01-05T10:00:10Z",
                Duration::minutes(1),
            ),
            (
                "@hourly",
                None,
                UTC,
                "2025-01-05T10:30:00Z",
                Duration::hours(2),
            ),
            // Weekdays at 03:00: on Monday 2025-01-06 the Friday->Monday gap (3 days) counts.
            (
                "0 3 * * 1-5",
                None,
                UTC,
                "2025-01-06T10:00:00Z",
                Duration::days(6),
            ),
            // On Wednesday both surrounding gaps are one day.
            (
                "0 3 * * 1-5",
                None,
                UTC,
                "2025-01-08T10:00:00Z",
                Duration::days(2),
            ),
            // The 23-hour spring-forward day in Berlin: the longer 24-hour gap before it counts.
            (
                "0 12 * * *",
                None,
                Berlin,
                "2025-03-30T12:00:00Z",
                Duration::hours(48),
            ),
            // The day after: gaps of 23 h and 24 h around a daily noon in Berlin.
            (
                "0 12 * * *",
                None,
                Berlin,
                "2025-03-31T12:00:00Z",
                Duration::hours(48),
            ),
            (
                "0 3 * * *",
                None,
                Berlin,
                "2025-03-30T10:00:00Z",
                Duration::hours(48),
            ),
            (
                "0 3 * * *",
                None,
                Berlin,
                "2025-03-31T03:00:00Z",
                Duration::hours(48),
            ),
        ];
        for (expr, window, tz, at, want) in cases {
            let got = freshness_limit(&sched(expr), window.map(win), *tz, utc(at));
            assert_eq!(got, *want, "{expr} {window:?} {tz} at {at}");
        }
    }
}
