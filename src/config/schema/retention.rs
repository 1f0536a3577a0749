//! `retention = { keep_* = N }`: restic-style rules, in `[defaults]` or one `[[database]]`
//! (docs/configuration.md, the `retention` row).

use crate::config::reader::{At, Reader, Schema, Section};
use crate::repository::retention::RetentionPolicy;

/// The rules, in the order messages list them.
const KEYS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
];

/// The keys a `retention` table accepts.
pub(super) static SCHEMA: Schema = Schema {
    name: "retention",
    keys: &[KEYS],
    tables: &[],
};

/// The `retention` table of `parent`, named `name` in messages; `None` when it is not a table or a rule
/// is invalid.
pub(super) fn read(
    reader: &mut Reader<'_>,
    parent: Section<'_>,
    name: &str,
) -> Option<At<RetentionPolicy>> {
    let section = reader.table(parent, &SCHEMA, name)?;
    reader.check_keys(section);
    let mut policy = RetentionPolicy::default();
    let mut any_rule = false;
    let mut ok = true;
    for key in KEYS {
        if !section.contains(key) {
            continue;
        }
        any_rule = true;
        let Some(at) = reader.integer(section, key) else {
            ok = false;
            continue;
        };
        let value = match u32::try_from(at.value) {
            Ok(value) => value,
            Err(_) if at.value < 0 => {
                reader.error(
                    at.offset,
                    &at.key,
                    format!(
                        "{} is negative; use a count of backups to keep, or 0 to turn the rule off",
                        at.value
                    ),
                );
                ok = false;
                continue;
            }
            Err(_) => {
                reader.error(at.offset, &at.key, format!("{} is too large", at.value));
                ok = false;
                continue;
            }
        };
        let rule = (value > 0).then_some(value);
        match *key {
            "keep_last" => policy.keep_last = rule,
            "keep_hourly" => policy.keep_hourly = rule,
            "keep_daily" => policy.keep_daily = rule,
            "keep_weekly" => policy.keep_weekly = rule,
            "keep_monthly" => policy.keep_monthly = rule,
            "keep_yearly" => policy.keep_yearly = rule,
            _ => unreachable!("KEYS lists exactly these"),
        }
    }
    if ok && any_rule && policy.is_empty() {
        reader.error(
            section.offset,
            name,
            "impossible retention: every rule is 0, so it would keep nothing; set at least one \
             keep_* above 0, or remove `retention` to keep every backup",
        );
        return None;
    }
    ok.then_some(At {
        value: policy,
        offset: section.offset,
        key: name.to_string(),
    })
}
