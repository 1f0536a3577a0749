//! `d1vault run`: the scheduler daemon.
//!
//! One `DatabaseTask` per configured database sleeps until its next allowed start (cron in
//! `daemon.timezone`, inside its window, plus jitter), waits for one of `max_concurrent` slots (the
//! longest-unprotected database first when runs queue), runs the
//! backup, publishes the run as one event (catalog row, metrics, log line), and applies retention. Because
//! each database has exactly one task, a database never has two backups running at once.
//!
//! Shutdown follows the shape of mini-redis and the Tokio guide: a first SIGTERM/SIGINT cancels `stop_new`
//! (sleeping tasks exit, nothing new starts), running backups get `daemon.shutdown_grace` to finish, then
//! `abort` is cancelled: their futures are dropped (no manifest is ever written) and their multipart
//! uploads are aborted explicitly. SIGHUP reloads the configuration; an invalid file keeps the old one.
//!
//! # Layout
//!
//! * this module: start-up, the signal loop, reloads, and the shutdown sequence;
//! * `discovery`: fleet members found by listing the account, at start and every `discovery_interval`;
//! * `task`: one database's loop; `context`: what the tasks share and where their events are published;
//! * `slots`: the `max_concurrent` slots, handed out longest-unprotected first;
//! * `events`: the named events of a run (`RunFinished`, `RunSkipped`), each also told to the notifier;
//! * `verifier`: scheduled verification (`verify_schedule`), one loop for every database;
//! * `staleness`: the `stale` notification, once when a database turns stale and once when it recovers;
//! * `retention`: retention after a successful backup;
//! * [`health`]: the pure freshness rule behind `/healthz`; `shared`: the state the HTTP handlers read;
//! * `http`: `/healthz` and `/metrics`; [`metrics`]: the Prometheus counters; `clock`: the injected [`Clock`].

mod clock;
mod context;
mod discovery;
mod events;
pub mod health;
mod http;
pub mod metrics;
mod retention;
mod shared;
mod slots;
mod staleness;
mod task;
mod verifier;

pub use clock::{Clock, MAX_SLEEP};

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::budget;
use crate::catalog::Catalog;
use crate::cloudflare::DatabaseInfo;
use crate::config::{self, Config};
use crate::fleet;
use crate::notify::{Notifier, NotifierOptions};
use crate::repository::backups;
use crate::sources::BackupSources;
use context::TaskContext;
use shared::Shared;
use slots::Slots;
use task::DatabaseTask;

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
    /// The configuration to start with (already loaded and validated from `config_path`).
    pub config: Config,
    /// The bound listener for `/healthz` and `/metrics` (`None`: disabled).
    pub listener: Option<TcpListener>,
    /// The daemon's notion of now: [`Clock::System`] in production, paused tokio time in tests. Schedules,
    /// catalog rows and the manifests' times all read it.
    pub clock: Clock,
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
    check_token(&config, &sources).await?;
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let shared = Arc::new(Shared::new(clock.clone(), now, config_rx.clone()));
    // Report a misconfigured store (a missing bucket, a storage.path that does not exist) at start-up
    // rather than at the first scheduled run.
    if let Err(e) = sources.storage.check().await {
        warn!(error = %e, "storage check failed; backups will fail until this is fixed");
    }
    let configured: Vec<String> = config.databases.iter().map(|d| d.name.clone()).collect();
    seed_newest(&shared, &sources, &catalog, &configured).await;

    let stop_new = CancellationToken::new();
    let abort = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let slots = Slots::new(config.daemon.max_concurrent);
    let notifier = Notifier::start(
        &config.notify,
        NotifierOptions::default(),
        shared.notifications.clone(),
    );
    let context = Arc::new(TaskContext {
        notifier,
        shared: shared.clone(),
        sources,
        catalog,
        slots,
        stop_new: stop_new.clone(),
        abort: abort.clone(),
        catalog_turn: Semaphore::new(1),
    });
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
            context.clone(),
            http_stop.clone(),
        )));
    }
    let mut tasks = JoinSet::new();
    let mut running: BTreeMap<String, tokio::task::AbortHandle> = BTreeMap::new();
    reconcile(&context, &config, &mut tasks, &mut running);
    info!(databases = config.databases.len(), "daemon started");
    log_next_runs(&config, now);
    report_budget(&context, &config, 0);
    // Fleet members: the file's configuration plus the newest complete listing of the account.
    let mut file_config = config;
    let mut listing: Option<Vec<DatabaseInfo>> = None;
    let kick = Arc::new(Notify::new());
    let (found_tx, mut found_rx) = mpsc::channel(1);
    let discovery_task = tokio::spawn(discovery::discovery_loop(
        context.clone(),
        kick.clone(),
        found_tx,
    ));

    let stale_task = tokio::spawn(staleness::watch(context.clone()));
    let verify_task = tokio::spawn(verifier::verify_loop(context.clone()));

    let mut grace = file_config.daemon.shutdown_grace;
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => match config::load(&config_path) {
                    // Unresolved Cloudflare credentials would fail every D1 backup: keep what runs.
                    Ok(Config { cloudflare_unavailable: Some(errors), .. }) => {
                        error!(errors = %errors, "configuration reload failed; keeping the previous configuration")
                    }
                    Ok(new) => {
                        info!(path = %config_path.display(), "configuration reloaded");
                        grace = new.daemon.shutdown_grace;
                        context.slots.resize(new.daemon.max_concurrent);
                        context.notifier.replace(&new.notify);
                        file_config = new;
                        let effective = with_members(&file_config, listing.as_deref());
                        reconcile(&context, &effective, &mut tasks, &mut running);
                        report_budget(&context, &effective, listing.as_ref().map_or(0, Vec::len));
                        let _ = config_tx.send(Arc::new(effective));
                        kick.notify_one();
                    }
                    Err(errors) => error!(errors = %errors, "configuration reload failed; keeping the previous configuration"),
                },
                Some(Signal::Terminate) | None => break,
            },
            Some(listed) = found_rx.recv() => {
                let effective = with_members(&file_config, Some(&listed));
                listing = Some(listed);
                // Sets, not scans: a fleet may have many thousands of members.
                let before: HashSet<String> =
                    config_tx.borrow().databases.iter().map(|d| d.name.clone()).collect();
                let now: HashSet<&str> =
                    effective.databases.iter().map(|d| d.name.as_str()).collect();
                let added: Vec<String> = effective
                    .databases
                    .iter()
                    .map(|d| d.name.clone())
                    .filter(|n| !before.contains(n))
                    .collect();
                let gone = before.iter().filter(|n| !now.contains(n.as_str())).count();
                if !added.is_empty() || gone > 0 {
                    info!(
                        added = added.len(),
                        gone,
                        databases = effective.databases.len(),
                        first_added = ?added.iter().take(10).collect::<Vec<_>>(),
                        "fleet members changed; a database gone from the account keeps its backups"
                    );
                    reconcile(&context, &effective, &mut tasks, &mut running);
                    report_budget(&context, &effective, listing.as_ref().map_or(0, Vec::len));
                    let _ = config_tx.send(Arc::new(effective));
                    let ctx = context.clone();
                    tokio::spawn(async move {
                        seed_newest(&ctx.shared, &ctx.sources, &ctx.catalog, &added).await
                    });
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done
                    && e.is_panic() { error!(error = %e, "a database task panicked"); }
                running.retain(|_, handle| !handle.is_finished());
            }
        }
    }

    info!(
        grace_seconds = grace.as_secs(),
        "stopping: no new backups start; running ones may finish"
    );
    stop_new.cancel();
    let _ = discovery_task.await;
    let _ = stale_task.await;
    // A verification under way stops at once (it holds no backup's data).
    let _ = verify_task.await;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!("shutdown grace period over: aborting running backups");
        abort.cancel();
        while tasks.join_next().await.is_some() {}
    }
    // Bounded: a receiver that hangs delays the stop by at most one delivery's worst case.
    context.notifier.finish_in_time().await;
    http_stop.cancel();
    if let Some(task) = http_task {
        let _ = task.await;
    }
    info!("daemon stopped");
    Ok(())
}

/// Asks the Cloudflare API once (the first page of the database list, one database long) whether it takes
/// the token, when any database needs D1: a wrong token stops the daemon at start, with the reason, instead
/// of failing every run from the first due time on (perhaps days later). An API that does not answer is
/// only a warning: an outage at start must not keep the daemon down.
async fn check_token(config: &Config, sources: &BackupSources) -> Result<(), String> {
    let Some(client) = &sources.cloudflare else {
        return Ok(());
    };
    if !config.backup_needs_d1(&[]) {
        return Ok(());
    }
    match client.list_databases(1, 1).await {
        Ok(_) => {
            info!(
                account = client.account_id(),
                "the Cloudflare API accepts the token"
            );
            Ok(())
        }
        Err(e) if matches!(e.status, Some(401 | 403)) => Err(format!(
            "refusing to start: the Cloudflare API refused the token: {e}"
        )),
        Err(e) => {
            warn!(error = %e, "could not reach the Cloudflare API at start; D1 backups fail until it answers");
            Ok(())
        }
    }
}

/// One INFO line per configured database with its next due time, and one per fleet (its members share
/// the fleet's schedule), so that an operator sees at start when the first backups will run.
fn log_next_runs(config: &Config, now: chrono::DateTime<chrono::Utc>) {
    let tz = config.daemon.timezone;
    for db in config.databases.iter().filter(|d| d.fleet.is_none()) {
        match db.schedule.next_after(now, tz) {
            Some(next) => {
                info!(database = %db.name, next_due = %next, schedule = db.schedule.expr(), "next run")
            }
            None => {
                warn!(database = %db.name, schedule = db.schedule.expr(), "the schedule never comes due")
            }
        }
    }
    for fleet in &config.fleets {
        let members = config
            .databases
            .iter()
            .filter(|d| d.fleet == Some(fleet.index))
            .count();
        if let Some(next) = fleet.job.schedule.next_after(now, tz) {
            info!(
                fleet = fleet.pattern.as_str(),
                members,
                next_due = %next,
                schedule = fleet.job.schedule.expr(),
                "next run of the fleet"
            );
        }
    }
}

/// Works out whether the API budget holds every backup `config` makes due ([`budget::assess`]), sets the
/// budget gauges, and says so: one INFO line with the numbers, and a WARN per group of databases that
/// cannot all be exported within their window, with what to change.
fn report_budget(context: &TaskContext, config: &Config, listed: usize) {
    let assessment = budget::assess(config, listed, context.shared.clock.now());
    context.shared.metrics.set_budget(&assessment);
    if assessment.groups.is_empty() {
        return;
    }
    info!(
        groups = assessment.groups.len(),
        worst_per_5min = assessment.worst_total().round(),
        unchanged_per_5min = assessment.unchanged_total().round(),
        discovery_per_5min = assessment.discovery.round(),
        requests_per_5min = assessment.limit,
        "API budget: requests per 5 minutes the schedules need if every database changed, and if none did"
    );
    let available = assessment.available();
    for group in assessment.over_budget() {
        let hours = group.span.num_minutes() as f64 / 60.0;
        if group.unchanged > available {
            error!(
                group = %group.label,
                databases = group.databases,
                span_hours = hours,
                unchanged_per_5min = group.unchanged.round(),
                available_per_5min = available.round(),
                "the API budget cannot even check these databases for changes within their span; most \
                 runs will wait past their window and be skipped: widen the window, spread the schedule, \
                 or raise cloudflare.requests_per_5min (Cloudflare allows 1200)"
            );
        } else {
            warn!(
                group = %group.label,
                databases = group.databases,
                span_hours = hours,
                worst_per_5min = group.worst.round(),
                unchanged_per_5min = group.unchanged.round(),
                available_per_5min = available.round(),
                "the API budget cannot export all of these databases within their span if many changed; \
                 the rest wait (longest-unprotected first) and may be skipped at their window's close: \
                 widen the window, spread the schedule, or raise cloudflare.requests_per_5min"
            );
        }
    }
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
            let task = DatabaseTask::new(context.clone(), db.name.clone());
            let handle = tasks.spawn(task.run());
            running.insert(db.name.clone(), handle);
        }
    }
}

/// The configuration in force: the file's, plus the fleet members of `listing` (none before the first
/// complete listing). Logs the fleets' warnings.
fn with_members(file: &Config, listing: Option<&[DatabaseInfo]>) -> Config {
    let resolution = fleet::resolve(file, listing.unwrap_or_default());
    if listing.is_some() {
        for warning in &resolution.warnings {
            warn!("{warning}");
        }
    }
    resolution.effective(file)
}

/// Seeds the newest backup of each database in `names` (for `/healthz`) and its last success (for
/// `/metrics`) from the complete backups already in storage, and the latest run that found that backup
/// still current (unchanged) from the catalog, so that a restart does not turn a quiet database stale: at
/// start-up, and for fleet members as they are found.
async fn seed_newest(
    shared: &Shared,
    sources: &BackupSources,
    catalog: &Catalog,
    names: &[String],
) {
    for name in names {
        match backups::complete(sources.storage.as_ref(), &sources.prefix, Some(name)).await {
            Ok(manifests) => {
                if let Some(m) = manifests.first() {
                    shared.set_newest(name, m.started_at);
                    shared
                        .metrics
                        .set_last_success(name, m.finished_at.timestamp() as f64);
                    // Only a claim about the backup still newest in storage counts.
                    if let Ok(Some(run)) = catalog.last_unchanged(name).await
                        && run.backup_id.as_deref() == Some(m.backup_id.as_str())
                    {
                        shared.set_unchanged(name, run.started_at);
                        if let Some(t) = run.finished_at {
                            shared
                                .metrics
                                .set_last_unchanged(name, t.timestamp() as f64);
                        }
                    }
                }
            }
            Err(e) => {
                warn!(database = %name, error = %e, "could not read existing backups")
            }
        }
    }
}
