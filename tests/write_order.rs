//! The one write order, checked where it happens: in the order of writes kube-sim's audit log
//! records, for a deploy and a retirement that touch every kind of object.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{parse, Cluster};
use higress_route_worker::event;
use higress_route_worker::higress::names;
use higress_route_worker::result::Outcome;
use serde_json::json;

/// The documented write order (ARCHITECTURE.md, "One write order") as stages, written out here rather
/// than taken from the mapping: the fence first; a retired route's Ingress (and fallback EnvoyFilter)
/// before anything it used; other deletes; then everything a new Ingress needs (domains, then the
/// shared objects side by side); the Ingress; the route's EnvoyFilter; the route's ConfigMap last,
/// whether written or deleted.
fn stage(resource: &str, name: &str, verb: &str) -> u8 {
    let deleting = verb == "delete";
    match resource {
        "configmaps" if name.starts_with("higress-route-worker-fence-") => 0,
        "ingresses" | "envoyfilters" if deleting => 1,
        "configmaps" if name.starts_with("ai-route-") => 7,
        _ if deleting => 2,
        "configmaps" if name.starts_with("domain-") => 3,
        "mcpbridges" | "wasmplugins" => 4,
        "ingresses" => 5,
        "envoyfilters" => 6,
        _ => panic!("no stage for a {verb} of {resource}/{name}"),
    }
}

/// Whether the writes go by stage, never back to an earlier one.
fn in_stage_order(writes: &[(String, String)]) -> bool {
    let stages: Vec<u8> = writes
        .iter()
        .map(|(object, verb)| {
            let (resource, name) = object.split_once('/').unwrap();
            stage(resource, name, verb)
        })
        .collect();
    stages.windows(2).all(|pair| pair[0] <= pair[1])
}

/// The audit log's writes as (resource/name, verb).
fn writes(cluster: &Cluster) -> Vec<(String, String)> {
    cluster
        .sim
        .audit()
        .into_iter()
        .map(|e| (format!("{}/{}", e.resource, e.name), e.verb))
        .collect()
}

fn position(writes: &[(String, String)], object: &str) -> usize {
    writes
        .iter()
        .position(|(o, _)| o == object)
        .unwrap_or_else(|| panic!("{object} was not written: {writes:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_over_the_wire_in_the_one_write_order() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let deploy = parse(
        event::DEPLOYED_TYPE,
        json!({
            "model": "chat", "revision": 1,
            "provider": {"name": "p", "type": "openai", "url": "https://models.example.com/v1", "apiTokens": ["sk-1"]},
            "route": {"domains": ["api.example.com"], "path": "/chat", "modelMapping": {"*": "gpt-4o"},
                      "modelPredicates": [{"matchType": "PRE", "matchValue": "gpt-"}]},
            "auth": {"consumers": [{"name": "alice", "source": "BEARER", "credentials": ["key-a"]}]}
        }),
    );
    let deployed = engine.apply(&deploy).await;
    assert_eq!(deployed.outcome, Outcome::Applied, "{deployed:?}");
    let order = writes(&cluster);
    // Every write in the documented order: a half-built route is never visible.
    assert!(in_stage_order(&order), "writes out of order: {order:?}");
    // What a new Ingress needs is in place before it; the ConfigMap the console lists routes by is last.
    let ingress = position(&order, "ingresses/ai-route-chat.internal");
    for needed in [
        "configmaps/domain-api.example.com",
        "mcpbridges/default",
        "wasmplugins/ai-proxy.internal",
        "wasmplugins/key-auth.internal",
        "wasmplugins/model-mapper.internal",
        "wasmplugins/model-router.internal",
        "wasmplugins/ai-statistics-2.0.1",
    ] {
        assert!(
            position(&order, needed) < ingress,
            "{needed} after the Ingress: {order:?}"
        );
    }
    assert_eq!(order.last().unwrap().0, "configmaps/ai-route-chat", "{order:?}");

    cluster.sim.clear_audit();
    let retire = parse(
        event::RETIRED_TYPE,
        json!({"model": "chat", "revision": 2, "deleteConsumers": true}),
    );
    let retired = engine.apply(&retire).await;
    assert_eq!(retired.outcome, Outcome::Applied, "{retired:?}");
    let order = writes(&cluster);
    assert!(in_stage_order(&order), "writes out of order: {order:?}");
    // The fence first; the Ingress before anything it used; the route's record last, so a retirement
    // cut short still finds what it has to clean up.
    assert_eq!(
        order.first().unwrap(),
        &(format!("configmaps/{}", names::fence("chat")), "update".to_string())
    );
    let ingress = position(&order, "ingresses/ai-route-chat.internal");
    for used in [
        "mcpbridges/default",
        "wasmplugins/ai-proxy.internal",
        "wasmplugins/key-auth.internal",
    ] {
        assert!(ingress < position(&order, used), "{used} before the Ingress: {order:?}");
    }
    assert_eq!(
        order.last().unwrap(),
        &("configmaps/ai-route-chat".to_string(), "delete".to_string())
    );
}
