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
use higress_route_worker::result::{unknown_write_warning, Change, RouteResult};
use kube_sim::Sim;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
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

    /// Write requests the server answered with a failure or not at all, by (verb, resource): the
    /// requests it counted less the writes its audit log records as done.
    pub fn failed_writes(&self) -> BTreeMap<(String, String), u64> {
        let mut failed: BTreeMap<(String, String), u64> = self
            .sim
            .counters()
            .requests
            .into_iter()
            .filter(|((verb, _), _)| ["create", "update", "patch", "delete"].contains(&verb.as_str()))
            .collect();
        for done in self.sim.audit() {
            *failed
                .get_mut(&(done.verb, done.resource))
                .expect("an audited write was counted") -= 1;
        }
        failed.retain(|_, n| *n > 0);
        failed
    }

    /// The audit log's writes that no result's `changes` lists, nor names in a warning as a write
    /// whose answer was lost and that may have been made, as `verb resource/name`.
    pub fn writes_unlisted_in(&self, results: &[RouteResult]) -> Vec<String> {
        let warnings: BTreeSet<&str> = results.iter().flat_map(|r| &r.warnings).map(String::as_str).collect();
        let reported: BTreeSet<(String, &str)> = results
            .iter()
            .flat_map(|r| r.changes.iter())
            .map(|c| (format!("{}/{}", c.kind, c.name), c.operation))
            .collect();
        let kind_of = |resource: &str| match resource {
            "configmaps" => "ConfigMap",
            "ingresses" => "Ingress",
            "mcpbridges" => "McpBridge",
            "wasmplugins" => "WasmPlugin",
            "envoyfilters" => "EnvoyFilter",
            other => panic!("unexpected write of {other}"),
        };
        self.sim
            .audit()
            .into_iter()
            .filter(|entry| {
                let operation = match entry.verb.as_str() {
                    "create" => "created",
                    "delete" => "deleted",
                    _ => "updated",
                };
                let change = Change {
                    api_version: String::new(),
                    kind: kind_of(&entry.resource).to_string(),
                    name: entry.name.clone(),
                    operation,
                };
                !reported.contains(&(format!("{}/{}", change.kind, change.name), operation))
                    && !warnings.contains(unknown_write_warning(&change).as_str())
            })
            .map(|entry| format!("{} {}/{}", entry.verb, entry.resource, entry.name))
            .collect()
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

/// Objects the console made: the registries, providers, consumers and rules of other people.
pub fn console_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "networking.higress.io/v1", "kind": "McpBridge", "metadata": {"name": "default", "namespace": NS},
               "spec": {"registries": [{"domain": "nacos.local", "name": "nacos-prod", "port": 8848, "type": "nacos2", "nacosNamespace": "prod"}], "proxies": []}}),
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-proxy.internal", "namespace": NS, "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": "ai-proxy"}},
               "spec": {"defaultConfig": {"providers": [{"id": "theirs", "type": "moonshot", "protocol": "openai", "apiTokens": ["x"]}]}, "defaultConfigDisable": false,
                        "matchRules": [{"config": {"activeProviderId": "theirs"}, "configDisable": false, "service": ["llm-theirs.internal.dns"]}],
                        "url": "oci://mirror/ai-proxy:1.0.0", "phase": "UNSPECIFIED_PHASE", "priority": 100}}),
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "key-auth.internal", "namespace": NS, "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": "key-auth"}},
               "spec": {"defaultConfig": {"global_auth": false, "allow": [], "keys": ["x-higress-dummy-key"],
                        "consumers": [{"name": "carol", "keys": ["x-key"], "in_header": true, "in_query": false, "credentials": ["c-1"]}]},
                        "defaultConfigDisable": false, "matchRules": [{"config": {"allow": ["carol"]}, "configDisable": false, "ingress": ["their-route"]}]}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "domain-api.example.com", "namespace": NS,
               "labels": {"higress.io/config-map-type": "domain", "higress.io/resource-definer": "higress"}},
               "data": {"domain": "api.example.com", "enableHttps": "off"}}),
    ]
}
