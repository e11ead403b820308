//! Rules of spec sections 1–5 that the examples do not show, checked through the public mapping API.

use higress_route_worker::contract;
use higress_route_worker::event::{self, LifecycleEvent};
use higress_route_worker::higress::{self, names, ConsoleVersion, Decision, Kind, Settings, State};
use higress_route_worker::reason::Reason;
use serde_json::{json, Value};

fn event(kind: &str, data: Value) -> LifecycleEvent {
    let event = json!({"specversion": "1.0", "id": "id-1", "source": "tests", "type": kind, "data": data});
    contract::parse(event.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn deploy(data: Value) -> LifecycleEvent {
    event(event::DEPLOYED_TYPE, data)
}

fn retire(data: Value) -> LifecycleEvent {
    event(event::RETIRED_TYPE, data)
}

fn basic(model: &str, revision: u64) -> Value {
    json!({"model": model, "revision": revision, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]}})
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn decide(event: &LifecycleEvent, state: &State, settings: &Settings) -> Result<Decision, higress::Refusal> {
    higress::plan(event, state, settings, now())
}

fn apply_with(event: &LifecycleEvent, state: &State, settings: &Settings) -> (State, Vec<String>) {
    let Decision::Apply(plan) = decide(event, state, settings).unwrap() else {
        panic!("stale")
    };
    let mut after = state.clone();
    let changes = higress::simulate(&mut after, &plan).unwrap();
    let changes = changes
        .into_iter()
        .map(|(key, op)| format!("{} {key}", op.as_str()))
        .collect();
    (after, changes)
}

fn apply(event: &LifecycleEvent, state: &State) -> State {
    apply_with(event, state, &Settings::default()).0
}

/// Refused when planned, or when its edits meet the current objects.
fn refusal(event: &LifecycleEvent, state: &State) -> higress::Refusal {
    match decide(event, state, &Settings::default()) {
        Err(refusal) => refusal,
        Ok(Decision::Apply(plan)) => {
            let mut scratch = state.clone();
            let refusal = higress::simulate(&mut scratch, &plan).expect_err("expected a refusal");
            assert_eq!(&scratch, state, "a refused plan leaves the state as it was");
            refusal
        }
        Ok(stale) => panic!("expected a refusal, got {stale:?}"),
    }
}

/// Objects other writers made in the console: a nacos registry with fields the console's model drops,
/// a provider, a consumer, a route rule, user plugin rules.
fn console_state() -> State {
    let mut state = State::new();
    for object in [
        json!({"apiVersion": "networking.higress.io/v1", "kind": "McpBridge", "metadata": {"name": "default", "namespace": "higress-system", "resourceVersion": "5"},
               "spec": {"registries": [{"domain": "nacos.local", "name": "nacos-prod", "port": 8848, "type": "nacos2", "nacosNamespace": "prod", "nacosRefreshInterval": 30000}],
                        "proxies": [], "unknownTopLevel": {"kept": true}}}),
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-proxy.internal", "namespace": "higress-system", "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-version": "1.0.0"}},
               "spec": {"defaultConfig": {"providers": [{"id": "theirs", "type": "moonshot", "protocol": "openai", "apiTokens": ["x"], "customKey": 1}]},
                        "defaultConfigDisable": false, "url": "oci://mirror/ai-proxy:1.0.0", "vmConfig": {"env": []},
                        "matchRules": [{"config": {"activeProviderId": "theirs"}, "configDisable": false, "service": ["llm-theirs.internal.dns"], "routeType": "HTTP"}]}}),
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "key-auth.internal", "namespace": "higress-system", "labels": {"higress.io/resource-definer": "higress"}},
               "spec": {"defaultConfig": {"global_auth": false, "allow": [], "keys": ["x-higress-dummy-key"],
                                          "consumers": [{"name": "carol", "keys": ["x-key"], "in_header": true, "in_query": false, "credentials": ["c-1"]}]},
                        "defaultConfigDisable": false,
                        "matchRules": [{"config": {"allow": ["carol"]}, "configDisable": false, "ingress": ["their-route"]},
                                       {"config": {"allow": ["carol"]}, "configDisable": false, "domain": ["their.example.com"]}]}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "domain-taken.example.com", "namespace": "higress-system",
               "labels": {"higress.io/config-map-type": "domain", "higress.io/resource-definer": "higress"}},
               "data": {"domain": "taken.example.com", "enableHttps": "force", "cert": "taken-cert"}}),
    ] {
        state.insert_object(object);
    }
    state
}

fn full_deploy(model: &str, revision: u64) -> LifecycleEvent {
    deploy(json!({
        "model": model, "revision": revision,
        "provider": {"name": format!("p-{model}"), "type": "vllm", "url": "http://10.0.0.5:8000/v1"},
        "route": {"domains": ["taken.example.com"], "modelPredicates": [{"matchType": "PRE", "matchValue": "llama"}],
                  "modelMapping": {"*": "llama-3"}},
        "auth": {"consumers": [{"name": format!("c-{model}"), "source": "HEADER", "key": "x-key", "credentials": [format!("secret-{model}")]}]}
    }))
}

#[test]
fn deploy_then_retire_returns_other_writers_entries_unchanged() {
    let before = console_state();
    let deployed = apply(&full_deploy("m1", 1), &before);
    let retired = apply(
        &retire(json!({"model": "m1", "revision": 2, "deleteConsumers": true})),
        &deployed,
    );
    for (kind, name) in [
        (Kind::McpBridge, "default"),
        (Kind::WasmPlugin, "ai-proxy.internal"),
        (Kind::ConfigMap, "domain-taken.example.com"),
    ] {
        assert_eq!(retired.get_named(kind, name), before.get_named(kind, name), "{name}");
    }
    // key-auth: carol's entries are identical; the worker's consumer went with its route.
    assert_eq!(
        retired.get_named(Kind::WasmPlugin, "key-auth.internal"),
        before.get_named(Kind::WasmPlugin, "key-auth.internal")
    );
    for gone in [
        (Kind::Ingress, "ai-route-m1.internal"),
        (Kind::ConfigMap, "ai-route-m1"),
    ] {
        assert!(retired.get_named(gone.0, gone.1).is_none());
    }
}

#[test]
fn existing_domain_settings_win_with_a_warning_and_shape_the_ingress_tls() {
    let state = console_state();
    let event = deploy(
        json!({"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]},
                              "route": {"domains": ["taken.example.com"], "https": {"mode": "off"}}}),
    );
    let Decision::Apply(plan) = decide(&event, &state, &Settings::default()).unwrap() else {
        panic!()
    };
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.contains("taken.example.com") && w.contains("existing settings are kept")));
    let (after, _) = apply_with(&event, &state, &Settings::default());
    assert_eq!(
        after.get_named(Kind::ConfigMap, "domain-taken.example.com"),
        state.get_named(Kind::ConfigMap, "domain-taken.example.com")
    );
    let ingress = after.get_named(Kind::Ingress, "ai-route-m.internal").unwrap();
    assert_eq!(
        ingress["spec"]["tls"],
        json!([{"hosts": ["taken.example.com"], "secretName": "taken-cert"}])
    );
    assert_eq!(ingress["metadata"]["annotations"]["higress.io/ssl-redirect"], "true");
}

#[test]
fn a_new_domain_is_created_with_the_events_https_settings() {
    let event = deploy(
        json!({"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]},
                              "route": {"domains": ["*.new.example.com"], "https": {"mode": "on", "cert": "new-cert"}}}),
    );
    let after = apply(&event, &State::new());
    let domain = after
        .get_named(Kind::ConfigMap, "domain-wildcard.new.example.com")
        .unwrap();
    assert_eq!(
        domain["data"],
        json!({"domain": "*.new.example.com", "enableHttps": "on", "cert": "new-cert"})
    );
    let ingress = after.get_named(Kind::Ingress, "ai-route-m.internal").unwrap();
    assert_eq!(
        ingress["metadata"]["labels"]["higress.io/domain_wildcard.new.example.com"],
        "true"
    );
    assert_eq!(ingress["spec"]["rules"][0]["host"], "*.new.example.com");
    assert_eq!(
        ingress["spec"]["tls"],
        json!([{"hosts": ["*.new.example.com"], "secretName": "new-cert"}])
    );
    assert!(ingress["metadata"]["annotations"]
        .get("higress.io/ssl-redirect")
        .is_none());
}

#[test]
fn mixed_http_and_https_domains_are_rejected() {
    let event = deploy(
        json!({"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]},
                              "route": {"domains": ["taken.example.com", "plain.example.com"]}}),
    );
    let refusal = refusal(&event, &console_state());
    assert_eq!(refusal.reason, Reason::InvalidDomains);
    assert!(refusal.message.contains("same protocol"), "{}", refusal.message);
}

#[test]
fn an_existing_ai_proxy_keeps_its_metadata_url_and_unknown_fields() {
    let before = console_state();
    let after = apply(&full_deploy("m1", 1), &before);
    let ai_proxy = after.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
    let old = before.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
    // Metadata as it was, plus the record of which routes of ours use which provider.
    let mut metadata = old["metadata"].clone();
    metadata["annotations"] = json!({names::ANNOTATION_PROVIDER_USERS: r#"{"p-m1":["m1@1"]}"#});
    assert_eq!(ai_proxy["metadata"], metadata);
    assert_eq!(ai_proxy["spec"]["url"], "oci://mirror/ai-proxy:1.0.0");
    assert_eq!(ai_proxy["spec"]["vmConfig"], old["spec"]["vmConfig"]);
    assert_eq!(ai_proxy["spec"]["matchRules"][1], old["spec"]["matchRules"][0]);
    let ids: Vec<&str> = ai_proxy["spec"]["defaultConfig"]["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["theirs", "p-m1"]);
    // Static registry for an IPv4 endpoint, and its service rule before "theirs" in console order.
    assert_eq!(
        ai_proxy["spec"]["matchRules"][0]["service"],
        json!(["llm-p-m1.internal.static"])
    );
    let bridge = after.get_named(Kind::McpBridge, "default").unwrap();
    assert_eq!(bridge["spec"]["unknownTopLevel"], json!({"kept": true}));
    assert_eq!(
        bridge["spec"]["registries"][1],
        json!({"domain": "10.0.0.5:8000", "name": "llm-p-m1.internal", "port": 80, "protocol": "http", "type": "static"})
    );
}

#[test]
fn model_predicates_mapping_and_header_consumers_reach_their_plugins() {
    let after = apply(&full_deploy("m1", 1), &console_state());
    let ingress = after.get_named(Kind::Ingress, "ai-route-m1.internal").unwrap();
    assert_eq!(
        ingress["metadata"]["annotations"]["higress.io/prefix-match-header-x-higress-llm-model"],
        "llama"
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["higress.io/destination"],
        "llm-p-m1.internal.static:80"
    );
    let router = after.get_named(Kind::WasmPlugin, "model-router.internal").unwrap();
    assert_eq!(
        router["spec"]["defaultConfig"],
        json!({"modelToHeader": "x-higress-llm-model"})
    );
    let mapper = after.get_named(Kind::WasmPlugin, "model-mapper.internal").unwrap();
    assert_eq!(
        mapper["spec"]["matchRules"],
        json!([{"config": {"modelMapping": {"*": "llama-3"}}, "configDisable": false,
        "ingress": ["ai-route-m1.internal"], "service": ["llm-p-m1.internal.static"]}])
    );
    let key_auth = after.get_named(Kind::WasmPlugin, "key-auth.internal").unwrap();
    let consumers = key_auth["spec"]["defaultConfig"]["consumers"].as_array().unwrap();
    assert_eq!(
        consumers[1],
        json!({"name": "c-m1", "keys": ["x-key"], "in_header": true, "in_query": false, "credentials": ["secret-m1"]})
    );
    let rules = key_auth["spec"]["matchRules"].as_array().unwrap();
    assert_eq!(
        rules[0],
        json!({"config": {"allow": ["c-m1"]}, "configDisable": false, "ingress": ["ai-route-m1.internal"]})
    );
}

#[test]
fn a_mapping_removed_from_the_route_removes_its_model_mapper_rule() {
    let with_mapping = apply(&full_deploy("m1", 1), &console_state());
    let without = deploy(
        json!({"model": "m1", "revision": 2, "provider": {"name": "p-m1", "type": "vllm", "url": "http://10.0.0.5:8000/v1"},
                                "route": {"domains": ["taken.example.com"]}}),
    );
    let after = apply(&without, &with_mapping);
    let mapper = after.get_named(Kind::WasmPlugin, "model-mapper.internal").unwrap();
    assert_eq!(mapper["spec"]["matchRules"], json!([]));
}

#[test]
fn applying_the_same_event_twice_changes_nothing_the_second_time() {
    let event = full_deploy("m1", 1);
    let (once, mut first) = apply_with(&event, &console_state(), &Settings::default());
    // The console's shared objects gain the route's entries; what only this route uses is created.
    // (Sorted: the order of writes is `write_order_never_exposes_a_half_built_route`'s subject.)
    first.sort();
    let fence = format!("created ConfigMap/{}", names::fence("m1"));
    assert_eq!(
        first,
        [
            "created ConfigMap/ai-route-m1",
            fence.as_str(),
            "created Ingress/ai-route-m1.internal",
            "created WasmPlugin/ai-statistics-2.0.1",
            "created WasmPlugin/model-mapper.internal",
            "created WasmPlugin/model-router.internal",
            "updated McpBridge/default",
            "updated WasmPlugin/ai-proxy.internal",
            "updated WasmPlugin/key-auth.internal",
        ]
    );
    let (_, second) = apply_with(&event, &once, &Settings::default());
    assert_eq!(second, Vec::<String>::new());
}

#[test]
fn unknown_upstream_provider_is_rejected() {
    let event = deploy(
        json!({"model": "m", "revision": 1, "provider": {"name": "a", "type": "deepseek", "apiTokens": ["sk-d"]},
                              "route": {"upstreams": [{"provider": "a", "weight": 50}, {"provider": "ghost", "weight": 50}]}}),
    );
    let refusal = refusal(&event, &State::new());
    assert_eq!(refusal.reason, Reason::UnknownProvider);
    assert!(refusal.message.contains("\"ghost\""));
    // A provider already in ai-proxy (here: "theirs", with its registry) is known.
    let mut state = console_state();
    let mut bridge = state.get_named(Kind::McpBridge, "default").unwrap().clone();
    bridge["spec"]["registries"].as_array_mut().unwrap().push(json!({"domain": "api.moonshot.cn", "name": "llm-theirs.internal", "port": 443, "protocol": "https", "type": "dns"}));
    state.insert_object(bridge);
    let known = deploy(
        json!({"model": "m", "revision": 1, "provider": {"name": "a", "type": "deepseek", "apiTokens": ["sk-d"]},
                              "route": {"upstreams": [{"provider": "a", "weight": 50}, {"provider": "theirs", "weight": 50}]}}),
    );
    let after = apply(&known, &state);
    assert_eq!(
        after.get_named(Kind::Ingress, "ai-route-m.internal").unwrap()["metadata"]["annotations"]
            ["higress.io/destination"],
        "50% llm-a.internal.dns:443\n50% llm-theirs.internal.dns:443"
    );
}

#[test]
fn a_credential_used_by_another_consumer_is_rejected_without_showing_it() {
    let event = deploy(
        json!({"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]},
                              "auth": {"consumers": [{"name": "mallory", "source": "HEADER", "key": "x-key", "credentials": ["c-1"]}]}}),
    );
    let refusal = refusal(&event, &console_state());
    assert_eq!(refusal.reason, Reason::EntryTaken);
    assert!(refusal.message.contains("carol"), "{}", refusal.message);
    assert!(!refusal.message.contains("c-1"));
}

/// A Secret the operator made readable to events.
fn secret(name: &str, key: &str, value: &str) -> Value {
    use base64::Engine;
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": "higress-system", "labels": {names::LABEL_READABLE: "true"}},
           "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}})
}

#[test]
fn a_secret_the_operator_did_not_make_readable_is_refused_without_reading_it() {
    let event = deploy(json!({"model": "m", "revision": 1,
        "provider": {"type": "openai", "url": "https://attacker.example.com/v1",
                     "apiTokensSecretRef": {"name": "higress-console", "key": "adminPassword"}}}));
    let mut state = State::new();
    let mut console = secret("higress-console", "adminPassword", "admin-password-value");
    console["metadata"]["labels"] = json!({});
    state.insert_object(console);
    let refusal = refusal(&event, &state);
    assert_eq!(refusal.reason, Reason::SecretNotAllowed);
    assert!(refusal.message.contains("higress-console"), "{}", refusal.message);
    assert!(!refusal.message.contains("admin-password-value"));
    // Named by the operator instead of labelled: allowed.
    let settings = Settings {
        readable_secrets: vec!["higress-console".into()],
        ..Settings::default()
    };
    let plan = higress::plan(&event, &state, &settings, chrono::Utc::now());
    assert!(matches!(plan, Ok(Decision::Apply(_))), "{plan:?}");
}

#[test]
fn secret_references_are_resolved_and_a_missing_secret_is_named_not_shown() {
    let event = deploy(json!({"model": "m", "revision": 1,
        "provider": {"type": "deepseek", "apiTokensSecretRef": {"name": "llm-keys", "key": "deepseek"}},
        "auth": {"consumers": [{"name": "dora", "source": "BEARER", "credentialsSecretRef": {"name": "consumer-keys", "key": "dora"}}]}}));
    let refusal = refusal(&event, &State::new());
    assert_eq!(refusal.reason, Reason::SecretNotFound);
    assert!(refusal.message.contains("llm-keys"));
    let mut state = State::new();
    state.insert_object(secret("llm-keys", "deepseek", "sk-from-secret\n"));
    state.insert_object(secret("consumer-keys", "dora", "dora-key"));
    let after = apply(&event, &state);
    let ai_proxy = after.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
    assert_eq!(
        ai_proxy["spec"]["defaultConfig"]["providers"][0]["apiTokens"],
        json!(["sk-from-secret"])
    );
    let key_auth = after.get_named(Kind::WasmPlugin, "key-auth.internal").unwrap();
    assert_eq!(
        key_auth["spec"]["defaultConfig"]["consumers"][0]["credentials"],
        json!(["Bearer dora-key"])
    );
}

/// A value read from a Secret must be what an inline token or credential must be: a certificate, an
/// empty key or a value with inner spaces would break the plugin's config or the request's header.
#[test]
fn a_secret_value_that_is_no_token_is_refused_without_being_shown() {
    let event = deploy(json!({"model": "m", "revision": 1,
        "provider": {"type": "deepseek", "apiTokensSecretRef": {"name": "llm-keys", "key": "k"}}}));
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgI\n-----END CERTIFICATE-----\n";
    let long = "x".repeat(4097);
    for value in ["", "   \n", pem, "two words", "bidi\u{202e}txet", long.as_str()] {
        let mut state = State::new();
        state.insert_object(secret("llm-keys", "k", value));
        let refusal = refusal(&event, &state);
        assert_eq!(refusal.reason, Reason::SecretInvalid, "{value:?}: {}", refusal.message);
        assert!(refusal.message.contains("llm-keys"), "{}", refusal.message);
        if !value.trim().is_empty() {
            assert!(!refusal.message.contains(value.trim()), "{}", refusal.message);
        }
    }
    let mut state = State::new();
    state.insert_object(secret("llm-keys", "k", &"x".repeat(4096)));
    assert!(matches!(
        higress::plan(&event, &state, &Settings::default(), chrono::Utc::now()),
        Ok(Decision::Apply(_))
    ));
}

#[test]
fn debug_output_of_plans_and_states_never_shows_secrets() {
    let event = full_deploy("m1", 1);
    let state = apply(&event, &State::new());
    let Decision::Apply(plan) = decide(&event, &State::new(), &Settings::default()).unwrap() else {
        panic!()
    };
    for text in [format!("{plan:?}"), format!("{state:?}"), format!("{event:?}")] {
        assert!(!text.contains("secret-m1"), "{text}");
    }
}

#[test]
fn older_revisions_are_stale_and_a_retired_model_stays_retired() {
    let v2 = apply(&deploy(basic("m", 2)), &State::new());
    assert_eq!(
        decide(&deploy(basic("m", 1)), &v2, &Settings::default()).unwrap(),
        Decision::Stale { seen: 2 }
    );
    let retired = apply(&retire(json!({"model": "m", "revision": 3})), &v2);
    assert!(retired.get_named(Kind::ConfigMap, "ai-route-m").is_none());
    for late in [2, 3] {
        assert_eq!(
            decide(&deploy(basic("m", late)), &retired, &Settings::default()).unwrap(),
            Decision::Stale { seen: 3 }
        );
    }
    assert_eq!(
        decide(
            &retire(json!({"model": "m", "revision": 1})),
            &retired,
            &Settings::default()
        )
        .unwrap(),
        Decision::Stale { seen: 3 }
    );
    // A newer deploy brings it back; its fence entry is a deploy again.
    let back = apply(&deploy(basic("m", 4)), &retired);
    assert!(back.get_named(Kind::ConfigMap, "ai-route-m").is_some());
    let entry: Value = serde_json::from_str(
        back.get_named(Kind::ConfigMap, &names::fence("m")).unwrap()["data"]["m"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(entry["revision"], 4);
    assert!(entry.get("retiredAt").is_none(), "{entry}");
}

#[test]
fn a_provider_still_used_by_another_route_is_kept_on_retire() {
    let shared = |model: &str| {
        deploy(
            json!({"model": model, "revision": 1, "provider": {"name": "shared", "type": "deepseek", "apiTokens": ["sk-d"]}}),
        )
    };
    let state = apply(&shared("b"), &apply(&shared("a"), &State::new()));
    let Decision::Apply(plan) = decide(
        &retire(json!({"model": "a", "revision": 2})),
        &state,
        &Settings::default(),
    )
    .unwrap() else {
        panic!()
    };
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.contains("provider shared is kept: route b still uses it")));
    let after = apply(&retire(json!({"model": "a", "revision": 2})), &state);
    let bridge = |state: &State| state.get_named(Kind::McpBridge, "default").unwrap().clone();
    assert_eq!(bridge(&after)["spec"], bridge(&state)["spec"]);
    assert_eq!(
        bridge(&after)["metadata"]["annotations"][names::ANNOTATION_PROVIDER_USERS],
        r#"{"shared":["b@1"]}"#,
        "a is no longer a user"
    );
    let last = apply(&retire(json!({"model": "b", "revision": 2})), &after);
    let ai_proxy = last.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
    assert_eq!(ai_proxy["spec"]["defaultConfig"], json!({"providers": []}));
    assert_eq!(ai_proxy["spec"]["defaultConfigDisable"], true);
    assert_eq!(
        last.get_named(Kind::McpBridge, "default").unwrap()["spec"]["registries"],
        json!([])
    );
}

#[test]
fn retire_keeps_the_provider_and_consumers_when_asked_to() {
    let state = apply(&full_deploy("m1", 1), &State::new());
    let after = apply(
        &retire(json!({"model": "m1", "revision": 2, "deleteProvider": false})),
        &state,
    );
    assert_eq!(
        after.get_named(Kind::McpBridge, "default").unwrap()["spec"],
        state.get_named(Kind::McpBridge, "default").unwrap()["spec"]
    );
    let key_auth = after.get_named(Kind::WasmPlugin, "key-auth.internal").unwrap();
    assert_eq!(key_auth["spec"]["defaultConfig"]["consumers"][0]["name"], "c-m1");
    assert_eq!(key_auth["spec"]["matchRules"], json!([]));
}

/// Where a step for the object stands in a plan's write order.
fn position(plan: &higress::Plan, kind: Kind, name: &str) -> usize {
    plan.steps
        .iter()
        .position(|s| s.key.kind == kind && s.key.name == name)
        .unwrap()
}

#[test]
fn write_order_never_exposes_a_half_built_route() {
    let Decision::Apply(plan) = decide(&full_deploy("m1", 1), &State::new(), &Settings::default()).unwrap() else {
        panic!()
    };
    let ingress = position(&plan, Kind::Ingress, "ai-route-m1.internal");
    for (kind, name) in [
        (Kind::McpBridge, "default"),
        (Kind::WasmPlugin, "ai-proxy.internal"),
        (Kind::WasmPlugin, "key-auth.internal"),
        (Kind::WasmPlugin, "model-mapper.internal"),
        (Kind::ConfigMap, "domain-taken.example.com"),
    ] {
        assert!(position(&plan, kind, name) < ingress, "{name} must precede the Ingress");
    }
    assert!(ingress < position(&plan, Kind::ConfigMap, "ai-route-m1"));

    let state = apply(&full_deploy("m1", 1), &State::new());
    let retire_event = retire(json!({"model": "m1", "revision": 2}));
    let Decision::Apply(plan) = decide(&retire_event, &state, &Settings::default()).unwrap() else {
        panic!()
    };
    let ingress = position(&plan, Kind::Ingress, "ai-route-m1.internal");
    for (kind, name) in [
        (Kind::WasmPlugin, "key-auth.internal"),
        (Kind::WasmPlugin, "ai-proxy.internal"),
        (Kind::McpBridge, "default"),
    ] {
        assert!(ingress < position(&plan, kind, name), "the Ingress goes before {name}");
    }
    assert!(
        position(&plan, Kind::ConfigMap, &names::fence("m1")) < ingress,
        "the fence is written first"
    );
}

#[test]
fn an_older_console_gets_its_own_plugin_labels_and_ai_statistics_cr() {
    let settings = Settings {
        console: "v2.2.3".parse::<ConsoleVersion>().unwrap(),
        ..Settings::default()
    };
    let (after, changes) = apply_with(&deploy(basic("m", 1)), &State::new(), &settings);
    assert!(
        changes.contains(&"created WasmPlugin/ai-statistics-1.0.0".to_string()),
        "{changes:?}"
    );
    let ai_proxy = after.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
    assert_eq!(
        ai_proxy["metadata"]["labels"]["higress.io/wasm-plugin-version"],
        "1.0.0"
    );
}

#[test]
fn ai_statistics_is_not_bound_twice_nor_when_turned_off() {
    let state = apply(&deploy(basic("m", 1)), &State::new());
    let mut stats = state
        .get_named(Kind::WasmPlugin, "ai-statistics-2.0.1")
        .unwrap()
        .clone();
    stats["spec"]["matchRules"][0]["config"] = json!({"custom": "user edit"});
    let mut edited = state.clone();
    edited.insert_object(stats.clone());
    let after = apply(&deploy(basic("m", 2)), &edited);
    let redeployed = after.get_named(Kind::WasmPlugin, "ai-statistics-2.0.1").unwrap();
    // The user's rule is left as it is; only the route's revision record moves on.
    assert_eq!(redeployed["spec"], stats["spec"]);
    assert_eq!(
        redeployed["metadata"]["annotations"][names::ANNOTATION_ROUTE_REVISIONS],
        r#"{"m":2}"#
    );

    let off = Settings {
        ai_statistics: false,
        ..Settings::default()
    };
    let (after, _) = apply_with(&deploy(basic("m", 1)), &State::new(), &off);
    assert!(after
        .of_kind(Kind::WasmPlugin)
        .all(|(name, _)| !name.starts_with("ai-statistics")));
}

#[test]
fn route_changes_report_updates_and_deletions() {
    let state = apply(&deploy(basic("m", 1)), &State::new());
    let mut changed = basic("m", 2);
    changed["route"] = json!({"path": "/v2"});
    let (_, changes) = apply_with(&deploy(changed), &state, &Settings::default());
    // The fence records the new revision first; the provider's users and the objects holding the
    // route's rules record the route at its new revision, so an older retirement landing late
    // cannot take the provider or the route's rules from under it.
    assert_eq!(
        changes,
        [
            &format!("updated ConfigMap/{}", names::fence("m")),
            "updated McpBridge/default",
            "updated WasmPlugin/ai-proxy.internal",
            "updated WasmPlugin/key-auth.internal",
            "updated WasmPlugin/ai-statistics-2.0.1",
            "updated Ingress/ai-route-m.internal",
            "updated ConfigMap/ai-route-m"
        ]
    );
    let (_, changes) = apply_with(
        &retire(json!({"model": "m", "revision": 3})),
        &state,
        &Settings::default(),
    );
    assert!(changes.contains(&"deleted Ingress/ai-route-m.internal".to_string()));
    assert!(changes.contains(&"deleted ConfigMap/ai-route-m".to_string()));
    assert!(changes.contains(&format!("updated ConfigMap/{}", names::fence("m"))));
}

/// An empty cluster after `event`'s deploy stopped before its Ingress and its route ConfigMap: only
/// its fence entry knows what it wrote.
fn cut_short_before_its_route(event: &LifecycleEvent) -> State {
    let Decision::Apply(mut cut) = decide(event, &State::new(), &Settings::default()).unwrap() else {
        panic!("a deploy on an empty cluster applies")
    };
    cut.steps
        .retain(|s| s.key.kind != Kind::Ingress && !names::is_route_config_map(&s.key.name));
    let mut state = State::new();
    higress::simulate(&mut state, &cut).unwrap();
    state
}

#[test]
fn a_retirement_releases_what_a_deploy_cut_short_before_its_route_record_had_written() {
    let event = deploy(json!({"model": "m", "revision": 1,
        "provider": {"name": "p", "type": "openai", "url": "https://p.example.com/v1", "apiTokens": ["sk-p"]},
        "auth": {"consumers": [{"name": "c", "source": "BEARER", "credentials": ["key-c"]}]}}));
    let state = cut_short_before_its_route(&event);
    let ai_proxy = |state: &State| state.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap().clone();
    assert_eq!(ai_proxy(&state)["spec"]["defaultConfig"]["providers"][0]["id"], "p");

    let after = apply(
        &retire(json!({"model": "m", "revision": 2, "deleteConsumers": true})),
        &state,
    );
    assert_eq!(ai_proxy(&after)["spec"]["defaultConfig"]["providers"], json!([]));
    assert!(
        ai_proxy(&after)["metadata"]["annotations"]
            .get(names::ANNOTATION_PROVIDER_USERS)
            .is_none(),
        "no user left"
    );
    let bridge = after.get_named(Kind::McpBridge, "default").unwrap();
    assert_eq!(bridge["spec"]["registries"], json!([]));
    let key_auth = after.get_named(Kind::WasmPlugin, "key-auth.internal").unwrap();
    assert_eq!(key_auth["spec"]["defaultConfig"]["consumers"], json!([]));
}

/// A deploy cut short after its shared objects (its Ingress refused, say), then a redeploy with another
/// provider: the first provider's user record goes, as the retirement above releases it, so the provider
/// can be removed once nothing uses it. (Before, only the route ConfigMap's providers were let go, and the
/// record stayed for good: no retirement of any route could ever remove that provider.) A provider a
/// redeploy stops using is let go, not deleted, as the console leaves it.
#[test]
fn a_redeploy_releases_what_a_deploy_cut_short_before_its_route_record_had_written() {
    let first = deploy(json!({"model": "m", "revision": 1,
        "provider": {"name": "a", "type": "openai", "url": "https://a.example.com/v1", "apiTokens": ["sk-a"]}}));
    let state = cut_short_before_its_route(&first);

    let after = apply(
        &deploy(json!({"model": "m", "revision": 2,
            "provider": {"name": "b", "type": "openai", "url": "https://b.example.com/v1", "apiTokens": ["sk-b"]}})),
        &state,
    );
    for (kind, name) in [(Kind::WasmPlugin, "ai-proxy.internal"), (Kind::McpBridge, "default")] {
        let users = after.get_named(kind, name).unwrap()["metadata"]["annotations"][names::ANNOTATION_PROVIDER_USERS]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!users.contains("\"a\""), "{name}: {users}");
        assert!(users.contains("\"b\""), "{name}: {users}");
    }
    // Another route that takes up `a` and is retired with its provider removes it: no one else uses it.
    let n = apply(
        &deploy(json!({"model": "n", "revision": 1,
            "provider": {"name": "a", "type": "openai", "url": "https://a.example.com/v1", "apiTokens": ["sk-a"]}})),
        &after,
    );
    let retired = apply(
        &retire(json!({"model": "n", "revision": 2, "deleteProvider": true})),
        &n,
    );
    let ids: Vec<&str> = retired.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap()["spec"]["defaultConfig"]
        ["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b"]);
}

/// An older deploy that passed the fence before a retirement landed wrote its route's Ingress after
/// the retirement (and its settle did not get to remove it). Any later delivery of that deploy is
/// stale, and applies the retirement again: the route does not stay live, nor open.
#[test]
fn a_stale_deploy_removes_what_its_models_retirement_left() {
    let settings = Settings::default();
    let full = || {
        deploy(json!({"model": "m", "revision": 1,
        "provider": {"type": "deepseek", "apiTokens": ["sk-d"]},
        "auth": {"consumers": [{"name": "c", "source": "BEARER", "credentials": ["key-c"]}]}}))
    };
    let deployed = apply(&full(), &State::new());
    let ingress = deployed
        .get_named(Kind::Ingress, "ai-route-m.internal")
        .unwrap()
        .clone();
    let mut left = apply(&retire(json!({"model": "m", "revision": 2})), &deployed);
    left.insert_object(ingress);

    let Decision::Apply(plan) = decide(&full(), &left, &settings).unwrap() else {
        panic!("the retirement is applied again")
    };
    assert_eq!(plan.stale, Some(2));
    assert!(
        plan.warnings.iter().any(|w| w.contains("retired at revision 2")),
        "{:?}",
        plan.warnings
    );
    let (after, changes) = apply_with(&full(), &left, &settings);
    assert_eq!(changes, ["deleted Ingress/ai-route-m.internal"]);
    assert!(after.get_named(Kind::Ingress, "ai-route-m.internal").is_none());
    // Nothing left: an ordinary stale deploy, nothing written.
    assert_eq!(decide(&full(), &after, &settings).unwrap(), Decision::Stale { seen: 2 });
}

#[test]
fn a_console_save_of_the_route_does_not_erase_its_fence() {
    let v2 = apply(&deploy(basic("m", 2)), &State::new());
    // The console saves an AI route by rewriting its ConfigMap whole (`aiRoute2ConfigMap`): its own
    // labels and data, nothing else of what was there.
    let mut saved = v2.clone();
    let config_map = saved.get_named(Kind::ConfigMap, "ai-route-m").unwrap().clone();
    let rewritten = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ai-route-m", "namespace": "higress-system", "labels": config_map["metadata"]["labels"]},
        "data": config_map["data"]});
    saved.insert_object(rewritten);
    assert_eq!(
        decide(&deploy(basic("m", 1)), &saved, &Settings::default()).unwrap(),
        Decision::Stale { seen: 2 },
        "the fence lives in a ConfigMap of ours, not in the route's"
    );
}

/// Two engines plan from the same read: a newer deploy (revision 3) and an older retirement
/// (revision 2) of the same route, the retirement's edits landing last. The engine re-applies an
/// edit to the object as it is when written (its 409 re-read), and each plugin object records the
/// revision that last wrote the route's rules: so the deploy writes those objects even with its
/// rules already in place, and the older retirement then leaves them (before, the route stayed
/// live without its key-auth rule: open to anyone).
#[test]
fn an_older_retirement_landing_after_a_newer_deploy_leaves_the_routes_rules() {
    let settings = Settings::default();
    let read = apply(&full_deploy("m", 1), &State::new());
    let Ok(Decision::Apply(newer)) = decide(&full_deploy("m", 3), &read, &settings) else {
        panic!("the deploy applies")
    };
    let Ok(Decision::Apply(older)) = decide(&retire(json!({"model": "m", "revision": 2})), &read, &settings) else {
        panic!("the retirement applies")
    };
    let plugins = ["key-auth.internal", "ai-statistics-2.0.1", "model-mapper.internal"];
    let mut state = read.clone();
    let changed: Vec<String> = higress::simulate(&mut state, &newer)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key.name)
        .collect();
    for plugin in plugins {
        assert!(
            changed.iter().any(|c| c == plugin),
            "the deploy writes {plugin}: {changed:?}"
        );
    }
    let shared_edits = higress::Plan {
        steps: older
            .steps
            .into_iter()
            .filter(|s| s.key.kind == Kind::WasmPlugin)
            .collect(),
        ..higress::Plan::default()
    };
    assert!(!shared_edits.steps.is_empty());
    higress::simulate(&mut state, &shared_edits).unwrap();
    for plugin in plugins {
        assert_eq!(
            state.get_named(Kind::WasmPlugin, plugin).map(|p| &p["spec"]),
            read.get_named(Kind::WasmPlugin, plugin).map(|p| &p["spec"]),
            "{plugin} keeps the route's rules"
        );
    }

    // Landing in the other order, the retirement removes the rules, and the deploy puts them back.
    let mut state = read.clone();
    higress::simulate(&mut state, &shared_edits).unwrap();
    let rules_named = |state: &State, plugin: &str| {
        state.get_named(Kind::WasmPlugin, plugin).map_or(0, |p| {
            p["spec"]["matchRules"].as_array().map_or(0, |rules| {
                rules
                    .iter()
                    .filter(|r| r["ingress"] == json!(["ai-route-m.internal"]))
                    .count()
            })
        })
    };
    assert_eq!(rules_named(&state, "key-auth.internal"), 0);
    higress::simulate(&mut state, &newer).unwrap();
    for plugin in plugins {
        assert_eq!(rules_named(&state, plugin), 1, "{plugin}");
    }
}
