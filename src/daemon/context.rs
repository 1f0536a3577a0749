//! What every database task shares: the state the HTTP handlers see too, the sources, the catalog, the
//! backup slots and the two shutdown tokens; and the one place where an event reaches the catalog, the
//! metrics and the log.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::events::{RunFinished, RunSkipped};
use super::health::{Freshness, Health};
use super::shared::Shared;
use super::slots::Slots;
use crate::catalog::{Catalog, RunOutcome};
use crate::notify::Notifier;
use crate::sources::BackupSources;

/// What every database task shares.
pub(super) struct TaskContext {
    /// Metrics, clock, configuration and newest backups, shared with the HTTP handlers.
    pub(super) shared: Arc<Shared>,
    /// Storage and the Cloudflare client.
    pub(super) sources: BackupSources,
    /// The run history.
    pub(super) catalog: Catalog,
    /// `daemon.max_concurrent` slots, longest-unprotected first: a backup runs only while holding one.
    pub(super) slots: Arc<Slots>,
    /// Cancelled by the first stop signal: sleeping tasks end, nothing new starts.
    pub(super) stop_new: CancellationToken,
    /// Cancelled when the shutdown grace is over: running backups are dropped.
    pub(super) abort: CancellationToken,
    /// One catalog call at a time; see [`TaskContext::gated`].
    pub(super) catalog_turn: Semaphore,
    /// Where events are told to `[[notify]]` targets, off the backups' path.
    pub(super) notifier: Notifier,
}

impl TaskContext {
    /// Runs one catalog call at a time. The catalog serializes on one connection anyway, but each call
    /// takes a blocking thread while it waits for that connection: 200 databases starting together parked
    /// ~150 threads on its mutex, and the memory their allocator arenas kept raised the idle RSS.
    pub(super) async fn gated<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let _turn = self
            .catalog_turn
            .acquire()
            .await
            .expect("the catalog semaphore is never closed");
        call.await
    }

    /// The `/healthz` judgement now, with the backups of up to `at_most` stale databases reread from
    /// storage first: a backup this daemon did not take (a manual `d1vault backup` by the on-call
    /// engineer, another host) counts before a database is called stale.
    pub(super) async fn health_rereading_stale(&self, at_most: usize) -> Health {
        let health = self.shared.health();
        let stale: Vec<String> = health
            .databases
            .iter()
            .filter(|d| d.state == Freshness::Stale)
            .map(|d| d.name.clone())
            .take(at_most)
            .collect();
        if stale.is_empty() {
            return health;
        }
        super::seed_newest(&self.shared, &self.sources, &self.catalog, &stale).await;
        self.shared.health()
    }

    /// Publishes a finished run: its log line, its catalog row, its metrics, its notification.
    pub(super) async fn emit_finished(&self, event: &RunFinished) {
        event.log();
        if let Err(e) = self.gated(event.record(&self.catalog)).await {
            warn!(database = %event.database, error = %e, "catalog write failed");
        }
        event.update(&self.shared.metrics);
        let failed = matches!(event.outcome, RunOutcome::Failed | RunOutcome::Aborted);
        self.shared.set_run_result(
            &event.database,
            failed.then(|| event.error.as_deref().unwrap_or("unknown")),
        );
        self.notifier.send(&event.notification());
    }

    /// Publishes a skipped due time: its log line, its catalog row, its metrics.
    pub(super) async fn emit_skipped(&self, event: &RunSkipped) {
        event.log();
        if let Err(e) = self.gated(event.record(&self.catalog)).await {
            warn!(database = %event.database, error = %e, "catalog write failed");
        }
        event.update(&self.shared.metrics);
    }
}
