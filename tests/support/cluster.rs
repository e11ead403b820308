//! kube-sim and an engine talking to it over HTTP, for the engine's integration tests.
//!
//! Include with `#[path = "support/cluster.rs"] mod cluster;`.

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

use higress_route_worker::cluster::{self, Engine, EngineConfig, RetryPolicy};
use higress_route_worker::contract;
use higress_route_worker::event::{self, LifecycleEvent};
use higress_route_worker::higress::Settings;
use higress_route_worker::metrics::Metrics;
use kube_sim::Sim;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const NS: &str = "higress-system";

pub struct Cluster {
    pub sim: Sim,
    _dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
}

/// Fast retries: the tests inject many faults.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(50),
        max_attempts: 30,
        max_elapsed: Duration::from_secs(20),
        ..RetryPolicy::DEFAULT
    }
}

impl Cluster {
    pub async fn start() -> Self {
        let sim = kube_sim::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Self {
            sim,
            _dir: dir,
            kubeconfig,
        }
    }

    pub async fn engine(&self) -> Engine {
        self.engine_with(quick_retries(), Settings::default()).await
    }

    pub async fn engine_with(&self, retry: RetryPolicy, settings: Settings) -> Engine {
        let client = cluster::connect(Some(&self.kubeconfig)).await.unwrap();
        Engine::new(
            client,
            EngineConfig {
                retry,
                settings,
                ..EngineConfig::default()
            },
            Arc::new(Metrics::default()),
        )
    }

    pub fn get(&self, resource: &str, name: &str) -> Option<Value> {
        self.sim.get(resource, NS, name)
    }

    /// Writes (create, update, patch, delete) the API server has served.
    pub fn writes(&self) -> u64 {
        let counters = self.sim.counters();
        counters
            .requests
            .iter()
            .filter(|((verb, _), _)| ["create", "update", "patch", "delete"].contains(&verb.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

pub fn parse(kind: &str, data: Value) -> LifecycleEvent {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let event = json!({"specversion": "1.0", "id": format!("id-{id}"), "source": "tests", "type": kind, "data": data});
    contract::parse(event.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// A deploy with its own provider and consumer on a shared domain.
pub fn deploy(model: &str, revision: u64) -> LifecycleEvent {
    parse(
        event::DEPLOYED_TYPE,
        json!({
            "model": model, "revision": revision,
            "provider": {"name": format!("p-{model}"), "type": "openai", "url": format!("https://{model}.models.example.com/v1"), "apiTokens": [format!("sk-{model}")]},
            "route": {"domains": ["api.example.com"], "path": format!("/{model}")},
            "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [format!("key-{model}")]}]}
        }),
    )
}

pub fn retire(model: &str, revision: u64) -> LifecycleEvent {
    parse(
        event::RETIRED_TYPE,
        json!({"model": model, "revision": revision, "deleteConsumers": true}),
    )
}
