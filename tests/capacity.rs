//! Capacity is known before writing: an event that would take a shared object past the budget is
//! `rejected` with reason `capacity` before any of its writes, alone or inside a batch.

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{deploy, quick_retries, Cluster};
use higress_route_worker::cluster::{Engine, EngineConfig};
use higress_route_worker::higress::names;
use higress_route_worker::metrics::Metrics;
use higress_route_worker::result::Outcome;
use std::sync::Arc;

/// Room for a few routes' providers and consumers, not for many.
const BUDGET: usize = 6_000;

async fn engine(cluster: &Cluster) -> Engine {
    let client = higress_route_worker::cluster::connect(Some(&cluster.kubeconfig))
        .await
        .unwrap();
    Engine::new(
        client,
        EngineConfig {
            retry: quick_retries(),
            shared_object_budget: BUDGET,
            ..EngineConfig::default()
        },
        Arc::new(Metrics::default()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_the_budget_is_rejected_before_any_write() {
    let cluster = Cluster::start().await;
    let engine = engine(&cluster).await;
    let mut applied = 0;
    let refused = loop {
        assert!(applied < 50, "the budget never bit");
        let writes = cluster.writes();
        let result = engine.apply(&deploy(&format!("m{applied}"), 1)).await;
        if result.outcome == Outcome::Rejected {
            assert_eq!(cluster.writes(), writes, "nothing written: {result:?}");
            break result;
        }
        assert_eq!(result.outcome, Outcome::Applied, "{result:?}");
        applied += 1;
    };
    assert!(applied >= 2, "a few routes fit: {applied}");
    let error = refused.error.unwrap();
    assert_eq!(error.reason, "capacity");
    // Names the object and its sizes, and what to do.
    assert!(error.message.contains("WasmPlugin/"), "{}", error.message);
    assert!(
        error.message.contains(&format!("budget of {BUDGET} bytes")),
        "{}",
        error.message
    );
    assert!(error.message.contains("share providers"), "{}", error.message);
    assert!(refused.changes.is_empty());
    // Every shared object stays within the budget.
    for (resource, name) in [
        ("wasmplugins", "ai-proxy.internal"),
        ("wasmplugins", "key-auth.internal"),
        ("mcpbridges", "default"),
    ] {
        let object = cluster.get(resource, name).unwrap();
        let size = serde_json::to_vec(&object).unwrap().len();
        // What the API server adds (managedFields, uid, timestamps) is outside our budget.
        let ours = serde_json::to_vec(&higress_route_worker::higress::state::without_server_fields(&object))
            .unwrap()
            .len();
        assert!(ours <= BUDGET, "{name}: {ours} (stored {size})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_batch_only_the_events_past_the_budget_are_rejected() {
    let cluster = Cluster::start().await;
    let engine = engine(&cluster).await;
    let batch: Vec<_> = (0..20).map(|i| deploy(&format!("b{i}"), 1)).collect();
    let results = engine.apply_batch(&batch).await;
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome).collect();
    let first_refused = outcomes
        .iter()
        .position(|o| *o == Outcome::Rejected)
        .expect("20 routes do not fit the budget");
    assert!(first_refused >= 2, "{outcomes:?}");
    assert!(
        outcomes[..first_refused].iter().all(|o| *o == Outcome::Applied),
        "{outcomes:?}"
    );
    for (result, event) in results.iter().zip(&batch) {
        let live = cluster
            .get("ingresses", &format!("ai-route-{}.internal", event.model()))
            .is_some();
        match result.outcome {
            Outcome::Applied => assert!(live, "{result:?}"),
            Outcome::Rejected => {
                assert_eq!(result.error.as_ref().unwrap().reason, "capacity");
                assert!(!live, "a refused event writes nothing: {result:?}");
                // Nor any entry in the objects the batch's other events wrote.
                let model = event.model();
                let bridge = serde_json::to_string(&cluster.get("mcpbridges", "default").unwrap()).unwrap();
                assert!(!bridge.contains(&format!("p-{model}")), "{model}'s registry written");
                let fence = cluster.get("configmaps", &names::fence(model));
                assert!(
                    fence.is_none_or(|fence| fence["data"].get(model).is_none()),
                    "{model}'s fence entry written"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The API server holds an object's annotations to 256 KiB, keys and values together; ours grow
/// with the routes (provider users, route revisions). An event that would take them past it is
/// refused like one past the budget, before any write, naming the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_the_annotation_limit_is_rejected_before_any_write() {
    let cluster = Cluster::start().await;
    let mut key_auth = cluster::console_objects()
        .into_iter()
        .find(|o| o["metadata"]["name"] == "key-auth.internal")
        .unwrap();
    // Routes of ours recorded up to a few bytes short of the limit.
    let mut records = serde_json::Map::new();
    // `{"route":1,...}`: each record adds its name, two quotes, a colon, a digit and a comma.
    let mut bytes = names::ANNOTATION_ROUTE_REVISIONS.len() + 1;
    let mut i = 0;
    while bytes + 40 < 256 * 1024 {
        let route = format!("model-with-a-rather-long-name-{i:06}");
        bytes += route.len() + 5;
        records.insert(route, serde_json::json!(1));
        i += 1;
    }
    let text = serde_json::Value::Object(records).to_string();
    assert_eq!(names::ANNOTATION_ROUTE_REVISIONS.len() + text.len(), bytes);
    key_auth["metadata"]["annotations"] = serde_json::json!({names::ANNOTATION_ROUTE_REVISIONS: text});
    cluster.sim.insert(key_auth).unwrap();
    let engine = cluster.engine().await;
    let writes = cluster.writes();
    let refused = engine
        .apply(&deploy("a-model-with-a-long-name-that-does-not-fit", 1))
        .await;
    assert_eq!(refused.outcome, Outcome::Rejected, "{refused:?}");
    assert_eq!(cluster.writes(), writes, "nothing written: {refused:?}");
    let error = refused.error.unwrap();
    assert_eq!(error.reason, "capacity");
    assert!(
        error
            .message
            .contains("WasmPlugin/key-auth.internal's annotations would grow"),
        "{}",
        error.message
    );
    // A short name still fits.
    let applied = engine.apply(&deploy("m", 1)).await;
    assert_eq!(applied.outcome, Outcome::Applied, "{applied:?}");
}

/// Another writer (a second replica, the console) adds entries between this batch's read and its
/// write: the 409's re-read leaves no room for the batch's edits. They are measured again before the
/// retry writes them, and refused for `capacity` rather than written past the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_retried_after_another_writers_growth_are_measured_again() {
    use higress_route_worker::higress::{Kind, ObjectKey};
    use std::time::Duration;
    let cluster = Cluster::start().await;
    let engine = Arc::new(engine(&cluster).await);
    assert_eq!(engine.apply(&deploy("first", 1)).await.outcome, Outcome::Applied);
    // Writes wait, reads do not: the other writer's read and write land between ours.
    let faults = cluster.sim.faults();
    faults.set_delay_reads(false);
    faults.set_latency(Duration::from_millis(300), Duration::ZERO);
    let counters_before = cluster.sim.counters();
    let late = tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { engine.apply(&deploy("late", 1)).await }
    });
    // The batch has read everything once its first write (the fence) arrives.
    let writes =
        |counters: &kube_sim::Counters| counters.get("create", "configmaps") + counters.get("update", "configmaps");
    while writes(&cluster.sim.counters()) == writes(&counters_before) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let key = ObjectKey::new(Kind::WasmPlugin, "ai-proxy.internal");
    let mut proxy = engine.api().get(&key).await.unwrap().unwrap();
    proxy["spec"]["defaultConfig"]["providers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "console-big", "type": "openai", "apiTokens": ["k".repeat(BUDGET)]}));
    engine.api().replace(&key, &proxy).await.unwrap();
    let grown = serde_json::to_vec(&cluster.get("wasmplugins", "ai-proxy.internal").unwrap())
        .unwrap()
        .len();

    let result = late.await.unwrap();
    let error = result.error.as_ref().expect("refused");
    assert_eq!(error.reason, "capacity", "{result:?}");
    assert!(
        error.message.contains("WasmPlugin/ai-proxy.internal"),
        "{}",
        error.message
    );
    // Its fence and registry went in first, side by side: failed, and they are listed.
    assert_eq!(result.outcome, Outcome::Failed);
    assert!(!result.changes.is_empty());
    let stored = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    assert_eq!(
        serde_json::to_vec(&stored).unwrap().len(),
        grown,
        "ai-proxy not written again"
    );
    assert!(!stored.to_string().contains("p-late"));
}

/// README's guide to how many routes fit (one provider and one Bearer consumer per route, model names
/// of five characters, `tests/support/cluster.rs`'s deploy): what each shared object grows by per route, measured on state the mapping
/// accumulates, and so how many routes fit the default budget.
#[test]
fn the_per_route_growth_readme_gives_holds() {
    use higress_route_worker::cluster::DEFAULT_SHARED_OBJECT_BUDGET;
    use higress_route_worker::higress::{self, Decision, Kind, Settings, State};
    let settings = Settings::default();
    let now = chrono::Utc::now();
    let mut state = State::new();
    let deploy_all = |state: &mut State, range: std::ops::Range<usize>| {
        for i in range {
            let Decision::Apply(plan) = higress::plan(&deploy(&format!("m{i:04}"), 1), state, &settings, now).unwrap()
            else {
                panic!("m{i:04} applies")
            };
            higress::simulate(state, &plan).unwrap();
        }
    };
    let size =
        |state: &State, kind: Kind, name: &str| serde_json::to_vec(state.get_named(kind, name).unwrap()).unwrap().len();
    let objects = [
        (Kind::WasmPlugin, "ai-proxy.internal"),
        (Kind::WasmPlugin, "key-auth.internal"),
        (Kind::WasmPlugin, "ai-statistics-2.0.1"),
        (Kind::McpBridge, names::MCP_BRIDGE),
    ];
    deploy_all(&mut state, 0..100);
    let before: Vec<usize> = objects.iter().map(|(kind, name)| size(&state, *kind, name)).collect();
    deploy_all(&mut state, 100..300);
    let per_route: Vec<usize> = objects
        .iter()
        .zip(&before)
        .map(|((kind, name), before)| (size(&state, *kind, name) - before) / 200)
        .collect();
    // README: about 350 bytes plus the name and revision in the provider-users annotation (and the
    // route-revisions one: the model's name plus about 10 bytes), about 250, 120 and 110, each with
    // the route-revisions record of about the name plus 10 bytes.
    // README: about 330 bytes (the entry, its service rule, the route's records), 220, 125 and 140.
    let readme = [330, 220, 125, 140];
    for (((_, name), measured), claimed) in objects.iter().zip(&per_route).zip(readme) {
        let off = measured.abs_diff(claimed) as f64 / claimed as f64;
        assert!(
            off <= 0.1,
            "{name}: {measured} bytes per route, README says about {claimed}"
        );
    }
    // "About 4,200 routes fit the default budget when each has its own provider."
    let fit = DEFAULT_SHARED_OBJECT_BUDGET / per_route.iter().max().unwrap();
    assert!((3_800..=4_600).contains(&fit), "{fit} routes fit: {per_route:?}");
}
