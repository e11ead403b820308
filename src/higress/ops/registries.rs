//! McpBridge registries (`spec.registries`): the upsert that overwrites only the console-managed
//! fields, and the removal.

use super::json::{remove_keyed, spec_list};
use crate::higress::index::{list_at, EntryIndex, Table};
use serde_json::Value;

/// McpBridge registry update in place: the console overwrites these fields and keeps all others.
pub(super) fn upsert_registry(object: &mut Value, registry: &Value, index: &mut EntryIndex) -> bool {
    const MANAGED: [&str; 8] = [
        "domain",
        "type",
        "port",
        "name",
        "protocol",
        "sni",
        "proxyName",
        "vport",
    ];
    let positions = index.registries(object);
    let at = positions.find(list_at(object, "/spec/registries"), registry.get("name"));
    if at.is_none() {
        positions.pushed(registry);
    }
    let registries = spec_list(object, "registries");
    match at.and_then(|at| registries.get_mut(at)) {
        Some(existing) => {
            let existing = existing.as_object_mut().expect("registries are objects");
            let mut changed = false;
            for field in MANAGED {
                changed |= match registry.get(field) {
                    Some(value) => existing.insert(field.to_string(), value.clone()).as_ref() != Some(value),
                    None => existing.shift_remove(field).is_some(),
                };
            }
            changed
        }
        None => {
            registries.push(registry.clone());
            true
        }
    }
}

/// Removes the registry named `name`; says whether it was there.
pub(super) fn remove_registry(object: &mut Value, name: &str, index: &mut EntryIndex) -> bool {
    remove_keyed(object, "/spec/registries", ("name", name), index, Table::Registries)
}

#[cfg(test)]
mod tests {
    use super::super::Op;
    use serde_json::json;

    #[test]
    fn registry_upsert_keeps_unmodelled_fields_and_other_registries() {
        let mut bridge = json!({"spec": {"registries": [
            {"name": "nacos", "type": "nacos2", "domain": "n", "port": 8848, "nacosNamespace": "prod"},
            {"name": "llm-a.internal", "type": "dns", "domain": "old", "port": 80, "protocol": "http", "authSecretName": "s", "sni": "x"}
        ], "proxies": [{"name": "p"}]}});
        Op::UpsertRegistry(
            json!({"domain": "a.com", "name": "llm-a.internal", "port": 443, "protocol": "https", "type": "dns"}),
        )
        .apply(&mut bridge)
        .unwrap();
        let registries = bridge["spec"]["registries"].as_array().unwrap();
        assert_eq!(registries[0]["nacosNamespace"], "prod");
        assert_eq!(registries[1]["domain"], "a.com");
        assert_eq!(registries[1]["authSecretName"], "s", "authSecretName is kept");
        assert!(
            registries[1].get("sni").is_none(),
            "sni is console-managed and written as null"
        );
        assert_eq!(bridge["spec"]["proxies"][0]["name"], "p");
    }
}
