//! The discovery documents kubectl and kube-rs read before they touch a
//! resource. Only the unaggregated forms: a client that asks for aggregated
//! discovery (`apidiscovery.k8s.io/v2`) gets these with `application/json`,
//! and falls back to them.

use serde_json::{json, Value};

use crate::resources::{group_versions, ResourceType, RESOURCES};

/// The verbs kube-sim implements; `watch` and `deletecollection` are left out
/// so clients do not try them.
const VERBS: [&str; 6] = ["create", "delete", "get", "list", "patch", "update"];

/// `/version`: v1.33 is the version the project's Kubernetes client targets.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kube-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`
pub(crate) fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"]})
}

fn group_version(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn group_entry(group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| group_version(g, v))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({"name": group, "versions": versions, "preferredVersion": preferred}))
}

/// `/apis`
pub(crate) fn groups() -> Value {
    let mut names = Vec::new();
    for (group, _) in group_versions() {
        if !names.contains(&group) {
            names.push(group);
        }
    }
    let groups: Vec<Value> = names.into_iter().filter_map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`
pub(crate) fn group(name: &str) -> Option<Value> {
    let mut group = group_entry(name)?;
    group["kind"] = "APIGroup".into();
    group["apiVersion"] = "v1".into();
    Some(group)
}

/// `/api/v1` (group "") and `/apis/{group}/{version}`.
pub(crate) fn resources(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let first = served.first()?;
    let resources: Vec<Value> = served.iter().map(|r| resource_entry(r)).collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": first.api_version(),
        "resources": resources,
    }))
}

fn resource_entry(r: &ResourceType) -> Value {
    let mut entry = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resources_list_short_names() {
        let list = resources("", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let configmaps = &list["resources"][0];
        assert_eq!(configmaps["name"], "configmaps");
        assert_eq!(configmaps["shortNames"], json!(["cm"]));
        assert_eq!(configmaps["namespaced"], true);
        assert!(resources("", "v2").is_none());
    }

    #[test]
    fn groups_are_listed_once_with_a_preferred_version() {
        let list = groups();
        let names: Vec<&str> = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "networking.k8s.io",
                "networking.higress.io",
                "extensions.higress.io",
                "networking.istio.io"
            ]
        );
        let higress = group("extensions.higress.io").unwrap();
        assert_eq!(
            higress["preferredVersion"]["groupVersion"],
            "extensions.higress.io/v1alpha1"
        );
        assert!(group("apps").is_none());
        let wasm = resources("extensions.higress.io", "v1alpha1").unwrap();
        assert_eq!(wasm["resources"][0]["kind"], "WasmPlugin");
    }
}
