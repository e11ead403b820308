//! Route plugins (`route.plugins`) and the result's route access, through the apply engine against
//! the in-memory API server: deploy with plugins, redeploy without one, retire; other people's rules
//! on the same plugin CRs survive byte for byte.

use higress_route_worker::event;
use higress_route_worker::result::{Outcome, RouteAccess, RouteResult};
use serde_json::{json, Value};

#[path = "support/cluster.rs"]
mod support;

use support::{parse, Cluster, NS};

const RATELIMIT: &str = "ai-token-ratelimit-2.0.1";
const QUOTA: &str = "ai-quota-2.0.1";

fn assert_outcome(result: &RouteResult, outcome: Outcome) {
    assert_eq!(result.outcome, outcome, "{result:?}");
}

/// A console-made CR of a route plugin with rules of other routes and a domain rule.
fn their_cr(name: &str, plugin: &str) -> Value {
    json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
    "metadata": {"name": name, "namespace": NS,
                 "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": plugin,
                            "higress.io/wasm-plugin-version": "2.0.1", "higress.io/wasm-plugin-built-in": "true",
                            "higress.io/wasm-plugin-category": "ai"}},
    "spec": {"defaultConfigDisable": true, "failStrategy": "FAIL_OPEN", "imagePullPolicy": "UNSPECIFIED_POLICY",
             "phase": "UNSPECIFIED_PHASE", "priority": 600, "url": format!("oci://mirror.example.com/{plugin}:2.0.1"),
             "matchRules": [
                 {"config": {"rule_name": "theirs", "redis": {"service_name": "redis.dns"}}, "configDisable": false, "ingress": ["ai-route-alpha.internal"]},
                 {"config": {"rule_name": "zeta"}, "configDisable": true, "ingress": ["ai-route-zeta.internal"]},
                 {"config": {"rule_name": "site"}, "configDisable": false, "domain": ["api.example.com"]}
             ]}})
}

fn rules(cluster: &Cluster, name: &str) -> Vec<Value> {
    cluster.get("wasmplugins", name).expect(name)["spec"]["matchRules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The rules of other routes, as stored (serialized: byte for byte).
fn their_rules(cluster: &Cluster, name: &str) -> String {
    let theirs: Vec<Value> = rules(cluster, name)
        .into_iter()
        .filter(|r| r["ingress"] != json!(["ai-route-chat.internal"]))
        .collect();
    serde_json::to_string(&theirs).unwrap()
}

fn deploy(revision: u64, plugins: Value) -> event::LifecycleEvent {
    parse(
        event::DEPLOYED_TYPE,
        json!({
            "model": "chat", "revision": revision,
            "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-main"]},
            "route": {"domains": ["api.example.com", "open.example.com"], "path": "/v1",
                      "https": {"mode": "force", "cert": "example-cert"},
                      "modelPredicates": [{"matchType": "EQUAL", "matchValue": "gpt-4o"}, {"matchType": "PRE", "matchValue": "qwen-"}],
                      "plugins": plugins}
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_follow_the_route_and_other_rules_survive_byte_for_byte() {
    let cluster = Cluster::start().await;
    cluster.sim.insert(their_cr(RATELIMIT, "ai-token-ratelimit")).unwrap();
    cluster.sim.insert(their_cr(QUOTA, "ai-quota")).unwrap();
    let before = [their_rules(&cluster, RATELIMIT), their_rules(&cluster, QUOTA)];
    let engine = cluster.engine().await;

    let ratelimit = json!({"rule_name": "chat", "rule_items": [{"limit_by_consumer": "", "limit_keys": [{"key": "*", "token_per_minute": 100}]}],
                           "redis": {"service_name": "redis.dns", "password": "redis-secret-1"}});
    let quota = json!({"admin_consumer": "admin", "redis": {"service_name": "redis.dns"}});
    let deployed = engine
        .apply(&deploy(1, json!({"ai-token-ratelimit": ratelimit, "ai-quota": quota})))
        .await;
    assert_outcome(&deployed, Outcome::Applied);
    for (name, config) in [(RATELIMIT, &ratelimit), (QUOTA, &quota)] {
        let ours = json!({"config": config, "configDisable": false, "ingress": ["ai-route-chat.internal"]});
        // Sorted as the console sorts: alpha < chat < zeta, then the domain rule.
        assert_eq!(rules(&cluster, name)[1], ours, "{name}");
        assert_eq!(rules(&cluster, name).len(), 4, "{name}");
        assert!(
            deployed
                .changes
                .iter()
                .any(|c| c.name == name && c.operation == "updated"),
            "{name} in {:?}",
            deployed.changes
        );
    }
    assert_eq!(
        deployed.route,
        Some(RouteAccess {
            urls: vec![
                "https://api.example.com/v1".into(),
                "https://open.example.com/v1".into()
            ],
            path: "/v1".into(),
            models: vec!["gpt-4o".into(), "qwen-*".into()],
        })
    );
    assert!(
        !serde_json::to_string(&deployed.to_cloud_event("t"))
            .unwrap()
            .contains("redis-secret-1"),
        "a plugin's password never shows in the result"
    );
    let again = engine
        .apply(&deploy(1, json!({"ai-token-ratelimit": ratelimit, "ai-quota": quota})))
        .await;
    assert_outcome(&again, Outcome::Unchanged);
    assert!(again.route.is_some(), "an unchanged route still says where it answers");

    // Redeploy without ai-quota: the route's rule leaves that CR only.
    let redeployed = engine.apply(&deploy(2, json!({"ai-token-ratelimit": ratelimit}))).await;
    assert_outcome(&redeployed, Outcome::Applied);
    assert!(rules(&cluster, QUOTA)
        .iter()
        .all(|r| r["ingress"] != json!(["ai-route-chat.internal"])));
    assert_eq!(rules(&cluster, RATELIMIT)[1]["config"], ratelimit);
    assert_eq!([their_rules(&cluster, RATELIMIT), their_rules(&cluster, QUOTA)], before);

    // Retire: no rule names the route any more; theirs are as they were, byte for byte.
    let retired = engine
        .apply(&parse(event::RETIRED_TYPE, json!({"model": "chat", "revision": 3})))
        .await;
    assert_outcome(&retired, Outcome::Applied);
    assert_eq!(retired.route, None, "a retirement has no route to call");
    for name in [RATELIMIT, QUOTA] {
        let stored = serde_json::to_string(&rules(&cluster, name)).unwrap();
        assert!(!stored.contains("ai-route-chat.internal"), "{name}: {stored}");
        assert_eq!(stored, their_rules(&cluster, name));
    }
    assert_eq!([their_rules(&cluster, RATELIMIT), their_rules(&cluster, QUOTA)], before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_plugin_crs_are_created_with_the_console_labels_and_a_route_without_domains_has_no_url() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let deployed = engine
        .apply(&parse(
            event::DEPLOYED_TYPE,
            json!({"model": "bare", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]},
                   "route": {"plugins": {"ai-quota": {"admin_consumer": "admin", "redis": {"service_name": "redis.dns"}}}}}),
        ))
        .await;
    assert_outcome(&deployed, Outcome::Applied);
    let cr = cluster.get("wasmplugins", QUOTA).expect("created");
    assert_eq!(cr["metadata"]["labels"]["higress.io/wasm-plugin-version"], "2.0.1");
    assert_eq!(cr["metadata"]["labels"]["higress.io/resource-definer"], "higress");
    assert!(deployed
        .changes
        .iter()
        .any(|c| c.name == QUOTA && c.operation == "created"));
    assert_eq!(
        deployed.route,
        Some(RouteAccess {
            urls: Vec::new(),
            path: "/".into(),
            models: vec!["*".into()],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_catalogue_plugin_follows_the_route_and_other_rules_survive_byte_for_byte() {
    // key-rate-limit: a plugin beyond the first two, labelled 1.0.0 by console v2.2.4 too.
    const KEY_RATE_LIMIT: &str = "key-rate-limit-1.0.0";
    let cluster = Cluster::start().await;
    let mut theirs = their_cr(KEY_RATE_LIMIT, "key-rate-limit");
    theirs["metadata"]["labels"]["higress.io/wasm-plugin-version"] = json!("1.0.0");
    theirs["metadata"]["labels"]["higress.io/wasm-plugin-category"] = json!("traffic");
    theirs["spec"]["priority"] = json!(10);
    cluster.sim.insert(theirs).unwrap();
    cluster.sim.insert(their_cr(RATELIMIT, "ai-token-ratelimit")).unwrap();
    let before = [their_rules(&cluster, KEY_RATE_LIMIT), their_rules(&cluster, RATELIMIT)];
    let engine = cluster.engine().await;

    let limit = json!({"limit_by_header": "x-api-key", "limit_keys": [{"key": "k1", "query_per_second": 10}]});
    let ratelimit = json!({"rule_name": "chat", "redis": {"service_name": "redis.dns"},
                           "global_threshold": {"token_per_minute": 1000}});
    let deployed = engine
        .apply(&deploy(
            1,
            json!({"key-rate-limit": limit, "ai-token-ratelimit": ratelimit}),
        ))
        .await;
    assert_outcome(&deployed, Outcome::Applied);
    let ours = json!({"config": limit, "configDisable": false, "ingress": ["ai-route-chat.internal"]});
    assert_eq!(
        rules(&cluster, KEY_RATE_LIMIT)[1],
        ours,
        "sorted: alpha < chat < zeta, domain"
    );
    assert_eq!(rules(&cluster, KEY_RATE_LIMIT).len(), 4);
    assert!(deployed
        .changes
        .iter()
        .any(|c| c.name == KEY_RATE_LIMIT && c.operation == "updated"));
    assert!(
        cluster.get("wasmplugins", "key-rate-limit-2.0.1").is_none(),
        "the console's version, no other"
    );

    // Redeploy without key-rate-limit: its rule for the route goes, the rest stays byte for byte.
    let redeployed = engine.apply(&deploy(2, json!({"ai-token-ratelimit": ratelimit}))).await;
    assert_outcome(&redeployed, Outcome::Applied);
    let stored = serde_json::to_string(&rules(&cluster, KEY_RATE_LIMIT)).unwrap();
    assert!(!stored.contains("ai-route-chat.internal"), "{stored}");
    assert_eq!(stored, before[0]);
    assert_eq!(rules(&cluster, RATELIMIT)[1]["config"], ratelimit);
    assert_eq!(
        [their_rules(&cluster, KEY_RATE_LIMIT), their_rules(&cluster, RATELIMIT)],
        before
    );

    // Retire: nothing names the route; theirs as they were.
    let retired = engine
        .apply(&parse(event::RETIRED_TYPE, json!({"model": "chat", "revision": 3})))
        .await;
    assert_outcome(&retired, Outcome::Applied);
    for (name, theirs) in [KEY_RATE_LIMIT, RATELIMIT].into_iter().zip(&before) {
        let stored = serde_json::to_string(&rules(&cluster, name)).unwrap();
        assert_eq!(&stored, theirs, "{name}");
    }
}
