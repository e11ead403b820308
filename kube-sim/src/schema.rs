//! Pruning of custom resources to their CRD's structural schema, as the API
//! server does on every write: fields the schema does not declare are dropped
//! silently, except inside `x-kubernetes-preserve-unknown-fields: true`.
//!
//! The schemas are those of the CRDs the project deploys
//! (`deploy/compose/higress-crds.yaml`, the Higress chart's own file).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::resources::ResourceType;

const CRDS_YAML: &str = include_str!("../../deploy/compose/higress-crds.yaml");

/// `openAPIV3Schema` by (group, plural, version).
type Schemas = HashMap<(String, String, String), Value>;

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| parse_crds(CRDS_YAML))
}

/// Reads every CustomResourceDefinition of a multi-document YAML file. A
/// duplicated key (the file's EnvoyFilter CRD repeats `metadata:`) keeps the
/// last value, as kubectl does.
fn parse_crds(yaml: &str) -> Schemas {
    let mut schemas = Schemas::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let Ok(crd) = Value::deserialize(document) else {
            continue;
        };
        if crd["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let spec = &crd["spec"];
        let (Some(group), Some(plural)) = (spec["group"].as_str(), spec["names"]["plural"].as_str()) else {
            continue;
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            let (Some(name), schema) = (version["name"].as_str(), &version["schema"]["openAPIV3Schema"]) else {
                continue;
            };
            if schema.is_object() {
                schemas.insert((group.into(), plural.into(), name.into()), schema.clone());
            }
        }
    }
    schemas
}

/// The schema a custom resource is pruned to; None for built-in types.
pub(crate) fn of(rt: &ResourceType) -> Option<&'static Value> {
    let key = (rt.group.to_string(), rt.plural.to_string(), rt.version.to_string());
    rt.custom.then(|| schemas().get(&key)).flatten()
}

/// Drops from `value` what `schema` does not declare. At the root, call it
/// with the object's fields other than `apiVersion`, `kind` and `metadata`,
/// which are never pruned.
pub(crate) fn prune(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                || additional == Some(&Value::Bool(true));
            fields.retain(|key, child| {
                match properties
                    .and_then(|p| p.get(key))
                    .or(additional.filter(|a| a.is_object()))
                {
                    Some(child_schema) => {
                        prune(child, child_schema);
                        true
                    }
                    None => preserve,
                }
            });
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items.iter_mut().for_each(|item| prune(item, item_schema));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{by_name, RESOURCES};
    use serde_json::json;

    #[test]
    fn every_custom_resource_has_its_schema() {
        for rt in RESOURCES {
            assert_eq!(of(rt).is_some(), rt.custom, "{}", rt.plural);
        }
    }

    #[test]
    fn unknown_fields_survive_only_where_preserved() {
        let schema = of(by_name("wasmplugins").unwrap()).unwrap();
        let mut body = json!({
            "spec": {
                "defaultConfig": {"anything": {"nested": 1}},
                "matchRules": [{"config": {"free": true}, "ingress": ["a"], "unknownRuleField": 1}],
                "vmConfig": {"env": [{"name": "N", "bogus": 2}]},
                "unknownSpecField": {"x": 1},
            },
            "status": {"free": "form"},
            "unknownTopLevel": "y",
        });
        prune(&mut body, schema);
        assert_eq!(
            body,
            json!({
                "spec": {
                    "defaultConfig": {"anything": {"nested": 1}},
                    "matchRules": [{"config": {"free": true}, "ingress": ["a"]}],
                    "vmConfig": {"env": [{"name": "N"}]},
                },
                "status": {"free": "form"},
            })
        );
    }

    #[test]
    fn additional_properties_are_pruned_by_their_schema() {
        let schema = of(by_name("mcpbridges").unwrap()).unwrap();
        let mut body = json!({"spec": {"registries": [{
            "name": "r", "metadata": {"m": {"innerMap": {"k": "v"}, "stray": 1}}
        }]}});
        prune(&mut body, schema);
        assert_eq!(
            body,
            json!({"spec": {"registries": [{"name": "r", "metadata": {"m": {"innerMap": {"k": "v"}}}}]}})
        );
    }
}
