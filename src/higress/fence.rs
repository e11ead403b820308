//! Revisions fence a model: its fence entry records the revision that last changed its route and,
//! once retired, the retirement and what it cleans up, so a late or replayed event cannot undo a
//! newer one, and whoever finds a route that outlived its retirement can finish the job.
//!
//! Fence entries live in ConfigMaps of their own, sharded by model ([`names::fence`]): the console
//! rewrites an AI route's ConfigMap whole when someone edits the route, so nothing of ours may live
//! there, and one ConfigMap for every model would reach the 1 MiB limit.

use super::names;
use crate::event::{KeySource, Lifecycle, LifecycleEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FenceEntry {
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_provider: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_consumers: bool,
    /// The providers and allowed consumers of the route: what a retirement releases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    /// The Secret values the route was built with, so a changed Secret can be written where it went
    /// (see [`super::rotate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
}

/// A key of a Secret whose value a route's shared entries carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUse {
    pub secret: String,
    pub key: String,
    #[serde(flatten)]
    pub target: SecretTarget,
    /// The deploy recorded itself as the entry's source in the entry's object
    /// ([`names::ANNOTATION_SECRET_SOURCES`]); an entry of a deploy made before such records is
    /// rotated without that check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recorded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretTarget {
    /// The `apiTokens` of this ai-proxy provider.
    Provider(String),
    /// The credentials of this key-auth consumer, written as its source says.
    Consumer {
        name: String,
        source: KeySource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

impl FenceEntry {
    pub fn deployed(revision: u64) -> Self {
        Self {
            revision,
            retired_at: None,
            delete_provider: false,
            delete_consumers: false,
            providers: Vec::new(),
            consumers: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired_at.is_some()
    }

    /// Whether this entry makes `newcomer` stale. An equal revision is a replay of the same event: it
    /// is applied again (and changes nothing when the first run finished), so a retry after a partial
    /// failure completes the job; but no deploy revives the revision it was retired at.
    pub fn supersedes(&self, newcomer: &FenceEntry) -> bool {
        self.supersedes_event(newcomer.revision, newcomer.is_retired())
    }

    /// [`FenceEntry::supersedes`] for an event of `revision`, a retirement when `retiring`.
    pub fn supersedes_event(&self, revision: u64, retiring: bool) -> bool {
        self.revision > revision || (self.revision == revision && self.is_retired() && !retiring)
    }

    pub fn parse(value: &Value) -> Option<FenceEntry> {
        serde_json::from_str(value.as_str()?).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a fence entry serializes")
    }
}

/// `Some(newest revision seen)` when the event is older than what its model has seen (`current`: the
/// model's entry, `State::fence_entry`).
pub fn stale(event: &LifecycleEvent, current: Option<FenceEntry>) -> Option<u64> {
    let current = current?;
    let newcomer = match &event.body {
        Lifecycle::Deployed(_) => FenceEntry::deployed(event.revision()),
        Lifecycle::Retired(_) => FenceEntry {
            retired_at: Some(String::new()),
            ..FenceEntry::deployed(event.revision())
        },
    };
    current.supersedes(&newcomer).then_some(current.revision)
}

/// A fence shard as the worker creates it.
pub fn new_fence(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {names::LABEL_MANAGED_BY: names::MANAGER}},
        "data": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_revisions_win_and_a_retirement_outranks_a_deploy_of_its_revision() {
        let retired = FenceEntry {
            retired_at: Some("t".into()),
            ..FenceEntry::deployed(3)
        };
        assert!(retired.supersedes(&FenceEntry::deployed(3)));
        assert!(retired.supersedes(&FenceEntry::deployed(2)));
        assert!(!retired.supersedes(&FenceEntry::deployed(4)));
        assert!(!retired.supersedes(&retired), "a replayed retirement applies again");
        assert!(
            !FenceEntry::deployed(3).supersedes(&FenceEntry::deployed(3)),
            "a replay applies again"
        );
        assert!(!FenceEntry::deployed(3).supersedes(&retired));
    }
}
