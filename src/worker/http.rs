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

/// Readiness is decided at each scrape too: a gauge set only when a probe asks would be stale (or never
/// set) where nothing probes. The scrape then waits for the API server as `/readyz` does, 2 s at most.
async fn metrics_text(State(shared): State<Shared>) -> ([(&'static str, &'static str); 1], String) {
    let _ = readiness(&shared).await;
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn ready(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    match readiness(&shared).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Ready when the consumer group has assigned partitions and the API server answers; the answer is also
/// the `ready` gauge.
async fn readiness(shared: &Shared) -> Result<(), &'static str> {
    let decided = if !shared.readiness.joined.load(Ordering::Relaxed) {
        Err("consumer group not joined")
    } else {
        match tokio::time::timeout(Duration::from_secs(2), shared.api.client().apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err("API server unreachable"),
        }
    };
    shared.metrics.ready.set(i64::from(decided.is_ok()));
    decided
}
