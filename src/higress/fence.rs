//! Revisions fence a route: the revision that last changed it is kept in an annotation of its
//! `ai-route-<m>` ConfigMap, and a retired model leaves a tombstone, so a late or replayed event
//! cannot undo a newer one.

use super::names;
use super::ops;
use super::state::{annotation, Kind, State};
use crate::event::{Lifecycle, LifecycleEvent};
use serde_json::{json, Value};

/// `Some(newest revision seen)` when the event is older than what the route has seen. An equal
/// revision is a replay of the same event: it is applied again (and changes nothing when the first
/// run finished), so a retry after a partial failure completes the job.
pub fn stale(event: &LifecycleEvent, state: &State) -> Option<u64> {
    let route = route_revision(state, event.model());
    let tombstone = tombstone_revision(state, event.model());
    let revision = event.revision();
    let stale = match &event.body {
        Lifecycle::Deployed(_) => route.is_some_and(|r| r > revision) || tombstone.is_some_and(|t| t >= revision),
        Lifecycle::Retired(_) => route.is_some_and(|r| r > revision) || tombstone.is_some_and(|t| t > revision),
    };
    stale.then(|| route.into_iter().chain(tombstone).max().unwrap_or_default())
}

pub fn route_revision(state: &State, model: &str) -> Option<u64> {
    state
        .get_named(Kind::ConfigMap, &names::route_config_map(model))
        .and_then(|cm| annotation(cm, names::ANNOTATION_REVISION))
        .and_then(|r| r.parse::<u64>().ok())
}

pub fn tombstone_revision(state: &State, model: &str) -> Option<u64> {
    state
        .get_named(Kind::ConfigMap, names::TOMBSTONES)
        .and_then(|t| ops::tombstone_revision(t, model))
}

pub fn new_tombstones(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names::TOMBSTONES, "namespace": namespace, "labels": {names::LABEL_MANAGED_BY: names::MANAGER}},
        "data": {}
    })
}
