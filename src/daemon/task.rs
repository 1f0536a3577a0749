//! The life of one database in the daemon: plan, sleep, run, record, prune, repeat.
//!
//! Each configured database has exactly one [`DatabaseTask`], so a database never has two backups running
//! at once. Its loop waits only at safe points (sleeping until a start, waiting for a slot), and each wait
//! races the shutdown token: a sleeping task ends at once on the first stop signal, a running backup is
//! raced against the abort token instead.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tracing::{Instrument, info, info_span, warn};

use super::context::TaskContext;
use super::events::{BackupSizes, RunFinished, RunSkipped};
use super::retention::apply_retention;
use crate::catalog::{Catalog, RunId, RunOutcome, RunState};
use crate::config::DatabaseConfig;
use crate::notify::{Event, EventKind};
use crate::pipeline::unchanged::{self, Decision, Unchanged};
use crate::pipeline::{BackupError, MAX_ID_ATTEMPTS, next_start, run_backup_with_clock};
use crate::repository::manifest;
use crate::schedule::{self, PlannedRun};

/// The skip reason when a run waited for a slot until its window closed.
const NO_SLOT_BEFORE_CLOSE: &str =
    "the window closed while waiting for a free backup slot (max_concurrent)";

/// One database's scheduled backups, from daemon start (or the reload that added it) until shutdown or
/// the reload that removes it.
pub(super) struct DatabaseTask {
    /// What every database task shares.
    ctx: Arc<TaskContext>,
    /// The configured database name; its configuration is looked up again before each run.
    name: String,
}

impl DatabaseTask {
    /// The task for database `name`.
    pub(super) fn new(ctx: Arc<TaskContext>, name: String) -> DatabaseTask {
        DatabaseTask { ctx, name }
    }

    /// Runs the database's schedule until shutdown or its removal from the configuration. Each run (and
    /// the catch-up check at start) is inside a `database` span naming it; the sleeps between runs are
    /// not, since a fleet's tasks sleep nearly all the time and a live span costs each of them memory
    /// (the lines logged while sleeping name the database themselves).
    pub(super) async fn run(self) {
        self.schedule_loop().await
    }

    /// The `database` span of this task's work.
    fn span(&self) -> tracing::Span {
        info_span!("database", database = %self.name)
    }

    /// Plan, sleep, run, repeat.
    async fn schedule_loop(self) {
        let ctx = &self.ctx;
        let name = &self.name;
        let clock = ctx.shared.clock.clone();
        let mut config_rx = ctx.shared.config.clone();
        // Boxed for the same reason as the run below: only needed once, at start.
        let Some(mut catch_up) = Box::pin(self.missed_run().instrument(self.span())).await else {
            return;
        };
        let mut after = clock.now();
        loop {
            let config = config_rx.borrow_and_update().clone();
            // Borrowed from the configuration in force, not copied: one copy per fleet member is enough.
            let Some(db) = config.database(name) else {
                info!(database = %name, "database removed from the configuration");
                return;
            };
            let tz = config.daemon.timezone;
            let plan = match catch_up.take() {
                // A missed run is due in the past: it starts at the next allowed moment from now.
                Some(missed) => {
                    schedule::plan_catch_up(&db.schedule, db.window, tz, missed, clock.now())
                }
                None => match db.schedule.next_after(after, tz) {
                    Some(due) => schedule::plan_run(&db.schedule, db.window, tz, due),
                    None => {
                        warn!(database = %name, "schedule has no future run");
                        return;
                    }
                },
            };
            let due = plan.due();
            let (start, closes) = match plan {
                PlannedRun::Skipped { reason, .. } => {
                    // A skip is recorded when its due time arrives, never ahead of it: a future-dated row
                    // would make `Catalog::last_scheduled` claim that a due time was dealt with before it
                    // happened, hiding a run missed during a later outage from catch-up, and a reload that
                    // widens the window could not undo it.
                    tokio::select! {
                        _ = clock.sleep_until(due) => {}
                        _ = ctx.stop_new.cancelled() => return,
                        changed = config_rx.changed() => {
                            if changed.is_err() { return; }
                            after = clock.now();
                            continue;
                        }
                    }
                    self.skip(due, &reason).await;
                    after = due;
                    continue;
                }
                PlannedRun::Run {
                    start,
                    window_closes_at,
                    ..
                } => {
                    let start = schedule::jittered_start(
                        start,
                        window_closes_at,
                        db.jitter,
                        rand::random::<f64>(),
                    );
                    (start, window_closes_at)
                }
            };
            tokio::select! {
                _ = clock.sleep_until(start) => {}
                _ = ctx.stop_new.cancelled() => return,
                changed = config_rx.changed() => {
                    if changed.is_err() { return; }
                    // Re-plan with the new configuration. A run that is already due (a catch-up, or a run
                    // waiting for its window to open) stays pending: it is re-planned like a missed run, so
                    // a reload never drops it. A future due time is simply re-derived from the new schedule.
                    let now = clock.now();
                    if due <= now {
                        catch_up = Some(due);
                    }
                    after = now;
                    continue;
                }
            }
            // Wait for a slot, but not past the window's close: a run never starts outside its window.
            let window_closed = async {
                match closes {
                    Some(closes) => clock.sleep_until(closes).await,
                    None => std::future::pending().await,
                }
            };
            let permit = tokio::select! {
                permit = ctx.slots.acquire(ctx.shared.protected_since(name)) => permit,
                _ = window_closed => {
                    warn!(database = %name, due = %due, "window closed while waiting for a free backup slot");
                    self.skip(due, NO_SLOT_BEFORE_CLOSE).await;
                    after = due;
                    continue;
                }
                _ = ctx.stop_new.cancelled() => return,
            };
            if closes.is_some_and(|closes| clock.now() >= closes) {
                // The slot came free in the same instant the window closed.
                self.skip(due, NO_SLOT_BEFORE_CLOSE).await;
                after = due;
                drop(permit);
                continue;
            }
            // Boxed: a run's state (export, compression, upload) is large, and the task spends nearly
            // all its life asleep; unboxed, every one of a fleet's tasks would reserve that state while
            // it sleeps.
            Box::pin(self.run_once(db, tz, due).instrument(self.span())).await;
            drop(permit);
            after = std::cmp::max(due, clock.now());
            if ctx.stop_new.is_cancelled() {
                return;
            }
        }
    }

    /// At the task's start: the due time missed while the daemon was down, if any, to run first. `None`
    /// (the outer option) when the database is no longer configured.
    async fn missed_run(&self) -> Option<Option<DateTime<Utc>>> {
        let ctx = &self.ctx;
        let name = &self.name;
        let config = ctx.shared.config.borrow().clone();
        let db = config.database(name)?;
        let last = ctx
            .gated(ctx.catalog.last_scheduled(name))
            .await
            .unwrap_or_else(|e| {
                warn!(database = %name, error = %e, "catalog read failed; no catch-up");
                None
            });
        // `last_scheduled` leaves out a due time whose only attempt was interrupted (so it is retried). If
        // that was the database's first run, nothing is left and `catch_up` would take the database for a
        // new one and never retry it: count the history as starting just before the interrupted due time.
        let last = match last {
            Some(last) => Some(last),
            None => ctx
                .gated(first_interrupted_due(&ctx.catalog, name))
                .await
                .map(|due| due - chrono::Duration::seconds(1)),
        };
        let missed = schedule::catch_up(
            &db.schedule,
            config.daemon.timezone,
            last,
            ctx.shared.clock.now(),
        );
        if let Some(due) = missed {
            info!(database = %name, due = %due, "catching up a run missed while the daemon was down");
        }
        Some(missed)
    }

    /// Records that the run due at `due` is skipped, and why.
    async fn skip(&self, due: DateTime<Utc>, reason: &str) {
        let event = RunSkipped {
            database: self.name.clone(),
            due,
            at: self.ctx.shared.clock.now(),
            reason: reason.to_string(),
        };
        self.ctx.emit_skipped(&event).await;
    }

    /// One scheduled run: the `skip_unchanged` check and the backup (raced against the abort token), then
    /// the [`RunFinished`] event, then retention after a success.
    async fn run_once(&self, db: &DatabaseConfig, tz: chrono_tz::Tz, due: DateTime<Utc>) {
        let ctx = &self.ctx;
        let clock = &ctx.shared.clock;
        let started_at = clock.now();
        let backup_id = manifest::backup_id(started_at);
        let run = match ctx
            .gated(
                ctx.catalog
                    .start_run(&db.name, Some(due), started_at, Some(&backup_id)),
            )
            .await
        {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(database = %db.name, error = %e, "catalog write failed; running the backup anyway");
                None
            }
        };
        ctx.notifier
            .send(&Event::new(EventKind::Start, &db.name, started_at));
        // The id in use, for the abort below: another writer holding this second's id moves the backup on.
        let current_id = Mutex::new(backup_id);
        let outcome = tokio::select! {
            result = self.backup_unless_unchanged(db, started_at, run, &current_id) => Some(result),
            _ = ctx.abort.cancelled() => None,
        };
        let mut backup_id = current_id.into_inner().expect("backup id lock");
        let finished_at = clock.now();
        let mut unchanged_run = false;
        let (outcome, sizes, error, manifest) = match outcome {
            Some(Ok(Ran::Unchanged(u))) => {
                // The run's row names the backup that holds the current data.
                backup_id = u.backup_id;
                if let Some(run) = run
                    && let Err(e) = ctx.gated(ctx.catalog.set_backup_id(run, &backup_id)).await
                {
                    warn!(database = %db.name, error = %e, "catalog write failed");
                }
                unchanged_run = true;
                (RunOutcome::Unchanged, None, None, None)
            }
            Some(Ok(Ran::Backed(m))) => {
                let sizes = BackupSizes {
                    raw: m.dump.raw_size,
                    stored: m.dump.size,
                };
                (RunOutcome::Success, Some(sizes), None, Some(m))
            }
            Some(Err(e)) => (RunOutcome::Failed, None, Some(e.to_string()), None),
            None => {
                // The backup future was dropped: no manifest was written. Abort its multipart upload, if any.
                let key = manifest::object_key(
                    &ctx.sources.prefix,
                    &db.name,
                    &backup_id,
                    &manifest::dump_file_name(db.compression, ctx.sources.encryption.is_some()),
                );
                let _ = ctx
                    .sources
                    .storage
                    .abort_stale_uploads(&key, finished_at + chrono::Duration::seconds(1))
                    .await;
                let error = "aborted at shutdown after the grace period".to_string();
                (RunOutcome::Aborted, None, Some(error), None)
            }
        };
        let event = RunFinished {
            database: db.name.clone(),
            due,
            run,
            backup_id,
            started_at,
            finished_at,
            outcome,
            sizes,
            error,
        };
        ctx.emit_finished(&event).await;
        if unchanged_run {
            ctx.shared.set_unchanged(&db.name, started_at);
        }
        if let Some(m) = manifest {
            ctx.shared.set_newest(&db.name, m.started_at);
            apply_retention(&ctx.sources, db, tz, clock.now()).await;
        }
    }

    /// The `skip_unchanged` check (one bookmark request, through the shared rate limiter), then the backup
    /// unless the database is unchanged since its newest backup. A scheduled run is never forced.
    async fn backup_unless_unchanged(
        &self,
        db: &DatabaseConfig,
        started_at: DateTime<Utc>,
        run: Option<RunId>,
        current_id: &Mutex<String>,
    ) -> Result<Ran, BackupError> {
        let (decision, resolved) = unchanged::check(db, &self.ctx.sources, false).await;
        unchanged::log_decision(&db.name, &decision);
        match decision {
            Decision::Skip(u) => Ok(Ran::Unchanged(u)),
            Decision::Export(_) => self
                .backup_claiming_an_id(&resolved, started_at, run, current_id)
                .await
                .map(|m| Ran::Backed(Box::new(m))),
        }
    }

    /// Runs the backup from `started_at`; when another writer (a one-shot `backup`, another host) holds the
    /// id, sleeps to the next second on the daemon's clock and tries that id, at most [`MAX_ID_ATTEMPTS`]
    /// ids, recording the id in use in `current_id` and the catalog. The manifest's `finished_at` is read
    /// from the daemon's clock too.
    async fn backup_claiming_an_id(
        &self,
        db: &DatabaseConfig,
        started_at: DateTime<Utc>,
        run: Option<RunId>,
        current_id: &Mutex<String>,
    ) -> Result<manifest::Manifest, BackupError> {
        let ctx = &self.ctx;
        let clock = &ctx.shared.clock;
        let now = || clock.now();
        let mut started_at = started_at;
        let mut attempt = 1;
        loop {
            match run_backup_with_clock(db, &ctx.sources, started_at, &now).await {
                Err(BackupError::Conflict(why)) if attempt < MAX_ID_ATTEMPTS => {
                    attempt += 1;
                    started_at = next_start(started_at, clock.now());
                    clock.sleep_until(started_at).await;
                    let id = manifest::backup_id(started_at);
                    info!(database = %db.name, reason = %why, next_id = %id, "backup id taken; trying the next second");
                    *current_id.lock().expect("backup id lock") = id.clone();
                    if let Some(run) = run
                        && let Err(e) = ctx.gated(ctx.catalog.set_backup_id(run, &id)).await
                    {
                        warn!(database = %db.name, error = %e, "catalog write failed");
                    }
                }
                other => return other,
            }
        }
    }
}

/// What a scheduled run did when it did not fail.
enum Ran {
    /// A new complete backup.
    Backed(Box<manifest::Manifest>),
    /// No export: the newest backup still holds the current data.
    Unchanged(Unchanged),
}

/// The earliest due time among a database's recent interrupted runs, if any.
async fn first_interrupted_due(catalog: &Catalog, name: &str) -> Option<DateTime<Utc>> {
    let runs = catalog.recent_runs(name, 20).await.ok()?;
    runs.iter()
        .filter(|r| r.outcome == RunState::Interrupted)
        .filter_map(|r| r.scheduled_for)
        .min()
}
