//! What the worker reads and writes, named: the kinds of object and an object's key. A leaf: the
//! mapping's modules all name objects, and this names nothing of theirs.

use std::fmt;

/// The kinds of object the worker reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ConfigMap,
    Secret,
    Ingress,
    McpBridge,
    WasmPlugin,
    EnvoyFilter,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Ingress,
        Kind::McpBridge,
        Kind::WasmPlugin,
        Kind::EnvoyFilter,
    ];

    pub fn group(self) -> &'static str {
        match self {
            Kind::ConfigMap | Kind::Secret => "",
            Kind::Ingress => "networking.k8s.io",
            Kind::McpBridge => "networking.higress.io",
            Kind::WasmPlugin => "extensions.higress.io",
            Kind::EnvoyFilter => "networking.istio.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Kind::ConfigMap | Kind::Secret | Kind::Ingress | Kind::McpBridge => "v1",
            Kind::WasmPlugin => "v1alpha1",
            Kind::EnvoyFilter => "v1alpha3",
        }
    }

    pub fn api_version(self) -> String {
        match self.group() {
            "" => self.version().to_string(),
            group => format!("{group}/{}", self.version()),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Ingress => "Ingress",
            Kind::McpBridge => "McpBridge",
            Kind::WasmPlugin => "WasmPlugin",
            Kind::EnvoyFilter => "EnvoyFilter",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Ingress => "ingresses",
            Kind::McpBridge => "mcpbridges",
            Kind::WasmPlugin => "wasmplugins",
            Kind::EnvoyFilter => "envoyfilters",
        }
    }

    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.kind() == kind)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.kind(), self.name)
    }
}
