//! The state the HTTP server and the [`crate::Sim`] handle share. Its own
//! module so that the server, the API and the control routes all depend on it
//! and not on each other.

use std::sync::Mutex;

use serde_json::json;

use crate::faults::Faults;
use crate::observed::{AuditEntry, Counters};
use crate::resources::NAMESPACES;
use crate::store::Store;

/// The field manager of the objects kube-sim makes itself, as in a cluster
/// where the API server made them.
pub(crate) const SYSTEM_MANAGER: &str = "kube-apiserver";

/// Namespaces that exist from the start, as in a cluster with Higress installed.
const INITIAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "higress-system"];

/// State shared by the server and the [`crate::Sim`] handle.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) audit: Mutex<Vec<AuditEntry>>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) faults: Faults,
}

impl Shared {
    pub(crate) fn new() -> Self {
        let mut store = Store::default();
        for name in INITIAL_NAMESPACES {
            let namespace = json!({"metadata": {"name": name}});
            if let Err(error) = store.create(NAMESPACES, "", namespace, SYSTEM_MANAGER) {
                unreachable!("initial namespace {name}: {error}");
            }
        }
        Shared {
            store: Mutex::new(store),
            audit: Mutex::default(),
            counters: Mutex::default(),
            faults: Faults::new(),
        }
    }
}
