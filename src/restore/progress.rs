//! Progress of long restores and verifies on a terminal: bytes done of total, redrawn at most twice a
//! second on stderr. Silent when stderr is not a terminal (logs, CI, systemd).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::commands::list::human_bytes;

/// A progress line for one restore or verify.
pub struct Progress {
    label: String,
    /// What is being done now ("downloading", "loading"), shown after the label.
    stage: String,
    total: u64,
    done: u64,
    enabled: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    /// A progress line labelled `label` for `total` bytes of SQL; drawn only on a terminal.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            stage: String::new(),
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
            last_draw: None,
        }
    }

    /// A progress line that never draws (tests, nested operations).
    pub fn hidden() -> Self {
        Progress {
            label: String::new(),
            stage: String::new(),
            total: 0,
            done: 0,
            enabled: false,
            last_draw: None,
        }
    }

    /// Starts the next stage of the same operation: `total` bytes of `stage` (the download of the stored
    /// object, then the load of its SQL), counted from zero.
    pub fn stage(&mut self, stage: &str, total: u64) {
        self.stage = stage.to_string();
        self.total = total;
        self.done = 0;
    }

    /// Records `bytes` more done.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.enabled
            || self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let percent = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}{}{}: {} of {} ({percent:.0}%)   ",
            self.label,
            if self.stage.is_empty() { "" } else { ", " },
            self.stage,
            human_bytes(self.done),
            human_bytes(self.total)
        );
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        self.last_draw = None;
    }
}
