//! What the gateway accepts, through the engine against the in-memory API server: an event that
//! would leave a plugin CR its plugin's parser refuses is `rejected` (`gateway-refuses`) before any
//! write, and its batch's other events apply; problems that were there before block nothing but are
//! named; a route plugin whose parser is not ported is refused unless the operator names it; and,
//! for random valid events, whatever the planner writes passes `gateway::check`.

use higress_route_worker::cluster::{self, batch, Engine, EngineConfig};
use higress_route_worker::event::{self, LifecycleEvent};
use higress_route_worker::gateway;
use higress_route_worker::higress::{Kind, Settings, State};
use higress_route_worker::metrics::Metrics;
use higress_route_worker::result::{Outcome, RouteResult};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;

#[path = "support/cluster.rs"]
mod support;

use support::{parse, quick_retries, Cluster, NS};

const RATELIMIT: &str = "ai-token-ratelimit-2.0.1";

fn valid_ratelimit(rule: &str) -> Value {
    json!({"rule_name": rule,
           "rule_items": [{"limit_by_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 100}]}],
           "redis": {"service_name": "redis.dns", "password": "redis-secret-1"}})
}

fn deploy_with(model: &str, plugins: Value) -> LifecycleEvent {
    parse(
        event::DEPLOYED_TYPE,
        json!({
            "model": model, "revision": 1,
            "provider": {"name": format!("p-{model}"), "type": "openai", "url": format!("https://{model}.example.com/v1"),
                         "apiTokens": [format!("sk-{model}")]},
            "route": {"domains": ["api.example.com"], "path": format!("/{model}"), "plugins": plugins},
            "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [format!("key-{model}")]}]}
        }),
    )
}

fn error_of(result: &RouteResult) -> (&str, &str) {
    let error = result.error.as_ref().unwrap_or_else(|| panic!("no error: {result:?}"));
    (error.reason.as_str(), error.message.as_str())
}

fn names_in(cluster: &Cluster, resource: &str, name: &str, pointer: &str, key: &str) -> Vec<String> {
    cluster
        .get(resource, name)
        .and_then(|o| o.pointer(pointer).and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry[key].as_str().map(str::to_string))
        .collect()
}

async fn engine_with_metrics(cluster: &Cluster, settings: Settings) -> (Engine, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let client = cluster::connect(Some(&cluster.kubeconfig)).await.unwrap();
    let config = EngineConfig {
        retry: quick_retries(),
        settings,
        ..EngineConfig::default()
    };
    (Engine::new(client, config, metrics.clone()), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_gateway_would_refuse_writes_nothing_and_its_batch_applies_the_rest() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let mut broken = valid_ratelimit("m2");
    broken.as_object_mut().unwrap().remove("rule_name");
    let events = [
        deploy_with("m1", json!({"ai-token-ratelimit": valid_ratelimit("m1")})),
        deploy_with("m2", json!({"ai-token-ratelimit": broken})),
        deploy_with("m3", json!({"ai-token-ratelimit": valid_ratelimit("m3")})),
    ];
    let results = engine.apply_batch(&events).await;
    assert_eq!(results[0].outcome, Outcome::Applied, "{:?}", results[0]);
    assert_eq!(results[2].outcome, Outcome::Applied, "{:?}", results[2]);
    assert_eq!(results[1].outcome, Outcome::Rejected, "{:?}", results[1]);
    assert!(
        results[1].changes.is_empty(),
        "rejected means nothing written: {:?}",
        results[1]
    );
    let (reason, message) = error_of(&results[1]);
    assert_eq!(reason, "gateway-refuses");
    // The object, the entry and the rule; never a secret.
    for part in [
        "WasmPlugin/ai-token-ratelimit-2.0.1",
        "matchRule ingress ai-route-m2.internal",
        "rule_name",
        "plugins/wasm-go/extensions/ai-token-ratelimit/",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(
        !message.contains("redis-secret-1") && !message.contains("sk-m2"),
        "{message}"
    );

    // Nothing of m2 anywhere; m1 and m3 complete.
    assert!(cluster.get("ingresses", "ai-route-m2.internal").is_none());
    assert!(cluster.get("configmaps", "ai-route-m2").is_none());
    let rules: Vec<String> = cluster.get("wasmplugins", RATELIMIT).unwrap()["spec"]["matchRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["ingress"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, ["ai-route-m1.internal", "ai-route-m3.internal"]);
    let providers = names_in(
        &cluster,
        "wasmplugins",
        "ai-proxy.internal",
        "/spec/defaultConfig/providers",
        "id",
    );
    assert_eq!(providers, ["p-m1", "p-m3"]);
    let consumers = names_in(
        &cluster,
        "wasmplugins",
        "key-auth.internal",
        "/spec/defaultConfig/consumers",
        "name",
    );
    assert_eq!(consumers, ["c-m1", "c-m3"]);
    for object in cluster.sim.list("wasmplugins", NS) {
        assert_eq!(gateway::check(&object), [], "{}", object["metadata"]["name"]);
    }
}

/// A CR another writer broke: their rule has no `rule_name`.
fn their_broken_ratelimit() -> Value {
    json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
    "metadata": {"name": RATELIMIT, "namespace": NS,
                 "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": "ai-token-ratelimit",
                            "higress.io/wasm-plugin-version": "2.0.1", "higress.io/wasm-plugin-built-in": "true",
                            "higress.io/wasm-plugin-category": "ai"}},
    "spec": {"defaultConfigDisable": true, "failStrategy": "FAIL_OPEN", "phase": "UNSPECIFIED_PHASE", "priority": 600,
             "url": "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/ai-token-ratelimit:2.0.1",
             "matchRules": [{"config": {"redis": {"service_name": "redis.dns"}}, "configDisable": false,
                             "ingress": ["ai-route-theirs.internal"]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_there_before_block_nothing_but_are_named_and_counted() {
    let cluster = Cluster::start().await;
    cluster.sim.insert(their_broken_ratelimit()).unwrap();
    let (engine, metrics) = engine_with_metrics(&cluster, Settings::default()).await;
    let result = engine
        .apply(&deploy_with("m1", json!({"ai-token-ratelimit": valid_ratelimit("m1")})))
        .await;
    assert_eq!(result.outcome, Outcome::Applied, "{result:?}");
    let warning = result
        .warnings
        .iter()
        .find(|w| w.contains("problems that were there before"))
        .unwrap_or_else(|| panic!("no warning: {result:?}"));
    assert!(
        warning.contains("WasmPlugin/ai-token-ratelimit-2.0.1")
            && warning.contains("matchRule ingress ai-route-theirs.internal")
            && warning.contains("rule_name"),
        "{warning}"
    );
    // Their rule breaks two rules of the parser: no rule_name, and neither global_threshold nor rule_items.
    let exposition = metrics.render();
    assert!(
        exposition.contains(r#"higress_route_worker_gateway_problems{object="WasmPlugin/ai-token-ratelimit-2.0.1"} 2"#),
        "{exposition}"
    );
    // Our rule is in, theirs untouched.
    let rules = cluster.get("wasmplugins", RATELIMIT).unwrap()["spec"]["matchRules"].clone();
    let theirs = &their_broken_ratelimit()["spec"]["matchRules"][0];
    assert_eq!(rules.as_array().unwrap().len(), 2, "{rules}");
    assert!(rules.as_array().unwrap().contains(theirs), "{rules}");
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ingress"] == json!(["ai-route-m1.internal"])),
        "{rules}"
    );
    // A result not touching that CR carries no such warning.
    let other = engine.apply(&deploy_with("m2", json!({}))).await;
    assert_eq!(other.outcome, Outcome::Applied, "{other:?}");
    assert!(
        other
            .warnings
            .iter()
            .all(|w| !w.contains("problems that were there before")),
        "{other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_parser_is_not_ported_is_refused_unless_the_operator_names_it() {
    let cluster = Cluster::start().await;
    let unported = "ai-prompt-decorator";
    assert!(!gateway::is_ported(unported), "pick a plugin that is not ported");
    let event = deploy_with(
        "m1",
        json!({unported: {"prepend": [{"role": "system", "content": "be brief"}]}}),
    );
    let refused = cluster.engine().await.apply(&event).await;
    assert_eq!(refused.outcome, Outcome::Rejected, "{refused:?}");
    let (reason, message) = error_of(&refused);
    assert_eq!(reason, "plugin-not-validated");
    assert!(
        message.contains("--unvalidated-plugin ai-prompt-decorator"),
        "{message}"
    );
    assert!(cluster.get("ingresses", "ai-route-m1.internal").is_none());

    let settings = Settings {
        unvalidated_plugins: vec![unported.to_string()],
        ..Settings::default()
    };
    let allowed = cluster.engine_with(quick_retries(), settings).await.apply(&event).await;
    assert_eq!(allowed.outcome, Outcome::Applied, "{allowed:?}");
}

// ------------------------------------------------------------------ the planner, for random events

/// Values a producer may put in a plugin or provider config: the keys the parsers read, with good
/// and bad values, so that both sides of each rule come up.
fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!("")),
        Just(json!("*")),
        Just(json!("regexp:^a.*")),
        Just(json!("regexp:(")),
        Just(json!("redis.dns")),
        Just(json!("x-key")),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(100)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
    ]
}

fn ratelimit_config() -> impl Strategy<Value = Value> {
    (
        prop::option::of(any_value()),
        prop::option::of(any_value()),
        prop::sample::select(vec![
            "limit_by_header",
            "limit_by_param",
            "limit_by_consumer",
            "limit_by_per_header",
            "limit_by_per_ip",
            "nothing",
        ]),
        any_value(),
        prop::option::of(prop::collection::vec((any_value(), any_value()), 0..3)),
    )
        .prop_map(|(rule_name, service, by, by_value, keys)| {
            let mut config = json!({});
            if let Some(name) = rule_name {
                config["rule_name"] = name;
            }
            if let Some(service) = service {
                config["redis"] = json!({"service_name": service});
            }
            let mut item = json!({});
            if by != "nothing" {
                item[by] = by_value;
            }
            if let Some(keys) = keys {
                item["limit_keys"] = Value::from(
                    keys.into_iter()
                        .map(|(key, rate)| json!({"key": key, "token_per_minute": rate}))
                        .collect::<Vec<_>>(),
                );
            }
            config["rule_items"] = json!([item]);
            config
        })
}

fn quota_config() -> impl Strategy<Value = Value> {
    (prop::option::of(any_value()), prop::option::of(any_value())).prop_map(|(admin, service)| {
        let mut config = json!({});
        if let Some(admin) = admin {
            config["admin_consumer"] = admin;
        }
        if let Some(service) = service {
            config["redis"] = json!({"service_name": service});
        }
        config
    })
}

fn key_rate_limit_config() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["limit_by_header", "limit_by_param", "nothing"]),
        any_value(),
        prop::option::of(prop::collection::vec((any_value(), any_value()), 0..3)),
    )
        .prop_map(|(by, by_value, keys)| {
            let mut config = json!({});
            if by != "nothing" {
                config[by] = by_value;
            }
            if let Some(keys) = keys {
                config["limit_keys"] = Value::from(
                    keys.into_iter()
                        .map(|(key, rate)| json!({"key": key, "query_per_minute": rate}))
                        .collect::<Vec<_>>(),
                );
            }
            config
        })
}

fn provider() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "openai", "qwen", "deepseek", "claude", "moonshot", "vllm", "ollama", "azure", "bedrock", "vertex",
        ]),
        prop::collection::vec("[A-Za-z0-9-]{1,20}", 0..2),
        prop::option::of((any::<bool>(), prop::option::of("[a-z0-9-]{1,10}"))),
        // Which of a type's optional settings are given: AWS keys, the vertex region, project and key,
        // an api-version value.
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(|(kind, tokens, failover, (first, second, third))| {
            let mut spec = json!({"type": kind, "apiTokens": tokens});
            match kind {
                "openai" | "vllm" => spec["url"] = json!("https://llm.example.com/v1"),
                "ollama" => spec["url"] = json!("http://ollama.example.com:11434"),
                "azure" => {
                    let version = if first { "2024-02-01" } else { "" };
                    spec["url"] = json!(format!(
                        "https://az.example.com/openai/deployments/d/chat/completions?api-version={version}"
                    ))
                }
                "bedrock" => {
                    spec["config"] = json!({"awsRegion": "us-east-1"});
                    if first {
                        spec["config"]["awsAccessKey"] = json!("ak");
                    }
                    if second {
                        spec["config"]["awsSecretKey"] = json!("sk");
                    }
                }
                "vertex" => {
                    spec["config"] = json!({});
                    if first {
                        spec["config"]["vertexRegion"] = json!("us-central1");
                    }
                    if second {
                        spec["config"]["vertexProjectId"] = json!("p");
                    }
                    if third {
                        spec["config"]["vertexAuthKey"] = json!("{}");
                    }
                }
                _ => {}
            }
            if let Some((enabled, model)) = failover {
                let mut failover = json!({"enabled": enabled});
                if let Some(model) = model {
                    failover["healthCheckModel"] = json!(model);
                }
                spec["failover"] = failover;
            }
            spec
        })
}

fn random_deploy() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9]{0,8}",
        provider(),
        prop::option::of(ratelimit_config()),
        prop::option::of(quota_config()),
        prop::option::of(key_rate_limit_config()),
    )
        .prop_map(|(model, provider, ratelimit, quota, key_rate_limit)| {
            let mut plugins = json!({});
            for (name, config) in [("ai-token-ratelimit", ratelimit), ("ai-quota", quota), ("key-rate-limit", key_rate_limit)] {
                if let Some(config) = config {
                    plugins[name] = config;
                }
            }
            json!({"specversion": "1.0", "id": format!("id-{model}"), "source": "tests", "type": event::DEPLOYED_TYPE,
                   "data": {"model": model, "revision": 1, "provider": provider,
                            "route": {"domains": ["api.example.com"], "path": format!("/{model}"), "plugins": plugins},
                            "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [format!("k-{model}")]}]}}})
        })
}

/// The plugin CRs a batch leaves, from an empty cluster, and how many of its events applied.
fn planned_plugins(events: &[Value]) -> (Vec<Value>, usize) {
    let parsed: Vec<LifecycleEvent> = events
        .iter()
        .filter_map(|event| higress_route_worker::contract::parse(event.to_string().as_bytes()).ok())
        .collect();
    let planned = batch::plan(
        &parsed,
        &Settings::default(),
        cluster::DEFAULT_SHARED_OBJECT_BUDGET,
        State::new(),
    );
    let applied = planned.results.iter().filter(|r| r.outcome == Outcome::Applied).count();
    let plugins = planned
        .state
        .of_kind(Kind::WasmPlugin)
        .map(|(_, object)| object.clone())
        .collect();
    (plugins, applied)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever a batch of valid events makes the planner write, the gateway's parsers accept.
    #[test]
    fn whatever_the_planner_writes_passes_the_gateway_check(events in prop::collection::vec(random_deploy(), 1..6)) {
        let (plugins, _) = planned_plugins(&events);
        for object in &plugins {
            let problems = gateway::check(object);
            prop_assert!(problems.is_empty(), "{}: {problems:?}\nevents: {events:?}", object["metadata"]["name"]);
        }
    }
}

/// The property above is not passed by refusing everything: good configs of each kind apply.
#[test]
fn good_configs_of_every_kind_apply() {
    let event = |model: &str, plugins: Value| {
        json!({"specversion": "1.0", "id": model, "source": "tests", "type": event::DEPLOYED_TYPE,
               "data": {"model": model, "revision": 1,
                        "provider": {"type": "qwen", "apiTokens": ["sk-1"], "failover": {"enabled": true, "healthCheckModel": "qwen-turbo"}},
                        "route": {"path": format!("/{model}"), "plugins": plugins}}})
    };
    let events = [
        event("a", json!({"ai-token-ratelimit": valid_ratelimit("a")})),
        event(
            "b",
            json!({"ai-quota": {"admin_consumer": "admin", "redis": {"service_name": "redis.dns"}}}),
        ),
        event(
            "c",
            json!({"key-rate-limit": {"limit_by_header": "x-api-key", "limit_keys": [{"key": "k1", "query_per_minute": 10}]}}),
        ),
    ];
    let (plugins, applied) = planned_plugins(&events);
    assert_eq!(applied, 3);
    assert!(plugins.len() >= 4, "ai-proxy and the three route plugins: {plugins:?}");
    for object in &plugins {
        assert_eq!(gateway::check(object), [], "{}", object["metadata"]["name"]);
    }
}

/// Every plugin whose parser is ported has its conformance file, and every conformance file is of a
/// ported plugin (the cases themselves run in the ports' unit tests).
#[test]
fn every_ported_plugin_has_its_conformance_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".yaml").map(str::to_string))
        .collect();
    files.sort();
    for plugin in &files {
        assert!(
            gateway::is_ported(plugin),
            "{plugin}.yaml is of a plugin that is not ported"
        );
    }
    for plugin in [
        "ai-proxy",
        "key-auth",
        "ai-token-ratelimit",
        "ai-quota",
        "key-rate-limit",
    ] {
        assert!(
            files.iter().any(|f| f == plugin),
            "no tests/fixtures/gateway/{plugin}.yaml"
        );
    }
}

/// What the gateway's ai-proxy accepts and only the console's form would ask more of (both AWS keys,
/// the vertex service account, a value for `api-version`) is applied, in a shape the gateway accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_only_the_console_form_asks_more_of_is_applied() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let deploy = |model: &str, provider: Value| {
        parse(
            event::DEPLOYED_TYPE,
            json!({"model": model, "revision": 1, "provider": provider}),
        )
    };
    let events = [
        deploy(
            "bedrock-tokens",
            json!({"name": "bedrock-tokens", "type": "bedrock", "apiTokens": ["b-key"],
            "config": {"awsRegion": "eu-west-1"}}),
        ),
        deploy(
            "vertex-express",
            json!({"name": "vertex-express", "type": "vertex", "apiTokens": ["v-key"]}),
        ),
        deploy(
            "azure-empty-version",
            json!({"name": "azure-empty-version", "type": "azure", "apiTokens": ["a-key"],
            "url": "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version="}),
        ),
    ];
    let results = engine.apply_batch(&events).await;
    for result in &results {
        assert_eq!(result.outcome, Outcome::Applied, "{result:?}");
    }
    let ai_proxy = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    assert_eq!(gateway::check(&ai_proxy), []);
    let providers = ai_proxy["spec"]["defaultConfig"]["providers"].as_array().unwrap();
    let by_id = |id: &str| {
        providers
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {providers:?}"))
    };
    assert_eq!(by_id("bedrock-tokens")["apiTokens"], json!(["b-key"]));
    assert_eq!(by_id("vertex-express")["vertexRegion"], "global");
    assert!(by_id("azure-empty-version")["azureServiceUrl"]
        .as_str()
        .unwrap()
        .ends_with("api-version="));
    let registries: Vec<String> = cluster.get("mcpbridges", "default").unwrap()["spec"]["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["domain"].as_str().unwrap().to_string())
        .collect();
    for domain in [
        "bedrock-runtime.eu-west-1.amazonaws.com",
        "aiplatform.googleapis.com",
        "x.openai.azure.com",
    ] {
        assert!(registries.iter().any(|d| d == domain), "{domain} not in {registries:?}");
    }
}

/// The contract's valid examples are what the gateway accepts: none is refused for it, and the CRs
/// they leave pass the check.
#[test]
fn the_contracts_valid_examples_are_admitted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples/valid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if event["type"] != event::DEPLOYED_TYPE {
            continue;
        }
        let parsed = higress_route_worker::contract::parse(event.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let planned = batch::plan(
            &[parsed],
            &Settings::default(),
            cluster::DEFAULT_SHARED_OBJECT_BUDGET,
            State::new(),
        );
        let result = &planned.results[0];
        let reason = result.error.as_ref().map(|e| e.reason.as_str());
        assert!(
            !matches!(reason, Some("gateway-refuses" | "plugin-not-validated")),
            "{}: {result:?}",
            path.display()
        );
        for (_, object) in planned.state.of_kind(Kind::WasmPlugin) {
            assert_eq!(
                gateway::check(object),
                [],
                "{}: {}",
                path.display(),
                object["metadata"]["name"]
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} deploy examples");
}
