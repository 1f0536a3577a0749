//! `d1vault run`: the scheduler daemon.
//!
//! One task per configured database sleeps until its next allowed start (cron in `daemon.timezone`,
//! inside its window, plus jitter), waits for one of `max_concurrent` slots, runs the backup, records the
//! run in the catalog, and applies retention. Because each database has exactly one task, a database never
//! has two backups running at once.
//!
//! Shutdown follows the shape of mini-redis and the Tokio guide: a first SIGTERM/SIGINT cancels `stop_new`
//! (sleeping tasks exit, nothing new starts), running backups get `daemon.shutdown_grace` to finish, then
//! `abort` is cancelled: their futures are dropped (no manifest is ever written) and their multipart
//! uploads are aborted explicitly. SIGHUP reloads the configuration; an invalid file keeps the old one.

mod clock;
mod http;
pub mod metrics;

pub use clock::Clock;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::catalog::{Catalog, RunOutcome};
use crate::config::{self, Config, DatabaseConfig};
use crate::pipeline::{BackupError, MAX_ID_ATTEMPTS, next_start, run_backup};
use crate::repository::backups;
use crate::repository::manifest;
use crate::repository::prune;
use crate::schedule::{self, PlannedRun};
use crate::sources::BackupSources;
use metrics::{Metrics, RunResult};

/// Control messages from signal handlers (or tests) to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM/SIGINT. The first starts a graceful stop; a second one is handled by the caller (exit now).
    Terminate,
    /// SIGHUP: reload the configuration file.
    Reload,
}

/// Everything the daemon needs to start.
pub struct DaemonOptions {
    /// Where to reload the configuration from on SIGHUP.
    pub config_path: PathBuf,
    pub config: Config,
    /// The bound listener for `/healthz` and `/metrics` (`None`: disabled).
    pub listener: Option<TcpListener>,
    pub clock: Clock,
}

/// State shared by the database tasks and the HTTP handlers.
pub struct Shared {
    pub metrics: Metrics,
    clock: Clock,
    started_at: DateTime<Utc>,
    config: watch::Receiver<Arc<Config>>,
    /// Newest complete backup per database: seeded from storage at start, updated after each success.
    newest: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Shared {
    /// Freshness of every configured database (contract: fresh while the newest complete backup is younger
    /// than twice its schedule's interval plus its window).
    pub fn health(&self) -> http::Health {
        let config = self.config.borrow().clone();
        let now = self.clock.now();
        let newest = self.newest.lock().expect("newest lock").clone();
        let databases: Vec<http::DatabaseHealth> = config
            .databases
            .iter()
            .map(|db| {
                let limit =
                    schedule::freshness_limit(&db.schedule, db.window, config.daemon.timezone, now);
                let newest_backup = newest.get(&db.name).copied();
                let state = match newest_backup {
                    Some(t) if now - t <= limit => "fresh",
                    Some(_) => "stale",
                    None if now - self.started_at <= limit => "pending",
                    None => "stale",
                };
                http::DatabaseHealth {
                    name: db.name.clone(),
                    state,
                    newest_backup: newest_backup.map(|t| t.to_rfc3339()),
                    age_seconds: newest_backup.map(|t| (now - t).num_seconds()),
                    limit_seconds: limit.num_seconds(),
                }
            })
            .collect();
        let healthy = databases.iter().all(|d| d.state != "stale");
        http::Health { healthy, databases }
    }
}

/// Runs the daemon until a [`Signal::Terminate`] arrives on `signals` and running backups are finished or
/// aborted. Takes the `state_dir` lock first: a second daemon on the same `state_dir` fails here.
pub async fn run(options: DaemonOptions, signals: mpsc::Receiver<Signal>) -> Result<(), String> {
    let lock = crate::catalog::lock_state_dir(&options.config.daemon.state_dir)
        .map_err(|e| e.to_string())?;
    run_locked(options, lock, signals).await
}

/// [`run`] with the `state_dir` lock already taken (by `d1vault run`, before it binds `daemon.listen`, so
/// that a second daemon is told about the lock rather than about the port); held until the daemon ends.
pub async fn run_locked(
    options: DaemonOptions,
    lock: crate::catalog::StateDirLock,
    mut signals: mpsc::Receiver<Signal>,
) -> Result<(), String> {
    let _lock = lock;
    let DaemonOptions {
        config_path,
        config,
        listener,
        clock,
    } = options;
    let catalog = Catalog::open(&config.daemon.state_dir).await.map_err(|e| {
        format!(
            "opening the catalog in {}: {e}",
            config.daemon.state_dir.display()
        )
    })?;
    let now = clock.now();
    catalog
        .mark_interrupted(now)
        .await
        .map_err(|e| format!("catalog: {e}"))?;
    let sources = crate::sources::open(&config)
        .await
        .map_err(|e| e.to_string())?;
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let shared = Arc::new(Shared {
        metrics: Metrics::default(),
        clock: clock.clone(),
        started_at: now,
        config: config_rx.clone(),
        newest: Mutex::new(HashMap::new()),
    });
    // Report a misconfigured store (a missing bucket, a storage.path that does not exist) at start-up
    // rather than at the first scheduled run.
    if let Err(e) = sources.storage.check().await {
        warn!(error = %e, "storage check failed; backups will fail until this is fixed");
    }
    seed_newest(&shared, &sources, &config).await;

    let stop_new = CancellationToken::new();
    let abort = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let mut http_task = None;
    if let Some(listener) = listener {
        // The bound address, not the configured one: with `listen = "127.0.0.1:0"` this line is how a
        // supervisor (or a test) learns the port.
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!(%addr, "serving /healthz and /metrics");
        http_task = Some(tokio::spawn(http::serve(
            listener,
            shared.clone(),
            http_stop.clone(),
        )));
    }
    let mut slot_count = config.daemon.max_concurrent.max(1);
    let slots = Arc::new(Semaphore::new(slot_count));
    let context = Arc::new(TaskContext {
        shared: shared.clone(),
        sources,
        catalog,
        slots,
        stop_new: stop_new.clone(),
        abort: abort.clone(),
        catalog_turn: Semaphore::new(1),
    });
    let mut tasks = JoinSet::new();
    let mut running: BTreeMap<String, tokio::task::AbortHandle> = BTreeMap::new();
    reconcile(&context, &config, &mut tasks, &mut running);
    info!(databases = config.databases.len(), "daemon started");

    let mut grace = config.daemon.shutdown_grace;
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => match config::load(&config_path) {
                    Ok(new) => {
                        info!(path = %config_path.display(), "configuration reloaded");
                        grace = new.daemon.shutdown_grace;
                        resize_slots(&context.slots, &mut slot_count, new.daemon.max_concurrent.max(1));
                        reconcile(&context, &new, &mut tasks, &mut running);
                        let _ = config_tx.send(Arc::new(new));
                    }
                    Err(errors) => error!(errors = %errors, "configuration reload failed; keeping the previous configuration"),
                },
                Some(Signal::Terminate) | None => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() { error!(error = %e, "a database task panicked"); }
                }
                running.retain(|_, handle| !handle.is_finished());
            }
        }
    }

    info!(
        grace_seconds = grace.as_secs(),
        "stopping: no new backups start; running ones may finish"
    );
    stop_new.cancel();
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!("shutdown grace period over: aborting running backups");
        abort.cancel();
        while tasks.join_next().await.is_some() {}
    }
    http_stop.cancel();
    if let Some(task) = http_task {
        let _ = task.await;
    }
    info!("daemon stopped");
    Ok(())
}

/// Applies a reloaded `max_concurrent`. Growing adds permits at once; shrinking takes permits away as
/// running backups release them (a background task acquires and forgets them), so no running backup is
/// interrupted by a reload.
fn resize_slots(slots: &Arc<Semaphore>, current: &mut usize, wanted: usize) {
    if wanted > *current {
        slots.add_permits(wanted - *current);
    } else if wanted < *current {
        let surplus = u32::try_from(*current - wanted).unwrap_or(u32::MAX);
        let slots = slots.clone();
        tokio::spawn(async move {
            if let Ok(permits) = slots.acquire_many_owned(surplus).await {
                permits.forget();
            }
        });
    }
    *current = wanted;
}

/// Starts a task for each configured database that has none (after start-up or a reload). Tasks of
/// removed databases notice on their own and end after their current run.
fn reconcile(
    context: &Arc<TaskContext>,
    config: &Config,
    tasks: &mut JoinSet<()>,
    running: &mut BTreeMap<String, tokio::task::AbortHandle>,
) {
    running.retain(|_, handle| !handle.is_finished());
    for db in &config.databases {
        context.shared.metrics.register(&db.name);
        if !running.contains_key(&db.name) {
            let handle = tasks.spawn(database_task(context.clone(), db.name.clone()));
            running.insert(db.name.clone(), handle);
        }
    }
}

async fn seed_newest(shared: &Shared, sources: &BackupSources, config: &Config) {
    for db in &config.databases {
        match backups::complete(sources.storage.as_ref(), &sources.prefix, Some(&db.name)).await {
            Ok(manifests) => {
                if let Some(m) = manifests.first() {
                    shared
                        .newest
                        .lock()
                        .expect("newest lock")
                        .insert(db.name.clone(), m.started_at);
                    shared
                        .metrics
                        .set_last_success(&db.name, m.finished_at.timestamp() as f64);
                }
            }
            Err(e) => {
                warn!(database = %db.name, error = %e, "could not read existing backups at start-up")
            }
        }
    }
}

/// What every database task shares.
struct TaskContext {
    shared: Arc<Shared>,
    sources: BackupSources,
    catalog: Catalog,
    slots: Arc<Semaphore>,
    stop_new: CancellationToken,
    abort: CancellationToken,
    /// One catalog call at a time; see [`TaskContext::gated`].
    catalog_turn: Semaphore,
}

impl TaskContext {
    /// Runs one catalog call at a time. The catalog serializes on one connection anyway, but each call
    /// takes a blocking thread while it waits for that connection: 200 databases starting together parked
    /// ~150 threads on its mutex, and the memory their allocator arenas kept raised the idle RSS.
    async fn gated<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let _turn = self
            .catalog_turn
            .acquire()
            .await
            .expect("the catalog semaphore is never closed");
        call.await
    }
}

/// The life of one database: plan, sleep, run, record, prune, repeat.
async fn database_task(ctx: Arc<TaskContext>, name: String) {
    let clock = ctx.shared.clock.clone();
    let mut config_rx = ctx.shared.config.clone();
    let mut catch_up = {
        let config = config_rx.borrow().clone();
        let Some(db) = config.database(&name) else {
            return;
        };
        let last = ctx
            .gated(ctx.catalog.last_scheduled(&name))
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
                .gated(first_interrupted_due(&ctx.catalog, &name))
                .await
                .map(|due| due - chrono::Duration::seconds(1)),
        };
        let missed = schedule::catch_up(&db.schedule, config.daemon.timezone, last, clock.now());
        if let Some(due) = missed {
            info!(database = %name, due = %due, "catching up a run missed while the daemon was down");
        }
        missed
    };
    let mut after = clock.now();
    loop {
        let config = config_rx.borrow_and_update().clone();
        let Some(db) = config.database(&name).cloned() else {
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
                // A skip is recorded when its due time arrives, never ahead of it: a future-dated row would
                // make `Catalog::last_scheduled` claim that a due time was dealt with before it happened,
                // hiding a run missed during a later outage from catch-up, and a reload that widens the
                // window could not undo it.
                tokio::select! {
                    _ = clock.sleep_until(due) => {}
                    _ = ctx.stop_new.cancelled() => return,
                    changed = config_rx.changed() => {
                        if changed.is_err() { return; }
                        after = clock.now();
                        continue;
                    }
                }
                record_skip(&ctx, &name, due, &reason).await;
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
                // Re-plan with the new configuration. A run that is already due (a catch-up, or a run waiting
                // for its window to open) stays pending: it is re-planned like a missed run, so a reload
                // never drops it. A future due time is simply re-derived from the new schedule.
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
            permit = ctx.slots.clone().acquire_owned() => permit.expect("semaphore never closes"),
            _ = window_closed => {
                warn!(database = %name, due = %due, "window closed while waiting for a free backup slot");
                record_skip(&ctx, &name, due, "the window closed while waiting for a free backup slot (max_concurrent)").await;
                after = due;
                continue;
            }
            _ = ctx.stop_new.cancelled() => return,
        };
        if closes.is_some_and(|closes| clock.now() >= closes) {
            // The slot came free in the same instant the window closed.
            record_skip(
                &ctx,
                &name,
                due,
                "the window closed while waiting for a free backup slot (max_concurrent)",
            )
            .await;
            after = due;
            drop(permit);
            continue;
        }
        run_once(&ctx, &db, tz, due).await;
        drop(permit);
        after = std::cmp::max(due, clock.now());
        if ctx.stop_new.is_cancelled() {
            return;
        }
    }
}

/// The earliest due time among a database's recent interrupted runs, if any.
async fn first_interrupted_due(catalog: &Catalog, name: &str) -> Option<DateTime<Utc>> {
    let runs = catalog.recent_runs(name, 20).await.ok()?;
    runs.iter()
        .filter(|r| r.outcome == crate::catalog::RunState::Interrupted)
        .filter_map(|r| r.scheduled_for)
        .min()
}

async fn record_skip(ctx: &TaskContext, name: &str, due: DateTime<Utc>, reason: &str) {
    info!(database = %name, due = %due, reason, "run skipped");
    let now = ctx.shared.clock.now();
    if let Err(e) = ctx
        .gated(ctx.catalog.record_skipped(name, due, now, reason))
        .await
    {
        warn!(database = %name, error = %e, "catalog write failed");
    }
    ctx.shared
        .metrics
        .record(name, RunResult::Skipped, 0.0, None, now.timestamp() as f64);
}

/// One scheduled run: backup, catalog, metrics, retention.
async fn run_once(ctx: &TaskContext, db: &DatabaseConfig, tz: chrono_tz::Tz, due: DateTime<Utc>) {
    let clock = &ctx.shared.clock;
    let started_at = clock.now();
    let backup_id = manifest::backup_id(started_at);
    let run_id = match ctx
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
    // The id in use, for the abort below: another writer holding this second's id moves the backup on.
    let current_id = Mutex::new(backup_id.clone());
    let outcome = tokio::select! {
        result = backup_claiming_an_id(ctx, db, started_at, run_id, &current_id) => Some(result),
        _ = ctx.abort.cancelled() => None,
    };
    let backup_id = current_id.into_inner().expect("backup id lock");
    let finished_at = clock.now();
    let duration = (finished_at - started_at).num_milliseconds() as f64 / 1000.0;
    let (run_outcome, error, bytes) = match &outcome {
        Some(Ok(m)) => (
            RunOutcome::Success,
            None,
            Some((m.dump.raw_size, m.dump.size)),
        ),
        Some(Err(e)) => (RunOutcome::Failed, Some(e.to_string()), None),
        None => {
            // The backup future was dropped: no manifest was written. Abort its multipart upload, if any.
            let key = manifest::object_key(
                &ctx.sources.prefix,
                &db.name,
                &backup_id,
                db.compression.dump_file_name(),
            );
            let _ = ctx
                .sources
                .storage
                .abort_stale_uploads(&key, finished_at + chrono::Duration::seconds(1))
                .await;
            warn!(database = %db.name, backup_id = %backup_id, "backup aborted at shutdown");
            (
                RunOutcome::Aborted,
                Some("aborted at shutdown after the grace period".to_string()),
                None,
            )
        }
    };
    if let Some(run_id) = run_id {
        let (raw, stored) = bytes
            .map(|(r, s)| (Some(r), Some(s)))
            .unwrap_or((None, None));
        if let Err(e) = ctx
            .gated(ctx.catalog.finish_run(
                run_id,
                run_outcome,
                error.clone(),
                raw,
                stored,
                finished_at,
            ))
            .await
        {
            warn!(database = %db.name, error = %e, "catalog write failed");
        }
    }
    let result = if matches!(run_outcome, RunOutcome::Success) {
        RunResult::Success
    } else {
        RunResult::Failure
    };
    ctx.shared.metrics.record(
        &db.name,
        result,
        duration,
        bytes,
        finished_at.timestamp() as f64,
    );
    if let Some(Ok(m)) = &outcome {
        ctx.shared
            .newest
            .lock()
            .expect("newest lock")
            .insert(db.name.clone(), m.started_at);
        apply_retention(ctx, db, tz).await;
    }
}

/// Runs the backup from `started_at`; when another writer (a one-shot `backup`, another host) holds the
/// id, sleeps to the next second on the daemon's clock and tries that id, at most
/// [`crate::pipeline::MAX_ID_ATTEMPTS`] ids, recording the id in use in `current_id` and the catalog.
async fn backup_claiming_an_id(
    ctx: &TaskContext,
    db: &DatabaseConfig,
    started_at: DateTime<Utc>,
    run_id: Option<crate::catalog::RunId>,
    current_id: &Mutex<String>,
) -> Result<manifest::Manifest, BackupError> {
    let clock = &ctx.shared.clock;
    let mut started_at = started_at;
    let mut attempt = 1;
    loop {
        match run_backup(db, &ctx.sources, started_at).await {
            Err(BackupError::Conflict(why)) if attempt < MAX_ID_ATTEMPTS => {
                attempt += 1;
                started_at = next_start(started_at, clock.now());
                clock.sleep_until(started_at).await;
                let id = manifest::backup_id(started_at);
                info!(database = %db.name, reason = %why, next_id = %id, "backup id taken; trying the next second");
                *current_id.lock().expect("backup id lock") = id.clone();
                if let Some(run_id) = run_id
                    && let Err(e) = ctx.gated(ctx.catalog.set_backup_id(run_id, &id)).await
                {
                    warn!(database = %db.name, error = %e, "catalog write failed");
                }
            }
            other => return other,
        }
    }
}

/// Retention after a successful backup of `db`. A listing failure deletes nothing; a backup whose manifest
/// cannot be read is kept and logged at ERROR after every run, so that someone looks at it.
async fn apply_retention(ctx: &TaskContext, db: &DatabaseConfig, tz: chrono_tz::Tz) {
    if db.retention.is_empty() {
        return;
    }
    let now = ctx.shared.clock.now();
    let storage = ctx.sources.storage.as_ref();
    match prune::plan(
        storage,
        &ctx.sources.prefix,
        &db.name,
        &db.retention,
        tz,
        now,
    )
    .await
    {
        Ok(plan) => {
            let outcome = prune::execute(storage, &ctx.sources.prefix, &plan, now).await;
            for kept in &plan.unreadable {
                error!(
                    database = %db.name,
                    backup_id = %kept.backup_id,
                    reason = kept.unreadable.as_deref().unwrap_or_default(),
                    "manifest unreadable: backup kept, not counted by retention, not restorable; repair or remove it by hand"
                );
            }
            if outcome.deleted_backups + outcome.removed_incomplete > 0 {
                info!(database = %db.name, deleted = outcome.deleted_backups, incomplete = outcome.removed_incomplete, "retention applied");
            }
            for e in outcome.errors {
                warn!(database = %db.name, error = %e, "retention");
            }
        }
        Err(e) => {
            warn!(database = %db.name, error = %e, "listing failed; retention deleted nothing")
        }
    }
}

/// How long an idle wait may last before the wall clock is checked again (keeps long sleeps honest across
/// suspend and clock changes, at one wake-up a minute).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
