//! The bench workload, shared by `burst` and `plan`: deploy events of new models, and a cluster that
//! already holds existing routes, made by the crate's own mapping.

// Each bench uses a different subset.
#![allow(dead_code)]

use higress_route_worker::contract;
use higress_route_worker::higress::{plan, simulate, Decision, Settings, State};
use serde_json::{json, Value};

/// A deploy event of model `<run>-m<i>`: provider `<run>-p<i % providers>`, `consumers` Bearer
/// consumers of its own, domain `api.example.com`.
pub fn deploy_with(run: &str, i: usize, providers: usize, consumers: usize) -> (String, Value) {
    let model = format!("{run}-m{i}");
    let provider = format!("{run}-p{}", i % providers);
    let consumers: Vec<Value> = (0..consumers)
        .map(|c| json!({"name": format!("{model}-c{c}"), "source": "BEARER", "credentials": [format!("key-{model}-{c}")]}))
        .collect();
    let event = json!({"specversion": "1.0", "id": format!("{model}-1"), "source": "bench", "type": "io.higress.model.deployed.v1",
        "data": {"model": model, "revision": 1,
                 "provider": {"name": provider, "type": "openai", "url": format!("https://{provider}.example.com/v1"), "apiTokens": ["sk-bench"]},
                 "route": {"domains": ["api.example.com"], "path": format!("/{model}")},
                 "auth": {"consumers": consumers}}});
    (model, event)
}

pub fn domain_config_map() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "domain-api.example.com", "namespace": "higress-system",
        "labels": {"higress.io/config-map-type": "domain", "higress.io/resource-definer": "higress"}}, "data": {"domain": "api.example.com", "enableHttps": "off"}})
}

/// The cluster `routes` existing routes leave, exactly as the worker would have written them: the
/// crate's own mapping applies one deploy event per route to the bench's starting objects. Route `i`
/// uses provider `seed-p<i % providers>` and allows consumer `seed-c<i % consumers>` (one Bearer key
/// each). One provider and one consumer per route would take `ai-proxy.internal` and
/// `key-auth.internal` past etcd's limit near 4,500 routes (see README, capacity): no cluster holds
/// 5,000 such routes.
pub fn existing_state(routes: usize, providers: usize, consumers: usize) -> State {
    let settings = Settings::default();
    let now = chrono::Utc::now();
    let mut state = State::new();
    state.insert_object(domain_config_map());
    for i in 0..routes {
        let (_, mut event) = deploy_with("seed", i, providers.max(1), 0);
        let consumer = format!("seed-c{}", i % consumers.max(1));
        event["data"]["auth"]["consumers"] =
            json!([{"name": consumer, "source": "BEARER", "credentials": [format!("key-{consumer}")]}]);
        let event = contract::parse(event.to_string().as_bytes()).expect("a valid deploy event");
        match plan(&event, &state, &settings, now).expect("the deploy is planned") {
            Decision::Apply(plan) => {
                simulate(&mut state, &plan).expect("the deploy applies");
            }
            Decision::Stale { seen } => panic!("a new route cannot be stale (seen {seen})"),
        }
    }
    state
}
