//! The shared objects as this worker last read or wrote them, kept from one batch to the next.
//! McpBridge `default` and the plugin CRs hold every route's entries: megabytes on a large cluster,
//! which a batch would otherwise download, parse and index again each time. A batch asks the server
//! for their metadata only and takes a kept copy whose `resourceVersion` is still the server's, so
//! what it plans against is exactly what a full read would have returned; any other is read whole.
//!
//! A copy is taken out while a batch uses it, and put back only when the batch ends with the object
//! as the server stores it: read and left alone, or written by the batch's first attempt (then with
//! the version the server answered). Anything else (a retry's re-read, a failed batch, a Secret
//! rotation) leaves it out, and the next batch reads the object whole.

use crate::higress::index::EntryIndex;
use crate::higress::{Kind, ObjectKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The kinds worth keeping: one object holds every route's entries.
pub fn is_kept(kind: Kind) -> bool {
    matches!(kind, Kind::McpBridge | Kind::WasmPlugin)
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

    /// The kept copy, taken out, if the server's `resource_version` is still its own; a copy that
    /// is not current is dropped.
    pub fn take_current(&self, key: &ObjectKey, resource_version: Option<&str>) -> Option<Kept> {
        let kept = self.kept().remove(key)?;
        let kept_version = kept.object.pointer("/metadata/resourceVersion").and_then(Value::as_str);
        (resource_version.is_some() && kept_version == resource_version).then_some(kept)
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
