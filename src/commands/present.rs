//! What the commands draw besides their result lines: byte sizes for people and the progress line of
//! long restores and verifies. The library reports progress as events (`crate::restore::ProgressEvent`);
//! only this module knows how it looks.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::progress_log::ProgressLog;
use crate::restore::{ProgressEvent, ProgressSink};

pub use crate::human::human_bytes;

/// The progress line of a restore or verify on stderr: "VERB BACKUP_ID, STAGE: DONE of TOTAL (P%)",
/// redrawn at most twice a second. When stderr is not a terminal (logs, CI, systemd) an INFO line every
/// minute says how far it got instead. Also says when a safety backup was taken, terminal or not.
pub struct TerminalProgress {
    /// What the operation does to the backup ("restoring", "checking", "verifying").
    verb: &'static str,
    /// The backup whose progress is drawn: each backup's line starts afresh.
    backup_id: String,
    enabled: bool,
    last_draw: Option<Instant>,
    /// When the current backup's first progress arrived, for the rate and the time left.
    started: Option<Instant>,
    /// Without a terminal: the minute-by-minute log of the current backup's work.
    log: Option<ProgressLog>,
}

impl TerminalProgress {
    /// A progress line whose label is `verb` and the backup's id.
    pub fn new(verb: &'static str) -> Self {
        TerminalProgress {
            verb,
            backup_id: String::new(),
            enabled: std::io::stderr().is_terminal(),
            last_draw: None,
            started: None,
            log: None,
        }
    }
}

impl ProgressSink for TerminalProgress {
    fn report(&mut self, event: ProgressEvent<'_>) {
        match event {
            ProgressEvent::Advanced {
                backup_id,
                stage,
                done,
                total,
            } => {
                if self.backup_id != backup_id {
                    self.backup_id = backup_id.to_string();
                    self.last_draw = None;
                    self.started = None;
                    self.log = None;
                }
                if !self.enabled {
                    let verb = self.verb;
                    self.log
                        .get_or_insert_with(|| ProgressLog::new(verb, Some(total)))
                        .set_done(done, Some(total));
                    return;
                }
                if self
                    .last_draw
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
                {
                    return;
                }
                let now = Instant::now();
                let started = *self.started.get_or_insert(now);
                self.last_draw = Some(now);
                let mut line = progress_line(self.verb, backup_id, stage, done, total);
                let rate = rate_and_eta(done, total, now - started);
                if !rate.is_empty() {
                    // The rate goes before the padding that blanks a longer previous line.
                    line.truncate(line.trim_end().len());
                    line.push_str(&rate);
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{line}");
                let _ = err.flush();
            }
            ProgressEvent::Finished => {
                if self.enabled && self.last_draw.is_some() {
                    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
                }
                self.last_draw = None;
            }
            ProgressEvent::SafetyBackupTaken { target, backup_id } => {
                eprintln!("safety backup of {target} taken: {backup_id}");
            }
        }
    }
}

/// The progress line, drawn over the previous one: "\rVERB BACKUP_ID, STAGE: DONE of TOTAL (P%)   ".
fn progress_line(verb: &str, backup_id: &str, stage: &str, done: u64, total: u64) -> String {
    let percent = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    format!(
        "\r{verb} {backup_id}{}{stage}: {} of {} ({percent:.0}%)   ",
        if stage.is_empty() { "" } else { ", " },
        human_bytes(done),
        human_bytes(total)
    )
}

/// `", 12.0 MiB/s, 1m 20s left   "` once a rate can be measured, else nothing.
fn rate_and_eta(done: u64, total: u64, elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(1) || done == 0 {
        return String::new();
    }
    format!(
        ", {}   ",
        crate::human::rate_and_time_left(done, Some(total), elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_time_left_follow_from_the_bytes_so_far() {
        assert_eq!(rate_and_eta(0, 100, Duration::from_secs(5)), "");
        assert_eq!(
            rate_and_eta(10 * 1024 * 1024, 30 * 1024 * 1024, Duration::from_secs(10)),
            ", 1.0 MiB/s, 20s left   "
        );
    }

    #[test]
    fn the_progress_line_names_the_backup_and_the_stage() {
        assert_eq!(
            progress_line("restoring", "20260101T000000Z", "downloading", 1234, 4096),
            "\rrestoring 20260101T000000Z, downloading: 1.2 KiB of 4.0 KiB (30%)   "
        );
        assert_eq!(
            progress_line("verifying", "x", "loading", 0, 0),
            "\rverifying x, loading: 0 B of 0 B (100%)   "
        );
    }
}
