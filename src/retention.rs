//! Which backups to keep: restic `forget` semantics over complete backups, as a pure function of the backup
//! times, the policy, the time zone and `now`.

/// `retention = { keep_last = 7, keep_daily = 14, ... }`. `None` means the rule is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
}

impl RetentionPolicy {
    /// True when no rule is set: such a policy keeps everything (nothing is pruned).
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}
