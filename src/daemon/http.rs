//! `GET /healthz` and `GET /metrics` on `daemon.listen`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::context::TaskContext;

/// Stale databases whose backups `/healthz` rereads from storage before it answers 503.
const REREAD_AT_MOST: usize = 10;

/// Serves until `stop` is cancelled.
pub(super) async fn serve(
    listener: TcpListener,
    context: Arc<TaskContext>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(context);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// The freshness of every database. Before calling one stale, its backups are reread from storage: a
/// backup this daemon did not take (a manual `d1vault backup` by the on-call engineer) counts at once.
async fn healthz(State(ctx): State<Arc<TaskContext>>) -> impl IntoResponse {
    let health = ctx.health_rereading_stale(REREAD_AT_MOST).await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health))
}

async fn metrics(State(ctx): State<Arc<TaskContext>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.shared.metrics_text(),
    )
}
