//! Which backups to keep: restic `forget` semantics over complete backups, as a pure function of the backup
//! times, the policy, the time zone and `now`.
//!
//! # Rules (restic `forget`, as `docs/configuration.md` describes `retention`)
//!
//! Backups are sorted newest first (ties broken by id, descending, so the result never depends on input
//! order). Each rule `keep_X = N` walks that list with a counter `N` and the bucket key of the last backup it
//! kept: a backup whose key differs from that key is the newest backup of a new period, so it is kept and
//! uses one count. `keep_last` gives every backup its own key; `keep_hourly`/`keep_daily`/`keep_monthly`/
//! `keep_yearly` use the local hour/day/month/year in the daemon's zone; `keep_weekly` uses the ISO week and
//! ISO week-year (2024-12-30 and 2025-01-05 are both 2025-W01). Periods without backups do not count, so
//! missed days extend the history backwards. Oldest rule (restic 0.16): if a rule still has counts left at the
//! oldest backup, that backup is kept too even if its period already has a kept backup ("oldest daily
//! snapshot"). A backup is kept if any rule keeps it.
//!
//! Buckets use one IANA zone for all backups (restic uses each snapshot's stored offset): on a fall-back
//! night the two passes through the repeated hour are the same local hour and day, so they never form two
//! daily buckets.
//!
//! Future-dated backups (clock skew) are treated as restic treats them for count rules: they sort first and
//! use counts like any other. Their reasons say they are dated in the future.
//!
//! # d1vault safety on top
//!
//! * The caller passes only complete backups (manifest present); incomplete ones are not retention's business.
//! * A policy without any rule (all `None` or `0`) keeps everything: "no policy: keeping all".
//! * The newest backup is always kept, and so is the newest one not dated in the future, so clock skew cannot
//!   make the real latest backup disappear.
//! * If the rules would delete every backup, everything is kept and the reasons say so (cannot happen with the
//!   count rules above, which always keep the newest; it guards rules added later).

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// `retention = { keep_last = 7, keep_daily = 14, ... }`. `None` means the rule is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    pub keep_yearly: Option<u32>,
}

impl RetentionPolicy {
    /// True when no rule is set: such a policy keeps everything (nothing is pruned).
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }

    /// True when no rule would keep anything: unset or `0` everywhere (restic treats `--keep-last 0` the same).
    pub fn keeps_nothing_by_rule(&self) -> bool {
        self.rules()
            .iter()
            .all(|(_, count)| count.unwrap_or(0) == 0)
    }

    fn rules(&self) -> [(Period, Option<u32>); 6] {
        [
            (Period::Last, self.keep_last),
            (Period::Hourly, self.keep_hourly),
            (Period::Daily, self.keep_daily),
            (Period::Weekly, self.keep_weekly),
            (Period::Monthly, self.keep_monthly),
            (Period::Yearly, self.keep_yearly),
        ]
    }
}

/// One complete backup as retention sees it: its id and its start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRef {
    /// The backup id.
    pub id: String,
    /// When the backup started.
    pub time: DateTime<Utc>,
}

/// Keep or delete one backup, with human-readable reasons (printed by `prune`, logged by the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The backup id.
    pub id: String,
    /// When the backup started.
    pub time: DateTime<Utc>,
    /// Keep (`true`) or delete.
    pub keep: bool,
    /// The rules that keep it, e.g. `keep_daily 3/14`; empty when it is deleted.
    pub reasons: Vec<String>,
}

/// The periods restic buckets by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    /// restic's reason word: "daily snapshot".
    fn word(self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The bucket key of a backup at position `index` taken at `time` in `tz` (restic's integer keys).
    fn key(self, time: DateTime<Utc>, tz: Tz, index: usize) -> i64 {
        let t = time.with_timezone(&tz);
        let (y, m, d, h) = (
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
        );
        match self {
            Period::Last => index as i64,
            Period::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Period::Daily => (y * 100 + m) * 100 + d,
            Period::Weekly => {
                let week = t.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Period::Monthly => y * 100 + m,
            Period::Yearly => y,
        }
    }

    /// The period a backup falls in, as a person would name it: "day 2025-01-03", "week 2025-W01".
    fn label(self, time: DateTime<Utc>, tz: Tz) -> String {
        let t = time.with_timezone(&tz);
        match self {
            Period::Last => "position".to_string(),
            Period::Hourly => format!("hour {}", t.format("%Y-%m-%d %H:00 %Z")),
            Period::Daily => format!("day {}", t.format("%Y-%m-%d")),
            Period::Weekly => {
                let week = t.iso_week();
                format!("week {}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => format!("month {}", t.format("%Y-%m")),
            Period::Yearly => format!("year {}", t.format("%Y")),
        }
    }
}

/// One rule's walk state: counts left and the key of the last backup it kept.
struct Bucket {
    period: Period,
    limit: u32,
    remaining: u32,
    last_key: Option<i64>,
}

/// Decides, for every backup, whether the policy keeps it, newest first, with the reasons (see the module
/// documentation for the exact rules). `backups` must hold only complete backups of one database.
pub fn apply(
    policy: &RetentionPolicy,
    backups: &[BackupRef],
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut sorted: Vec<&BackupRef> = backups.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));

    let mut decisions: Vec<Decision> = sorted
        .iter()
        .map(|b| Decision {
            id: b.id.clone(),
            time: b.time,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    if decisions.is_empty() {
        return decisions;
    }

    if policy.keeps_nothing_by_rule() {
        for d in &mut decisions {
            d.keep = true;
            d.reasons.push("no policy: keeping all".to_string());
        }
    } else {
        apply_rules(policy, &sorted, tz, &mut decisions);
        if decisions.iter().all(|d| !d.keep) {
            for d in &mut decisions {
                d.keep = true;
                d.reasons = vec![
                    "the policy would delete every backup: keeping all (check the retention settings)"
                        .to_string(),
                ];
            }
        }
    }

    protect_newest(&mut decisions, now);
    for d in decisions.iter_mut().filter(|d| d.time > now) {
        d.reasons.push(format!(
            "dated in the future ({}), after now ({})",
            d.time.to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    decisions
}

/// restic's bucket walk over the newest-first list.
fn apply_rules(
    policy: &RetentionPolicy,
    sorted: &[&BackupRef],
    tz: Tz,
    decisions: &mut [Decision],
) {
    let mut buckets: Vec<Bucket> = policy
        .rules()
        .into_iter()
        .filter_map(|(period, count)| {
            count.filter(|&c| c > 0).map(|limit| Bucket {
                period,
                limit,
                remaining: limit,
                last_key: None,
            })
        })
        .collect();
    let oldest = sorted.len() - 1;
    for (index, backup) in sorted.iter().enumerate() {
        let decision = &mut decisions[index];
        let mut why_not = Vec::new();
        for bucket in &mut buckets {
            if bucket.remaining == 0 {
                why_not.push(format!(
                    "keep_{} = {} already used by newer backups",
                    bucket.period.word(),
                    bucket.limit
                ));
                continue;
            }
            let key = bucket.period.key(backup.time, tz, index);
            let new_period = bucket.last_key != Some(key);
            if new_period || index == oldest {
                decision.keep = true;
                decision.reasons.push(if new_period {
                    format!("{} snapshot", bucket.period.word())
                } else {
                    format!("oldest {} snapshot", bucket.period.word())
                });
                bucket.last_key = Some(key);
                bucket.remaining -= 1;
            } else {
                why_not.push(format!(
                    "{} already has a newer backup",
                    bucket.period.label(backup.time, tz)
                ));
            }
        }
        if !decision.keep {
            decision.reasons = why_not;
        }
    }
}

/// d1vault's rule: the newest backup, and the newest one not dated in the future, are never deleted.
fn protect_newest(decisions: &mut [Decision], now: DateTime<Utc>) {
    if let Some(newest) = decisions.first_mut() {
        if !newest.keep {
            // Its reasons so far explain a deletion that is not happening.
            newest.reasons.clear();
        }
        newest.keep = true;
        newest
            .reasons
            .push("newest backup is always kept".to_string());
    }
    if let Some(present) = decisions.iter_mut().find(|d| d.time <= now)
        && !present
            .reasons
            .iter()
            .any(|r| r == "newest backup is always kept")
    {
        if !present.keep {
            present.reasons.clear();
        }
        present.keep = true;
        present
            .reasons
            .push("newest backup not dated in the future is always kept".to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_time::utc;
    use chrono::{Duration, NaiveDate, TimeZone};
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;
    use chrono_tz::Pacific::Auckland;
    use chrono_tz::UTC;

    /// Backups named by their RFC 3339 time, so kept sets read naturally.
    fn backups(times: &[&str]) -> Vec<BackupRef> {
        times
            .iter()
            .map(|t| BackupRef {
                id: t.to_string(),
                time: utc(t),
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect()
    }

    fn reasons<'a>(decisions: &'a [Decision], id: &str) -> &'a [String] {
        &decisions
            .iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no decision for {id}"))
            .reasons
    }

    fn policy(f: impl FnOnce(&mut RetentionPolicy)) -> RetentionPolicy {
        let mut p = RetentionPolicy::default();
        f(&mut p);
        p
    }

    const NOW: &str = "2030-01-01T00:00:00Z";

    #[test]
    fn restic_doc_example_twelve_sundays_keep_daily_4() {
        // Proves restic's documented example: weekly Sunday backups with keep_daily 4 keep the last four.
        let all = backups(&[
            "2019-09-01T11:00:00Z",
            "2019-09-08T11:00:00Z",
            "2019-09-15T11:00:00Z",
            "2019-09-22T11:00:00Z",
            "2019-09-29T11:00:00Z",
            "2019-10-06T11:00:00Z",
            "2019-10-13T11:00:00Z",
            "2019-10-20T11:00:00Z",
            "2019-10-27T11:00:00Z",
            "2019-11-03T11:00:00Z",
            "2019-11-10T11:00:00Z",
            "2019-11-17T11:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_daily = Some(4)), &all, UTC, utc(NOW));
        assert_eq!(d.len(), 12);
        assert_eq!(
            kept(&d),
            [
                "2019-11-17T11:00:00Z",
                "2019-11-10T11:00:00Z",
                "2019-11-03T11:00:00Z",
                "2019-10-27T11:00:00Z"
            ]
        );
        assert_eq!(reasons(&d, "2019-11-10T11:00:00Z"), ["daily snapshot"]);
        assert_eq!(
            reasons(&d, "2019-11-17T11:00:00Z"),
            ["daily snapshot", "newest backup is always kept"]
        );
        assert_eq!(
            reasons(&d, "2019-09-01T11:00:00Z"),
            ["keep_daily = 4 already used by newer backups"]
        );
        // Newest first.
        assert!(d.windows(2).all(|w| w[0].time >= w[1].time));
    }

    #[test]
    fn restic_doc_example_daily_backups_with_gfs_policy() {
        // Proves restic's documented combined example: dailies include some weeklies, monthlies and yearlies.
        let start = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        let all: Vec<BackupRef> = (0..=(365 + 366 + 30))
            .map(|i| {
                let day = start + Duration::days(i);
                let time = Utc.from_utc_datetime(&day.and_hms_opt(3, 0, 0).unwrap());
                BackupRef {
                    id: day.to_string(),
                    time,
                }
            })
            .collect();
        assert_eq!(all.last().unwrap().id, "2025-01-31");
        let p = policy(|p| {
            p.keep_daily = Some(7);
            p.keep_weekly = Some(5);
            p.keep_monthly = Some(12);
            p.keep_yearly = Some(3);
        });
        let d = apply(&p, &all, UTC, utc("2025-02-01T00:00:00Z"));
        let mut want = vec![
            // 7 dailies (2025-01-31 is a Friday; Jan 26 also ends ISO week 4).
            "2025-01-31",
            "2025-01-30",
            "2025-01-29",
            "2025-01-28",
            "2025-01-27",
            "2025-01-26",
            "2025-01-25",
            // 3 more weeklies: Sundays ending weeks 3, 2 and 1 of 2025.
            "2025-01-19",
            "2025-01-12",
            "2025-01-05",
            // 11 more monthlies: month ends back to February 2024.
            "2024-12-31",
            "2024-11-30",
            "2024-10-31",
            "2024-09-30",
            "2024-08-31",
            "2024-07-31",
            "2024-06-30",
            "2024-05-31",
            "2024-04-30",
            "2024-03-31",
            "2024-02-29",
            // 1 more yearly: 2023 (2024's is 2024-12-31).
            "2023-12-31",
        ];
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(kept(&d), want);
        assert_eq!(
            reasons(&d, "2024-12-31"),
            ["monthly snapshot", "yearly snapshot"]
        );
        assert_eq!(
            reasons(&d, "2025-01-26"),
            ["daily snapshot", "weekly snapshot"]
        );
        // Counters ran out before the oldest backup, so the oldest rule does not apply.
        assert!(!d.last().unwrap().keep);
    }

    #[test]
    fn missed_days_extend_history() {
        // Proves keep_daily counts days that have backups, not calendar days (restic, not "last N days").
        let all = backups(&[
            "2025-01-20T03:00:00Z",
            "2025-01-19T03:00:00Z",
            "2025-01-10T03:00:00Z",
            "2025-01-09T03:00:00Z",
            "2025-01-01T03:00:00Z",
            "2024-12-01T03:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_daily = Some(4)), &all, UTC, utc(NOW));
        assert_eq!(
            kept(&d),
            [
                "2025-01-20T03:00:00Z",
                "2025-01-19T03:00:00Z",
                "2025-01-10T03:00:00Z",
                "2025-01-09T03:00:00Z"
            ]
        );
    }

    #[test]
    fn oldest_rule_keeps_oldest_when_counts_remain() {
        // Proves the oldest backup is kept ("oldest daily snapshot") when a rule still has counts left.
        let all = backups(&[
            "2025-01-10T18:00:00Z",
            "2025-01-10T12:00:00Z",
            "2025-01-10T06:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_daily = Some(5)), &all, UTC, utc(NOW));
        assert_eq!(kept(&d), ["2025-01-10T18:00:00Z", "2025-01-10T06:00:00Z"]);
        assert_eq!(
            reasons(&d, "2025-01-10T06:00:00Z"),
            ["oldest daily snapshot"]
        );
        assert_eq!(
            reasons(&d, "2025-01-10T12:00:00Z"),
            ["day 2025-01-10 already has a newer backup"]
        );
        // With the count used up, the oldest goes.
        let d = apply(&policy(|p| p.keep_daily = Some(1)), &all, UTC, utc(NOW));
        assert_eq!(kept(&d), ["2025-01-10T18:00:00Z"]);
        // keep_last's oldest is simply a "last snapshot".
        let d = apply(&policy(|p| p.keep_last = Some(5)), &all, UTC, utc(NOW));
        assert_eq!(kept(&d).len(), 3);
        assert_eq!(reasons(&d, "2025-01-10T06:00:00Z"), ["last snapshot"]);
    }

    #[test]
    fn fall_back_night_is_one_daily_and_one_hourly_bucket() {
        // Proves the repeated hour of a fall-back night does not create two daily (or hourly) buckets.
        // Berlin 2025-10-26: 02:30 CEST = 00:30Z and 02:30 CET = 01:30Z.
        let all = backups(&[
            "2025-10-26T01:30:00Z",
            "2025-10-26T00:30:00Z",
            "2025-10-25T00:30:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_daily = Some(2)), &all, Berlin, utc(NOW));
        assert_eq!(kept(&d), ["2025-10-26T01:30:00Z", "2025-10-25T00:30:00Z"]);
        let d = apply(&policy(|p| p.keep_hourly = Some(2)), &all, Berlin, utc(NOW));
        assert_eq!(kept(&d), ["2025-10-26T01:30:00Z", "2025-10-25T00:30:00Z"]);
        // New York 2025-11-02: 01:30 EDT = 05:30Z and 01:30 EST = 06:30Z.
        let all = backups(&[
            "2025-11-02T06:30:00Z",
            "2025-11-02T05:30:00Z",
            "2025-11-01T05:30:00Z",
        ]);
        let d = apply(
            &policy(|p| p.keep_daily = Some(2)),
            &all,
            New_York,
            utc(NOW),
        );
        assert_eq!(kept(&d), ["2025-11-02T06:30:00Z", "2025-11-01T05:30:00Z"]);
        // Spring forward day (23 hours) is still one day: 00:30 CET and 03:30 CEST on 2025-03-30.
        let all = backups(&[
            "2025-03-30T01:30:00Z",
            "2025-03-29T23:30:00Z",
            "2025-03-29T12:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_daily = Some(2)), &all, Berlin, utc(NOW));
        assert_eq!(kept(&d), ["2025-03-30T01:30:00Z", "2025-03-29T12:00:00Z"]);
    }

    #[test]
    fn iso_week_year_ends() {
        // Proves weekly buckets use the ISO week-year: 2024-12-30..2025-01-05 is 2025-W01; 2020 has W53.
        let all = backups(&[
            "2025-01-05T12:00:00Z",
            "2024-12-30T12:00:00Z",
            "2024-12-23T12:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_weekly = Some(2)), &all, UTC, utc(NOW));
        assert_eq!(kept(&d), ["2025-01-05T12:00:00Z", "2024-12-23T12:00:00Z"]);
        assert_eq!(
            reasons(&d, "2024-12-30T12:00:00Z"),
            ["week 2025-W01 already has a newer backup"]
        );

        let all = backups(&[
            "2021-01-04T12:00:00Z",
            "2021-01-03T12:00:00Z",
            "2020-12-31T12:00:00Z",
            "2020-12-27T12:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_weekly = Some(3)), &all, UTC, utc(NOW));
        assert_eq!(
            kept(&d),
            [
                "2021-01-04T12:00:00Z",
                "2021-01-03T12:00:00Z",
                "2020-12-27T12:00:00Z"
            ]
        );
        assert_eq!(
            reasons(&d, "2020-12-31T12:00:00Z"),
            ["week 2020-W53 already has a newer backup"]
        );
    }

    #[test]
    fn buckets_use_the_configured_zone_not_utc() {
        // Proves daily buckets follow the local day when it differs from the UTC day.
        // Auckland is UTC+13 in January: 2025-01-10T23:00Z and 2025-01-11T01:00Z are both local 2025-01-11.
        let all = backups(&[
            "2025-01-11T01:00:00Z",
            "2025-01-10T23:00:00Z",
            "2025-01-09T23:00:00Z",
        ]);
        let p = policy(|p| p.keep_daily = Some(2));
        let d = apply(&p, &all, Auckland, utc(NOW));
        assert_eq!(kept(&d), ["2025-01-11T01:00:00Z", "2025-01-09T23:00:00Z"]);
        assert_eq!(
            reasons(&d, "2025-01-10T23:00:00Z"),
            ["day 2025-01-11 already has a newer backup"]
        );
        let d = apply(&p, &all, UTC, utc(NOW));
        assert_eq!(kept(&d), ["2025-01-11T01:00:00Z", "2025-01-10T23:00:00Z"]);
    }

    #[test]
    fn future_dated_backups_use_counts_and_never_hide_the_present_newest() {
        // Proves future-dated backups count like restic's, while the newest present backup stays protected.
        let now = utc("2025-01-10T12:00:00Z");
        let all = backups(&[
            "2025-01-11T03:00:00Z",
            "2025-01-10T03:00:00Z",
            "2025-01-09T03:00:00Z",
        ]);
        let d = apply(&policy(|p| p.keep_last = Some(1)), &all, UTC, now);
        assert_eq!(kept(&d), ["2025-01-11T03:00:00Z", "2025-01-10T03:00:00Z"]);
        let future = reasons(&d, "2025-01-11T03:00:00Z");
        assert!(
            future.iter().any(|r| r.starts_with("dated in the future")),
            "{future:?}"
        );
        assert_eq!(
            reasons(&d, "2025-01-10T03:00:00Z"),
            ["newest backup not dated in the future is always kept"]
        );
        assert_eq!(
            reasons(&d, "2025-01-09T03:00:00Z"),
            ["keep_last = 1 already used by newer backups"]
        );
    }

    #[test]
    fn ties_are_broken_by_id_whatever_the_input_order() {
        // Proves equal times are ordered by id (descending), so decisions do not depend on listing order.
        let t = utc("2025-01-10T03:00:00Z");
        let a = BackupRef {
            id: "a".into(),
            time: t,
        };
        let b = BackupRef {
            id: "b".into(),
            time: t,
        };
        let p = policy(|p| p.keep_last = Some(1));
        for input in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let d = apply(&p, &input, UTC, utc(NOW));
            assert_eq!(
                d.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                ["b", "a"]
            );
            assert_eq!(kept(&d), ["b"]);
        }
    }

    #[test]
    fn empty_policy_and_empty_input_keep_everything() {
        // Proves an empty (or all-zero) policy keeps all backups and an empty listing yields no decisions.
        let all = backups(&["2025-01-10T03:00:00Z", "2025-01-09T03:00:00Z"]);
        for p in [
            RetentionPolicy::default(),
            policy(|p| p.keep_daily = Some(0)),
        ] {
            let d = apply(&p, &all, UTC, utc(NOW));
            assert!(d.iter().all(|d| d.keep));
            assert_eq!(
                reasons(&d, "2025-01-09T03:00:00Z"),
                ["no policy: keeping all"]
            );
            assert_eq!(
                reasons(&d, "2025-01-10T03:00:00Z"),
                ["no policy: keeping all", "newest backup is always kept"]
            );
        }
        assert!(apply(&policy(|p| p.keep_last = Some(1)), &[], UTC, utc(NOW)).is_empty());
        assert!(RetentionPolicy::default().is_empty());
        assert!(!policy(|p| p.keep_daily = Some(0)).is_empty());
    }

    #[test]
    fn several_rules_report_every_reason() {
        // Proves one backup can satisfy several rules, and a deleted one lists why each rule passed it by.
        let all = backups(&[
            "2025-01-10T18:00:00Z",
            "2025-01-10T06:00:00Z",
            "2025-01-09T06:00:00Z",
            "2025-01-08T06:00:00Z",
        ]);
        let p = policy(|p| {
            p.keep_last = Some(1);
            p.keep_daily = Some(2);
        });
        let d = apply(&p, &all, UTC, utc(NOW));
        assert_eq!(kept(&d), ["2025-01-10T18:00:00Z", "2025-01-09T06:00:00Z"]);
        assert_eq!(
            reasons(&d, "2025-01-10T18:00:00Z"),
            [
                "last snapshot",
                "daily snapshot",
                "newest backup is always kept"
            ]
        );
        assert_eq!(
            reasons(&d, "2025-01-10T06:00:00Z"),
            [
                "keep_last = 1 already used by newer backups",
                "day 2025-01-10 already has a newer backup"
            ]
        );
    }
}
