//! Prometheus metrics of the worker, in one registry.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use crate::event::{DEPLOYED_TYPE, RETIRED_TYPE};

// Label values are `&'static str`: each comes from a closed set written in the code, never from
// input, so a hostile event cannot create series.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// One of the lifecycle types, or `unknown` (see [`event_type_label`]).
    pub r#type: &'static str,
    pub outcome: &'static str,
}

/// A shared object, `Kind/name`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub object: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UndeliverableLabels {
    /// `results` or `dead-letters`.
    pub output: &'static str,
    /// `message-too-large`, `invalid-topic` or `invalid-record`.
    pub error: &'static str,
}

/// A partition of an input topic this worker owns.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// The `type` label of an input: a lifecycle type we know, else `unknown`.
pub fn event_type_label(raw: Option<&str>) -> &'static str {
    match raw {
        Some(DEPLOYED_TYPE) => DEPLOYED_TYPE,
        Some(RETIRED_TYPE) => RETIRED_TYPE,
        _ => "unknown",
    }
}

pub struct Metrics {
    registry: Registry,
    pub events: Family<EventLabels, Counter>,
    pub apply_duration: Histogram,
    pub conflicts: Counter,
    pub retries: Family<ReasonLabels, Counter>,
    pub dead_lettered: Family<ReasonLabels, Counter>,
    /// Dead letters whose payload was cut to fit the producer's message size.
    pub dead_letters_truncated: Counter,
    /// Records the broker refused for good (too large, invalid topic): logged, counted, skipped.
    pub undeliverable: Family<UndeliverableLabels, Counter>,
    pub shared_object_bytes: Family<ObjectLabels, Gauge>,
    pub shared_object_budget: Gauge,
    /// Problems the gateway's plugin has with each plugin CR we edit, as last read (`crate::gateway`).
    pub gateway_problems: Family<ObjectLabels, Gauge>,
    pub in_flight: Gauge,
    /// Secret rotation rounds' outcomes per route: `secret-rotated`, or why not.
    pub secret_rotations: Family<ReasonLabels, Counter>,
    /// Records of each owned partition the group has not committed (`worker::lag`).
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Set from `in_flight_since` at each render, so it keeps rising while a batch is stuck.
    oldest_in_flight_age: Gauge<f64, AtomicU64>,
    in_flight_since: Mutex<Option<Instant>>,
    /// 1 while `/readyz` would answer 200, else 0; decided where `/readyz` decides (`worker::http`).
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("higress_route_worker");
        let events = Family::<EventLabels, Counter>::default();
        registry.register("events", "Input events by type and outcome", events.clone());
        // 1 ms to 131 s: past the default event deadline (120 s), which a retried apply may reach.
        let apply_duration = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register(
            "apply_duration_seconds",
            "Time to apply one event (or batch) to the cluster",
            apply_duration.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "conflicts",
            "409 conflicts met while writing shared objects",
            conflicts.clone(),
        );
        let retries = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "retries",
            "Requests to the API server retried, by error class",
            retries.clone(),
        );
        let dead_lettered = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dead_lettered",
            "Inputs sent to the dead-letter topic, by reason",
            dead_lettered.clone(),
        );
        let dead_letters_truncated = Counter::default();
        registry.register(
            "dead_letters_truncated",
            "Dead letters whose original payload was cut to fit the message size",
            dead_letters_truncated.clone(),
        );
        let undeliverable = Family::<UndeliverableLabels, Counter>::default();
        registry.register(
            "undeliverable",
            "Records the broker refused permanently (too large, invalid topic), by output and error",
            undeliverable.clone(),
        );
        let shared_object_bytes = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "shared_object_bytes",
            "Serialized size of each shared object as last written (McpBridge, plugin CRs, fences)",
            shared_object_bytes.clone(),
        );
        let shared_object_budget = Gauge::default();
        registry.register(
            "shared_object_budget_bytes",
            "Largest size an event may take a shared object to (--shared-object-budget-bytes)",
            shared_object_budget.clone(),
        );
        let gateway_problems = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "gateway_problems",
            "Entries of each plugin CR the worker edits that the gateway's plugin refuses, as last read: any \
             one keeps the plugin from loading a new config",
            gateway_problems.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight",
            "Events taken from Kafka and not yet committed",
            in_flight.clone(),
        );
        let secret_rotations = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "secret_rotations",
            "Routes whose Secret values were rotated (secret-rotated) or could not be, by reason",
            secret_rotations.clone(),
        );
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Records of each partition this worker owns that its group has not committed: the high watermark \
             minus the committed offset (the low watermark while nothing is committed)",
            consumer_lag.clone(),
        );
        let oldest_in_flight_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_in_flight_age_seconds",
            "Age of the oldest record taken from Kafka whose offset is not stored for commit yet; 0 when none",
            oldest_in_flight_age.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while the worker is ready (/readyz: consumer group joined and the API server answers), else 0",
            ready.clone(),
        );
        Self {
            registry,
            events,
            apply_duration,
            conflicts,
            retries,
            dead_lettered,
            dead_letters_truncated,
            undeliverable,
            shared_object_bytes,
            shared_object_budget,
            gateway_problems,
            in_flight,
            secret_rotations,
            consumer_lag,
            oldest_in_flight_age,
            in_flight_since: Mutex::new(None),
            ready,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let since = *self.in_flight_since.lock().unwrap_or_else(|e| e.into_inner());
        self.oldest_in_flight_age
            .set(since.map_or(0.0, |since| since.elapsed().as_secs_f64()));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The object names come from the mapping, never from input: a bounded set.
    pub fn shared_object_size(&self, object: &crate::higress::ObjectKey, bytes: usize) {
        self.shared_object_bytes
            .get_or_create(&ObjectLabels {
                object: object.to_string(),
            })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The object names come from the mapping, never from input: a bounded set.
    pub fn gateway_problems_of(&self, object: &crate::higress::ObjectKey, problems: usize) {
        self.gateway_problems
            .get_or_create(&ObjectLabels {
                object: object.to_string(),
            })
            .set(i64::try_from(problems).unwrap_or(i64::MAX));
    }

    /// When the oldest record not yet stored for commit was taken; `None` once none is.
    pub fn in_flight_since(&self, since: Option<Instant>) {
        *self.in_flight_since.lock().unwrap_or_else(|e| e.into_inner()) = since;
    }

    pub fn secret_rotation(&self, reason: &'static str) {
        self.secret_rotations.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn retried(&self, reason: &'static str) {
        self.retries.get_or_create(&ReasonLabels { reason }).inc();
    }
}
