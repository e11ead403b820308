//! `/metrics`, `/healthz` and `/readyz`.

use super::Readiness;
use crate::cluster::Api;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    api: Api,
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>, api: Api) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Shared {
            metrics,
            readiness,
            api,
        })
}

async fn metrics_text(State(shared): State<Shared>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

/// Ready when the consumer group has assigned partitions and the API server answers.
async fn ready(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if !shared.readiness.joined.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "consumer group not joined");
    }
    match tokio::time::timeout(Duration::from_secs(2), shared.api.client().apiserver_version()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "API server unreachable"),
    }
}
