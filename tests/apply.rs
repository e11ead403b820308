//! The apply engine against the in-memory API server, over HTTP: other writers' entries survive,
//! conflicts and transient errors are retried, permanent errors are not, stale events change nothing.

use higress_route_worker::event::{self, LifecycleEvent};
use higress_route_worker::higress::names;
use higress_route_worker::higress::state::without_server_fields;
use higress_route_worker::higress::{Kind, ObjectKey};
use higress_route_worker::result::{Outcome, RouteResult};
use http::Method;
use kube_sim::FaultSpec;
use serde_json::{json, Value};
use std::time::Duration;

#[path = "support/cluster.rs"]
mod support;

use support::{console_objects, deploy, parse, retire, Cluster, NS};

/// Waits (at most 10 s) until `done` holds.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Holds the next `method` request to `path` for about a second (a 503 with `Retry-After: 1`), so a
/// test can interleave another writer's work while the engine waits to retry it.
fn hold_next(cluster: &Cluster, method: Method, path: impl Into<String>) {
    let held = FaultSpec::new(503)
        .with_retry_after(1)
        .for_method(method)
        .for_path(path);
    cluster.sim.faults().fail_next(1, held);
}

fn assert_outcome(result: &RouteResult, outcome: Outcome) {
    assert_eq!(result.outcome, outcome, "{result:?}");
}

fn spec_of(object: Option<Value>) -> Value {
    let object = object.expect("object exists");
    let mut content = without_server_fields(&object);
    content["metadata"].as_object_mut().unwrap().remove("namespace");
    content
}

/// The shared objects of `console_objects`, as they stand.
fn console_entries(cluster: &Cluster) -> Vec<Value> {
    [
        ("mcpbridges", "default"),
        ("wasmplugins", "ai-proxy.internal"),
        ("wasmplugins", "key-auth.internal"),
        ("configmaps", "domain-api.example.com"),
    ]
    .iter()
    .map(|(resource, name)| spec_of(cluster.get(resource, name)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_then_retire_leaves_console_entries_byte_identical() {
    let cluster = Cluster::start().await;
    for object in console_objects() {
        cluster.sim.insert(object).unwrap();
    }
    let before = console_entries(&cluster);
    let engine = cluster.engine().await;

    let deployed = engine.apply(&deploy("chat", 1)).await;
    assert_outcome(&deployed, Outcome::Applied);
    let ingress = cluster
        .get("ingresses", "ai-route-chat.internal")
        .expect("Ingress created");
    assert_eq!(
        ingress["metadata"]["annotations"]["higress.io/destination"],
        "llm-p-chat.internal.dns:443"
    );
    let key_auth = cluster.get("wasmplugins", "key-auth.internal").unwrap();
    assert_eq!(key_auth["spec"]["defaultConfig"]["consumers"][0]["name"], "carol");
    assert_eq!(
        key_auth["spec"]["defaultConfig"]["consumers"][1]["credentials"],
        json!(["Bearer key-chat"])
    );
    assert!(
        !serde_json::to_string(&deployed).unwrap().contains("key-chat"),
        "no secret in the result"
    );

    let retired = engine.apply(&retire("chat", 2)).await;
    assert_outcome(&retired, Outcome::Applied);
    assert!(cluster.get("ingresses", "ai-route-chat.internal").is_none());
    assert!(cluster.get("configmaps", "ai-route-chat").is_none());
    let after = console_entries(&cluster);
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_writes_nothing_the_second_time() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let event = deploy("m", 1);
    assert_outcome(&engine.apply(&event).await, Outcome::Applied);
    // On an empty cluster the first deploy creates each object it needs once, and writes nothing else:
    // the model's fence, the shared McpBridge and plugins, the domain, and the route's own Ingress
    // and ConfigMap.
    let mut created: Vec<(String, String, String)> = cluster
        .sim
        .audit()
        .into_iter()
        .map(|write| (write.verb, write.resource, write.name))
        .collect();
    created.sort();
    let fence = names::fence("m");
    let expected = [
        ("configmaps", "ai-route-m"),
        ("configmaps", "domain-api.example.com"),
        ("configmaps", fence.as_str()),
        ("ingresses", "ai-route-m.internal"),
        ("mcpbridges", "default"),
        ("wasmplugins", "ai-proxy.internal"),
        ("wasmplugins", "ai-statistics-2.0.1"),
        ("wasmplugins", "key-auth.internal"),
    ]
    .map(|(resource, name)| ("create".to_string(), resource.to_string(), name.to_string()));
    assert_eq!(created, expected);
    let writes = cluster.writes();
    assert_eq!(writes, 8, "each write done at the first attempt");
    let again = engine.apply(&event).await;
    assert_outcome(&again, Outcome::Unchanged);
    assert_eq!(again.attempts, 0);
    assert_eq!(cluster.writes(), writes, "no write the second time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_conflicts_on_every_shared_object_are_re_read_and_counted() {
    let cluster = Cluster::start().await;
    for object in console_objects() {
        cluster.sim.insert(object).unwrap();
    }
    for (resource, name) in [
        ("mcpbridges", "default"),
        ("wasmplugins", "ai-proxy.internal"),
        ("wasmplugins", "key-auth.internal"),
    ] {
        cluster.sim.faults().conflict_next(resource, name, 3);
    }
    let engine = cluster.engine().await;
    let result = engine.apply(&deploy("m", 1)).await;
    assert_outcome(&result, Outcome::Applied);
    assert_eq!(result.conflicts, 9, "{result:?}");
    let key_auth = cluster.get("wasmplugins", "key-auth.internal").unwrap();
    let names: Vec<&str> = key_auth["spec"]["defaultConfig"]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol", "c-m"]);
}

/// A write the server stored but whose answer never came back (a timeout, a proxy) is listed: the
/// retry finds the object as the write left it, so it has nothing left to write, and the result must
/// still say what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_still_listed_in_its_result() {
    let cluster = Cluster::start().await;
    for object in console_objects() {
        cluster.sim.insert(object).unwrap();
    }
    let faults = cluster.sim.faults();
    faults.lose_answer_next(1, Some(Method::POST), Some("ingresses"));
    faults.lose_answer_next(1, Some(Method::PUT), Some("key-auth.internal"));
    faults.lose_answer_next(1, Some(Method::POST), Some("/configmaps"));
    let engine = cluster.engine().await;
    let deployed = engine.apply(&deploy("m", 1)).await;
    assert_outcome(&deployed, Outcome::Applied);
    assert_eq!(faults.pending(), 0, "each of the three answers was lost");
    assert!(lists(&deployed, "ai-route-m.internal", "created"), "{deployed:?}");
    assert!(lists(&deployed, "key-auth.internal", "updated"), "{deployed:?}");
    assert_eq!(
        cluster.writes_unlisted_in(std::slice::from_ref(&deployed)),
        Vec::<String>::new()
    );

    faults.lose_answer_next(1, Some(Method::DELETE), Some("ingresses"));
    let retired = engine.apply(&retire("m", 2)).await;
    assert_outcome(&retired, Outcome::Applied);
    assert_eq!(faults.pending(), 0, "the delete's answer was lost");
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_none());
    assert!(lists(&retired, "ai-route-m.internal", "deleted"), "{retired:?}");
    assert_eq!(cluster.writes_unlisted_in(&[deployed, retired]), Vec::<String>::new());
}

/// An engine that makes one attempt per request: no retry follows a failed one.
async fn one_attempt_engine(cluster: &Cluster) -> higress_route_worker::cluster::Engine {
    let one_attempt = higress_route_worker::cluster::RetryPolicy {
        max_attempts: 1,
        ..support::quick_retries()
    };
    cluster.engine_with(one_attempt, Default::default()).await
}

/// When no retry may follow a lost answer (here: one attempt per request), one read still tells
/// whether the write was made, and the failed result lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_listed_when_no_retry_may_follow() {
    let cluster = Cluster::start().await;
    let engine = one_attempt_engine(&cluster).await;
    cluster
        .sim
        .faults()
        .lose_answer_next(1, Some(Method::POST), Some("ingresses"));
    let result = engine.apply(&deploy("m", 1)).await;
    assert_eq!(cluster.sim.faults().pending(), 0, "the Ingress's answer was lost");
    assert_outcome(&result, Outcome::Failed);
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_some());
    assert!(lists(&result, "ai-route-m.internal", "created"), "{result:?}");
    assert_eq!(cluster.writes_unlisted_in(&[result]), Vec::<String>::new());
}

/// A lost answer that no look can settle (every read fails): the write may have been made, so the
/// result names it in a warning and is `failed`, never `rejected` (which says nothing was written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_write_no_look_can_settle_is_named_in_a_warning_and_the_result_is_not_rejected() {
    let cluster = Cluster::start().await;
    let engine = one_attempt_engine(&cluster).await;
    let faults = cluster.sim.faults();
    faults.lose_answer_next(1, Some(Method::POST), Some("ingresses"));
    // The three reads after the lost answer (the batch's own read of the Ingress comes first).
    faults.fail_next(
        3,
        FaultSpec::new(500)
            .for_method(Method::GET)
            .for_path("/ingresses/ai-route-m.internal")
            .after(1),
    );
    let result = engine.apply(&deploy("m", 1)).await;
    assert_eq!(
        faults.pending(),
        0,
        "the answer was lost and the three looks failed: {result:?} {:?}",
        cluster.sim.counters()
    );
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_some());
    assert_outcome(&result, Outcome::Failed);
    assert!(!lists(&result, "ai-route-m.internal", "created"), "{result:?}");
    assert!(
        result
            .warnings
            .iter()
            .any(|w| w.starts_with("Ingress/ai-route-m.internal may have been created")),
        "{result:?}"
    );
    assert_eq!(cluster.writes_unlisted_in(&[result]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_and_dropped_connections_are_retried() {
    let cluster = Cluster::start().await;
    // The console's shared objects exist, so the deploy replaces them (PUT) as well as creating its own (POST).
    for object in console_objects() {
        cluster.sim.insert(object).unwrap();
    }
    let faults = cluster.sim.faults();
    faults.fail_next(2, FaultSpec::new(503).for_method(Method::POST));
    faults.fail_next(1, FaultSpec::new(429).with_retry_after(1).for_method(Method::PUT));
    faults.fail_next(1, FaultSpec::new(500).for_method(Method::GET));
    faults.drop_next(2, Some(Method::POST), Some("ingresses"));
    let engine = cluster.engine().await;
    let result = engine.apply(&deploy("m", 1)).await;
    assert_outcome(&result, Outcome::Applied);
    assert!(
        cluster.get("ingresses", "ai-route-m.internal").is_some(),
        "{:?} {:?}",
        cluster.failed_writes(),
        cluster
            .sim
            .audit()
            .iter()
            .map(|w| (w.verb.clone(), w.resource.clone()))
            .collect::<Vec<_>>()
    );
    assert!(cluster.get("configmaps", "ai-route-m").is_some());

    // Every injected write fault was served, and nothing else failed: the 2 dropped connections to the
    // Ingress, 2 other create requests answered 503 (drops are matched first, and the Ingress is written
    // after the objects it uses, which meet the 503s first) and one replace answered 429.
    let failed = cluster.failed_writes();
    let failed_creates: u64 = failed
        .iter()
        .filter(|((verb, _), _)| verb == "create")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed_creates, 4, "{failed:?}");
    assert_eq!(
        failed[&("create".to_string(), "ingresses".to_string())],
        2,
        "{failed:?}"
    );
    let failed_updates: u64 = failed
        .iter()
        .filter(|((verb, _), _)| verb == "update")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed_updates, 1, "{failed:?}");
    assert_eq!(
        failed_creates + failed_updates,
        failed.values().sum::<u64>(),
        "{failed:?}"
    );
    // The 500 answers the next GET, whatever it reads: a read succeeding now proves the apply's reads used it.
    let probe = ObjectKey::new(Kind::ConfigMap, "ai-route-m");
    assert!(engine.api().get(&probe).await.unwrap().is_some());

    let again = engine.apply(&deploy("m", 1)).await;
    assert_outcome(&again, Outcome::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_write_is_not_retried_and_the_result_lists_what_was_written_before_it() {
    let cluster = Cluster::start().await;
    cluster
        .sim
        .faults()
        .fail_next(5, FaultSpec::new(403).for_method(Method::POST).for_path("wasmplugins"));
    let engine = cluster.engine().await;
    let result = engine.apply(&deploy("m", 1)).await;
    // Not `rejected`: the fence, the domain and the registry went in before ai-proxy was refused.
    assert_outcome(&result, Outcome::Failed);
    let written: Vec<(&str, &str, &str)> = result
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.name.as_str(), c.operation))
        .collect();
    assert_eq!(
        written,
        [
            ("ConfigMap", names::fence("m").as_str(), "created"),
            ("ConfigMap", "domain-api.example.com", "created"),
            ("McpBridge", "default", "created")
        ]
    );
    let error = result.error.as_ref().unwrap();
    assert_eq!(error.reason, "forbidden");
    assert!(
        error.message.contains("WasmPlugin/ai-proxy.internal"),
        "{}",
        error.message
    );
    assert!(!error.retryable);
    // The plugin CRs go side by side: ai-proxy, key-auth and ai-statistics tried once each.
    assert_eq!(
        cluster.sim.counters().get("create", "wasmplugins"),
        3,
        "no retry after 403"
    );
    assert!(
        cluster.get("ingresses", "ai-route-m.internal").is_none(),
        "the route is not exposed half-built"
    );
    // Once allowed, the same event finishes the job.
    cluster.sim.faults().clear();
    assert_outcome(&engine.apply(&deploy("m", 1)).await, Outcome::Applied);
    assert!(
        cluster.get("ingresses", "ai-route-m.internal").is_some(),
        "{:?} {:?}",
        cluster.failed_writes(),
        cluster
            .sim
            .audit()
            .iter()
            .map(|w| (w.verb.clone(), w.resource.clone()))
            .collect::<Vec<_>>()
    );
}

/// A batch whose Ingress writes are refused for good: each event is then applied alone. The first
/// one's Ingress is refused again, with nothing left to write before it (the batch wrote its fence and
/// shared entries): its result is `failed` with those writes, never `rejected` (nothing written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_refused_alone_after_its_batch_wrote_for_it_is_failed_with_those_writes() {
    let cluster = Cluster::start().await;
    // Both Ingresses of the batch, then the first event's alone.
    cluster
        .sim
        .faults()
        .fail_next(3, FaultSpec::new(422).for_method(Method::POST).for_path("ingresses"));
    let engine = cluster.engine().await;
    let results = engine.apply_batch(&[deploy("a", 1), deploy("b", 1)]).await;
    let (a, b) = (&results[0], &results[1]);
    assert_outcome(b, Outcome::Applied);
    assert_outcome(a, Outcome::Failed);
    let error = a.error.as_ref().unwrap();
    assert_eq!(error.reason, "invalid");
    assert!(!error.retryable);
    let written: Vec<(&str, &str)> = a.changes.iter().map(|c| (c.kind.as_str(), c.name.as_str())).collect();
    for object in [
        ("ConfigMap", names::fence("a").as_str()),
        ("McpBridge", "default"),
        ("WasmPlugin", "ai-proxy.internal"),
        ("WasmPlugin", "key-auth.internal"),
    ] {
        assert!(written.contains(&object), "{object:?} not in {written:?}");
    }
    assert!(cluster.get("ingresses", "ai-route-a.internal").is_none());
    assert!(cluster.get("ingresses", "ai-route-b.internal").is_some());
}

/// A batch of 64 whose one event is refused for good (its Ingress replace, 422): the batch is applied
/// again in halves, each half as a batch, so the event is found in about 2·log2(64) batch applies
/// rather than 64 single ones, each its own round trips one after another (at 5,000 routes a single
/// apply takes 0.5–1 s: one by one, a batch's last events met the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_refused_for_good_is_found_in_halves_and_the_others_applied() {
    const EVENTS: usize = 64;
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("bad", 1)).await, Outcome::Applied);
    // Its redeploy moves the route: a replace of its Ingress, which the API server refuses.
    let redeploy = parse(
        event::DEPLOYED_TYPE,
        json!({"model": "bad", "revision": 2,
            "provider": {"name": "p-bad", "type": "openai", "url": "https://bad.models.example.com/v1", "apiTokens": ["sk-bad"]},
            "route": {"domains": ["api.example.com"], "path": "/moved"},
            "auth": {"consumers": [{"name": "c-bad", "source": "BEARER", "credentials": ["key-bad"]}]}}),
    );
    cluster.sim.faults().set_error_rate(
        1.0,
        FaultSpec::new(422)
            .for_method(Method::PUT)
            .for_path("ingresses/ai-route-bad.internal"),
    );
    let mut events: Vec<LifecycleEvent> = (1..EVENTS).map(|i| deploy(&format!("m{i}"), 1)).collect();
    events.insert(EVENTS / 3, redeploy);
    let applies_before = cluster.sim.counters().get("list", "wasmplugins");
    let results = engine.apply_batch(&events).await;

    for (i, result) in results.iter().enumerate() {
        if i == EVENTS / 3 {
            assert_outcome(result, Outcome::Failed);
            assert_eq!(result.error.as_ref().unwrap().reason, "invalid", "{result:?}");
        } else {
            assert_outcome(result, Outcome::Applied);
            assert!(result.changes.iter().any(|c| c.kind == "Ingress"), "{i}: {result:?}");
        }
    }
    for i in 1..EVENTS {
        assert!(cluster.get("configmaps", &format!("ai-route-m{i}")).is_some(), "m{i}");
    }
    // Each apply lists the plugin CRs once, first thing: the batch, then two halves per level down
    // to the event (log2(64) = 6 levels), where one by one made 64 applies after the batch.
    let applies = cluster.sim.counters().get("list", "wasmplugins") - applies_before;
    assert_eq!(
        applies,
        1 + 2 * 6,
        "applies after the failed batch: one by one would make 1 + 64"
    );
}

/// Two consumers of one deploy whose credentials come from the same key of a Secret: the contract
/// cannot see that they collide (it sees no credential), and key-auth refuses a credential used twice.
/// The deploy is `rejected` with nothing of it anywhere: not written with the other event of its batch,
/// and not carried into the next batch by the objects this worker keeps between batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_own_consumers_collide_leaves_nothing_in_any_object() {
    use base64::Engine as _;
    let cluster = Cluster::start().await;
    let credential = base64::engine::general_purpose::STANDARD.encode("one-key");
    cluster
        .sim
        .insert(json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "team-keys", "namespace": NS, "labels": {"higress-route-worker.io/readable": "true"}},
               "data": {"cred": credential}}))
        .unwrap();
    let reference = json!({"name": "team-keys", "key": "cred"});
    let colliding = parse(
        event::DEPLOYED_TYPE,
        json!({
            "model": "twins", "revision": 1,
            "provider": {"name": "p-twins", "type": "openai", "url": "https://twins.models.example.com/v1", "apiTokens": ["sk-twins"]},
            "route": {"domains": ["twins.example.com"], "path": "/twins"},
            "auth": {"consumers": [
                {"name": "c-twin-1", "source": "BEARER", "credentialsSecretRef": reference},
                {"name": "c-twin-2", "source": "BEARER", "credentialsSecretRef": reference}
            ]}
        }),
    );
    let engine = cluster.engine().await;
    for batch in [vec![colliding.clone(), deploy("other", 1)], vec![deploy("next", 1)]] {
        for result in engine.apply_batch(&batch).await {
            if result.model.as_deref() == Some("twins") {
                assert_outcome(&result, Outcome::Rejected);
                assert_eq!(result.error.as_ref().unwrap().reason, "entry-taken");
                assert!(result.changes.is_empty(), "{result:?}");
            } else {
                assert_outcome(&result, Outcome::Applied);
            }
        }
    }
    let everything = serde_json::to_string(&[
        cluster.get("mcpbridges", "default"),
        cluster.get("wasmplugins", "ai-proxy.internal"),
        cluster.get("wasmplugins", "key-auth.internal"),
        cluster.get("configmaps", &names::fence("twins")),
        cluster.get("configmaps", "domain-twins.example.com"),
    ])
    .unwrap();
    for trace in ["twins", "sk-twins", "one-key"] {
        assert!(!everything.contains(trace), "{trace} written: {everything}");
    }
    assert_eq!(consumer_names(&cluster), ["c-other", "c-next"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_deploy_after_retire_is_stale_and_changes_nothing() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("m", 1)).await, Outcome::Applied);
    assert_outcome(&engine.apply(&retire("m", 2)).await, Outcome::Applied);
    let writes = cluster.writes();
    let replay = engine.apply(&deploy("m", 1)).await;
    assert_outcome(&replay, Outcome::Stale);
    assert_eq!(cluster.writes(), writes);
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_rejected_by_name() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let event = parse(
        event::DEPLOYED_TYPE,
        json!({"model": "m", "revision": 1,
        "provider": {"type": "deepseek", "apiTokensSecretRef": {"name": "llm-keys", "key": "deepseek"}}}),
    );
    let result = engine.apply(&event).await;
    assert_outcome(&result, Outcome::Rejected);
    assert_eq!(result.error.as_ref().unwrap().reason, "secret-not-found");
    assert!(result.error.as_ref().unwrap().message.contains("llm-keys"));
    assert_eq!(cluster.writes(), 0);
    cluster
        .sim
        .insert(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-keys", "namespace": NS, "labels": {"higress-route-worker.io/readable": "true"}},
                              "data": {"deepseek": "c2stZnJvbS1zZWNyZXQ="}}),
        )
        .unwrap();
    assert_outcome(&engine.apply(&event).await, Outcome::Applied);
    let ai_proxy = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    assert_eq!(
        ai_proxy["spec"]["defaultConfig"]["providers"][0]["apiTokens"],
        json!(["sk-from-secret"])
    );
}

/// A writer like the console: read, add its entry, PUT with the resourceVersion, retry on 409.
async fn foreign_writer(client: kube::Client, index: usize) {
    use kube::api::{Api, DynamicObject, PostParams};
    use kube::discovery::ApiResource;
    let bridge = ApiResource {
        group: "networking.higress.io".into(),
        version: "v1".into(),
        api_version: "networking.higress.io/v1".into(),
        kind: "McpBridge".into(),
        plural: "mcpbridges".into(),
    };
    let plugin = ApiResource {
        group: "extensions.higress.io".into(),
        version: "v1alpha1".into(),
        api_version: "extensions.higress.io/v1alpha1".into(),
        kind: "WasmPlugin".into(),
        plural: "wasmplugins".into(),
    };
    for (resource, name) in [(&bridge, "default"), (&plugin, "key-auth.internal")] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, resource);
        loop {
            let Ok(mut object) = api.get(name).await else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            if resource.kind == "McpBridge" {
                let registries = object.data["spec"]["registries"].as_array_mut().unwrap();
                registries.push(json!({"domain": format!("f{index}.example.com"), "name": format!("foreign-{index}"), "port": 80, "type": "dns"}));
            } else {
                let consumers = object.data["spec"]["defaultConfig"]["consumers"]
                    .as_array_mut()
                    .unwrap();
                consumers.push(json!({"name": format!("foreign-{index}"), "keys": ["x-f"], "in_header": true, "in_query": false, "credentials": [format!("f-{index}")]}));
            }
            match api.replace(name, &PostParams::default(), &object).await {
                Ok(_) => break,
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => panic!("foreign writer: {e}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appliers_and_a_foreign_writer_lose_no_update() {
    const APPLIERS: usize = 8;
    const MODELS: usize = 50;
    let cluster = Cluster::start().await;
    for object in console_objects() {
        cluster.sim.insert(object).unwrap();
    }
    let mut tasks = Vec::new();
    for applier in 0..APPLIERS {
        let engine = cluster.engine().await;
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for m in 0..MODELS {
                outcomes.push(engine.apply(&deploy(&format!("a{applier}-m{m}"), 1)).await.outcome);
            }
            outcomes
        }));
    }
    let client = higress_route_worker::cluster::connect(Some(&cluster.kubeconfig))
        .await
        .unwrap();
    let foreign = tokio::spawn(async move {
        for i in 0..20 {
            foreign_writer(client.clone(), i).await;
        }
    });
    for task in tasks {
        assert!(task.await.unwrap().iter().all(|o| *o == Outcome::Applied));
    }
    foreign.await.unwrap();

    let count =
        |list: &Value, field: &str, value: &str| list.as_array().unwrap().iter().filter(|e| e[field] == value).count();
    let bridge = cluster.get("mcpbridges", "default").unwrap();
    let key_auth = cluster.get("wasmplugins", "key-auth.internal").unwrap();
    let ai_proxy = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    let registries = &bridge["spec"]["registries"];
    let consumers = &key_auth["spec"]["defaultConfig"]["consumers"];
    let providers = &ai_proxy["spec"]["defaultConfig"]["providers"];
    assert_eq!(registries.as_array().unwrap().len(), 1 + APPLIERS * MODELS + 20);
    assert_eq!(consumers.as_array().unwrap().len(), 1 + APPLIERS * MODELS + 20);
    assert_eq!(providers.as_array().unwrap().len(), 1 + APPLIERS * MODELS);
    for applier in 0..APPLIERS {
        for m in 0..MODELS {
            let model = format!("a{applier}-m{m}");
            assert_eq!(
                count(registries, "name", &format!("llm-p-{model}.internal")),
                1,
                "{model}"
            );
            assert_eq!(count(consumers, "name", &format!("c-{model}")), 1, "{model}");
            assert_eq!(count(providers, "id", &format!("p-{model}")), 1, "{model}");
            assert!(cluster
                .get("ingresses", &format!("ai-route-{model}.internal"))
                .is_some());
        }
    }
    for i in 0..20 {
        assert_eq!(count(registries, "name", &format!("foreign-{i}")), 1);
        assert_eq!(count(consumers, "name", &format!("foreign-{i}")), 1);
    }
    assert_eq!(count(registries, "name", "nacos-prod"), 1);
    assert_eq!(count(consumers, "name", "carol"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_coalesces_shared_writes_and_reports_each_event() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let events: Vec<LifecycleEvent> = (0..20).map(|i| deploy(&format!("b{i}"), 1)).collect();
    let mut with_invalid = events.clone();
    // An event whose upstream names an unknown provider is rejected alone.
    with_invalid.insert(
        5,
        parse(
            event::DEPLOYED_TYPE,
            json!({"model": "bad", "revision": 1, "provider": {"name": "x", "type": "deepseek", "apiTokens": ["sk-x"]},
        "route": {"upstreams": [{"provider": "x", "weight": 50}, {"provider": "ghost", "weight": 50}]}}),
        ),
    );
    let results = engine.apply_batch(&with_invalid).await;
    assert_eq!(results.len(), 21);
    assert_outcome(&results[5], Outcome::Rejected);
    for (i, result) in results.iter().enumerate().filter(|(i, _)| *i != 5) {
        assert_outcome(result, Outcome::Applied);
        assert!(result.changes.iter().any(|c| c.kind == "Ingress"), "{i}");
    }
    let counters = cluster.sim.counters();
    assert_eq!(
        counters.get("update", "wasmplugins") + counters.get("create", "wasmplugins"),
        3,
        "ai-proxy, key-auth, ai-statistics once each"
    );
    assert_eq!(counters.get("create", "mcpbridges"), 1);
    assert_eq!(counters.get("create", "ingresses"), 20);
    assert!(cluster.get("ingresses", "ai-route-bad.internal").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replaces_an_ingress_left_by_a_half_finished_deploy() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    // A deploy that wrote the Ingress but failed before its ConfigMap: the route looks new.
    cluster
        .sim
        .insert(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                       "metadata": {"name": "ai-route-h0.internal", "namespace": NS, "labels": {"higress.io/resource-definer": "higress"}},
                       "spec": {"ingressClassName": "stale"}}))
        .unwrap();
    let events: Vec<LifecycleEvent> = (0..6).map(|i| deploy(&format!("h{i}"), 1)).collect();
    let results = engine.apply_batch(&events).await;
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let ingress = cluster.get("ingresses", "ai-route-h0.internal").unwrap();
    assert_eq!(ingress["spec"]["ingressClassName"], "higress");
    assert_eq!(
        ingress["metadata"]["annotations"]["higress.io/destination"],
        "llm-p-h0.internal.dns:443"
    );
    assert_eq!(
        cluster.sim.counters().get("list", "ingresses"),
        0,
        "new routes' Ingresses are not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_new_models_reads_no_route_config_maps_and_replaces_a_console_route_of_the_same_name() {
    use higress_route_worker::higress::{self, Action, Decision, Settings, State};
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    // A route the console made under the name of a model the worker has never seen (so no fence
    // entry): the same ConfigMap the mapping would write, for another path.
    let console_route = parse(
        event::DEPLOYED_TYPE,
        json!({"model": "h0", "revision": 1, "provider": {"name": "p-h0", "type": "openai", "url": "https://h0.models.example.com/v1", "apiTokens": ["sk"]},
               "route": {"domains": ["api.example.com"], "path": "/made-in-the-console"}}),
    );
    let Ok(Decision::Apply(plan)) =
        higress::plan(&console_route, &State::new(), &Settings::default(), chrono::Utc::now())
    else {
        panic!("the console route is planned")
    };
    let config_map = plan
        .steps
        .iter()
        .find_map(|step| match &step.action {
            Action::Put(object) if step.key.name == names::route_config_map("h0") => Some(Value::clone(object)),
            _ => None,
        })
        .unwrap();
    cluster.sim.insert(config_map).unwrap();
    let events: Vec<LifecycleEvent> = (0..6).map(|i| deploy(&format!("h{i}"), 1)).collect();
    assert!(events.len() > higress::reads::TARGETED_UP_TO);
    let results = engine.apply_batch(&events).await;
    assert!(results.iter().all(|r| r.outcome == Outcome::Applied), "{results:?}");
    let route = cluster.get("configmaps", &names::route_config_map("h0")).unwrap();
    let data = route["data"]["data"].as_str().unwrap();
    assert!(
        data.contains("\"/h0\"") && !data.contains("made-in-the-console"),
        "{data}"
    );
    assert!(
        results[0]
            .changes
            .iter()
            .any(|c| c.kind == "ConfigMap" && c.name == names::route_config_map("h0") && c.operation == "updated"),
        "{:?}",
        results[0].changes
    );
    assert!(lists(&results[1], &names::route_config_map("h1"), "created"));
    assert_eq!(
        cluster.sim.counters().get("list", "configmaps"),
        1,
        "only the fences are listed, not every route's ConfigMap"
    );
}

/// An older retirement still retrying its deletions while a newer deploy of the model lands through
/// another engine: the newer deploy rewrites the route's objects with its revision (though nothing
/// else in them changed), so each delete the retirement tries, conditional on the version it read,
/// meets a 409; the retirement then finds the model fenced at the newer revision and leaves the route
/// to it. The route stays whole: its Ingress, its ConfigMap, its key-auth rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_retirement_still_retrying_leaves_a_newer_deploy_whole() {
    let cluster = Cluster::start().await;
    let deployer = cluster.engine().await;
    assert_outcome(&deployer.apply(&deploy("m", 1)).await, Outcome::Applied);
    // Every delete of the route's objects is refused until the newer deploy is done: whatever the
    // retirement then deletes, it deletes after the deploy's writes.
    let faults = cluster.sim.faults();
    faults.set_error_rate(
        1.0,
        FaultSpec::new(503).for_method(Method::DELETE).for_path("ai-route-m"),
    );
    let retirer = cluster.engine().await;
    let retirement = tokio::spawn(async move { retirer.apply(&retire("m", 2)).await });
    let fence = |cluster: &Cluster| {
        cluster
            .get("configmaps", &names::fence("m"))
            .and_then(|f| f["data"]["m"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    wait_for("the retirement to fence the model", || {
        fence(&cluster).contains("retiredAt")
    })
    .await;
    assert_outcome(&deployer.apply(&deploy("m", 3)).await, Outcome::Applied);
    faults.clear();
    let retired = retirement.await.unwrap();

    let ingress = cluster
        .get("ingresses", "ai-route-m.internal")
        .expect("the route's Ingress stays");
    assert_eq!(ingress["metadata"]["annotations"][names::ANNOTATION_REVISION], "3");
    let config_map = cluster
        .get("configmaps", "ai-route-m")
        .expect("the route's ConfigMap stays");
    assert_eq!(config_map["metadata"]["annotations"][names::ANNOTATION_REVISION], "3");
    let key_auth = cluster.get("wasmplugins", "key-auth.internal").unwrap();
    let rules = key_auth["spec"]["matchRules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["ingress"] == json!(["ai-route-m.internal"])),
        "the route keeps its key-auth rule: {rules:?}"
    );
    // What the retirement says it wrote, it wrote: its fence entry, nothing of the route.
    let deleted: Vec<&str> = retired
        .changes
        .iter()
        .filter(|c| c.operation == "deleted")
        .map(|c| c.name.as_str())
        .collect();
    assert!(deleted.is_empty(), "{retired:?}");
}

/// A deploy cut short after recording its provider, its fence entry written after a retirement of
/// the model read the fence but before the retirement wrote its own: the retirement's write merges
/// the deploy's providers and consumers into its entry, and, seeing there more than it planned to
/// release, the retirement applies itself again at once; the provider does not wait for the
/// retirement's next delivery to be released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retirement_releases_what_a_deploy_cut_short_recorded_after_its_read() {
    use higress_route_worker::higress::{self, Decision, Settings, State};
    let cluster = Cluster::start().await;
    // What the deploy left: its fence entry, its provider and its provider-user records.
    let Decision::Apply(plan) =
        higress::plan(&deploy("m", 1), &State::new(), &Settings::default(), chrono::Utc::now()).unwrap()
    else {
        panic!("applies")
    };
    let mut left = State::new();
    higress::simulate(&mut left, &plan).unwrap();
    let cut_short = [
        (Kind::ConfigMap, names::fence("m")),
        (Kind::McpBridge, names::MCP_BRIDGE.to_string()),
        (Kind::WasmPlugin, "ai-proxy.internal".to_string()),
    ];

    // The retirement reads an empty cluster; its fence write (a create) is refused until the
    // deploy's objects are there.
    let faults = cluster.sim.faults();
    faults.set_error_rate(1.0, FaultSpec::new(503).for_method(Method::POST).for_path("configmaps"));
    let retirer = cluster.engine().await;
    let retirement = tokio::spawn(async move { retirer.apply(&retire("m", 2)).await });
    wait_for("the retirement to try its fence", || {
        !cluster.failed_writes().is_empty()
    })
    .await;
    for (kind, name) in &cut_short {
        cluster
            .sim
            .insert(left.get_named(*kind, name).unwrap().clone())
            .unwrap();
    }
    faults.clear();
    let retired = retirement.await.unwrap();
    assert_outcome(&retired, Outcome::Applied);
    assert!(
        retired
            .warnings
            .iter()
            .any(|w| w.contains("released what a deploy cut short recorded")),
        "{retired:?}"
    );

    let ai_proxy = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    assert_eq!(ai_proxy["spec"]["defaultConfig"]["providers"], json!([]), "{ai_proxy}");
    assert_eq!(
        ai_proxy["metadata"]["annotations"].get(names::ANNOTATION_PROVIDER_USERS),
        None
    );
    let bridge = cluster.get("mcpbridges", names::MCP_BRIDGE).unwrap();
    assert_eq!(bridge["spec"]["registries"], json!([]), "{bridge}");
    let fence = cluster.get("configmaps", &names::fence("m")).unwrap();
    assert!(fence["data"]["m"].as_str().unwrap().contains("retiredAt"));
}

/// A replace of a route's object that someone deleted after the deploy read it (a retirement of an
/// older revision, say) is answered 404: the deploy reads again and creates it, as after a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_object_deleted_after_the_read_is_created_again() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("m", 1)).await, Outcome::Applied);
    // The redeploy's Ingress (written before the ConfigMap) is held back while the ConfigMap goes.
    let faults = cluster.sim.faults();
    faults.set_error_rate(
        1.0,
        FaultSpec::new(503)
            .for_method(Method::PUT)
            .for_path("ingresses/ai-route-m.internal"),
    );
    let redeployer = cluster.engine().await;
    let redeploy = tokio::spawn(async move { redeployer.apply(&deploy("m", 2)).await });
    wait_for("the redeploy to try its Ingress", || {
        !cluster.failed_writes().is_empty()
    })
    .await;
    let config_map = ObjectKey::new(Kind::ConfigMap, "ai-route-m");
    engine.api().delete(&config_map, None).await.unwrap();
    faults.clear();
    let redeployed = redeploy.await.unwrap();
    assert_outcome(&redeployed, Outcome::Applied);
    let config_map = cluster.get("configmaps", "ai-route-m").expect("created again");
    assert_eq!(config_map["metadata"]["annotations"][names::ANNOTATION_REVISION], "2");
    assert!(lists(&redeployed, "ai-route-m", "created"), "{redeployed:?}");
}

/// An older deploy held back before its Ingress while another engine retires the model at a newer
/// revision: when it goes on, it reads the fences once more before exposing anything, finds the
/// model fenced past it, and does not create the route's Ingress or ConfigMap (the route never goes
/// live after its retirement, without the key-auth rule a retirement takes); its settle then applies
/// the retirement to what it did write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_deploy_held_back_does_not_expose_a_route_retired_meanwhile() {
    use higress_route_worker::higress::fence::new_fence;
    let cluster = Cluster::start().await;
    // The model's fence shard exists, so the fence writes are replaces; the deploy's first create
    // is its domain's ConfigMap, and every create of a ConfigMap is refused until the retirement
    // is done.
    cluster.sim.insert(new_fence(&names::fence("m"), NS)).unwrap();
    let faults = cluster.sim.faults();
    faults.set_error_rate(1.0, FaultSpec::new(503).for_method(Method::POST).for_path("configmaps"));
    let deployer = cluster.engine().await;
    let deploying = tokio::spawn(async move { deployer.apply(&deploy("m", 2)).await });
    wait_for("the older deploy to try its domain", || {
        !cluster.failed_writes().is_empty()
    })
    .await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&retire("m", 4)).await, Outcome::Applied);
    faults.clear();
    let deployed = deploying.await.unwrap();

    assert_eq!(deployed.outcome, Outcome::Stale, "{deployed:?}");
    let ingress_creates = cluster
        .sim
        .audit()
        .iter()
        .filter(|w| w.verb == "create" && w.resource == "ingresses")
        .count();
    assert_eq!(ingress_creates, 0, "the route's Ingress was never created");
    assert_retired_route_stays_down(&cluster);
}

/// A retirement of the deploy's own revision outranks the deploy (`FenceEntry::supersedes`). Landing
/// while the deploy waits to retry its Ingress create, it wins: the deploy's retry leaves the Ingress
/// alone, and its settle removes what it wrote after the retirement. (Before, only a newer revision
/// counted, and the deploy brought the retired route back, without its key-auth rule.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retirement_of_the_deploys_own_revision_landing_mid_deploy_wins() {
    let cluster = Cluster::start().await;
    hold_next(&cluster, Method::POST, "ingresses");
    let deployer = cluster.engine().await;
    let deploying = tokio::spawn(async move { deployer.apply(&deploy("m", 5)).await });
    wait_for("the deploy to try its Ingress", || {
        cluster.sim.counters().get("create", "ingresses") > 0
    })
    .await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&retire("m", 5)).await, Outcome::Applied);
    let deployed = deploying.await.unwrap();

    assert_eq!(deployed.outcome, Outcome::Stale, "{deployed:?}");
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_none());
    assert_retired_route_stays_down(&cluster);
}

/// Three events of one model on three writers: deploy 2 passes its last fence look; retirement 3 lands
/// (fence, Ingress, key-auth rule) before deploy 2's Ingress create; deploy 5 then takes the fence
/// entry, writing over the retirement, before its own key-auth rule and Ingress. Deploy 2's settle
/// finds a newer deploy in the fence and no retirement to apply, while its Ingress is live without
/// the key-auth rule the retirement took. It removes its own Ingress: the route waits for deploy 5
/// rather than stay open to anyone. (The interleaving is made by hand: deploy 2 is held before its
/// last write, and the retirement's and deploy 5's effects are written meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_overtaken_by_a_newer_one_removes_its_ingress_left_open_by_a_retirement_between() {
    let cluster = Cluster::start().await;
    let fence = names::fence("m");
    // The fence shard and the domain exist: the route's ConfigMap, written last, is deploy 2's only
    // create of a ConfigMap, and it is held back a second.
    cluster
        .sim
        .insert(higress_route_worker::higress::fence::new_fence(&fence, NS))
        .unwrap();
    let domain = higress_route_worker::higress::route::domain_config_map("api.example.com", NS, None);
    cluster.sim.insert(domain).unwrap();
    hold_next(&cluster, Method::POST, "configmaps");
    let deployer = cluster.engine().await;
    let deploying = tokio::spawn(async move { deployer.apply(&deploy("m", 2)).await });
    wait_for("deploy 2's route ConfigMap to be tried", || {
        cluster.sim.counters().get("create", "configmaps") > 0
    })
    .await;
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_some());
    // What retirement 3 took, as it would have before deploy 2's Ingress landed: the route's
    // key-auth rule. Then deploy 5's fence entry, over the retirement's.
    let engine = cluster.engine().await;
    let key_auth = ObjectKey::new(Kind::WasmPlugin, "key-auth.internal");
    let mut without_rule = engine.api().get(&key_auth).await.unwrap().unwrap();
    let rules = without_rule["spec"]["matchRules"].as_array_mut().unwrap();
    rules.retain(|r| r["ingress"] != json!(["ai-route-m.internal"]));
    engine.api().replace(&key_auth, &without_rule).await.unwrap();
    let shard = ObjectKey::new(Kind::ConfigMap, fence.clone());
    let mut fenced = engine.api().get(&shard).await.unwrap().unwrap();
    fenced["data"]["m"] = json!(r#"{"revision":5,"providers":["p-m"],"consumers":["c-m"]}"#);
    engine.api().replace(&shard, &fenced).await.unwrap();
    let deployed = deploying.await.unwrap();

    assert!(
        cluster.get("ingresses", "ai-route-m.internal").is_none(),
        "deploy 2's Ingress is live without its key-auth rule"
    );
    assert_eq!(deployed.outcome, Outcome::Stale, "{deployed:?}");
    assert!(lists(&deployed, "ai-route-m.internal", "deleted"), "{deployed:?}");
}

/// An older deploy that passed the fence before a retirement creates the route's Ingress after the
/// retirement read the route (no Ingress then, so it planned no delete). Before the retirement takes
/// the route's key-auth rule, it looks at the route's Ingresses again and deletes that one first: in
/// the API server's order of writes, the Ingress goes before the rule, so the route is never live
/// without it. (Without the second look the retirement's settle deleted it, after the rule.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retirement_takes_an_ingress_created_after_its_read_before_the_key_auth_rule() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("m", 1)).await, Outcome::Applied);
    // The route's Ingress is not there when the retirement reads: deploy 2 is about to create it.
    let ingress_key = ObjectKey::new(Kind::Ingress, "ai-route-m.internal");
    let mut late = engine.api().get(&ingress_key).await.unwrap().unwrap();
    engine.api().delete(&ingress_key, None).await.unwrap();
    // The retirement's first write, its fence, waits a second.
    hold_next(&cluster, Method::PUT, format!("configmaps/{}", names::fence("m")));
    let retirer = cluster.engine().await;
    let retiring = tokio::spawn(async move { retirer.apply(&retire("m", 3)).await });
    wait_for("the retirement to try its fence", || {
        !cluster.failed_writes().is_empty()
    })
    .await;
    // Deploy 2's Ingress lands.
    late["metadata"]["annotations"][names::ANNOTATION_REVISION] = json!("2");
    cluster.sim.insert(without_server_fields(&late)).unwrap();
    let audited = cluster.sim.audit().len();
    let retired = retiring.await.unwrap();

    assert_outcome(&retired, Outcome::Applied);
    assert!(cluster.get("ingresses", "ai-route-m.internal").is_none());
    assert_retired_route_stays_down(&cluster);
    assert_deleted_before_key_auth(&cluster, audited, "ai-route-m.internal");
}

/// In the writes since the audit log held `audited` entries, `ingress` was deleted before key-auth was
/// written: the route was never live without its rule.
fn assert_deleted_before_key_auth(cluster: &Cluster, audited: usize, ingress: &str) {
    let after: Vec<(String, String)> = cluster.sim.audit()[audited..]
        .iter()
        .map(|w| (w.verb.clone(), format!("{}/{}", w.resource, w.name)))
        .collect();
    let at = |verb: &str, object: &str| after.iter().position(|(v, o)| v == verb && o == object);
    let ingress_gone = at("delete", &format!("ingresses/{ingress}")).expect("the Ingress deleted");
    let rule_gone = at("update", "wasmplugins/key-auth.internal").expect("key-auth written");
    assert!(ingress_gone < rule_gone, "the rule went before the Ingress: {after:?}");
}

/// A large batch of retirements lists its routes' Ingresses by our route label, and every Ingress
/// without it: one the console saved since (a save rebuilds it without our label) is torn down with
/// the rest, and so is an unlabelled one that lands after the batch's read (a console save, or a
/// deploy of a worker from before the label), before the route's key-auth rule goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_of_retirements_takes_the_route_ingresses_it_did_not_label() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    let models: Vec<String> = (0..=higress_route_worker::higress::reads::LIST_INGRESSES_ABOVE)
        .map(|i| format!("r{i:02}"))
        .collect();
    let deploys: Vec<LifecycleEvent> = models.iter().map(|m| deploy(m, 1)).collect();
    for result in engine.apply_batch(&deploys).await {
        assert_outcome(&result, Outcome::Applied);
    }
    let unlabelled = |model: &str| {
        let key = ObjectKey::new(Kind::Ingress, names::route_ingress(model));
        let mut ingress = without_server_fields(&cluster.get("ingresses", &key.name).expect("deployed"));
        ingress["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(names::LABEL_ROUTE);
        (key, ingress)
    };
    // r00: saved in the console since.
    let (key, saved) = unlabelled("r00");
    engine.api().delete(&key, None).await.unwrap();
    cluster.sim.insert(saved).unwrap();
    // r01: not there when the batch reads; it lands while the batch waits on its first fence write.
    let (key, late) = unlabelled("r01");
    engine.api().delete(&key, None).await.unwrap();
    hold_next(&cluster, Method::PUT, format!("configmaps/{}", names::fence("r01")));
    let retirer = cluster.engine().await;
    let retirements: Vec<LifecycleEvent> = models.iter().map(|m| retire(m, 2)).collect();
    let retiring = tokio::spawn(async move { retirer.apply_batch(&retirements).await });
    wait_for("the retirements to try their fences", || {
        !cluster.failed_writes().is_empty()
    })
    .await;
    cluster.sim.insert(late).unwrap();
    let audited = cluster.sim.audit().len();
    for result in retiring.await.unwrap() {
        assert_outcome(&result, Outcome::Applied);
    }

    for model in &models {
        assert!(
            cluster.get("ingresses", &names::route_ingress(model)).is_none(),
            "{model}'s Ingress outlived its retirement"
        );
    }
    assert_deleted_before_key_auth(&cluster, audited, "ai-route-r01.internal");
}

/// Whether the result lists that operation on the object of that name.
fn lists(result: &RouteResult, name: &str, operation: &str) -> bool {
    result
        .changes
        .iter()
        .any(|c| c.name == name && c.operation == operation)
}

/// Model m's retirement holds: no route ConfigMap, no key-auth rule for its Ingress.
fn assert_retired_route_stays_down(cluster: &Cluster) {
    assert!(cluster.get("configmaps", "ai-route-m").is_none());
    let key_auth = cluster.get("wasmplugins", "key-auth.internal").unwrap();
    let rules = key_auth["spec"]["matchRules"].as_array().unwrap();
    assert!(
        !rules.iter().any(|r| r["ingress"] == json!(["ai-route-m.internal"])),
        "the retirement's clean-up holds: {rules:?}"
    );
}

/// After its writes a deploy reads its model's fence, to apply a retirement that landed meanwhile.
/// When that read fails, the deploy is not `applied` unchecked: it is `failed` (retryable, its writes
/// listed), so the worker applies it again, and a deploy its model's retirement made stale applies
/// that retirement (`tests/mapping.rs::a_stale_deploy_removes_what_its_models_retirement_left`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_fence_cannot_be_read_after_its_writes_is_applied_again() {
    let cluster = Cluster::start().await;
    let faults = cluster.sim.faults();
    faults.set_delay_reads(false);
    faults.set_latency(Duration::from_millis(200), Duration::ZERO);
    let engine = cluster.engine().await;
    let deploying = tokio::spawn(async move { engine.apply(&deploy("m", 1)).await });
    // Its last write has arrived (the route's ConfigMap, its third ConfigMap create after its fence
    // shard and domain): from now on the fence cannot be read.
    wait_for("the route's ConfigMap write", || {
        cluster.sim.counters().get("create", "configmaps") >= 3
    })
    .await;
    faults.fail_next(
        100,
        FaultSpec::new(403).for_method(Method::GET).for_path(names::fence("m")),
    );
    let result = deploying.await.unwrap();
    assert_outcome(&result, Outcome::Failed);
    let error = result.error.as_ref().unwrap();
    assert_eq!(error.reason, "unavailable");
    assert!(error.retryable);
    assert!(error.message.contains("fence was not checked"), "{}", error.message);
    let written: Vec<(&str, &str)> = result
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.name.as_str()))
        .collect();
    assert!(written.contains(&("Ingress", "ai-route-m.internal")), "{written:?}");
    assert!(written.contains(&("ConfigMap", "ai-route-m")), "{written:?}");
}

/// Model b's route sends half its traffic to model a's provider. b's deploy is held back before one of
/// its two provider objects (ai-proxy, or McpBridge) while a's retirement, which does not yet see b as
/// a user of the provider there, removes the provider's entry from it. b's deploy re-reads that object
/// on its retry, finds the provider gone, and is refused there, before its Ingress: b's route never
/// goes live pointing at a provider half removed (a service rule without its registry, or the
/// reverse: 503 until redeployed). b's retirement then clears what its deploy left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_using_a_provider_its_owners_retirement_removes_meanwhile_is_not_exposed() {
    for held in ["wasmplugins/ai-proxy.internal", "mcpbridges/default"] {
        let cluster = Cluster::start().await;
        let engine = cluster.engine().await;
        assert_outcome(&engine.apply(&deploy("a", 1)).await, Outcome::Applied);
        let sharing = parse(
            event::DEPLOYED_TYPE,
            json!({"model": "b", "revision": 1,
                "provider": {"name": "p-b", "type": "openai", "url": "https://b.models.example.com/v1", "apiTokens": ["sk-b"]},
                "route": {"domains": ["api.example.com"], "path": "/b",
                          "upstreams": [{"provider": "p-b", "weight": 50}, {"provider": "p-a", "weight": 50}]}}),
        );
        hold_next(&cluster, Method::PUT, held);
        let other = if held.starts_with("wasmplugins") {
            "mcpbridges"
        } else {
            "wasmplugins"
        };
        let deployer = cluster.engine().await;
        let deploying = tokio::spawn(async move { deployer.apply(&sharing).await });
        // Held back on one object, b's deploy has written the other, recording itself there as a
        // user of p-a.
        wait_for(
            "b's deploy to write one provider object and be held back on the other",
            || !cluster.failed_writes().is_empty() && cluster.sim.counters().get("update", other) > 0,
        )
        .await;
        assert_outcome(&engine.apply(&retire("a", 2)).await, Outcome::Applied);
        let deployed = deploying.await.unwrap();

        assert_outcome(&deployed, Outcome::Failed);
        let error = deployed.error.as_ref().unwrap();
        assert_eq!(error.reason, "unknown-provider", "{held}: {deployed:?}");
        assert!(error.message.contains("\"p-a\""), "{held}: {}", error.message);
        assert!(
            cluster.get("ingresses", "ai-route-b.internal").is_none(),
            "{held}: b's route is not exposed"
        );
        assert!(
            !deployed.changes.iter().any(|c| c.kind == "Ingress"),
            "{held}: {deployed:?}"
        );

        // What b's deploy recorded in the other object keeps p-a's half there; b's retirement
        // releases it, as b's fence entry names p-a.
        assert_outcome(&engine.apply(&retire("b", 2)).await, Outcome::Applied);
        let ai_proxy = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
        assert_eq!(
            ai_proxy["spec"]["defaultConfig"]["providers"],
            json!([]),
            "{held}: {ai_proxy}"
        );
        let bridge = cluster.get("mcpbridges", names::MCP_BRIDGE).unwrap();
        assert_eq!(bridge["spec"]["registries"], json!([]), "{held}: {bridge}");
    }
}

/// Model a's deploy, its provider `p-a` served at `url`; model b's route, all to `p-a`.
fn with_provider_at(model: &str, revision: u64, url: &str) -> LifecycleEvent {
    parse(
        event::DEPLOYED_TYPE,
        json!({"model": model, "revision": revision,
            "provider": {"name": "p-a", "type": "openai", "url": url, "apiTokens": ["sk-a"]},
            "route": {"domains": ["api.example.com"], "path": format!("/{model}")}}),
    )
}

fn using_p_a(model: &str) -> LifecycleEvent {
    parse(
        event::DEPLOYED_TYPE,
        json!({"model": model, "revision": 1,
            "provider": {"name": format!("p-{model}"), "type": "openai", "url": "https://b.models.example.com/v1", "apiTokens": ["sk-b"]},
            "route": {"domains": ["api.example.com"], "path": format!("/{model}"),
                      "upstreams": [{"provider": "p-a", "weight": 100}]}}),
    )
}

/// The port McpBridge serves `p-a` at, and the one model b's Ingress sends its traffic to.
fn p_a_ports(cluster: &Cluster) -> (Value, String) {
    let bridge = cluster.get("mcpbridges", names::MCP_BRIDGE).unwrap();
    let registry = bridge["spec"]["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "llm-p-a.internal")
        .cloned()
        .unwrap();
    let ingress = cluster.get("ingresses", "ai-route-b.internal").unwrap();
    let destination = ingress["metadata"]["annotations"]["higress.io/destination"]
        .as_str()
        .unwrap()
        .to_string();
    (registry["port"].clone(), destination)
}

/// A redeploy moving its provider to another port while another route sends traffic to it is refused
/// by name (the console would re-save that route; we do not write other models' routes): b's Ingress
/// and p-a's registry stay in step. Once b no longer uses it, the move goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_another_route_uses_is_not_moved_from_under_it() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(
        &engine
            .apply(&with_provider_at("a", 1, "https://a.models.example.com/v1"))
            .await,
        Outcome::Applied,
    );
    assert_outcome(&engine.apply(&using_p_a("b")).await, Outcome::Applied);
    assert_eq!(
        p_a_ports(&cluster),
        (json!(443), "llm-p-a.internal.dns:443".to_string())
    );

    let moved = engine
        .apply(&with_provider_at("a", 2, "https://a.models.example.com:8443/v1"))
        .await;
    assert_outcome(&moved, Outcome::Rejected);
    let error = moved.error.as_ref().unwrap();
    assert_eq!(error.reason, "entry-taken");
    assert!(
        error.message.contains("provider \"p-a\" also serves routes [\"b\"]"),
        "{}",
        error.message
    );
    assert_eq!(
        p_a_ports(&cluster),
        (json!(443), "llm-p-a.internal.dns:443".to_string())
    );

    assert_outcome(&engine.apply(&retire("b", 2)).await, Outcome::Applied);
    let moved = engine
        .apply(&with_provider_at("a", 3, "https://a.models.example.com:8443/v1"))
        .await;
    assert_outcome(&moved, Outcome::Applied);
    let ingress = cluster.get("ingresses", "ai-route-a.internal").unwrap();
    assert_eq!(
        ingress["metadata"]["annotations"]["higress.io/destination"],
        "llm-p-a.internal.dns:8443"
    );
}

/// The same move, planned before b used the provider and written after b's deploy recorded itself
/// as a user: a's writes, re-reading the provider objects, find b there and are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_move_planned_before_another_route_used_it_is_refused_at_the_write() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(
        &engine
            .apply(&with_provider_at("a", 1, "https://a.models.example.com/v1"))
            .await,
        Outcome::Applied,
    );
    // a's redeploy has read and planned; its first write (its fence) waits a second.
    let fence = names::fence("a");
    hold_next(&cluster, Method::PUT, format!("configmaps/{fence}"));
    let mover = cluster.engine().await;
    let moving = tokio::spawn(async move {
        mover
            .apply(&with_provider_at("a", 2, "https://a.models.example.com:8443/v1"))
            .await
    });
    wait_for("a's redeploy to try its fence", || !cluster.failed_writes().is_empty()).await;
    assert_outcome(&engine.apply(&using_p_a("b")).await, Outcome::Applied);
    let moved = moving.await.unwrap();

    assert_outcome(&moved, Outcome::Failed);
    assert_eq!(moved.error.as_ref().unwrap().reason, "entry-taken", "{moved:?}");
    assert_eq!(
        p_a_ports(&cluster),
        (json!(443), "llm-p-a.internal.dns:443".to_string())
    );
}

/// The consumers of `key-auth.internal`, by name, in order.
fn consumer_names(cluster: &Cluster) -> Vec<String> {
    let key_auth = cluster.get("wasmplugins", "key-auth.internal").unwrap();
    key_auth["spec"]["defaultConfig"]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// `metadata.resourceVersion` of a stored object.
fn version(cluster: &Cluster, resource: &str, name: &str) -> String {
    let object = cluster.get(resource, name).expect("object exists");
    object["metadata"]["resourceVersion"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_reads_the_shared_objects_it_wrote_by_their_metadata_only() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("first", 1)).await, Outcome::Applied);
    cluster.sim.reset_counters();
    let second = engine.apply_batch(&[deploy("second", 1), deploy("third", 1)]).await;
    for result in &second {
        assert_outcome(result, Outcome::Applied);
    }
    let counters = cluster.sim.counters();
    // McpBridge by name, the plugin CRs by list: metadata only, nothing read whole.
    assert_eq!(counters.metadata_only("get", "mcpbridges"), 1);
    assert_eq!(counters.get("get", "mcpbridges"), 1);
    assert_eq!(counters.metadata_only("list", "wasmplugins"), 1);
    assert_eq!(counters.get("list", "wasmplugins"), 1);
    assert_eq!(counters.get("get", "wasmplugins"), 0);
    // The fence shards this engine wrote are looked at by their metadata too (after the writes,
    // each of the batch's shards once more).
    let shards: std::collections::BTreeSet<String> = ["second", "third"].iter().map(|m| names::fence(m)).collect();
    assert!(counters.metadata_only("get", "configmaps") >= shards.len() as u64);
    // What the kept copies gave is what was stored: every route's entries are there.
    let consumers = consumer_names(&cluster);
    assert_eq!(consumers, ["c-first", "c-second", "c-third"]);
    let registries = cluster.get("mcpbridges", "default").unwrap()["spec"]["registries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(registries, 3);
}

/// The console's plugin CRs all removed between batches (a Higress reset, `kubectl delete wasmplugins
/// -l higress.io/resource-definer=higress`): the metadata list of them comes back empty, which a real
/// API server says with `"items": null`, and the next deploy creates them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_crs_removed_between_batches_are_created_again() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("first", 1)).await, Outcome::Applied);
    let plugins: Vec<String> = cluster
        .sim
        .list("wasmplugins", NS)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(plugins.len() >= 3, "{plugins:?}");
    for name in &plugins {
        engine
            .api()
            .delete(&ObjectKey::new(Kind::WasmPlugin, name.as_str()), None)
            .await
            .unwrap();
    }
    cluster.sim.reset_counters();
    let second = engine.apply(&deploy("second", 1)).await;
    assert_outcome(&second, Outcome::Applied);
    assert_eq!(cluster.sim.counters().metadata_only("list", "wasmplugins"), 1);
    for name in &plugins {
        assert!(cluster.get("wasmplugins", name).is_some(), "{name} not created again");
    }
    assert_eq!(consumer_names(&cluster), ["c-second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_object_another_writer_changed_between_batches_is_read_again_before_planning() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("first", 1)).await, Outcome::Applied);
    let client = higress_route_worker::cluster::connect(Some(&cluster.kubeconfig))
        .await
        .unwrap();
    foreign_writer(client, 1).await;
    cluster.sim.reset_counters();
    let second = engine.apply(&deploy("second", 1)).await;
    assert_outcome(&second, Outcome::Applied);
    // Seen moved by its metadata, read whole, planned on: written at the first attempt.
    assert_eq!(second.conflicts, 0, "{second:?}");
    let counters = cluster.sim.counters();
    assert_eq!(counters.get("get", "mcpbridges"), 2, "McpBridge: metadata, then whole");
    // One plugin CR of three moved: more than a quarter, so the list is read whole again.
    assert_eq!(counters.metadata_only("list", "wasmplugins"), 1);
    assert_eq!(counters.get("list", "wasmplugins"), 2);
    assert_eq!(counters.get("get", "wasmplugins"), 0);
    let consumers = consumer_names(&cluster);
    assert_eq!(consumers, ["c-first", "foreign-1", "c-second"]);
    let bridge = cluster.get("mcpbridges", "default").unwrap();
    assert!(bridge["spec"]["registries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "foreign-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_object_a_batch_changes_and_changes_back_is_not_reported_as_written() {
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    assert_outcome(&engine.apply(&deploy("stays", 1)).await, Outcome::Applied);
    let shared = [
        ("mcpbridges", "default"),
        ("wasmplugins", "ai-proxy.internal"),
        ("wasmplugins", "key-auth.internal"),
        ("wasmplugins", "ai-statistics-2.0.1"),
    ];
    let before: Vec<String> = shared.iter().map(|(r, n)| version(&cluster, r, n)).collect();
    cluster.sim.reset_counters();
    // A model deployed and retired, provider and consumers with it, in one batch.
    let retirement = parse(
        event::RETIRED_TYPE,
        json!({"model": "brief", "revision": 2, "deleteConsumers": true, "deleteProvider": true}),
    );
    let results = engine.apply_batch(&[deploy("brief", 1), retirement]).await;
    let updates =
        cluster.sim.counters().get("update", "mcpbridges") + cluster.sim.counters().get("update", "wasmplugins");
    let mut unchanged = 0;
    for ((resource, name), was) in shared.iter().zip(&before) {
        let moved = version(&cluster, resource, name) != *was;
        unchanged += usize::from(!moved);
        let kind = if *resource == "mcpbridges" {
            "McpBridge"
        } else {
            "WasmPlugin"
        };
        for result in &results {
            let listed = result.changes.iter().any(|c| c.kind == kind && c.name == *name);
            assert!(!listed || moved, "{kind}/{name} listed but not written: {result:?}");
        }
    }
    // The case is there: objects were sent back as they were, and the server stored nothing.
    assert!(unchanged > 0 && updates > 0, "unchanged {unchanged}, updates {updates}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_kept_objects_only_the_one_another_writer_moved_is_read_whole() {
    use kube::api::{Api, Patch, PatchParams};
    let cluster = Cluster::start().await;
    let engine = cluster.engine().await;
    // Twenty models: their fence entries spread over many shards, each kept after the batch.
    let first: Vec<LifecycleEvent> = (0..20).map(|i| deploy(&format!("f{i}"), 1)).collect();
    assert!(engine
        .apply_batch(&first)
        .await
        .iter()
        .all(|r| r.outcome == Outcome::Applied));
    let shards: std::collections::BTreeSet<String> = first.iter().map(|e| names::fence(e.model())).collect();
    assert!(shards.len() >= 8, "{shards:?}");
    // Another writer labels one shard.
    let moved = shards.iter().next().unwrap().clone();
    let client = higress_route_worker::cluster::connect(Some(&cluster.kubeconfig))
        .await
        .unwrap();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, NS);
    let label = json!({"metadata": {"labels": {"team": "platform"}}});
    config_maps
        .patch(&moved, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    cluster.sim.reset_counters();
    let second: Vec<LifecycleEvent> = (0..20).map(|i| deploy(&format!("f{i}"), 2)).collect();
    assert!(engine
        .apply_batch(&second)
        .await
        .iter()
        .all(|r| r.outcome == Outcome::Applied));
    let counters = cluster.sim.counters();
    // The fence list as metadata, then that one shard by name; never the whole list.
    assert_eq!(counters.metadata_only("list", "configmaps"), 1);
    assert_eq!(counters.get("list", "configmaps"), 1);
    assert!(counters.get("get", "configmaps") >= 1);
    // Planned on the shard as the other writer left it: its label stays, the fence entries moved on.
    let shard = cluster.get("configmaps", &moved).unwrap();
    assert_eq!(shard["metadata"]["labels"]["team"], "platform");
    let model = first
        .iter()
        .map(LifecycleEvent::model)
        .find(|m| names::fence(m) == moved)
        .unwrap();
    assert!(
        shard["data"][model].as_str().unwrap().contains("\"revision\":2"),
        "{shard}"
    );
}
