//! kube-sim: a small, stateful, in-memory Kubernetes API server over real
//! HTTP, for tests and benchmarks of Kubernetes clients.
//!
//! It serves ConfigMaps, Secrets, Namespaces, Ingresses and the Higress and
//! Istio custom resources with the API server's rules for resourceVersions,
//! conflicts, patches and error `Status` objects, and lets tests inject
//! latency, error responses, conflicts and dropped connections.
//!
//! ```no_run
//! # async fn example() {
//! let sim = kube_sim::start().await;
//! sim.write_kubeconfig("/tmp/kubeconfig").unwrap();
//! sim.faults().fail_next(1, kube_sim::FaultSpec::new(503));
//! // ... run the client under test against sim.base_url() ...
//! assert_eq!(sim.counters().get("update", "configmaps"), 2);
//! # }
//! ```

mod control;
mod discovery;
mod faults;
mod http;
mod managed;
mod observed;
mod patch;
mod resources;
mod schema;
mod selector;
mod server;
mod shared;
mod status;
mod store;
mod sync;
mod validation;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

pub use axum::http::Method;
pub use faults::{FaultSpec, Faults};
pub use observed::{AuditEntry, Counters};
pub use status::ApiError;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use resources::ResourceType;
use shared::Shared;
use sync::lock;

/// The field manager of objects made with [`Sim::insert`].
pub const INSERT_MANAGER: &str = "kube-sim";

/// The namespace of the kubeconfig's context.
const KUBECONFIG_NAMESPACE: &str = "higress-system";

/// A running API server on 127.0.0.1. Dropping it (or [`Sim::shutdown`])
/// stops the server and closes its connections.
pub struct Sim {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// Starts a sim on a free port.
///
/// # Panics
/// If no port on 127.0.0.1 can be bound.
pub async fn start() -> Sim {
    start_on(0)
        .await
        .unwrap_or_else(|error| panic!("kube-sim: cannot listen on 127.0.0.1: {error}"))
}

/// Starts a sim on the given port of 127.0.0.1 (0 picks a free one).
pub async fn start_on(port: u16) -> io::Result<Sim> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    let address = listener.local_addr()?;
    let shared = Arc::new(Shared::new());
    let server = tokio::spawn(server::serve(listener, shared.clone()));
    Ok(Sim {
        address,
        shared,
        server,
    })
}

impl Sim {
    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig for kubectl and kube-rs: plain HTTP, a dummy bearer token,
    /// current context in namespace `higress-system`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kube-sim
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
contexts:
- name: kube-sim
  context:
    cluster: kube-sim
    namespace: {namespace}
    user: kube-sim
current-context: kube-sim
preferences: {{}}
users:
- name: kube-sim
  user:
    token: kube-sim-token
",
            server = self.base_url(),
            namespace = KUBECONFIG_NAMESPACE,
        )
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// The fault rules; the handle can be cloned and kept.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// A snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        lock(&self.shared.counters).clone()
    }

    pub fn reset_counters(&self) {
        *lock(&self.shared.counters) = Counters::default();
    }

    /// The writes made through the API so far, oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        lock(&self.shared.audit).clone()
    }

    pub fn clear_audit(&self) {
        lock(&self.shared.audit).clear();
    }

    /// Creates an object exactly as a POST would (same defaults, checks and
    /// resourceVersion increment), without counting a request or an audit
    /// entry. The type comes from `apiVersion` and `kind`; namespaced objects
    /// need `metadata.namespace`. Returns the stored object.
    pub fn insert(&self, object: Value) -> Result<Value, ApiError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let rt = resources::by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "kube-sim does not serve kind {kind:?} in version {api_version:?}"
            ))
        })?;
        let namespace = match object["metadata"]["namespace"].as_str() {
            _ if !rt.namespaced => String::new(),
            Some(namespace) if !namespace.is_empty() => namespace.to_string(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "metadata.namespace is required to insert a {kind}"
                )))
            }
        };
        lock(&self.shared.store)
            .create(rt, &namespace, object, INSERT_MANAGER)
            .map(Arc::unwrap_or_clone)
    }

    /// The stored object, read directly. `resource` is the plural
    /// (`configmaps`, `wasmplugins`, optionally `.group`-qualified); the
    /// namespace is ignored for cluster-scoped resources.
    ///
    /// # Panics
    /// If kube-sim does not serve `resource`.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = resource_type(resource);
        let namespace = if rt.namespaced { namespace } else { "" };
        lock(&self.shared.store)
            .get(rt, namespace, name)
            .ok()
            .map(Arc::unwrap_or_clone)
    }

    /// The stored objects of one resource, in one namespace or, for `""`, in
    /// all of them; ordered by namespace, then name.
    ///
    /// # Panics
    /// If kube-sim does not serve `resource`.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        let rt = resource_type(resource);
        let namespace = Some(namespace).filter(|ns| !ns.is_empty() && rt.namespaced);
        let everything = selector::Selector::default();
        let mut list = lock(&self.shared.store).list(rt, namespace, &everything, &everything);
        match list["items"].take() {
            Value::Array(items) => items,
            _ => Vec::new(),
        }
    }

    /// Stops the server and waits until it has stopped listening.
    pub async fn shutdown(mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn resource_type(resource: &str) -> &'static ResourceType {
    resources::by_name(resource).unwrap_or_else(|| {
        let known: Vec<&str> = resources::RESOURCES.iter().map(|r| r.plural).collect();
        panic!("kube-sim does not serve {resource:?}; it serves {known:?}")
    })
}
