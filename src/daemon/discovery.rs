//! The daemon's fleet discovery: the account is listed at start, every `daemon.discovery_interval` and
//! after each reload, and each complete listing is handed to the main loop, which turns it into the
//! configuration in force (configured databases plus fleet members) and starts or ends their tasks. A
//! failed listing is logged and changes nothing: the members known before keep their tasks.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tracing::warn;

use super::context::TaskContext;
use crate::cloudflare::DatabaseInfo;
use crate::fleet::{self, DiscoveryError, LIST_PAGE_SIZE};

/// Lists the account whenever the configuration in force has a fleet: now, then every
/// `discovery_interval` or when `kick` is notified (a reload), until the first stop signal. Each
/// complete listing goes to `found`.
pub(super) async fn discovery_loop(
    ctx: Arc<TaskContext>,
    kick: Arc<Notify>,
    found: mpsc::Sender<Vec<DatabaseInfo>>,
) {
    let clock = ctx.shared.clock.clone();
    loop {
        let config = ctx.shared.config.borrow().clone();
        if !config.fleets.is_empty() {
            let listing = async {
                match &ctx.sources.cloudflare {
                    Some(client) => fleet::list_all(client, LIST_PAGE_SIZE).await,
                    None => Err(DiscoveryError::NoClient),
                }
            };
            let result = tokio::select! {
                result = listing => result,
                _ = ctx.stop_new.cancelled() => return,
            };
            match result {
                Ok(listed) => {
                    if found.send(listed).await.is_err() {
                        return;
                    }
                }
                Err(e) => warn!(
                    error = %e,
                    retryable = e.is_retryable(),
                    "fleet discovery failed; the members found before keep their schedules"
                ),
            }
        }
        let next = clock.now()
            + chrono::Duration::from_std(config.daemon.discovery_interval)
                .unwrap_or(chrono::Duration::days(365));
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = kick.notified() => {}
            _ = ctx.stop_new.cancelled() => return,
        }
    }
}
