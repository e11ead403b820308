//! Fallback, header and URL-parameter predicates, custom annotations and labels (issue #14, items
//! 1-3) through the apply engine against kube-sim: deploy with them, redeploy without them, deploy
//! again and retire. Other people's rules and another route's rules on the same plugin CRs survive
//! byte for byte, and every object of the features is written, then removed.

#[path = "support/cluster.rs"]
mod support;

use higress_route_worker::event;
use higress_route_worker::higress::state::without_server_fields;
use higress_route_worker::result::{Outcome, RouteResult};
use serde_json::{json, Value};
use support::{console_objects, deploy, parse, Cluster, NS};

const MAIN: &str = "ai-route-chat.internal";
const FALLBACK: &str = "ai-route-chat.fallback.internal";
const PLUGINS: [&str; 3] = ["key-auth.internal", "model-mapper.internal", "ai-statistics-2.0.1"];

/// Rules of other writers on the plugin CRs the fallback also uses.
fn foreign_plugins() -> Vec<Value> {
    let labels = |name: &str, version: &str| {
        json!({"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": name,
               "higress.io/wasm-plugin-version": version, "higress.io/wasm-plugin-built-in": "true"})
    };
    vec![
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "model-mapper.internal", "namespace": NS, "labels": labels("model-mapper", "2.0.1")},
               "spec": {"defaultConfigDisable": true, "phase": "AUTHN", "priority": 800, "url": "oci://mirror/model-mapper:2.0.1",
                        "matchRules": [{"config": {"modelMapping": {"*": "kimi"}}, "configDisable": false,
                                        "ingress": ["their-route"], "service": ["llm-theirs.internal.dns"]}]}}),
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-statistics-2.0.1", "namespace": NS, "labels": labels("ai-statistics", "2.0.1")},
               "spec": {"defaultConfigDisable": true, "phase": "UNSPECIFIED_PHASE", "priority": 900, "url": "oci://mirror/ai-statistics:2.0.1",
                        "matchRules": [{"config": {"attributes": [{"key": "question"}]}, "configDisable": false, "ingress": ["their-route"]}]}}),
    ]
}

/// The chat route with every feature: a RAND fallback to the other route's provider with a mapping,
/// predicates, custom annotations and labels.
fn chat(revision: u64, features: bool) -> event::LifecycleEvent {
    let mut data = json!({
        "model": "chat", "revision": revision,
        "provider": {"name": "p-chat", "type": "openai", "url": "https://chat.models.example.com/v1", "apiTokens": ["sk-chat"]},
        "route": {"domains": ["api.example.com"], "path": "/chat"},
        "auth": {"allowedConsumers": ["c-other"]}
    });
    if features {
        data["route"]["fallback"] = json!({"upstreams": [{"provider": "p-other", "modelMapping": {"*": "other-large"}}],
                                           "responseCodes": ["4xx", "5xx"]});
        data["route"]["headerPredicates"] = json!([{"key": "x-team", "matchType": "EQUAL", "matchValue": "search"}]);
        data["route"]["urlParamPredicates"] = json!([{"key": "tenant", "matchType": "PRE", "matchValue": "acme-"}]);
        data["route"]["customConfigs"] = json!({"example.com/owner": "team-search"});
        data["route"]["customLabels"] = json!({"team": "search"});
    }
    parse(event::DEPLOYED_TYPE, data)
}

/// Every rule not naming the chat route's Ingresses, serialised: other people's and the other route's.
fn rules_of_others(cluster: &Cluster) -> Vec<String> {
    PLUGINS
        .iter()
        .flat_map(|name| {
            let plugin = cluster.get("wasmplugins", name).expect("plugin exists");
            plugin["spec"]["matchRules"].as_array().cloned().unwrap_or_default()
        })
        .filter(|rule| !rule.to_string().contains("ai-route-chat."))
        .map(|rule| serde_json::to_string(&rule).unwrap())
        .collect()
}

/// The rules naming `ingress`, per plugin CR.
fn rules_naming(cluster: &Cluster, ingress: &str) -> Vec<(String, Value)> {
    PLUGINS
        .iter()
        .flat_map(|name| {
            let rules = cluster.get("wasmplugins", name).unwrap()["spec"]["matchRules"].clone();
            rules
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["ingress"].as_array().is_some_and(|i| i.contains(&json!(ingress))))
                .map(|r| (name.to_string(), r))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn changed(result: &RouteResult, kind: &str, name: &str, operation: &str) -> bool {
    result
        .changes
        .iter()
        .any(|c| c.kind == kind && c.name == name && c.operation == operation)
}

fn applied(result: RouteResult) -> RouteResult {
    assert_eq!(result.outcome, Outcome::Applied, "{result:?}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_predicates_and_custom_metadata_come_and_go_leaving_other_rules_byte_identical() {
    let cluster = Cluster::start().await;
    for object in console_objects().into_iter().chain(foreign_plugins()) {
        cluster.sim.insert(object).unwrap();
    }
    let engine = cluster.engine().await;
    applied(engine.apply(&deploy("other", 1)).await);
    let others = rules_of_others(&cluster);
    assert!(
        others.iter().any(|r| r.contains("their-route"))
            && others.iter().any(|r| r.contains("ai-route-other.internal")),
        "{others:?}"
    );

    // Deploy with every feature.
    let first = applied(engine.apply(&chat(1, true)).await);
    for (kind, name) in [("Ingress", MAIN), ("Ingress", FALLBACK), ("EnvoyFilter", MAIN)] {
        assert!(changed(&first, kind, name, "created"), "{kind}/{name}: {first:?}");
    }
    let fallback = cluster.get("ingresses", FALLBACK).expect("fallback Ingress");
    let annotations = &fallback["metadata"]["annotations"];
    assert_eq!(annotations["higress.io/destination"], "llm-p-other.internal.dns:443");
    assert_eq!(
        annotations["higress.io/exact-match-header-x-higress-fallback-from"],
        MAIN
    );
    for ingress in [cluster.get("ingresses", MAIN).unwrap(), fallback.clone()] {
        let metadata = &ingress["metadata"];
        assert_eq!(
            metadata["annotations"]["higress.io/exact-match-header-x-team"],
            "search"
        );
        assert_eq!(metadata["annotations"]["higress.io/prefix-match-query-tenant"], "acme-");
        assert_eq!(metadata["annotations"]["example.com/owner"], "team-search");
        assert_eq!(metadata["labels"]["team"], "search");
    }
    let filter = cluster.get("envoyfilters", MAIN).expect("EnvoyFilter");
    assert_eq!(filter["metadata"]["labels"]["higress.io/resource-definer"], "higress");
    assert_eq!(
        filter["spec"]["configPatches"][0]["match"]["routeConfiguration"]["vhost"]["route"]["name"],
        MAIN
    );
    let fallback_rules = rules_naming(&cluster, FALLBACK);
    assert_eq!(
        fallback_rules,
        vec![
            (
                "key-auth.internal".into(),
                json!({"config": {"allow": ["c-other"]}, "configDisable": false, "ingress": [FALLBACK]})
            ),
            (
                "model-mapper.internal".into(),
                json!({"config": {"modelMapping": {"*": "other-large"}}, "configDisable": false,
                                                    "ingress": [FALLBACK], "service": ["llm-p-other.internal.dns"]})
            ),
            (
                "ai-statistics-2.0.1".into(),
                json!({"config": {"use_default_response_attributes": true}, "configDisable": false, "ingress": [FALLBACK]})
            ),
        ]
    );
    // The fallback Ingress is written before the EnvoyFilter that redirects to it, both before the
    // route's ConfigMap.
    let order: Vec<String> = cluster
        .sim
        .audit()
        .into_iter()
        .map(|e| format!("{}/{}", e.resource, e.name))
        .collect();
    let at = |object: &str| {
        order
            .iter()
            .position(|o| o == object)
            .unwrap_or_else(|| panic!("{object}: {order:?}"))
    };
    assert!(at(&format!("ingresses/{FALLBACK}")) < at(&format!("envoyfilters/{MAIN}")));
    assert!(at(&format!("envoyfilters/{MAIN}")) < at("configmaps/ai-route-chat"));
    assert_eq!(rules_of_others(&cluster), others);

    // Redeploy without the features: the fallback's objects and rules go, the main Ingress loses the
    // predicates and the custom metadata.
    let second = applied(engine.apply(&chat(2, false)).await);
    for (kind, name) in [("Ingress", FALLBACK), ("EnvoyFilter", MAIN)] {
        assert!(changed(&second, kind, name, "deleted"), "{kind}/{name}: {second:?}");
    }
    assert!(cluster.get("ingresses", FALLBACK).is_none());
    assert!(cluster.get("envoyfilters", MAIN).is_none());
    assert_eq!(rules_naming(&cluster, FALLBACK), vec![]);
    let main = without_server_fields(&cluster.get("ingresses", MAIN).unwrap());
    let text = main["metadata"].to_string();
    for gone in ["x-team", "tenant", "example.com/owner", "\"team\""] {
        assert!(!text.contains(gone), "{gone} left on the main Ingress: {text}");
    }
    assert_eq!(rules_naming(&cluster, MAIN).len(), 2, "key-auth and ai-statistics stay");
    assert_eq!(rules_of_others(&cluster), others);

    // Deploy them again, then retire: everything of the route goes.
    applied(engine.apply(&chat(3, true)).await);
    assert!(cluster.get("envoyfilters", MAIN).is_some());
    let retired = applied(engine.apply(&support::retire("chat", 4)).await);
    for (kind, name) in [("Ingress", MAIN), ("Ingress", FALLBACK), ("EnvoyFilter", MAIN)] {
        assert!(changed(&retired, kind, name, "deleted"), "{kind}/{name}: {retired:?}");
    }
    for (resource, name) in [
        ("ingresses", MAIN),
        ("ingresses", FALLBACK),
        ("envoyfilters", MAIN),
        ("configmaps", "ai-route-chat"),
    ] {
        assert!(cluster.get(resource, name).is_none(), "{resource}/{name} left");
    }
    assert_eq!(rules_naming(&cluster, MAIN), vec![]);
    assert_eq!(rules_naming(&cluster, FALLBACK), vec![]);
    assert_eq!(rules_of_others(&cluster), others);
    // The other route still has the provider the fallback used.
    assert!(cluster
        .get("mcpbridges", "default")
        .unwrap()
        .to_string()
        .contains("llm-p-other.internal"));
}
