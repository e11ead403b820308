//! The `/_sim` HTTP control API: the [`crate::Faults`], counters and audit log
//! of a running sim for clients outside the process (the `kube-sim` binary).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::FaultSpec;
use crate::observed::Counters;
use crate::shared::Shared;
use crate::sync::lock;

type SimState = State<Arc<Shared>>;
type Answer = Result<StatusCode, (StatusCode, String)>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/counters", get(counters).delete(reset_counters))
        .route("/_sim/audit", get(audit).delete(clear_audit))
        .route("/_sim/faults", delete(clear_faults))
        .route("/_sim/faults/latency", put(set_latency))
        .route("/_sim/faults/error-rate", put(set_error_rate))
        .route("/_sim/faults/fail-next", post(fail_next))
        .route("/_sim/faults/conflict-next", post(conflict_next))
        .route("/_sim/faults/drop-next", post(drop_next))
        .route("/_sim/faults/lose-answer-next", post(lose_answer_next))
        .with_state(shared)
}

fn bad_request(message: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, message)
}

async fn counters(State(shared): SimState) -> Json<Value> {
    let Counters {
        requests,
        total,
        metadata_only,
        listed,
    } = lock(&shared.counters).clone();
    let requests: Vec<Value> = requests
        .into_iter()
        .map(|((verb, resource), count)| json!({"verb": verb, "resource": resource, "count": count}))
        .collect();
    let metadata_only: Vec<Value> = metadata_only
        .into_iter()
        .map(|((verb, resource), count)| json!({"verb": verb, "resource": resource, "count": count}))
        .collect();
    Json(json!({"total": total, "metadataOnly": metadata_only, "requests": requests, "listed": listed}))
}

async fn reset_counters(State(shared): SimState) -> StatusCode {
    *lock(&shared.counters) = Counters::default();
    StatusCode::NO_CONTENT
}

async fn audit(State(shared): SimState) -> Json<Value> {
    Json(json!(*lock(&shared.audit)))
}

async fn clear_audit(State(shared): SimState) -> StatusCode {
    lock(&shared.audit).clear();
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(shared): SimState) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Latency {
    base_ms: u64,
    #[serde(default)]
    jitter_ms: u64,
    delay_reads: Option<bool>,
}

async fn set_latency(State(shared): SimState, Json(latency): Json<Latency>) -> StatusCode {
    let millis = Duration::from_millis;
    shared
        .faults
        .set_latency(millis(latency.base_ms), millis(latency.jitter_ms));
    if let Some(delay_reads) = latency.delay_reads {
        shared.faults.set_delay_reads(delay_reads);
    }
    StatusCode::NO_CONTENT
}

/// A [`FaultSpec`] as JSON: `{"status": 503, "retryAfter": 1, "method": "PUT", "pathContains": "/configmaps/", "after": 1}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fault {
    status: u16,
    retry_after: Option<u64>,
    method: Option<String>,
    path_contains: Option<String>,
    #[serde(default)]
    after: usize,
}

fn parse_method(method: Option<&str>) -> Result<Option<Method>, (StatusCode, String)> {
    method
        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
        .transpose()
        .map_err(|error| bad_request(format!("method: {error}")))
}

impl Fault {
    fn into_spec(self) -> Result<FaultSpec, (StatusCode, String)> {
        Ok(FaultSpec {
            status: self.status,
            retry_after: self.retry_after,
            method: parse_method(self.method.as_deref())?,
            path_contains: self.path_contains,
            after: self.after,
        })
    }
}

#[derive(Deserialize)]
struct Counted<T> {
    n: usize,
    #[serde(flatten)]
    rule: T,
}

#[derive(Deserialize)]
struct ErrorRate {
    probability: f64,
    #[serde(flatten)]
    fault: Fault,
}

async fn set_error_rate(State(shared): SimState, Json(rate): Json<ErrorRate>) -> Answer {
    if !(0.0..=1.0).contains(&rate.probability) {
        return Err(bad_request(format!(
            "probability {} is not within 0..=1",
            rate.probability
        )));
    }
    shared.faults.set_error_rate(rate.probability, rate.fault.into_spec()?);
    Ok(StatusCode::NO_CONTENT)
}

async fn fail_next(State(shared): SimState, Json(counted): Json<Counted<Fault>>) -> Answer {
    shared.faults.fail_next(counted.n, counted.rule.into_spec()?);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ObjectRef {
    resource: String,
    name: String,
}

async fn conflict_next(State(shared): SimState, Json(counted): Json<Counted<ObjectRef>>) -> StatusCode {
    let ObjectRef { resource, name } = counted.rule;
    shared.faults.conflict_next(&resource, &name, counted.n);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMatch {
    method: Option<String>,
    path_contains: Option<String>,
}

async fn lose_answer_next(State(shared): SimState, Json(counted): Json<Counted<RequestMatch>>) -> Answer {
    counted_rule(counted, |n, method, path| {
        shared.faults.lose_answer_next(n, method, path)
    })
}

async fn drop_next(State(shared): SimState, Json(counted): Json<Counted<RequestMatch>>) -> Answer {
    counted_rule(counted, |n, method, path| shared.faults.drop_next(n, method, path))
}

/// Sets a rule for the next `n` requests matching a method and a path fragment.
fn counted_rule(counted: Counted<RequestMatch>, set: impl FnOnce(usize, Option<Method>, Option<&str>)) -> Answer {
    let method = parse_method(counted.rule.method.as_deref())?;
    set(counted.n, method, counted.rule.path_contains.as_deref());
    Ok(StatusCode::NO_CONTENT)
}
