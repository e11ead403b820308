//! What the gateway accepts: ports of the Higress Wasm plugins' own config parsers, pure, no I/O.
//!
//! Every shared object the worker edits is parsed by one plugin as ONE config (`defaultConfig` is the
//! global config, each `matchRules[].config` a rule's), and one entry its parser refuses fails the whole
//! plugin: a running gateway keeps its last good config and ignores every later update, a starting one runs
//! without the plugin. So an event must never leave a config the parser refuses. Each rule here names its
//! source: a path in the Higress repository at [`HIGRESS_COMMIT`] and the function that enforces it.

pub mod ai_proxy;
pub mod key_auth;
pub mod route_plugins;

use serde_json::Value;
use std::fmt;

/// alibaba/higress v2.2.1, the newest release: the commit every [`Source`] path is read at.
pub const HIGRESS_COMMIT: &str = "2c15f97246f0a0d39c1563c801d57940a5843245";

/// Where a rule is enforced in the plugin's sources: a path in alibaba/higress at [`HIGRESS_COMMIT`]
/// (or in the `wasm-go` module it pins, prefixed `wasm-go@<version>/`) and the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub path: &'static str,
    pub function: &'static str,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.function)
    }
}

/// A rule a plugin's parser enforces, broken: what the rule says (never a config value: values may be
/// secrets) and where the parser says it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Broken {
    pub rule: String,
    pub source: Source,
}

impl Broken {
    pub fn new(rule: impl Into<String>, source: Source) -> Self {
        Broken {
            rule: rule.into(),
            source,
        }
    }
}

/// The part of a plugin config a problem is in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// `defaultConfig` outside its entries.
    Global,
    /// An ai-proxy `providers[]` entry, by id.
    Provider(String),
    /// A key-auth `consumers[]` entry, by name.
    Consumer(String),
    /// A `matchRules[]` entry, by its targets (`ingress a, b`, `service s`, `domain d`).
    Rule(String),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Global => write!(f, "defaultConfig"),
            Entry::Provider(id) => write!(f, "provider {id:?}"),
            Entry::Consumer(name) => write!(f, "consumer {name:?}"),
            Entry::Rule(targets) => write!(f, "matchRule {targets}"),
        }
    }
}

/// A problem the gateway has with a plugin object: in which entry, and which rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub entry: Entry,
    pub broken: Broken,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.entry, self.broken.rule, self.broken.source)
    }
}

/// A shortcut for the ports: the value at `key` of a JSON object, if it is one.
pub(crate) fn get<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    config.as_object().and_then(|map| map.get(key))
}
