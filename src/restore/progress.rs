//! How far a long restore, verify or undo is, reported as [`ProgressEvent`]s to a [`ProgressSink`] that the
//! caller supplies: the library counts bytes, the CLI draws (`commands::present`), a test or the daemon
//! passes [`Progress::hidden`].

/// One step of a restore, verify or undo, as it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent<'a> {
    /// `done` of `total` bytes of `stage` ("downloading" the stored object, then "loading" its SQL) of
    /// backup `backup_id` are done.
    Advanced {
        /// The backup being read.
        backup_id: &'a str,
        /// What is being done now.
        stage: &'a str,
        /// Bytes done in this stage.
        done: u64,
        /// Bytes this stage has in all.
        total: u64,
    },
    /// The backup was read to its end: whatever was drawn for it can go.
    Finished,
    /// The safety backup of D1 database `target` was taken, before anything on it changes: the one
    /// backup that undoes the restore.
    SafetyBackupTaken {
        /// The D1 database about to be replaced.
        target: &'a str,
        /// The safety backup's id.
        backup_id: &'a str,
    },
}

/// Receives the progress of an operation; implemented by whoever shows it.
pub trait ProgressSink: Send {
    /// Called for each event, in order.
    fn report(&mut self, event: ProgressEvent<'_>);
}

/// The byte counter an operation advances: it keeps the stage and the count, and tells its sink (if any)
/// each change.
pub struct Progress<'a> {
    sink: Option<&'a mut dyn ProgressSink>,
    backup_id: String,
    stage: &'static str,
    total: u64,
    done: u64,
}

impl<'a> Progress<'a> {
    /// Progress reported to `sink`.
    pub fn new(sink: &'a mut dyn ProgressSink) -> Self {
        Progress {
            sink: Some(sink),
            backup_id: String::new(),
            stage: "",
            total: 0,
            done: 0,
        }
    }

    /// Progress that nobody is told (tests, nested operations such as the undo of a migration run).
    pub fn hidden() -> Progress<'static> {
        Progress {
            sink: None,
            backup_id: String::new(),
            stage: "",
            total: 0,
            done: 0,
        }
    }

    /// Starts the next stage of reading backup `backup_id`: `total` bytes of `stage` (the download of the
    /// stored object, then the load of its SQL), counted from zero.
    pub fn stage(&mut self, backup_id: &str, stage: &'static str, total: u64) {
        if self.backup_id != backup_id {
            self.backup_id = backup_id.to_string();
        }
        self.stage = stage;
        self.total = total;
        self.done = 0;
    }

    /// Records `bytes` more done.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.report(ProgressEvent::Advanced {
                backup_id: &self.backup_id,
                stage: self.stage,
                done: self.done,
                total: self.total,
            });
        }
    }

    /// The backup was read to its end.
    pub fn finish(&mut self) {
        self.report(ProgressEvent::Finished);
    }

    /// Tells the sink about a milestone of the operation.
    pub fn report(&mut self, event: ProgressEvent<'_>) {
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.report(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is told, as text.
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl ProgressSink for Recorder {
        fn report(&mut self, event: ProgressEvent<'_>) {
            self.0.push(format!("{event:?}"));
        }
    }

    #[test]
    fn each_stage_counts_from_zero_and_the_sink_sees_every_step() {
        let mut recorder = Recorder::default();
        let mut progress = Progress::new(&mut recorder);
        progress.stage("b1", "downloading", 10);
        progress.advance(4);
        progress.advance(6);
        progress.stage("b1", "loading", 30);
        progress.advance(5);
        progress.finish();
        drop(progress);
        let done: Vec<&str> = recorder.0.iter().map(String::as_str).collect();
        assert_eq!(
            done,
            [
                r#"Advanced { backup_id: "b1", stage: "downloading", done: 4, total: 10 }"#,
                r#"Advanced { backup_id: "b1", stage: "downloading", done: 10, total: 10 }"#,
                r#"Advanced { backup_id: "b1", stage: "loading", done: 5, total: 30 }"#,
                "Finished",
            ]
        );
        // Hidden progress counts for nobody.
        let mut hidden = Progress::hidden();
        hidden.stage("b1", "loading", 1);
        hidden.advance(1);
        hidden.finish();
    }
}
