//! What the commands draw besides their result lines: byte sizes for people and the progress line of
//! long restores and verifies. The library reports progress as events (`crate::restore::ProgressEvent`);
//! only this module knows how it looks.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::restore::{ProgressEvent, ProgressSink};

/// `1234` -> `1.2 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The progress line of a restore or verify on stderr: "VERB BACKUP_ID, STAGE: DONE of TOTAL (P%)",
/// redrawn at most twice a second, and silent when stderr is not a terminal (logs, CI, systemd). Also
/// says when a safety backup was taken, terminal or not.
pub struct TerminalProgress {
    /// What the operation does to the backup ("restoring", "checking", "verifying").
    verb: &'static str,
    /// The backup whose progress is drawn: each backup's line starts afresh.
    backup_id: String,
    enabled: bool,
    last_draw: Option<Instant>,
}

impl TerminalProgress {
    /// A progress line whose label is `verb` and the backup's id.
    pub fn new(verb: &'static str) -> Self {
        TerminalProgress {
            verb,
            backup_id: String::new(),
            enabled: std::io::stderr().is_terminal(),
            last_draw: None,
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
                }
                if !self.enabled
                    || self
                        .last_draw
                        .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
                {
                    return;
                }
                self.last_draw = Some(Instant::now());
                let line = progress_line(self.verb, backup_id, stage, done, total);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1234), "1.2 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
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
