//! The shared objects as this worker last read or wrote them, kept from one batch to the next.
//! McpBridge `default` and the plugin CRs hold every route's entries: megabytes on a large cluster,
//! which a batch would otherwise download, parse and index again each time. A batch asks the server
//! for their metadata only and takes a kept copy whose `resourceVersion` is still the server's, so
//! what it plans against is exactly what a full read would have returned; any other is read whole.
//!
//! The fence shards are kept too: every batch reads them (and looks at them twice more after its
//! writes), and together they hold an entry per route.
//!
//! A batch takes the copies it plans on out, and puts them back only when it ends with each object as
//! the server stores it: read and left alone, or written by its first attempt (then with the version
//! the server answered). Anything else (a retry's re-read, a failed batch) leaves it out, and the
//! next batch reads the object whole. A read that only looks (the fence checks, Secret rotation)
//! uses a copy of the copy.

use crate::higress::index::EntryIndex;
use crate::higress::{names, Kind, ObjectKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

fn version_of(kept: &Kept) -> Option<&str> {
    kept.object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
}

/// The objects worth keeping: McpBridge `default` and the plugin CRs hold every route's entries, the
/// fence shards one entry per route.
pub fn is_kept(key: &ObjectKey) -> bool {
    match key.kind {
        Kind::McpBridge | Kind::WasmPlugin => true,
        Kind::ConfigMap => names::is_fence(&key.name),
        _ => false,
    }
}

/// Whether every item of this list is an object worth keeping, so the list can be read as metadata.
pub fn is_kept_list(kind: Kind, label_selector: &str) -> bool {
    match kind {
        Kind::McpBridge | Kind::WasmPlugin => true,
        Kind::ConfigMap => label_selector == names::SELECT_FENCES,
        _ => false,
    }
}

/// What a read does with a kept copy that is still current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Takes it out: the batch plans on it and puts it back when done.
    Take,
    /// Looks at a copy; the kept one stays.
    Look,
}

/// A kept copy: the object, its entries' index, and its serialized size when known (what the write
/// that stored it sent), so a batch need not serialize it to check the shared-object budget.
pub struct Kept {
    pub object: Value,
    pub index: EntryIndex,
    pub size: Option<usize>,
}

#[derive(Default)]
pub struct SharedObjects {
    kept: Mutex<BTreeMap<ObjectKey, Kept>>,
}

impl SharedObjects {
    fn kept(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectKey, Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a copy of `key` is kept (so its metadata is enough to know whether it is current).
    pub fn holds(&self, key: &ObjectKey) -> bool {
        self.kept().contains_key(key)
    }

    /// Whether any object of `kind` is kept.
    pub fn holds_any(&self, kind: Kind) -> bool {
        self.kept().keys().any(|key| key.kind == kind)
    }

    /// Whether a copy of `key` is kept at the server's `resource_version`.
    pub fn is_current(&self, key: &ObjectKey, resource_version: &str) -> bool {
        self.kept()
            .get(key)
            .is_some_and(|copy| version_of(copy) == Some(resource_version))
    }

    /// The kept copy (taken out, or a copy of it) if the server's `resource_version` is still its
    /// own; a copy that is not current is dropped.
    pub fn current(&self, key: &ObjectKey, resource_version: Option<&str>, use_: Use) -> Option<Kept> {
        let mut kept = self.kept();
        let current = kept
            .get(key)
            .is_some_and(|copy| resource_version.is_some() && version_of(copy) == resource_version);
        if !current || use_ == Use::Take {
            return kept.remove(key).filter(|_| current);
        }
        kept.get(key).map(|copy| Kept {
            object: copy.object.clone(),
            index: EntryIndex::default(),
            size: copy.size,
        })
    }

    /// After a list of a kept kind (every object of that kind a batch keeps is in it): the copies
    /// of objects it no longer holds are dropped (deleted, or their label moved them out of it), so
    /// nothing is kept for an object that is gone.
    pub fn keep_only_listed<'n>(&self, kind: Kind, listed: impl IntoIterator<Item = &'n str>) {
        let listed: std::collections::BTreeSet<&str> = listed.into_iter().collect();
        self.kept()
            .retain(|key, _| key.kind != kind || listed.contains(key.name.as_str()));
    }

    /// Keeps `object` as the server stores it at `resource_version`. Without `managedFields`: the
    /// server has moved them on at our own write, and a write that carries none keeps the server's.
    pub fn keep(&self, key: ObjectKey, mut kept: Kept, resource_version: &str) {
        if let Some(metadata) = kept.object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".into(), resource_version.into());
            metadata.remove("managedFields");
        }
        self.kept().insert(key, kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn copy() -> Kept {
        Kept {
            object: json!({"metadata": {"resourceVersion": "1", "managedFields": [{"manager": "m"}]}}),
            index: EntryIndex::default(),
            size: Some(10),
        }
    }

    #[test]
    fn a_kept_copy_is_used_only_while_the_server_has_its_version() {
        let shared = SharedObjects::default();
        let key = ObjectKey::new(Kind::WasmPlugin, "key-auth.internal");
        shared.keep(key.clone(), copy(), "5");
        // Kept as the server stores it after the write: its version, and none of the managedFields it moved on.
        let looked = shared.current(&key, Some("5"), Use::Look).expect("current");
        assert_eq!(looked.object, json!({"metadata": {"resourceVersion": "5"}}));
        assert_eq!(looked.size, Some(10));
        assert!(shared.holds(&key), "a look leaves it kept");
        assert!(shared.current(&key, Some("5"), Use::Take).is_some());
        assert!(!shared.holds(&key), "taken out");
        shared.keep(key.clone(), copy(), "5");
        assert!(
            shared.current(&key, Some("6"), Use::Look).is_none(),
            "moved on the server"
        );
        assert!(!shared.holds(&key), "a copy that is not current is dropped");
        shared.keep(key.clone(), copy(), "5");
        assert!(shared.current(&key, None, Use::Take).is_none(), "gone from the server");
    }

    #[test]
    fn a_list_drops_the_copies_of_objects_it_no_longer_holds() {
        let shared = SharedObjects::default();
        let plugin = |name: &str| ObjectKey::new(Kind::WasmPlugin, name);
        let fence = ObjectKey::new(Kind::ConfigMap, names::fence("m"));
        for key in [plugin("ai-proxy.internal"), plugin("key-auth.internal"), fence.clone()] {
            shared.keep(key, copy(), "5");
        }
        shared.keep_only_listed(Kind::WasmPlugin, ["key-auth.internal"]);
        assert!(!shared.holds(&plugin("ai-proxy.internal")), "gone from the list");
        assert!(shared.holds(&plugin("key-auth.internal")));
        assert!(shared.holds(&fence), "another kind's copies stay");
        shared.keep_only_listed(Kind::WasmPlugin, []);
        assert!(!shared.holds_any(Kind::WasmPlugin));
    }

    #[test]
    fn shared_objects_and_fence_shards_are_kept_a_routes_own_objects_are_not() {
        assert!(is_kept(&ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE)));
        assert!(is_kept(&ObjectKey::new(Kind::WasmPlugin, "ai-proxy.internal")));
        assert!(is_kept(&ObjectKey::new(Kind::ConfigMap, names::fence("m"))));
        assert!(!is_kept(&ObjectKey::new(Kind::ConfigMap, names::route_config_map("m"))));
        assert!(!is_kept(&ObjectKey::new(Kind::Ingress, names::route_ingress("m"))));
        assert!(is_kept_list(Kind::WasmPlugin, names::SELECT_CONSOLE));
        assert!(is_kept_list(Kind::ConfigMap, names::SELECT_FENCES));
        assert!(!is_kept_list(Kind::ConfigMap, names::SELECT_AI_ROUTES));
        assert!(!is_kept_list(Kind::Ingress, names::SELECT_CONSOLE));
    }
}
