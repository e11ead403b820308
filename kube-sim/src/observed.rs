//! What the sim saw: request counters and the audit log of writes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Requests received, except those to the `/_sim` control API. Requests
/// answered by an injected fault or dropped are counted too: the client made them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// By (verb, resource plural), e.g. `("update", "configmaps")`. Verbs are
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub requests: BTreeMap<(String, String), u64>,
    /// All requests, including discovery and unknown paths, which `requests` leaves out.
    pub total: u64,
    /// GETs and LISTs answered with metadata only (`PartialObjectMetadata`), by (verb, resource
    /// plural); also counted in `requests`.
    pub metadata_only: BTreeMap<(String, String), u64>,
    /// Objects returned by lists, by resource plural: what a client's lists cost it to read.
    pub listed: BTreeMap<String, u64>,
}

impl Counters {
    /// The count for one verb and resource plural; 0 when never seen.
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.requests
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The count of metadata-only answers for one verb (`get`, `list`) and resource plural.
    pub fn metadata_only(&self, verb: &str, resource: &str) -> u64 {
        self.metadata_only
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The objects lists of a resource plural returned; 0 when never listed.
    pub fn listed(&self, resource: &str) -> u64 {
        self.listed.get(resource).copied().unwrap_or(0)
    }

    /// Counts the objects a list returned.
    pub(crate) fn record_listed(&mut self, resource: &str, items: usize) {
        *self.listed.entry(resource.to_string()).or_default() += items as u64;
    }

    /// Counts a metadata-only answer.
    pub(crate) fn record_metadata_only(&mut self, verb: &str, resource: &str) {
        *self
            .metadata_only
            .entry((verb.to_string(), resource.to_string()))
            .or_default() += 1;
    }

    /// Counts a request; `verb_and_resource` is None for anything but a resource request.
    pub(crate) fn record(&mut self, verb_and_resource: Option<(&str, &str)>) {
        self.total += 1;
        if let Some((verb, resource)) = verb_and_resource {
            *self
                .requests
                .entry((verb.to_string(), resource.to_string()))
                .or_default() += 1;
        }
    }
}

/// One successful write through the API (preloads with `Sim::insert` are not
/// recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// `create`, `update`, `patch` or `delete`.
    pub verb: String,
    /// The resource plural, e.g. `wasmplugins`.
    pub resource: String,
    /// Empty for cluster-scoped resources.
    pub namespace: String,
    pub name: String,
    /// The resourceVersion after the write: the object's, or for a delete the
    /// global one the deletion produced. A write that changed nothing keeps the
    /// object's previous resourceVersion.
    pub resource_version: String,
}
