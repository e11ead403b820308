//! Every example in `tests/fixtures/console/` (objects traced from the Higress console's code, see its
//! README) reproduced by the mapping.

use higress_route_worker::contract;
use higress_route_worker::event::{self, KeySource, LifecycleEvent};
use higress_route_worker::higress::ops::Op;
use higress_route_worker::higress::plugins::consumer_entry;
use higress_route_worker::higress::plugins::BuiltinPlugin;
use higress_route_worker::higress::provider::{self, LlmProvider};
use higress_route_worker::higress::route::{self, AiRoute, IngressContext};
use higress_route_worker::higress::state::without_server_fields;
use higress_route_worker::higress::{self, names, ConsoleVersion, Decision, Kind, Settings, State};
use higress_route_worker::secret::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/console")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn example(name: &str) -> Vec<Value> {
    let text = fixture(name);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn deployed(data: Value) -> LifecycleEvent {
    cloud_event(event::DEPLOYED_TYPE, data)
}

fn retired(data: Value) -> LifecycleEvent {
    cloud_event(event::RETIRED_TYPE, data)
}

fn cloud_event(kind: &str, data: Value) -> LifecycleEvent {
    let event = json!({"specversion": "1.0", "id": "test-1", "source": "tests", "type": kind, "data": data});
    contract::parse(event.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Applies an event to a state and returns the state after it.
fn apply(event: &LifecycleEvent, state: &State) -> State {
    let Decision::Apply(plan) = higress::plan(event, state, &Settings::default(), chrono::Utc::now()).unwrap() else {
        panic!("unexpected stale")
    };
    let mut after = state.clone();
    higress::simulate(&mut after, &plan).unwrap();
    after
}

/// An object as the console would see it. The worker's additions are annotations: on McpBridge
/// `default` and `ai-proxy.internal`, which of its routes use each provider; on the plugin CRs holding
/// its routes' rules, the revision that wrote each route's rules; on a route's own objects, the
/// revision that wrote them. And one label: on a route's Ingresses, the route's name.
fn object(state: &State, kind: Kind, name: &str) -> Value {
    let mut object = without_server_fields(
        state
            .get_named(kind, name)
            .unwrap_or_else(|| panic!("{kind:?} {name} missing")),
    );
    let metadata = object["metadata"].as_object_mut().unwrap();
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.remove(names::ANNOTATION_PROVIDER_USERS);
        annotations.remove(names::ANNOTATION_ROUTE_REVISIONS);
        annotations.remove(names::ANNOTATION_REVISION);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
        labels.remove(names::LABEL_ROUTE);
    }
    object
}

fn list(object: &Value, pointer: &str) -> Vec<Value> {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn seed_event() -> LifecycleEvent {
    deployed(json!({
        "model": "zimomo2lololo", "revision": 1,
        "provider": {"name": "lololo", "type": "openai", "url": "https://lololo.com/v1"},
        "route": {"domains": ["zimomo.com"], "https": {"mode": "off"}, "path": "/v1"},
        "auth": {"enabled": true, "allowedConsumers": ["labubu"],
                 "consumers": [{"name": "labubu", "source": "BEARER", "credentials": ["123456-xxx"]}]}
    }))
}

#[test]
fn blog_scenario_is_written_as_the_console_writes_it() {
    let docs = example("blog-scenario-as-console-writes-it.yaml");
    let after = apply(&seed_event(), &State::new());

    assert_eq!(object(&after, Kind::ConfigMap, "domain-zimomo.com"), docs[0]);
    let fragments = &docs[1];
    let bridge = object(&after, Kind::McpBridge, "default");
    assert_eq!(list(&bridge, "/spec/registries"), vec![fragments["registry"].clone()]);
    let ai_proxy = object(&after, Kind::WasmPlugin, "ai-proxy.internal");
    assert_eq!(
        list(&ai_proxy, "/spec/defaultConfig/providers"),
        vec![fragments["provider"].clone()]
    );
    assert_eq!(
        list(&ai_proxy, "/spec/matchRules"),
        vec![fragments["aiProxyRule"].clone()]
    );
    let key_auth = object(&after, Kind::WasmPlugin, "key-auth.internal");
    assert_eq!(
        list(&key_auth, "/spec/defaultConfig/consumers"),
        vec![fragments["consumer"].clone()]
    );
    assert_eq!(
        list(&key_auth, "/spec/matchRules"),
        vec![fragments["keyAuthRule"].clone()]
    );
    let statistics = object(&after, Kind::WasmPlugin, "ai-statistics-2.0.1");
    assert_eq!(
        list(&statistics, "/spec/matchRules"),
        vec![fragments["aiStatisticsRule"].clone()]
    );
    assert_eq!(object(&after, Kind::ConfigMap, "ai-route-zimomo2lololo"), docs[2]);
    assert_eq!(
        object(&after, Kind::Ingress, "ai-route-zimomo2lololo.internal"),
        docs[3]
    );
}

#[test]
fn openai_provider_with_defaults_creates_mcp_bridge_and_ai_proxy() {
    let docs = example("provider-openai-default.yaml");
    let event = deployed(json!({
        "model": "chat", "revision": 1,
        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]}
    }));
    let after = apply(&event, &State::new());
    assert_eq!(object(&after, Kind::McpBridge, "default"), docs[0]);
    assert_eq!(object(&after, Kind::WasmPlugin, "ai-proxy.internal"), docs[1]);
}

#[test]
fn every_provider_type_maps_to_its_registry_entry_and_destination() {
    let cases = example("providers-registry-mapping.yaml")[0]["cases"]
        .as_array()
        .unwrap()
        .clone();
    // The fixture's 11 cases, by name: a case lost on the way (a renamed key, a YAML slip) fails here
    // instead of going unchecked.
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "lololo",
            "vllm-pool",
            "in-cluster",
            "qwen-main",
            "qwen-intl",
            "azure-1",
            "ollama-1",
            "ollama-ip",
            "deepseek-1",
            "vertex-1",
            "bedrock-1",
        ]
    );
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut input = case["input"].clone();
        input["name"] = json!(name);
        let provider: LlmProvider = serde_json::from_value(input).unwrap();
        let objects = provider::render(&provider).unwrap_or_else(|e| panic!("{name}: {e}"));
        match (&case.get("registry"), &case.get("registries")) {
            (Some(Value::Null), _) => assert!(objects.registries.is_empty(), "{name}"),
            (Some(registry), _) => assert_eq!(objects.registries, vec![(*registry).clone()], "{name}"),
            (None, Some(registries)) => assert_eq!(&Value::from(objects.registries.clone()), *registries, "{name}"),
            (None, None) => panic!("{name}: no registry in the example"),
        }
        if let Some(expected) = case.get("provider") {
            let mut entry = objects.entry.clone();
            if name == "vertex-1" {
                // The example abbreviates the auth key JSON as "...".
                entry["vertexAuthKey"] = json!("...");
            }
            assert_eq!(&entry, expected, "{name}");
        }
        if let Some(service) = case.get("serviceRule") {
            assert_eq!(objects.service, service.as_str().unwrap(), "{name}");
        }
        assert_eq!(objects.destination(), case["destination"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn a_bearer_consumer_creates_key_auth_with_the_console_defaults() {
    let docs = example("consumer-alice.yaml");
    let mut key_auth = BuiltinPlugin::KeyAuth.new_cr(ConsoleVersion::default(), "higress-system");
    let alice = consumer_entry("alice", KeySource::Bearer, None, &[SecretString::new("sk-alice-1")]);
    Op::UpsertConsumer(alice).apply(&mut key_auth).unwrap();
    assert_eq!(key_auth, docs[0]);
}

#[test]
fn header_and_query_consumers_keep_raw_values() {
    let header = consumer_entry("h", KeySource::Header, Some("x-api-key"), &[SecretString::new("v1")]);
    assert_eq!(
        header,
        json!({"name": "h", "keys": ["x-api-key"], "in_header": true, "in_query": false, "credentials": ["v1"]})
    );
    let query = consumer_entry("q", KeySource::Query, Some("apikey"), &[SecretString::new("v2")]);
    assert_eq!(
        query,
        json!({"name": "q", "keys": ["apikey"], "in_header": false, "in_query": true, "credentials": ["v2"]})
    );
}

/// The console API input recorded in an example's header comment.
fn api_input(name: &str) -> AiRoute {
    let text = fixture(name);
    let start = text.find("# API input").unwrap();
    let json: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ");
    // The JSON object is followed by more comment prose: read just the first value.
    let json = &json[json.find('{').unwrap()..];
    let value = serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .next()
        .unwrap();
    serde_json::from_value(value.unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
}

fn domain(name: &str, https: &str, cert: Option<&str>) -> Value {
    let mut data = json!({"domain": name, "enableHttps": https});
    if let Some(cert) = cert {
        data["cert"] = json!(cert);
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": names::domain_config_map(name), "namespace": "higress-system",
                        "labels": {"higress.io/config-map-type": "domain", "higress.io/resource-definer": "higress"}},
           "data": data})
}

fn route_objects(route: &AiRoute, state: &State, destinations: Vec<(String, Option<u32>)>) -> (Value, Value) {
    let mut route = route.clone();
    route.fill_defaults(ConsoleVersion::default());
    route.validate().unwrap();
    let tls = route::tls(route.domains.as_deref().unwrap_or_default(), state).unwrap();
    let ctx = IngressContext {
        namespace: "higress-system",
        ingress_class: "higress",
        tls: &tls,
        destinations,
        fallback_from: None,
    };
    (
        route::config_map(&route, "higress-system"),
        route::ingress(&route, &ctx),
    )
}

/// A state with the providers and consumer the route examples assume.
fn providers_state() -> State {
    let mut state = State::new();
    for event in [
        deployed(json!({"model": "seed-openai", "revision": 1,
                        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]}})),
        deployed(json!({"model": "seed-qwen", "revision": 1,
                        "provider": {"name": "qwen-main", "type": "qwen", "apiTokens": ["sk-q"]},
                        "auth": {"consumers": [{"name": "alice", "source": "BEARER", "credentials": ["sk-alice-1"]}]}})),
    ] {
        state = apply(&event, &state);
    }
    state
}

#[test]
fn route_with_auth_matches_config_map_ingress_and_plugin_rules() {
    let docs = example("route-chat-with-auth.yaml");
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let (config_map, ingress) = route_objects(
        &api_input("route-chat-with-auth.yaml"),
        &state,
        vec![("llm-openai-main.internal.dns:443".into(), Some(100))],
    );
    assert_eq!(config_map, docs[0]);
    assert_eq!(ingress, docs[1]);

    let event = deployed(json!({
        "model": "chat", "revision": 1,
        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]},
        "route": {"domains": ["api.example.com"], "path": "/v1"},
        "auth": {"enabled": true, "allowedConsumers": ["alice"]}
    }));
    let after = apply(&event, &state);
    let key_auth = object(&after, Kind::WasmPlugin, "key-auth.internal");
    assert!(list(&key_auth, "/spec/matchRules").contains(&docs[2]["matchRulesEntry"]));
    let statistics = object(&after, Kind::WasmPlugin, "ai-statistics-2.0.1");
    let mut expected = docs[3].clone();
    expected["spec"]["matchRules"] = json!([
        {"config": {"use_default_response_attributes": true}, "configDisable": false, "ingress": ["ai-route-chat.internal"]},
        {"config": {"use_default_response_attributes": true}, "configDisable": false, "ingress": ["ai-route-seed-openai.internal"]},
        {"config": {"use_default_response_attributes": true}, "configDisable": false, "ingress": ["ai-route-seed-qwen.internal"]}
    ]);
    assert_eq!(statistics, expected);
    // The worker's Ingress is the console's but for the path case annotation the UI adds.
    let mut ours = object(&after, Kind::Ingress, "ai-route-chat.internal");
    ours["metadata"]["annotations"]["higress.io/ignore-path-case"] = json!("false");
    assert_eq!(ours, docs[1]);
}

#[test]
fn weighted_upstreams_write_weighted_destination_and_model_mapper() {
    let docs = example("route-weighted-two-upstreams.yaml");
    let mut state = providers_state();
    state.insert_object(domain(names::DEFAULT_DOMAIN, "on", Some("default")));
    let (config_map, ingress) = route_objects(
        &api_input("route-weighted-two-upstreams.yaml"),
        &state,
        vec![
            ("llm-openai-main.internal.dns:443".into(), Some(70)),
            ("llm-qwen-main.internal.dns:443".into(), Some(30)),
        ],
    );
    assert_eq!(config_map, docs[0]);
    assert_eq!(ingress, docs[1]);

    let event = deployed(json!({
        "model": "mix", "revision": 1,
        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]},
        "route": {"upstreams": [{"provider": "openai-main", "weight": 70},
                                {"provider": "qwen-main", "weight": 30, "modelMapping": {"*": "qwen-max"}}]}
    }));
    let after = apply(&event, &state);
    assert_eq!(object(&after, Kind::Ingress, "ai-route-mix.internal"), docs[1]);
    assert_eq!(object(&after, Kind::WasmPlugin, "model-mapper.internal"), docs[2]);
    let key_auth = object(&after, Kind::WasmPlugin, "key-auth.internal");
    let rule = list(&key_auth, "/spec/matchRules")
        .into_iter()
        .find(|r| r["ingress"] == json!(["ai-route-mix.internal"]))
        .unwrap();
    assert_eq!(rule, docs[3]["matchRulesEntry"]);
}

#[test]
fn model_predicates_and_fallback_match_the_console() {
    let docs = example("route-model-predicates-and-fallback.yaml");
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let mut route = api_input("route-model-predicates-and-fallback.yaml");
    let (config_map, main) = route_objects(
        &route,
        &state,
        vec![("llm-openai-main.internal.dns:443".into(), Some(100))],
    );
    assert_eq!(main, docs[0]);
    assert_eq!(config_map["data"]["data"], docs[3]["configMapData"]);

    route.fill_defaults(ConsoleVersion::default());
    let tls = route::tls(route.domains.as_deref().unwrap_or_default(), &state).unwrap();
    let fallback = route::ingress(
        &route,
        &IngressContext {
            namespace: "higress-system",
            ingress_class: "higress",
            tls: &tls,
            destinations: vec![("llm-qwen-main.internal.dns:443".into(), Some(100))],
            fallback_from: Some("ai-route-smart.internal".into()),
        },
    );
    assert_eq!(fallback, docs[1]);

    let event = deployed(json!({
        "model": "smart", "revision": 1,
        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]},
        "route": {"domains": ["api.example.com"],
                  "modelPredicates": [{"matchType": "EQUAL", "matchValue": "gpt-4o"}, {"matchType": "PRE", "matchValue": "qwen-"}]},
        "auth": {"allowedConsumers": ["alice"]}
    }));
    let after = apply(&event, &state);
    assert_eq!(object(&after, Kind::WasmPlugin, "model-router.internal"), docs[2]);
    assert_eq!(object(&after, Kind::Ingress, "ai-route-smart.internal"), docs[0]);
    let key_auth = object(&after, Kind::WasmPlugin, "key-auth.internal");
    assert!(list(&key_auth, "/spec/matchRules").contains(&docs[3]["keyAuthRules"][1]));
}

#[test]
fn retire_removes_route_rules_provider_and_keeps_other_entries() {
    let docs = example("deletion-behaviour.yaml");
    let deletion = &docs[0];
    let mut state = providers_state();
    let chat = deployed(json!({
        "model": "chat", "revision": 1,
        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]},
        "auth": {"allowedConsumers": ["alice"]}
    }));
    let other = deployed(json!({
        "model": "other", "revision": 1,
        "provider": {"name": "qwen-main", "type": "qwen", "apiTokens": ["sk-q"]},
        "auth": {"consumers": [{"name": "bob", "source": "BEARER", "credentials": ["sk-bob"]}]}
    }));
    // Only the example's two routes use the providers.
    for seed in ["seed-openai", "seed-qwen"] {
        state = apply(
            &retired(json!({"model": seed, "revision": 2, "deleteProvider": false})),
            &state,
        );
    }
    state = apply(&chat, &state);
    state = apply(&other, &state);
    let key_auth_rules = |s: &State| {
        list(&object(s, Kind::WasmPlugin, "key-auth.internal"), "/spec/matchRules")
            .into_iter()
            .filter(|r| {
                r["ingress"] == json!(["ai-route-chat.internal"]) || r["ingress"] == json!(["ai-route-other.internal"])
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        Value::from(key_auth_rules(&state)),
        deletion["aiRouteDelete"]["example"]["key-auth.internal.matchRules.before"]
    );
    assert_eq!(
        Value::from(list(&object(&state, Kind::McpBridge, "default"), "/spec/registries")),
        deletion["providerDelete"]["example"]["mcpbridge.registries.before"]
    );

    let after = apply(
        &retired(json!({"model": "chat", "revision": 2, "deleteConsumers": true})),
        &state,
    );
    assert!(after.get_named(Kind::Ingress, "ai-route-chat.internal").is_none());
    assert!(after.get_named(Kind::ConfigMap, "ai-route-chat").is_none());
    assert_eq!(
        Value::from(key_auth_rules(&after)),
        deletion["aiRouteDelete"]["example"]["key-auth.internal.matchRules.after"]
    );
    assert_eq!(
        Value::from(list(&object(&after, Kind::McpBridge, "default"), "/spec/registries")),
        deletion["providerDelete"]["example"]["mcpbridge.registries.after"]
    );
    assert_eq!(
        Value::from(list(
            &object(&after, Kind::WasmPlugin, "ai-proxy.internal"),
            "/spec/matchRules"
        )),
        deletion["providerDelete"]["example"]["ai-proxy.matchRules.after"]
    );
    let statistics = object(&after, Kind::WasmPlugin, "ai-statistics-2.0.1");
    assert!(!statistics.to_string().contains("ai-route-chat.internal"));
    // alice is no longer named by any allow list, so deleteConsumers removed her; bob stays.
    let consumers = list(
        &object(&after, Kind::WasmPlugin, "key-auth.internal"),
        "/spec/defaultConfig/consumers",
    );
    let names: Vec<&str> = consumers.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob"]);
}

// ---------------------------------------------------------------- fallback, predicates, custom annotations (#14)

fn envoy_filter_fixture() -> Vec<Value> {
    example("envoyfilter-route-fallback.yaml")
}

/// The rules of a plugin CR that name one of `ingresses`, in the CR's order.
fn rules_naming(state: &State, plugin: &str, ingresses: &[&str]) -> Vec<Value> {
    list(&object(state, Kind::WasmPlugin, plugin), "/spec/matchRules")
        .into_iter()
        .filter(|r| {
            r["ingress"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| ingresses.contains(&i.as_str().unwrap_or_default())))
        })
        .collect()
}

fn route_data(state: &State, model: &str) -> String {
    object(state, Kind::ConfigMap, &names::route_config_map(model))["data"]["data"]
        .as_str()
        .unwrap()
        .to_string()
}

fn smart_event(fallback: Value) -> LifecycleEvent {
    let mut data = json!({
        "model": "smart", "revision": 1,
        "provider": {"name": "openai-main", "type": "openai", "apiTokens": ["sk-aaa"]},
        "route": {"domains": ["api.example.com"],
                  "modelPredicates": [{"matchType": "EQUAL", "matchValue": "gpt-4o"}, {"matchType": "PRE", "matchValue": "qwen-"}]},
        "auth": {"allowedConsumers": ["alice"]}
    });
    if !fallback.is_null() {
        data["route"]["fallback"] = fallback;
    }
    deployed(data)
}

#[test]
fn a_fallback_event_is_written_as_the_console_writes_the_fallback_example() {
    let docs = example("route-model-predicates-and-fallback.yaml");
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let event = smart_event(
        json!({"upstreams": [{"provider": "qwen-main"}], "strategy": "SEQ", "responseCodes": ["4xx", "5xx"]}),
    );
    let after = apply(&event, &state);

    assert_eq!(object(&after, Kind::Ingress, "ai-route-smart.internal"), docs[0]);
    assert_eq!(
        object(&after, Kind::Ingress, "ai-route-smart.fallback.internal"),
        docs[1]
    );
    assert_eq!(
        object(&after, Kind::EnvoyFilter, "ai-route-smart.internal"),
        envoy_filter_fixture()[0]
    );
    assert_eq!(object(&after, Kind::WasmPlugin, "model-router.internal"), docs[2]);
    let both = ["ai-route-smart.internal", "ai-route-smart.fallback.internal"];
    assert_eq!(
        Value::from(rules_naming(&after, "key-auth.internal", &both)),
        docs[3]["keyAuthRules"]
    );
    assert_eq!(
        Value::from(rules_naming(&after, "ai-statistics-2.0.1", &both)),
        docs[3]["aiStatisticsRules"]
    );
    // No mapping, so no model-mapper rule for either Ingress.
    assert!(after.get_named(Kind::WasmPlugin, "model-mapper.internal").is_none());
    // The ConfigMap is the example's but for what the console UI always sends (empty header and URL
    // predicates, empty model mappings), as for every route the worker writes.
    let data = route_data(&after, "smart");
    assert_eq!(
        data.replace(r#""headerPredicates":[],"urlParamPredicates":[],"#, "")
            .replace(r#","modelMapping":{}"#, ""),
        docs[3]["configMapData"].as_str().unwrap()
    );
    assert_eq!(data.matches(r#""modelMapping":{}"#).count(), 2, "{data}");
}

#[test]
fn a_rand_fallback_balances_over_every_upstream_with_weight_1_and_maps_models() {
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let event = smart_event(json!({
        "upstreams": [{"provider": "openai-main", "weight": 30}, {"provider": "qwen-main", "modelMapping": {"*": "qwen-max"}}],
        "responseCodes": ["5xx"]
    }));
    let after = apply(&event, &state);

    // Section 4.1/4.2: RAND is the default strategy; every fallback upstream gets weight 1, also in
    // the ConfigMap.
    let data: Value = serde_json::from_str(&route_data(&after, "smart")).unwrap();
    assert_eq!(
        data["fallbackConfig"],
        json!({"enabled": true,
               "upstreams": [{"provider": "openai-main", "weight": 1, "modelMapping": {}},
                             {"provider": "qwen-main", "weight": 1, "modelMapping": {"*": "qwen-max"}}],
               "fallbackStrategy": "RAND", "responseCodes": ["5xx"]})
    );
    let fallback = object(&after, Kind::Ingress, "ai-route-smart.fallback.internal");
    let annotations = &fallback["metadata"]["annotations"];
    assert_eq!(
        annotations["higress.io/destination"],
        "1% llm-openai-main.internal.dns:443\n1% llm-qwen-main.internal.dns:443"
    );
    assert_eq!(
        annotations["higress.io/exact-match-header-x-higress-fallback-from"],
        "ai-route-smart.internal"
    );
    // The main Ingress does not match on the fallback header.
    let main = object(&after, Kind::Ingress, "ai-route-smart.internal");
    assert!(main["metadata"]["annotations"]
        .get("higress.io/exact-match-header-x-higress-fallback-from")
        .is_none());
    // Section 4.4: a model-mapper rule for the fallback Ingress and the upstream with a mapping.
    assert_eq!(
        rules_naming(&after, "model-mapper.internal", &["ai-route-smart.fallback.internal"]),
        vec![
            json!({"config": {"modelMapping": {"*": "qwen-max"}}, "configDisable": false,
                    "ingress": ["ai-route-smart.fallback.internal"], "service": ["llm-qwen-main.internal.dns"]})
        ]
    );
    // One response class: a bare single_predicate.
    let filter = object(&after, Kind::EnvoyFilter, "ai-route-smart.internal");
    let mut expected = envoy_filter_fixture()[0].clone();
    let matcher = "/spec/configPatches/0/patch/value/typed_per_filter_config/envoy.filters.http.custom_response/value/custom_response_matcher/matcher_list/matchers/0/predicate";
    *expected.pointer_mut(matcher).unwrap() = envoy_filter_fixture()[1]["singlePredicate"].clone();
    assert_eq!(filter, expected);

    // A redeploy without the fallback deletes the fallback Ingress, the EnvoyFilter and every rule
    // naming the fallback Ingress; the main route's objects stay as they were.
    let mut redeploy = smart_event(Value::Null);
    if let event::Lifecycle::Deployed(d) = &mut redeploy.body {
        d.revision = 2;
    }
    let dropped = apply(&redeploy, &after);
    assert!(dropped
        .get_named(Kind::Ingress, "ai-route-smart.fallback.internal")
        .is_none());
    assert!(dropped
        .get_named(Kind::EnvoyFilter, "ai-route-smart.internal")
        .is_none());
    for plugin in ["key-auth.internal", "ai-statistics-2.0.1", "model-mapper.internal"] {
        if dropped.get_named(Kind::WasmPlugin, plugin).is_some() {
            assert!(
                rules_naming(&dropped, plugin, &["ai-route-smart.fallback.internal"]).is_empty(),
                "{plugin}"
            );
        }
    }
    assert_eq!(object(&dropped, Kind::Ingress, "ai-route-smart.internal"), main);
    let data: Value = serde_json::from_str(&route_data(&dropped, "smart")).unwrap();
    assert_eq!(data["fallbackConfig"], json!({"enabled": false}));
}

#[test]
fn a_seq_fallback_with_two_upstreams_routes_and_maps_the_first_only() {
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let event = smart_event(json!({
        "upstreams": [{"provider": "qwen-main", "modelMapping": {"*": "qwen-max"}},
                      {"provider": "openai-main", "modelMapping": {"*": "gpt-4o-mini"}}],
        "strategy": "SEQ", "responseCodes": ["5xx"]
    }));
    let after = apply(&event, &state);

    // Section 4.1: SEQ sends the fallback to the first upstream only; the ConfigMap keeps both.
    let fallback = object(&after, Kind::Ingress, "ai-route-smart.fallback.internal");
    assert_eq!(
        fallback["metadata"]["annotations"]["higress.io/destination"], "llm-qwen-main.internal.dns:443",
        "one destination, no weights"
    );
    assert_eq!(
        fallback["metadata"]["annotations"]["higress.io/exact-match-header-x-higress-fallback-from"],
        "ai-route-smart.internal"
    );
    let data: Value = serde_json::from_str(&route_data(&after, "smart")).unwrap();
    assert_eq!(data["fallbackConfig"]["fallbackStrategy"], "SEQ");
    let providers: Vec<&str> = data["fallbackConfig"]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["qwen-main", "openai-main"]);
    // Section 4.4: the model-mapper rule of the fallback Ingress is the first upstream's; the second
    // upstream, never routed to, has none.
    assert_eq!(
        rules_naming(&after, "model-mapper.internal", &["ai-route-smart.fallback.internal"]),
        vec![
            json!({"config": {"modelMapping": {"*": "qwen-max"}}, "configDisable": false,
                    "ingress": ["ai-route-smart.fallback.internal"], "service": ["llm-qwen-main.internal.dns"]})
        ]
    );
    let mapper = list(
        &object(&after, Kind::WasmPlugin, "model-mapper.internal"),
        "/spec/matchRules",
    );
    assert!(
        mapper
            .iter()
            .all(|r| r["config"]["modelMapping"] != json!({"*": "gpt-4o-mini"})),
        "{mapper:?}"
    );
    // The fallback Ingress gets the route's key-auth and ai-statistics rules, as with one upstream.
    for plugin in ["key-auth.internal", "ai-statistics-2.0.1"] {
        assert_eq!(
            rules_naming(&after, plugin, &["ai-route-smart.fallback.internal"]).len(),
            1,
            "{plugin}"
        );
    }
}

#[test]
fn header_and_url_parameter_predicates_become_the_console_annotations_on_both_ingresses() {
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let mut event = smart_event(json!({"upstreams": [{"provider": "qwen-main"}], "responseCodes": ["5xx"]}));
    if let event::Lifecycle::Deployed(d) = &mut event.body {
        d.route.header_predicates = serde_json::from_value(json!([
            {"key": "x-team", "matchType": "EQUAL", "matchValue": "search"},
            {"key": ":authority", "matchType": "PRE", "matchValue": "api."},
            {"key": "x-version", "matchType": "REGULAR", "matchValue": "^v[12]=?$"}
        ]))
        .unwrap();
        d.route.url_param_predicates =
            serde_json::from_value(json!([{"key": "tenant", "matchType": "EQUAL", "matchValue": "acme"}])).unwrap();
    }
    let after = apply(&event, &state);
    // Section 4.3: {exact,prefix,regex}-match-{header,query}-<key>; a ':' key is a pseudo-header.
    let expected = [
        ("higress.io/exact-match-header-x-team", "search"),
        ("higress.io/prefix-match-pseudo-header-authority", "api."),
        ("higress.io/regex-match-header-x-version", "^v[12]=?$"),
        ("higress.io/exact-match-query-tenant", "acme"),
    ];
    for ingress in ["ai-route-smart.internal", "ai-route-smart.fallback.internal"] {
        let annotations = object(&after, Kind::Ingress, ingress)["metadata"]["annotations"].clone();
        for (key, value) in expected {
            assert_eq!(annotations[key], value, "{ingress} {key}");
        }
        // The model predicates keep their own annotation beside them.
        assert_eq!(
            annotations["higress.io/regex-match-header-x-higress-llm-model"],
            "^(gpt-4o|qwen-.*)"
        );
    }
    // In the ConfigMap: {key, matchType, matchValue} in Gson order and escaping ('=' as \u003d).
    let data = route_data(&after, "smart");
    assert!(
        data.contains(concat!(
            r#""headerPredicates":[{"key":"x-team","matchType":"EQUAL","matchValue":"search"},"#,
            r#"{"key":":authority","matchType":"PRE","matchValue":"api."},"#,
            r#"{"key":"x-version","matchType":"REGULAR","matchValue":"^v[12]\u003d?$"}],"#,
            r#""urlParamPredicates":[{"key":"tenant","matchType":"EQUAL","matchValue":"acme"}],"upstreams""#
        )),
        "{data}"
    );
}

#[test]
fn custom_annotations_and_labels_go_on_both_ingresses_and_into_the_config_map() {
    let mut state = providers_state();
    state.insert_object(domain("api.example.com", "off", None));
    let mut event = smart_event(json!({"upstreams": [{"provider": "qwen-main"}], "responseCodes": ["5xx"]}));
    if let event::Lifecycle::Deployed(d) = &mut event.body {
        d.route.custom_configs = serde_json::from_value(
            json!({"example.com/owner": "team-search", "higress.io/timeout": "30", "nginx.ingress.kubernetes.io/proxy-body-size": "8m"}),
        )
        .unwrap();
        d.route.custom_labels = serde_json::from_value(json!({"team": "search", "example.com/tier": "gold"})).unwrap();
    }
    let after = apply(&event, &state);
    for ingress in ["ai-route-smart.internal", "ai-route-smart.fallback.internal"] {
        let metadata = object(&after, Kind::Ingress, ingress)["metadata"].clone();
        assert_eq!(metadata["annotations"]["example.com/owner"], "team-search", "{ingress}");
        assert_eq!(metadata["annotations"]["higress.io/timeout"], "30", "{ingress}");
        assert_eq!(
            metadata["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"], "8m",
            "{ingress}"
        );
        // Beside the console's own labels, which stay.
        assert_eq!(
            metadata["labels"],
            json!({"higress.io/domain_api.example.com": "true", "higress.io/resource-definer": "higress",
                   "higress.io/internal": "true", "team": "search", "example.com/tier": "gold"}),
            "{ingress}"
        );
    }
    // Last in the ConfigMap's JSON (section 4.1's field order), in the event's order.
    let data = route_data(&after, "smart");
    assert!(
        data.ends_with(concat!(
            r#""customConfigs":{"example.com/owner":"team-search","higress.io/timeout":"30","nginx.ingress.kubernetes.io/proxy-body-size":"8m"},"#,
            r#""customLabels":{"team":"search","example.com/tier":"gold"}}"#
        )),
        "{data}"
    );
    // The console refuses the annotations it manages; so does the mapping.
    let mut route: AiRoute = serde_json::from_str(&data).unwrap();
    route
        .custom_configs
        .as_mut()
        .unwrap()
        .insert("higress.io/destination".into(), json!("evil:80"));
    assert!(route.validate().unwrap_err().contains("higress.io/destination"));
}

#[test]
fn a_fallback_provider_must_exist_as_an_upstream_provider_must() {
    let state = providers_state();
    let event = smart_event(json!({"upstreams": [{"provider": "qwen-main"}, {"provider": "nobody"}],
                                   "strategy": "SEQ", "responseCodes": ["5xx"]}));
    // Also a SEQ fallback's unused second upstream: the route's ConfigMap names it.
    let refusal = higress::plan(&event, &state, &Settings::default(), chrono::Utc::now()).unwrap_err();
    assert_eq!(refusal.reason, higress_route_worker::reason::Reason::UnknownProvider);
    assert!(
        refusal
            .message
            .starts_with("data.route.fallback.upstreams: Unknown provider \"nobody\""),
        "{}",
        refusal.message
    );
}

// Route plugins (`route.plugins`): `tests/fixtures/console/route-plugins.yaml`.

fn route_plugins_event(revision: u64, plugins: Value) -> LifecycleEvent {
    deployed(json!({
        "model": "chat", "revision": revision,
        "provider": {"name": "openai-main", "apiTokens": ["sk-openai-example"]},
        "route": {"domains": ["api.example.com"], "path": "/v1", "plugins": plugins}
    }))
}

fn schema_example(name: &str) -> LifecycleEvent {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples/valid")
        .join(name);
    contract::parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

fn apply_with(event: &LifecycleEvent, state: &State, settings: &Settings) -> State {
    let Decision::Apply(plan) = higress::plan(event, state, settings, chrono::Utc::now()).unwrap() else {
        panic!("unexpected stale")
    };
    let mut after = state.clone();
    higress::simulate(&mut after, &plan).unwrap();
    after
}

#[test]
fn route_plugins_are_written_as_the_console_writes_them() {
    let docs = example("route-plugins.yaml");
    let event = schema_example("route-plugins.json");
    let after = apply(&event, &State::new());
    let ratelimit = object(&after, Kind::WasmPlugin, "ai-token-ratelimit-2.0.1");
    let quota = object(&after, Kind::WasmPlugin, "ai-quota-2.0.1");
    assert_eq!(ratelimit, docs[0]);
    assert_eq!(quota, docs[1]);

    // Field by field, against the console's rules (spec 2.4): a non-internal CR `<plugin>-<version>`
    // with the catalogue's labels, and one ROUTE rule {config, configDisable: false, ingress}.
    let event::Lifecycle::Deployed(deploy) = &event.body else {
        panic!("a deploy")
    };
    let plugins: serde_json::Map<String, Value> = deploy
        .route
        .plugins
        .iter()
        .map(|(name, config)| (name.clone(), Value::Object(config.0.clone())))
        .collect();
    for (cr, name, priority) in [(&ratelimit, "ai-token-ratelimit", 600), (&quota, "ai-quota", 750)] {
        let labels = &cr["metadata"]["labels"];
        assert_eq!(labels["higress.io/wasm-plugin-name"], name);
        assert_eq!(labels["higress.io/wasm-plugin-version"], "2.0.1");
        assert_eq!(labels["higress.io/wasm-plugin-built-in"], "true");
        assert_eq!(labels["higress.io/resource-definer"], "higress");
        assert!(labels.get("higress.io/internal").is_none(), "not an internal CR");
        assert!(cr["metadata"]["annotations"].get("higress.io/comment").is_none());
        assert_eq!(cr["spec"]["phase"], "UNSPECIFIED_PHASE");
        assert_eq!(cr["spec"]["priority"], priority);
        assert_eq!(
            cr["spec"]["url"],
            format!("oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/{name}:2.0.1")
        );
        assert_eq!(cr["spec"]["defaultConfigDisable"], true, "no global instance");
        let rules = list(cr, "/spec/matchRules");
        assert_eq!(rules.len(), 1);
        let keys: Vec<&String> = rules[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["config", "configDisable", "ingress"]);
        assert_eq!(rules[0]["config"], plugins[name], "the config verbatim");
        assert_eq!(rules[0]["configDisable"], false);
        assert_eq!(rules[0]["ingress"], json!(["ai-route-chat.internal"]));
    }
    // An older console labels and tags them as it does ai-statistics.
    let v223 = Settings {
        console: "v2.2.3".parse().unwrap(),
        ..Settings::default()
    };
    let only_ratelimit = route_plugins_event(3, json!({"ai-token-ratelimit": plugins["ai-token-ratelimit"]}));
    let after = apply_with(&only_ratelimit, &State::new(), &v223);
    assert_eq!(object(&after, Kind::WasmPlugin, "ai-token-ratelimit-1.0.0"), docs[2]);
}

#[test]
fn route_plugin_rules_keep_the_console_order_and_leave_with_the_plugin() {
    let foreign = |name: &str, rules: Value| {
        let plugin = name
            .rsplit_once('-')
            .and_then(|(p, _)| BuiltinPlugin::route_plugin(p))
            .unwrap();
        let mut cr = plugin.new_cr(ConsoleVersion::default(), "higress-system");
        cr["metadata"]["name"] = json!(name);
        cr["spec"]["url"] = json!("oci://mirror.example.com/plugins/custom:9"); // kept: only rules are ours
        cr["spec"]["matchRules"] = rules;
        cr
    };
    let theirs = json!([
        {"config": {"k": 1}, "configDisable": false, "service": ["llm-x.internal.dns"]},
        {"config": {"k": 2}, "configDisable": false, "ingress": ["ai-route-alpha.internal"]},
        {"config": {"k": 3}, "configDisable": true, "ingress": ["ai-route-chat.internal", "ai-route-zeta.internal"]},
        {"config": {"k": 4}, "configDisable": false, "ingress": ["ai-route-zeta.internal"]},
        {"config": {"k": 5}, "configDisable": false, "domain": ["api.example.com"]}
    ]);
    let mut state = State::new();
    state.insert_object(foreign("ai-token-ratelimit-2.0.1", theirs.clone()));
    state.insert_object(foreign("ai-quota-2.0.1", theirs.clone()));
    // A rule of the route in another version's CR (a console upgrade): the route keeps one instance.
    state.insert_object(foreign(
        "ai-quota-1.0.0",
        json!([{"config": {"old": true}, "configDisable": false, "ingress": ["ai-route-chat.internal"]}]),
    ));
    let both = json!({"ai-token-ratelimit": {"rule_name": "r", "redis": {"service_name": "redis.dns"}},
                      "ai-quota": {"admin_consumer": "admin", "redis": {"service_name": "redis.dns"}}});
    let after = apply(&route_plugins_event(1, both.clone()), &state);
    for name in ["ai-token-ratelimit-2.0.1", "ai-quota-2.0.1"] {
        let cr = object(&after, Kind::WasmPlugin, name);
        let rules = list(&cr, "/spec/matchRules");
        let k: Vec<Value> = rules.iter().map(|r| r["config"]["k"].clone()).collect();
        // compareMatchRules: services, then ingress lists in order (alpha < chat < chat,zeta < zeta), then domains.
        assert_eq!(
            k,
            [json!(1), json!(2), Value::Null, json!(3), json!(4), json!(5)],
            "{name}"
        );
        assert_eq!(rules[2]["ingress"], json!(["ai-route-chat.internal"]));
        for (i, rule) in theirs.as_array().unwrap().iter().enumerate() {
            assert_eq!(
                &rules[if i < 2 { i } else { i + 1 }],
                rule,
                "{name}: foreign rule {i} untouched"
            );
        }
        assert_eq!(cr["spec"]["url"], "oci://mirror.example.com/plugins/custom:9");
    }
    assert_eq!(
        list(&object(&after, Kind::WasmPlugin, "ai-quota-1.0.0"), "/spec/matchRules"),
        Vec::<Value>::new()
    );

    // A redeploy without ai-quota takes the route's rule out of it, and only that rule.
    let ratelimit_only = json!({"ai-token-ratelimit": both["ai-token-ratelimit"]});
    let redeployed = apply(&route_plugins_event(2, ratelimit_only), &after);
    assert_eq!(
        list(
            &object(&redeployed, Kind::WasmPlugin, "ai-quota-2.0.1"),
            "/spec/matchRules"
        ),
        theirs.as_array().unwrap().clone()
    );
    assert_eq!(
        object(&redeployed, Kind::WasmPlugin, "ai-token-ratelimit-2.0.1"),
        object(&after, Kind::WasmPlugin, "ai-token-ratelimit-2.0.1")
    );

    // A retirement removes the route from every rule (the shared foreign rule keeps zeta only).
    let retired = apply(&retired(json!({"model": "chat", "revision": 3})), &redeployed);
    let mut expected = theirs.as_array().unwrap().clone();
    expected[2]["ingress"] = json!(["ai-route-zeta.internal"]);
    for name in ["ai-token-ratelimit-2.0.1", "ai-quota-2.0.1"] {
        assert_eq!(
            list(&object(&retired, Kind::WasmPlugin, name), "/spec/matchRules"),
            expected,
            "{name}"
        );
    }
}

#[test]
fn the_route_plugin_catalogue_is_what_the_console_ships() {
    // Pinned by the fixture's CRs (values copied from the console's plugins.properties and spec.yaml).
    let docs = example("route-plugins.yaml");
    let names: Vec<&str> = higress::plugins::route_plugins().map(|p| p.plugin_name()).collect();
    for first_users in ["ai-token-ratelimit", "ai-quota"] {
        assert!(names.contains(&first_users), "{first_users}");
    }
    let plugin = |name| BuiltinPlugin::route_plugin(name).unwrap();
    for (doc, plugin, console) in [
        (&docs[0], plugin("ai-token-ratelimit"), "v2.2.4"),
        (&docs[1], plugin("ai-quota"), "v2.2.4"),
        (&docs[2], plugin("ai-token-ratelimit"), "v2.2.3"),
        (&docs[3], plugin("key-rate-limit"), "v2.2.4"),
    ] {
        let mut expected = doc.clone();
        expected["spec"].as_object_mut().unwrap().remove("matchRules");
        let console: ConsoleVersion = console.parse().unwrap();
        assert_eq!(plugin.new_cr(console, "higress-system"), expected);
        assert_eq!(BuiltinPlugin::route_plugin(plugin.plugin_name()), Some(plugin));
    }
    // The internal plugins the mapping manages, and ai-statistics, are not route plugins.
    for name in ["ai-proxy", "key-auth", "model-router", "model-mapper", "ai-statistics"] {
        assert_eq!(BuiltinPlugin::route_plugin(name), None, "{name}");
    }
}

#[test]
fn a_third_plugin_is_written_as_the_console_writes_it() {
    // key-rate-limit: category traffic, phase default, priority 10; labelled 1.0.0 with a :2.0.0 image
    // even by console v2.2.4 (its spec.yaml and plugins.properties line did not change).
    let docs = example("route-plugins.yaml");
    let config = json!({"limit_by_header": "x-api-key",
                        "limit_keys": [{"key": "example-key-a", "query_per_second": 10},
                                       {"key": "example-key-b", "query_per_minute": 1000}]});
    let after = apply(
        &route_plugins_event(1, json!({"key-rate-limit": config})),
        &State::new(),
    );
    let cr = object(&after, Kind::WasmPlugin, "key-rate-limit-1.0.0");
    assert_eq!(cr, docs[3]);
    let labels = &cr["metadata"]["labels"];
    assert_eq!(labels["higress.io/wasm-plugin-name"], "key-rate-limit");
    assert_eq!(labels["higress.io/wasm-plugin-version"], "1.0.0");
    assert_eq!(labels["higress.io/wasm-plugin-category"], "traffic");
    assert!(labels.get("higress.io/internal").is_none(), "not an internal CR");
    assert_eq!(cr["spec"]["phase"], "UNSPECIFIED_PHASE");
    assert_eq!(cr["spec"]["priority"], 10);
    assert_eq!(
        cr["spec"]["url"],
        "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-rate-limit:2.0.0"
    );
    assert_eq!(
        list(&cr, "/spec/matchRules"),
        [json!({"config": config, "configDisable": false, "ingress": ["ai-route-chat.internal"]})]
    );
    // The other catalogue CRs are not touched.
    for name in ["ai-token-ratelimit-2.0.1", "ai-quota-2.0.1"] {
        assert!(after.get_named(Kind::WasmPlugin, name).is_none(), "{name}");
    }
}

#[test]
fn a_plugin_the_console_version_does_not_ship_is_refused() {
    // json-converter came with console v2.2.4.
    let event = route_plugins_event(1, json!({"json-converter": {"k": "v"}}));
    let v223 = Settings {
        console: "v2.2.3".parse().unwrap(),
        ..Settings::default()
    };
    let refusal = higress::plan(&event, &State::new(), &v223, chrono::Utc::now()).unwrap_err();
    assert_eq!(refusal.reason, higress_route_worker::reason::Reason::InvalidRoute);
    assert!(refusal.message.contains("json-converter"), "{}", refusal.message);
    // Its parser is not ported: the operator names it to have it written.
    let unvalidated = Settings {
        unvalidated_plugins: vec!["json-converter".into()],
        ..Settings::default()
    };
    let refusal = higress::plan(&event, &State::new(), &Settings::default(), chrono::Utc::now()).unwrap_err();
    assert_eq!(refusal.reason, higress_route_worker::reason::Reason::PluginNotValidated);
    let Decision::Apply(plan) = higress::plan(&event, &State::new(), &unvalidated, chrono::Utc::now()).unwrap() else {
        panic!("unexpected stale")
    };
    let mut after = State::new();
    higress::simulate(&mut after, &plan).unwrap();
    let cr = object(&after, Kind::WasmPlugin, "json-converter-2.0.1");
    assert_eq!(
        cr["spec"]["url"],
        "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/jsonrpc-converter:2.0.1"
    );
}

/// A plugin of `plugin-catalogue.yaml` as the CR the console creates for it (no rules).
fn catalogue_cr(name: &str, entry: &Value, generation: &str) -> Value {
    let release = &entry[generation];
    let version = release["version"].as_str().unwrap();
    let mut annotations = json!({"higress.io/wasm-plugin-title": entry["title"],
                                 "higress.io/wasm-plugin-description": entry["description"]});
    if let Some(icon) = entry.get("icon") {
        annotations["higress.io/wasm-plugin-icon"] = icon.clone();
    }
    json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
           "metadata": {"name": format!("{name}-{version}"), "namespace": "higress-system",
                        "labels": {"higress.io/wasm-plugin-name": name, "higress.io/wasm-plugin-version": version,
                                   "higress.io/wasm-plugin-category": entry["category"],
                                   "higress.io/wasm-plugin-built-in": "true", "higress.io/resource-definer": "higress"},
                        "annotations": annotations},
           "spec": {"defaultConfigDisable": true, "failStrategy": "FAIL_OPEN", "imagePullPolicy": "UNSPECIFIED_POLICY",
                    "phase": entry["phase"], "priority": entry["priority"], "url": release["url"]}})
}

#[test]
fn the_whole_plugin_catalogue_is_what_the_console_ships() {
    let catalogue = example("plugin-catalogue.yaml").remove(0);
    let plugins = catalogue["plugins"].as_object().unwrap();
    let table: Vec<&str> = higress::plugins::CATALOGUE.iter().map(|e| e.name).collect();
    let pinned: Vec<&str> = plugins.keys().map(String::as_str).collect();
    assert_eq!(table, pinned, "the same plugins, in name order");
    let not_route: Vec<&str> = catalogue["notRoutePlugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(higress::plugins::NOT_ROUTE_PLUGINS, not_route.as_slice());
    let route: Vec<&str> = higress::plugins::route_plugins().map(|p| p.plugin_name()).collect();
    let expected: Vec<&str> = pinned.iter().copied().filter(|n| !not_route.contains(n)).collect();
    assert_eq!(route, expected);

    let managed = [
        BuiltinPlugin::AiProxy,
        BuiltinPlugin::KeyAuth,
        BuiltinPlugin::ModelRouter,
        BuiltinPlugin::ModelMapper,
        BuiltinPlugin::AiStatistics,
    ];
    for (name, entry) in plugins {
        let plugin = BuiltinPlugin::route_plugin(name)
            .or_else(|| managed.into_iter().find(|p| p.plugin_name() == name))
            .unwrap_or_else(|| panic!("{name}: not in the table"));
        for (console, generation) in [
            ("v2.2.4", "v2.2.4"),
            ("v2.2.3", "before v2.2.4"),
            ("v2.1.11", "before v2.2.4"),
        ] {
            let console: ConsoleVersion = console.parse().unwrap();
            if entry.get(generation).is_none() {
                assert!(!plugin.shipped_by(console), "{name} {console}");
                continue;
            }
            assert!(plugin.shipped_by(console), "{name} {console}");
            let mut cr = plugin.new_cr(console, "higress-system");
            let expected = catalogue_cr(name, entry, generation);
            if cr["metadata"]["labels"].get("higress.io/internal").is_some() {
                // ai-proxy, key-auth, model-router, model-mapper: the console's internal CR of the plugin.
                assert_eq!(cr["metadata"]["name"], format!("{name}.internal"));
                cr["metadata"]["name"] = expected["metadata"]["name"].clone();
                cr["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("higress.io/internal");
                cr["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("higress.io/comment");
            }
            assert_eq!(cr, expected, "{name} {console}");
        }
    }
}

/// A plugin someone bound to the route in the console, and that no event named, stays through a
/// redeploy that leaves it out: the worker takes a route's rule only from the CRs where a deploy of
/// its own wrote it (the CR records the route), and a retirement takes every rule naming the route.
#[test]
fn a_plugin_bound_in_the_console_stays_through_a_redeploy_and_goes_on_retire() {
    let cors = BuiltinPlugin::route_plugin("cors").unwrap();
    let mut cr = cors.new_cr(ConsoleVersion::default(), "higress-system");
    let console_rule =
        json!({"config": {"allow_origins": ["*"]}, "configDisable": false, "ingress": ["ai-route-chat.internal"]});
    cr["spec"]["matchRules"] = json!([console_rule.clone()]);
    let name = cors.cr_name(ConsoleVersion::default());
    let mut state = State::new();
    state.insert_object(cr);

    let quota = json!({"ai-quota": {"admin_consumer": "admin", "redis": {"service_name": "redis.dns"}}});
    let deployed = apply(&route_plugins_event(1, quota), &state);
    let redeployed = apply(&route_plugins_event(2, json!({})), &deployed);
    assert_eq!(
        list(&object(&redeployed, Kind::WasmPlugin, &name), "/spec/matchRules"),
        [console_rule]
    );
    assert_eq!(
        list(
            &object(&redeployed, Kind::WasmPlugin, "ai-quota-2.0.1"),
            "/spec/matchRules"
        ),
        Vec::<Value>::new(),
        "the rule the worker wrote goes"
    );
    let retired = apply(&retired(json!({"model": "chat", "revision": 3})), &redeployed);
    assert_eq!(
        list(&object(&retired, Kind::WasmPlugin, &name), "/spec/matchRules"),
        Vec::<Value>::new()
    );
}
