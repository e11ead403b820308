//! The fixed set of resource types kube-sim serves, and the per-type API
//! behaviours in which built-in types and CRD-backed types differ.

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourceType {
    /// API group; empty for the core group.
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
    /// Served from a CustomResourceDefinition: a PUT must carry
    /// `metadata.resourceVersion`, and strategic merge patch is refused.
    pub(crate) custom: bool,
    /// `metadata.generation` counts changes outside metadata and status.
    pub(crate) tracks_generation: bool,
    /// `status` is a subresource: writes to the object itself keep the stored status.
    pub(crate) status_subresource: bool,
}

const fn custom(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced: true,
        short_names: &[],
        custom: true,
        tracks_generation: true,
        status_subresource: true,
    }
}

pub(crate) const RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        custom: false,
        tracks_generation: false,
        status_subresource: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        custom: false,
        tracks_generation: false,
        status_subresource: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        custom: false,
        tracks_generation: false,
        status_subresource: true,
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        singular: "ingress",
        kind: "Ingress",
        namespaced: true,
        short_names: &["ing"],
        custom: false,
        tracks_generation: true,
        status_subresource: true,
    },
    custom("networking.higress.io", "v1", "mcpbridges", "mcpbridge", "McpBridge"),
    custom(
        "extensions.higress.io",
        "v1alpha1",
        "wasmplugins",
        "wasmplugin",
        "WasmPlugin",
    ),
    custom(
        "networking.istio.io",
        "v1alpha3",
        "envoyfilters",
        "envoyfilter",
        "EnvoyFilter",
    ),
];

pub(crate) const NAMESPACES: &ResourceType = &RESOURCES[2];

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub(crate) fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// How the API server names the resource in messages: `configmaps`, `ingresses.networking.k8s.io`.
    pub(crate) fn qualified_plural(&self) -> String {
        qualify(self.plural, self.group)
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// The type served at `/api/v1/...` (group "") or `/apis/{group}/{version}/...`.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Accepts the plural alone (`wasmplugins`) or qualified by its group (`wasmplugins.extensions.higress.io`).
pub(crate) fn by_name(name: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.plural == name || r.qualified_plural() == name)
}

/// The non-core group/versions, each once, in table order.
pub(crate) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !seen.contains(&(r.group, r.version)) {
            seen.push((r.group, r.version));
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_agree() {
        let wasm = by_name("wasmplugins").unwrap();
        assert_eq!(by_name("wasmplugins.extensions.higress.io"), Some(wasm));
        assert_eq!(by_kind("extensions.higress.io/v1alpha1", "WasmPlugin"), Some(wasm));
        assert_eq!(by_path("extensions.higress.io", "v1alpha1", "wasmplugins"), Some(wasm));
        assert_eq!(by_kind("v1", "Namespace"), Some(NAMESPACES));
        assert_eq!(by_path("", "v1", "ingresses"), None);
    }

    #[test]
    fn names_in_messages_are_qualified_outside_core() {
        let ingress = by_name("ingresses").unwrap();
        assert_eq!(ingress.qualified_plural(), "ingresses.networking.k8s.io");
        assert_eq!(ingress.api_version(), "networking.k8s.io/v1");
        assert_eq!(group_versions().len(), 4);
    }
}
