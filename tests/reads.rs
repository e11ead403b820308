//! What a batch reads is declared by the mapping (`higress::reads`): planning against exactly the
//! declared objects gives the same plans and changes as planning against the whole cluster. When the
//! planner starts consulting an object the read set leaves out, these tests fail.

use higress_route_worker::contract;
use higress_route_worker::event::{self, LifecycleEvent};
use higress_route_worker::higress::{self, names, reads, Decision, Kind, ReadSet, Settings, State};
use serde_json::{json, Value};

fn event(kind: &str, data: Value) -> LifecycleEvent {
    let event = json!({"specversion": "1.0", "id": "id", "source": "tests", "type": kind, "data": data});
    contract::parse(event.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Deploys that share providers, consumers and domains, with Secrets, mappings and predicates.
fn deploy(model: &str, revision: u64, i: usize) -> LifecycleEvent {
    let provider = format!("p{}", i % 3);
    let mut data = json!({
        "model": model, "revision": revision,
        "provider": {"name": provider, "type": "openai", "url": format!("https://{provider}.example.com/v1"), "apiTokens": [format!("sk-{provider}")]},
        "route": {"domains": [format!("d{}.example.com", i % 2)], "path": format!("/{model}")},
        "auth": {"allowedConsumers": ["shared"],
                 "consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [format!("key-{model}")]}]}
    });
    if i % 4 == 1 {
        data["provider"]["apiTokensSecretRef"] = json!({"name": "tokens", "key": "k"});
        data["provider"].as_object_mut().unwrap().remove("apiTokens");
    }
    if i % 4 == 2 {
        data["route"]["modelMapping"] = json!({"*": "gpt-4o"});
        data["route"]["modelPredicates"] = json!([{"matchType": "EQUAL", "matchValue": model}]);
    }
    if i % 4 == 3 {
        data["route"]["https"] = json!({"mode": "on", "cert": "wildcard-cert"});
    }
    // Route plugins: some routes have them, and a redeploy with another `i` drops or adds them.
    if i % 5 == 4 {
        data["route"]["plugins"] =
            json!({"ai-token-ratelimit": {"rule_name": model, "redis": {"service_name": "redis.dns"}}});
    }
    if i % 5 == 0 {
        data["route"]["plugins"] = json!({"ai-quota": {"redis": {"service_name": "redis.dns"}}});
    }
    event(event::DEPLOYED_TYPE, data)
}

fn retire(model: &str, revision: u64, delete_consumers: bool) -> LifecycleEvent {
    event(
        event::RETIRED_TYPE,
        json!({"model": model, "revision": revision, "deleteConsumers": delete_consumers}),
    )
}

/// Applies events one by one to a state, as the engine's simulation does. Every event of the fixture
/// applies: one refused or stale would leave the cluster without what the tests rely on.
fn apply_all(state: &mut State, events: &[LifecycleEvent]) {
    let now = chrono::Utc::now();
    for event in events {
        let (model, revision) = (event.model(), event.revision());
        match higress::plan(event, state, &Settings::default(), now) {
            Ok(Decision::Apply(plan)) => {
                higress::simulate(state, &plan)
                    .unwrap_or_else(|refusal| panic!("fixture event {model} r{revision} refused: {refusal:?}"));
            }
            Ok(Decision::Stale { seen }) => panic!("fixture event {model} r{revision} is stale (seen r{seen})"),
            Err(refusal) => panic!("fixture event {model} r{revision} refused: {refusal:?}"),
        }
    }
}

/// A cluster with 37 routes, providers, consumers, a retired model, a console fallback, foreign objects.
fn cluster() -> State {
    let mut state = State::new();
    for object in [
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "tokens", "labels": {names::LABEL_READABLE: "true"}}, "stringData": {"k": "sk-secret"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}, "data": {"a": "b"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "domain-higress-default-domain",
               "labels": {"higress.io/config-map-type": "domain", "higress.io/resource-definer": "higress"}},
               "data": {"domain": "higress-default-domain", "enableHttps": "off"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ai-route-old.fallback.internal",
               "labels": {"higress.io/resource-definer": "higress"}}, "spec": {}}),
        json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "ai-route-old.internal",
               "labels": {"higress.io/resource-definer": "higress"}}, "spec": {}}),
        // A route made in the console with a fallback: no fence entry of ours says it exists.
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ai-route-console.fallback.internal",
               "labels": {"higress.io/resource-definer": "higress"}}, "spec": {}}),
        json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "ai-route-console.internal",
               "labels": {"higress.io/resource-definer": "higress"}}, "spec": {}}),
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-statistics-1.0.0", "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": "ai-statistics"}},
               "spec": {"matchRules": [{"ingress": ["ai-route-m3.internal"], "config": {}, "configDisable": false}]}}),
        // A route plugin CR of an older console version naming a route of ours.
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-quota-1.0.0", "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": "ai-quota"}},
               "spec": {"matchRules": [{"ingress": ["ai-route-m9.internal"], "config": {}, "configDisable": false}]}}),
    ] {
        state.insert_object(object);
    }
    let shared = event(
        event::DEPLOYED_TYPE,
        json!({"model": "base", "revision": 1, "provider": {"name": "p0", "type": "openai", "url": "https://p0.example.com/v1", "apiTokens": ["sk-p0"]},
               "auth": {"consumers": [{"name": "shared", "source": "BEARER", "credentials": ["key-shared"]}]}}),
    );
    let mut events = vec![shared];
    events.extend((0..36).map(|i| deploy(&format!("m{i}"), 1, i)));
    events.extend([deploy("old", 1, 0), retire("old", 2, false), retire("gone", 5, true)]);
    events.extend([with_features("f1", 1), with_features("f2", 1)]);
    apply_all(&mut state, &events);
    state
}

/// A route with a fallback (to a provider of another route), predicates and custom metadata.
fn with_features(model: &str, revision: u64) -> LifecycleEvent {
    let mut data = json!({
        "model": model, "revision": revision,
        "provider": {"name": format!("p-{model}"), "type": "openai", "url": "https://f.example.com/v1"},
        "route": {"path": format!("/{model}"),
                  "fallback": {"upstreams": [{"provider": "p1", "modelMapping": {"*": "big"}}], "responseCodes": ["5xx"]},
                  "headerPredicates": [{"key": "x-team", "matchType": "EQUAL", "matchValue": "a"}],
                  "customConfigs": {"example.com/owner": "a"}, "customLabels": {"team": "a"}},
        "auth": {"allowedConsumers": ["shared"]}
    });
    if revision % 2 == 0 {
        // Even revisions drop the features.
        data["route"] = json!({"path": format!("/{model}")});
    }
    event(event::DEPLOYED_TYPE, data)
}

/// The objects of `whole` that reading `set` returns: of those only a metadata list covers, only
/// what such a list returns.
fn restrict(whole: &State, set: &ReadSet) -> State {
    let whole_only = ReadSet {
        metadata_lists: Default::default(),
        ..set.clone()
    };
    let mut state = State::new();
    for (key, object) in whole.clone().into_objects() {
        if whole_only.covers(&key, &object) {
            state.set(key, Some(object));
        } else if set.covers(&key, &object) {
            let metadata =
                json!({"apiVersion": object["apiVersion"], "kind": object["kind"], "metadata": object["metadata"]});
            state.set(key, Some(metadata));
        }
    }
    state
}

/// Plans and simulates a batch against the whole cluster and against its declared reads.
fn assert_reads_suffice(batch: &[LifecycleEvent]) {
    let whole = cluster();
    let first = reads(batch);
    let mut declared = restrict(&whole, &first);
    let follow_up = higress::reads::follow_up_reads(batch, &declared);
    for (key, object) in restrict(&whole, &follow_up).into_objects() {
        declared.set(key, Some(object));
    }
    let now = chrono::Utc::now();
    let settings = Settings::default();
    let mut everything = whole;
    for event in batch {
        let expected = higress::plan(event, &everything, &settings, now);
        let planned = higress::plan(event, &declared, &settings, now);
        assert_eq!(
            planned,
            expected,
            "{} r{} planned differently",
            event.model(),
            event.revision()
        );
        if let Ok(Decision::Apply(plan)) = expected {
            let expected = higress::simulate(&mut everything, &plan);
            let changes = higress::simulate(&mut declared, &plan);
            assert_eq!(
                changes,
                expected,
                "{} r{} changes differently",
                event.model(),
                event.revision()
            );
        }
    }
}

#[test]
fn a_few_models_read_their_own_objects_and_plan_as_against_the_whole_cluster() {
    assert_reads_suffice(&[deploy("m1", 2, 1)]);
    assert_reads_suffice(&[deploy("m2", 2, 3), deploy("new", 1, 2)]);
    // Retirements: the last user of a provider, a route with a console fallback, a shared consumer.
    assert_reads_suffice(&[retire("m5", 2, true)]);
    assert_reads_suffice(&[retire("m3", 2, true), retire("m6", 3, false), deploy("m7", 2, 5)]);
    // Route plugins dropped (m4 had ai-token-ratelimit), changed (m5: ai-quota), another version's rule (m9).
    assert_reads_suffice(&[deploy("m4", 2, 1)]);
    assert_reads_suffice(&[deploy("m5", 2, 4), deploy("m9", 2, 0), retire("m14", 2, false)]);
    // Stale and resurrecting events.
    assert_reads_suffice(&[deploy("old", 1, 0), deploy("old", 3, 0), retire("m0", 1, false)]);
}

#[test]
fn a_large_batch_lists_and_plans_as_against_the_whole_cluster() {
    let mut batch: Vec<LifecycleEvent> = (0..8).map(|i| deploy(&format!("m{i}"), 2, i + 1)).collect();
    batch.extend((0..40).map(|i| deploy(&format!("n{i}"), 1, i)));
    batch.extend([retire("m2", 3, true), retire("old", 2, false), deploy("old", 4, 1)]);
    assert!(batch.len() > higress::reads::TARGETED_UP_TO);
    assert_reads_suffice(&batch);
    // Many existing routes: their Ingresses are listed rather than read one by one.
    let many: Vec<LifecycleEvent> = (0..34)
        .map(|i| retire(&format!("m{i}"), 9, i % 2 == 0))
        .chain((0..40).map(|i| deploy(&format!("n{i}"), 1, i)))
        .collect();
    assert_reads_suffice(&many);
    // Retirements only: their Ingresses' metadata is listed, not their spec, beside the first read (a
    // retired route exists whatever the fences say), and not again after it.
    let retiring: Vec<LifecycleEvent> = (0..34).map(|i| retire(&format!("m{i}"), 9, i % 3 == 0)).collect();
    let first = reads(&retiring);
    assert!(first.metadata_lists.iter().any(|(kind, _)| *kind == Kind::Ingress));
    let follow_up = higress::reads::follow_up_reads(&retiring, &restrict(&cluster(), &first));
    assert!(follow_up.is_empty(), "{follow_up:?}");
    assert_reads_suffice(&retiring);
}

#[test]
fn routes_with_a_fallback_read_what_writing_or_dropping_it_needs() {
    // The fixture's routes with a fallback have their fallback Ingress and EnvoyFilter.
    let fixture = cluster();
    for model in ["f1", "f2"] {
        for (kind, name) in [
            (Kind::Ingress, format!("ai-route-{model}.fallback.internal")),
            (Kind::EnvoyFilter, format!("ai-route-{model}.internal")),
        ] {
            assert!(
                fixture.get_named(kind, &name).is_some(),
                "the fixture lacks {kind:?} {name}"
            );
        }
    }
    // Drop the fallback, add one to a route without, keep one; and retire a route with one.
    assert_reads_suffice(&[with_features("f1", 2)]);
    assert_reads_suffice(&[with_features("m4", 3), with_features("f2", 3)]);
    assert_reads_suffice(&[retire("f2", 2, true)]);
    // The same in a batch that lists.
    let mut batch: Vec<LifecycleEvent> = (0..6).map(|i| with_features(&format!("m{i}"), 3)).collect();
    batch.extend([with_features("f1", 2), retire("f2", 2, false), with_features("new", 1)]);
    assert!(batch.len() > higress::reads::TARGETED_UP_TO);
    assert_reads_suffice(&batch);
    // A batch that lists, with no retirement, taking over a console route with a fallback and none of
    // ours: its fallback Ingress is read (through its listed EnvoyFilter) and deleted with the rest.
    // Left, it would stay reachable through the fallback header without the route's key-auth rule.
    let mut batch: Vec<LifecycleEvent> = (0..6).map(|i| deploy(&format!("m{i}"), 3, i)).collect();
    batch.push(deploy("console", 1, 0));
    assert!(batch.len() > higress::reads::TARGETED_UP_TO);
    assert_reads_suffice(&batch);
}

// ------------------------------------------------ what a batch of retirements reads, counted by kube-sim

#[path = "support/cluster.rs"]
mod cluster;

/// What kube-sim saw while `run` ran: the requests by (verb, resource), the metadata-only lists of
/// Ingresses, and the objects lists returned, by resource.
async fn requests_during<F: std::future::Future>(
    sim: &cluster::Cluster,
    run: F,
) -> (
    F::Output,
    std::collections::BTreeMap<(String, String), u64>,
    u64,
    impl Fn(&str) -> u64,
) {
    let before = sim.sim.counters();
    let output = run.await;
    let after = sim.sim.counters();
    let mut delta = after.requests.clone();
    for (key, count) in &before.requests {
        if let Some(now) = delta.get_mut(key) {
            *now -= count;
        }
    }
    delta.retain(|_, count| *count > 0);
    let metadata_lists = after.metadata_only("list", "ingresses") - before.metadata_only("list", "ingresses");
    let listed = move |resource: &str| after.listed(resource) - before.listed(resource);
    (output, delta, metadata_lists, listed)
}

fn count(requests: &std::collections::BTreeMap<(String, String), u64>, verb: &str, resource: &str) -> u64 {
    requests
        .get(&(verb.to_string(), resource.to_string()))
        .copied()
        .unwrap_or(0)
}

/// A batch of retirements reads once for the whole batch, not once per event: no Ingress is read by
/// name (the looks before the key-auth write and after the writes each list the Ingresses' metadata),
/// the fence shards are read at most once per look, and what is left per event is its two deletes.
/// And its lists return its own routes' Ingresses and ConfigMaps, and those of routes not of ours, not
/// every route's: a provider another route of ours uses is kept by its users record, one a console
/// route uses by that route's ConfigMap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_retirements_reads_once_for_the_batch() {
    let cluster = cluster::Cluster::start().await;
    let engine = cluster.engine().await;
    const ROUTES: usize = 60;
    let models: Vec<String> = (0..ROUTES).map(|i| format!("r{i:02}")).collect();
    // Routes that stay: a look at the retired ones does not list their Ingresses. The first relies on
    // r00's provider.
    const STAYING: usize = 40;
    let mut deploys: Vec<LifecycleEvent> = models
        .iter()
        .cloned()
        .chain((1..STAYING).map(|i| format!("stays{i:02}")))
        .map(|m| cluster::deploy(&m, 1))
        .collect();
    deploys.push(cluster::parse(
        event::DEPLOYED_TYPE,
        json!({"model": "stays00", "revision": 1,
               "provider": {"name": "p-r00", "type": "openai", "url": "https://r00.models.example.com/v1", "apiTokens": ["sk-r00"]},
               "route": {"domains": ["api.example.com"], "path": "/stays00"},
               "auth": {"consumers": [{"name": "c-stays00", "source": "BEARER", "credentials": ["key-stays00"]}]}}),
    ));
    for result in engine.apply_batch(&deploys).await {
        assert_eq!(
            result.outcome,
            higress_route_worker::result::Outcome::Applied,
            "{result:?}"
        );
    }
    // A route the console made relies on r01's provider.
    let console_route = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ai-route-theirs", "namespace": cluster::NS,
                     "labels": {"higress.io/config-map-type": "ai-route", "higress.io/resource-definer": "higress"}},
        "data": {"data": json!({"name": "theirs", "upstreams": [{"provider": "p-r01", "weight": 100}]}).to_string()}});
    cluster.sim.insert(console_route).unwrap();
    let retirements: Vec<LifecycleEvent> = models.iter().map(|m| cluster::retire(m, 2)).collect();
    let unlabelled = cluster
        .sim
        .list("ingresses", cluster::NS)
        .iter()
        .filter(|i| i["metadata"]["labels"].get(names::LABEL_ROUTE).is_none())
        .count() as u64;
    let (results, requests, metadata_lists, listed) = requests_during(&cluster, engine.apply_batch(&retirements)).await;
    for result in &results {
        assert_eq!(
            result.outcome,
            higress_route_worker::result::Outcome::Applied,
            "{result:?}"
        );
    }
    assert!(cluster.get("ingresses", "ai-route-r00.internal").is_none());
    let providers =
        cluster.get("wasmplugins", "ai-proxy.internal").unwrap()["spec"]["defaultConfig"]["providers"].clone();
    let provider = |id: &str| providers.as_array().unwrap().iter().any(|p| p["id"] == id);
    assert!(
        provider("p-r00") && provider("p-r01") && !provider("p-r02"),
        "{providers}"
    );
    let warned = |i: usize, route: &str| {
        results[i]
            .warnings
            .iter()
            .any(|w| w.contains(&format!("route {route} still uses it")))
    };
    assert!(warned(0, "stays00") && warned(1, "theirs"), "{:?}", &results[..2]);

    assert_eq!(count(&requests, "get", "ingresses"), 0, "{requests:?}");
    // The first read's lists of the routes' Ingresses, then one look before the key-auth write and one
    // after the writes: all of metadata only (retirements never read an Ingress's spec), each two lists
    // (the Ingresses labelled with the batch's routes, and those not labelled).
    assert_eq!(count(&requests, "list", "ingresses"), 3 * 2, "{requests:?}");
    assert_eq!(metadata_lists, 3 * 2, "{requests:?}");
    // The first read returns the retired routes' Ingresses; the looks, made once they are deleted, none
    // of ours; each returns the unlabelled ones. The staying routes' are never read.
    assert_eq!(listed("ingresses"), ROUTES as u64 + 3 * unlabelled, "{requests:?}");
    assert!(cluster.get("ingresses", "ai-route-stays00.internal").is_some());
    // The fence shards, and the AI route ConfigMaps (which routes use a provider) once, not again in
    // the follow-up: the batch's routes' and those not labelled as ours (the console's route), not the
    // staying routes'.
    assert_eq!(count(&requests, "list", "configmaps"), 1 + 2, "{requests:?}");
    let fence_shards = cluster
        .sim
        .list("configmaps", cluster::NS)
        .iter()
        .filter(|c| names::is_fence(c["metadata"]["name"].as_str().unwrap()))
        .count() as u64;
    assert_eq!(listed("configmaps"), fence_shards + ROUTES as u64 + 1, "{requests:?}");
    assert_eq!(count(&requests, "delete", "ingresses"), ROUTES as u64, "{requests:?}");
    assert_eq!(count(&requests, "delete", "configmaps"), ROUTES as u64, "{requests:?}");
    // Fence shards by name, at most once each per look (the first read lists them), and the domain.
    let shards = u64::from(names::FENCE_SHARDS);
    assert!(count(&requests, "get", "configmaps") <= 2 * shards + 1, "{requests:?}");
    // Besides the deletes, a fixed cost per batch whatever its size: each fence shard written once
    // and read once per look, the shared objects read and written once, a few lists.
    assert!(count(&requests, "update", "configmaps") <= shards, "{requests:?}");
    let total: u64 = requests.values().sum();
    let per_batch = total - 2 * ROUTES as u64;
    assert!(
        per_batch <= 3 * shards + 20,
        "{per_batch} requests besides the deletes: {requests:?}"
    );

    // A few retirements read their Ingresses by name, main and fallback, in each look.
    let few: Vec<LifecycleEvent> = ["a", "b"].iter().map(|m| cluster::deploy(m, 1)).collect();
    engine.apply_batch(&few).await;
    let few: Vec<LifecycleEvent> = ["a", "b"].iter().map(|m| cluster::retire(m, 2)).collect();
    let (_, requests, metadata_lists, _) = requests_during(&cluster, engine.apply_batch(&few)).await;
    assert_eq!(metadata_lists, 0, "{requests:?}");
    assert_eq!(count(&requests, "list", "ingresses"), 0, "{requests:?}");
    // First read: main and fallback of each; the look before the key-auth write: the same four; after
    // the writes: the main ones.
    assert_eq!(count(&requests, "get", "ingresses"), 4 + 4 + 2, "{requests:?}");
}

/// The looks between and after the writes are declared beside the first read: by name for a few
/// Ingresses, metadata-only lists above that (those labelled with the look's routes, and every
/// unlabelled one), the fence shards by name (at most one per shard).
#[test]
fn the_looks_are_declared_with_the_reads() {
    let routes: Vec<String> = (0..=reads::LOOK_BY_NAME_UP_TO).map(|i| format!("m{i}")).collect();
    let by_name = |n: usize, fallback: bool| reads::ingress_look(routes[..n].iter().map(String::as_str), fallback);
    let few = by_name(reads::LOOK_BY_NAME_UP_TO, false);
    assert_eq!(few.gets.len(), reads::LOOK_BY_NAME_UP_TO);
    assert!(few.lists.is_empty() && few.metadata_lists.is_empty());
    let few_with_fallbacks = by_name(reads::LOOK_BY_NAME_UP_TO / 2, true);
    assert_eq!(few_with_fallbacks.gets.len(), reads::LOOK_BY_NAME_UP_TO);
    assert!(few_with_fallbacks.metadata_lists.is_empty());
    let many = by_name(reads::LOOK_BY_NAME_UP_TO + 1, false);
    assert!(many.gets.is_empty() && many.lists.is_empty());
    // The unlabelled Ingresses, and those labelled with one of the routes.
    assert_eq!(many.metadata_lists.len(), 2, "{many:?}");
    assert_eq!(by_name(reads::LOOK_BY_NAME_UP_TO / 2 + 1, true).metadata_lists.len(), 2);

    let ingress = |route: &str, labelled_with: Option<&str>| {
        let mut labels = json!({"higress.io/resource-definer": "higress", "higress.io/internal": "true"});
        if let Some(label) = labelled_with {
            labels[names::LABEL_ROUTE] = json!(label);
        }
        let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": names::route_ingress(route), "labels": labels}});
        (
            higress::ObjectKey::new(Kind::Ingress, names::route_ingress(route)),
            ingress,
        )
    };
    // The lists cover the looks' route Ingresses, ours and the console's, as the names would have.
    for (key, object) in [ingress("m0", Some("m0")), ingress("m0", None)] {
        assert!(many.covers(&key, &object) && few.covers(&key, &object), "{object}");
    }
    // Not another route of ours: the look no longer grows with the cluster.
    let (key, other) = ingress("elsewhere", Some("elsewhere"));
    assert!(!many.covers(&key, &other));
    // A console Ingress of any route is covered: it may be one of the look's routes saved in the console.
    let (key, console) = ingress("elsewhere", None);
    assert!(many.covers(&key, &console));

    // A thousand long route names: several lists, each selector a few kilobytes, every route in one.
    let long: Vec<String> = (0..1000).map(|i| format!("{i:04}-{}", "x".repeat(58))).collect();
    let lists = reads::route_ingress_lists(long.iter().map(String::as_str));
    assert_eq!(lists[0], names::SELECT_UNLABELLED_INGRESSES);
    assert!(lists.len() > 10, "{}", lists.len());
    assert!(lists.iter().all(|selector| selector.len() <= 4096 + 100), "{lists:?}");
    let named: usize = lists
        .iter()
        .map(|selector| long.iter().filter(|r| selector.contains(r.as_str())).count())
        .sum();
    assert_eq!(named, long.len());
    let models: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let fences = reads::fence_look(models.iter().map(String::as_str));
    assert_eq!(fences.gets.len(), names::FENCE_SHARDS as usize);
    assert!(fences
        .gets
        .iter()
        .all(|key| key.kind == Kind::ConfigMap && names::is_fence(&key.name)));
}
