//! `GET /healthz` and `GET /metrics` on `daemon.listen`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// One database in the `/healthz` body.
#[derive(Debug, Serialize)]
pub struct DatabaseHealth {
    pub name: String,
    /// `fresh`, `stale`, or `pending` (no backup yet, daemon younger than the freshness limit).
    pub state: &'static str,
    pub newest_backup: Option<String>,
    pub age_seconds: Option<i64>,
    pub limit_seconds: i64,
}

/// The `/healthz` body.
#[derive(Debug, Serialize)]
pub struct Health {
    pub healthy: bool,
    pub databases: Vec<DatabaseHealth>,
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let health = shared.health();
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}
