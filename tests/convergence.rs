//! A convergence checker, in the manner of Jepsen: seeded random histories of deploys, redeploys and
//! retirements over 20 models sharing 5 providers and 5 consumers, delivered out of order and twice,
//! applied by three engines at once against kube-sim with faults (409s, 503s, dropped connections,
//! answers lost after the write, latency, a permanent 422 on one object, event deadlines that stop runs part-way); then every
//! event delivered once more with the faults cleared. It checks that
//!
//! 1. the cluster equals the oracle: each model's last event applied alone, in turn, to a clean
//!    cluster holding the same foreign entries (so no shared entry is orphaned or missing);
//! 2. every write in kube-sim's audit log is accounted for by some result's `changes`;
//! 3. while the engines run, no live route lacks its provider (the gateway would answer 503) or
//!    its key-auth rule (the route would be open to anyone).
//!
//! `CONVERGENCE_SEEDS=N` runs N seeds instead of the fixed ones (see README, "Reliability").

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{console_objects, parse, quick_retries, Cluster, NS};
use higress_route_worker::event::{self, Lifecycle, LifecycleEvent};
use higress_route_worker::higress::route::AiRoute;
use higress_route_worker::higress::state::without_server_fields;
use higress_route_worker::higress::{names, Settings};
use higress_route_worker::result::Outcome;
use http::Method;
use kube_sim::FaultSpec;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const PROVIDERS: usize = 5;
const CONSUMERS: usize = 5;
const DOMAINS: usize = 3;
const ENGINES: usize = 3;

/// The size of a history and of the batches the engines take from it.
#[derive(Clone, Copy)]
struct Shape {
    models: usize,
    batch: (usize, usize),
}

/// Batches of 1 to 6 events over 20 models: contention on few routes.
const SMALL: Shape = Shape {
    models: 20,
    batch: (1, 6),
};
/// Batches of 40 to 200 events over 160 models: the paths that list rather than read by name (above
/// `reads::TARGETED_UP_TO` models, `LIST_INGRESSES_ABOVE` routes, `LOOK_BY_NAME_UP_TO` Ingresses).
const LARGE: Shape = Shape {
    models: 160,
    batch: (40, 200),
};

/// What stays the same across a model's deploys: its provider and its consumers. (A redeploy that
/// moves to another provider, or drops a consumer, leaves the old one in place by design — providers
/// go with a retirement, consumers with a retirement that asks — so the oracle would differ.)
struct Model {
    name: String,
    provider: usize,
    consumers: Vec<usize>,
}

/// Every provider and consumer has one configuration whichever model names it, so the last write
/// of an entry is the same whatever the order. Path and domain change with each deploy.
fn deploy(model: &Model, revision: u64, rng: &mut StdRng) -> LifecycleEvent {
    let provider = format!("p{}", model.provider);
    let consumers: Vec<Value> = model
        .consumers
        .iter()
        .map(|c| json!({"name": format!("c{c}"), "source": "BEARER", "credentials": [format!("key-c{c}")]}))
        .collect();
    parse(
        event::DEPLOYED_TYPE,
        json!({
            "model": model.name, "revision": revision,
            "provider": {"name": provider, "type": "openai", "url": format!("https://{provider}.example.com/v1"), "apiTokens": [format!("sk-{provider}")]},
            "route": {"domains": [format!("d{}.example.com", rng.random_range(0..DOMAINS))], "path": format!("/{}/v{revision}", model.name)},
            "auth": {"consumers": consumers}
        }),
    )
}

fn retire(model: &str, revision: u64) -> LifecycleEvent {
    parse(
        event::RETIRED_TYPE,
        json!({"model": model, "revision": revision, "deleteConsumers": true}),
    )
}

/// Each model's events in revision order: deploys, redeploys (another path and domain),
/// retirements, and deploys after a retirement.
fn history(rng: &mut StdRng, models: usize) -> Vec<Vec<LifecycleEvent>> {
    (0..models)
        .map(|m| {
            let mut consumers: Vec<usize> = (0..CONSUMERS).collect();
            consumers.shuffle(rng);
            consumers.truncate(rng.random_range(1..=2));
            let model = Model {
                name: format!("m{m:02}"),
                provider: rng.random_range(0..PROVIDERS),
                consumers,
            };
            let mut revision = 0;
            (0..rng.random_range(1..=4))
                .map(|_| {
                    revision += rng.random_range(1..=2);
                    if rng.random_bool(0.3) {
                        retire(&model.name, revision)
                    } else {
                        deploy(&model, revision, rng)
                    }
                })
                .collect()
        })
        .collect()
}

/// Other people's entries in every shared object, and the domains, there before the worker.
fn foreign_objects() -> Vec<Value> {
    let mut objects = console_objects();
    objects.extend([
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-statistics-2.0.1", "namespace": NS, "labels": {"higress.io/resource-definer": "higress", "higress.io/wasm-plugin-name": "ai-statistics", "higress.io/wasm-plugin-version": "2.0.1"}},
               "spec": {"matchRules": [{"config": {}, "configDisable": false, "ingress": ["their-route"]}], "phase": "UNSPECIFIED_PHASE", "priority": 900}}),
    ]);
    for d in 0..DOMAINS {
        let domain = format!("d{d}.example.com");
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": names::domain_config_map(&domain), "namespace": NS,
                         "labels": {"higress.io/config-map-type": "domain", "higress.io/resource-definer": "higress"}},
            "data": {"domain": domain, "enableHttps": "off"}}));
    }
    objects
}

async fn seeded_cluster() -> Cluster {
    let cluster = Cluster::start().await;
    for object in foreign_objects() {
        cluster.sim.insert(object).unwrap();
    }
    cluster
}

/// Sorts what holds entries of several writers, so two clusters compare by content, not by the
/// order writers happened to add entries in.
fn normalize(value: &mut Value) {
    match value {
        Value::Array(items) => {
            items.iter_mut().for_each(normalize);
            items.sort_by_key(|item| item.to_string());
        }
        // Content, not order: our annotations list routes and providers in the order they came.
        Value::Object(map) => {
            map.values_mut().for_each(normalize);
            map.sort_keys();
        }
        Value::String(text) if text.starts_with('[') || text.starts_with('{') => {
            if let Ok(mut parsed) = serde_json::from_str::<Value>(text) {
                normalize(&mut parsed);
                *text = parsed.to_string();
            }
        }
        _ => {}
    }
}

/// Every object the worker or the console keeps, by `resource/name`, compared by content. The fence
/// is compared by what it decides (each model's revision, and whether it is retired), not by when.
fn snapshot(cluster: &Cluster) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for resource in ["configmaps", "ingresses", "mcpbridges", "wasmplugins", "envoyfilters"] {
        for object in cluster.sim.list(resource, NS) {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let mut content = without_server_fields(&object);
            if names::is_fence(&name) {
                let decisions: BTreeMap<String, Value> = content["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(model, entry)| {
                        let entry: Value = serde_json::from_str(entry.as_str().unwrap()).unwrap();
                        (
                            model.clone(),
                            json!([entry["revision"], entry.get("retiredAt").is_some()]),
                        )
                    })
                    .collect();
                content = json!(decisions);
            }
            normalize(&mut content);
            objects.insert(format!("{resource}/{name}"), content);
        }
    }
    objects
}

/// What differs between two snapshots, for the failure message.
fn differences(actual: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>) -> Vec<String> {
    let keys: BTreeSet<&String> = actual.keys().chain(expected.keys()).collect();
    keys.into_iter()
        .filter(|k| actual.get(*k) != expected.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  actual:   {}\n  expected: {}",
                actual.get(k).map_or("absent".into(), Value::to_string),
                expected.get(k).map_or("absent".into(), Value::to_string)
            )
        })
        .collect()
}

/// Live routes whose provider is missing from ai-proxy or McpBridge (the gateway would answer 503),
/// and live routes with an allow list but no key-auth rule (open to anyone).
/// Sampled while the engines run, because a replay would heal a provider removed under a route's
/// feet. A route counts only if the same Ingress (by uid) lived before and after the providers were
/// read, so a route deployed or retired meanwhile is not taken for a violation; and only if its model
/// is not retired: a deploy that passed the fence just before a retirement may still be writing, and
/// its route lives until its own look at the fence removes it again (the oracle check covers that).
fn live_routes_missing_what_they_need(cluster: &Cluster) -> (Vec<String>, Vec<String>) {
    let live = || -> BTreeMap<String, (Value, Vec<String>, bool)> {
        cluster
            .sim
            .list("configmaps", NS)
            .into_iter()
            .filter_map(|cm| AiRoute::from_config_map(&cm))
            .filter(|route| {
                let fence = cluster.get("configmaps", &names::fence(&route.name));
                let entry = fence.as_ref().and_then(|f| f["data"].get(&route.name));
                !entry.and_then(Value::as_str).is_some_and(|e| e.contains("retiredAt"))
            })
            .filter_map(|route| {
                let ingress = cluster.get("ingresses", &names::route_ingress(&route.name))?;
                let guarded = !route.allowed_consumers().is_empty();
                Some((
                    route.name.clone(),
                    (ingress["metadata"]["uid"].clone(), route.providers(), guarded),
                ))
            })
            .collect()
    };
    let before = live();
    let ai_proxy = cluster.get("wasmplugins", "ai-proxy.internal");
    let bridge = cluster.get("mcpbridges", "default");
    let key_auth = cluster.get("wasmplugins", "key-auth.internal");
    let after = live();
    let has = |object: &Option<Value>, pointer: &str, key: &str, value: &str| {
        object
            .as_ref()
            .and_then(|o| o.pointer(pointer))
            .and_then(Value::as_array)
            .is_some_and(|entries| entries.iter().any(|e| e[key] == value))
    };
    let still_live: Vec<(String, Vec<String>, bool)> = before
        .into_iter()
        .filter(|(name, (uid, ..))| after.get(name).is_some_and(|(later, ..)| later == uid))
        .map(|(name, (_, providers, guarded))| (name, providers, guarded))
        .collect();
    // A live route with an allow list is guarded by its key-auth rule (without it the route is open).
    let unguarded = still_live
        .iter()
        .filter(|(name, _, guarded)| {
            let ingress = names::route_ingress(name);
            *guarded
                && !key_auth
                    .as_ref()
                    .and_then(|k| k.pointer("/spec/matchRules"))
                    .and_then(Value::as_array)
                    .is_some_and(|rules| {
                        rules
                            .iter()
                            .any(|r| r["ingress"].as_array().is_some_and(|i| i.iter().any(|i| i == &ingress)))
                    })
        })
        .map(|(name, ..)| {
            let fence = cluster.get("configmaps", &names::fence(name));
            format!(
                "route {name} lacks its key-auth rule (fence {}, route {}, key-auth rules {})",
                fence.as_ref().map_or(Value::Null, |f| f["data"][name.as_str()].clone()),
                cluster
                    .get("configmaps", &names::route_config_map(name))
                    .map_or(Value::Null, |c| c["data"].clone()),
                key_auth
                    .as_ref()
                    .map_or(Value::Null, |k| k["spec"]["matchRules"].clone())
            )
        });
    let unprovided = still_live
        .iter()
        .flat_map(|(name, providers, _)| providers.iter().map(move |p| (name.clone(), p.clone())))
        .filter_map(|(route, p)| {
            let missing: Vec<&str> = [
                (!has(&ai_proxy, "/spec/defaultConfig/providers", "id", &p)).then_some("ai-proxy.internal"),
                (!has(&bridge, "/spec/registries", "name", &names::registry(&p))).then_some("McpBridge default"),
            ]
            .into_iter()
            .flatten()
            .collect();
            (!missing.is_empty()).then(|| format!("route {route} lacks provider {p} in {}", missing.join(" and ")))
        });
    (unprovided.collect(), unguarded.collect())
}

#[derive(Default, Debug)]
struct Figures {
    events: usize,
    deliveries: usize,
    requests: u64,
    cut_short: usize,
    /// Writes whose answers were lost and that no look could settle: named in warnings.
    maybe_written: usize,
}

async fn check(seed: u64, shape: Shape) -> Figures {
    let mut rng = StdRng::seed_from_u64(seed);
    let history = history(&mut rng, shape.models);
    let mut figures = Figures {
        events: history.iter().map(Vec::len).sum(),
        ..Figures::default()
    };

    // The oracle: each model's last event alone, in turn, on a clean cluster.
    let oracle = seeded_cluster().await;
    let engine = oracle.engine().await;
    // The models whose last event is a deploy: the ones that end with a route.
    let mut deployed: BTreeMap<String, u64> = BTreeMap::new();
    for events in &history {
        let last = events.last().unwrap();
        let result = engine.apply(last).await;
        // Alone on a clean cluster, a deploy is applied; a retirement only writes its fence entry.
        let is_deploy = matches!(last.body, Lifecycle::Deployed(_));
        if is_deploy {
            deployed.insert(last.model().to_string(), last.revision());
        }
        let outcome_ok = if is_deploy {
            result.outcome == Outcome::Applied
        } else {
            matches!(result.outcome, Outcome::Applied | Outcome::Unchanged)
        };
        assert!(
            outcome_ok,
            "seed {seed}: the oracle's last event of {} (revision {}, deploy: {is_deploy}) was not applied: {result:?}",
            last.model(),
            last.revision()
        );
    }
    let expected = snapshot(&oracle);
    let routes: BTreeSet<&str> = expected
        .keys()
        .filter(|k| k.starts_with("ingresses/ai-route-"))
        .map(String::as_str)
        .collect();
    let wanted: Vec<String> = deployed
        .keys()
        .map(|m| format!("ingresses/ai-route-{m}.internal"))
        .collect();
    assert_eq!(
        routes,
        wanted.iter().map(String::as_str).collect::<BTreeSet<&str>>(),
        "seed {seed}: the oracle holds a route Ingress for exactly the models whose last event is a deploy"
    );

    // Delivered out of order and some twice, shared among three engines, under faults.
    let cluster = Arc::new(seeded_cluster().await);
    let mut deliveries: Vec<LifecycleEvent> = history.iter().flatten().cloned().collect();
    let duplicates: Vec<LifecycleEvent> = deliveries.iter().filter(|_| rng.random_bool(0.2)).cloned().collect();
    deliveries.extend(duplicates);
    deliveries.shuffle(&mut rng);
    figures.deliveries = deliveries.len();
    let faults = cluster.sim.faults();
    faults.set_latency(Duration::from_millis(1), Duration::from_millis(4));
    faults.set_error_rate(0.05, FaultSpec::new(503));
    faults.drop_next(5, None, None);
    // Writes the server makes but whose answers never come back: results must list them all the same.
    faults.lose_answer_next(3, Some(Method::PUT), None);
    faults.lose_answer_next(3, Some(Method::POST), None);
    faults.lose_answer_next(2, Some(Method::DELETE), None);
    for name in ["default", "ai-proxy.internal", "key-auth.internal"] {
        let resource = if name == "default" { "mcpbridges" } else { "wasmplugins" };
        faults.conflict_next(resource, name, 3);
    }
    let refused = format!("ingresses/ai-route-m{:02}", rng.random_range(0..shape.models));
    faults.fail_next(2, FaultSpec::new(422).for_method(Method::PUT).for_path(refused.clone()));
    faults.fail_next(2, FaultSpec::new(422).for_method(Method::POST).for_path("ingresses"));

    let mut queues: Vec<Vec<LifecycleEvent>> = vec![Vec::new(); ENGINES];
    for event in deliveries {
        queues[rng.random_range(0..ENGINES)].push(event);
    }
    let mut runs = Vec::new();
    for queue in queues {
        let mut plan: Vec<(Vec<LifecycleEvent>, Duration)> = Vec::new();
        let mut rest = queue.as_slice();
        while !rest.is_empty() {
            let take = rng.random_range(shape.batch.0..=shape.batch.1).min(rest.len());
            // Some runs are stopped part-way by a deadline shorter than their writes.
            let deadline = if rng.random_bool(0.15) {
                Duration::from_millis(rng.random_range(5..60))
            } else {
                Duration::from_secs(10)
            };
            plan.push((rest[..take].to_vec(), deadline));
            rest = &rest[take..];
        }
        let engine = Arc::new(cluster.engine_with(quick_retries(), Settings::default()).await);
        runs.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut cut_short = 0;
            for (batch, deadline) in plan {
                if deadline < Duration::from_secs(1) {
                    cut_short += 1;
                }
                let until = tokio::time::Instant::now() + deadline;
                results.extend(engine.apply_batch_until(&batch, until).await);
            }
            (results, cut_short)
        }));
    }
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            let mut seen: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let (unprovided, unguarded) = live_routes_missing_what_they_need(&cluster);
                seen.0.extend(unprovided);
                seen.1.extend(unguarded);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    let mut results = Vec::new();
    for run in runs {
        let (done, cut_short) = run.await.unwrap();
        results.extend(done);
        figures.cut_short += cut_short;
    }
    figures.requests = cluster.sim.counters().total;
    faults.clear();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (missing, unguarded) = watcher.await.unwrap();
    assert!(missing.is_empty(), "seed {seed}: while the engines ran: {missing:?}");
    assert!(
        unguarded.is_empty(),
        "seed {seed}: while the engines ran, a live route without its key-auth rule (open to anyone): {unguarded:?}"
    );

    // Every event once more, faults cleared.
    let engine = cluster.engine().await;
    let mut again: Vec<&LifecycleEvent> = history.iter().flatten().collect();
    again.shuffle(&mut rng);
    for event in again {
        results.push(engine.apply(event).await);
    }

    // The engines applied the deploys too: each model's last deploy is applied (or, delivered
    // again, found unchanged) by some engine.
    assert!(
        results.iter().any(|r| r.outcome == Outcome::Applied),
        "seed {seed}: no result is applied"
    );
    let not_applied: Vec<String> = deployed
        .iter()
        .filter(|(model, revision)| {
            !results.iter().any(|r| {
                r.model.as_deref() == Some(model.as_str())
                    && r.revision == Some(**revision)
                    && matches!(r.outcome, Outcome::Applied | Outcome::Unchanged)
            })
        })
        .map(|(model, revision)| format!("{model} revision {revision}"))
        .collect();
    assert!(
        not_applied.is_empty(),
        "seed {seed}: last deploys no engine applied: {not_applied:?}"
    );

    let actual = snapshot(&cluster);
    let differences = differences(&actual, &expected);
    assert!(
        differences.is_empty(),
        "seed {seed}: the cluster differs from the oracle:\n{}",
        differences.join("\n")
    );
    figures.maybe_written = results.iter().map(|r| r.unknown_writes.len()).sum();
    let unaccounted = cluster.writes_unlisted_in(&results);
    // What the results of the models concerned say, to see which path made the write.
    let concerned: Vec<String> = results
        .iter()
        .filter(|r| {
            r.model
                .as_deref()
                .is_some_and(|m| unaccounted.iter().any(|w| w.contains(&format!("-{m}"))))
        })
        .map(|r| {
            format!(
                "{} r{:?} {:?} changes {:?} warnings {:?} error {:?}",
                r.input_event_id,
                r.revision,
                r.outcome,
                r.changes
                    .iter()
                    .map(|c| format!("{} {}/{}", c.operation, c.kind, c.name))
                    .collect::<Vec<_>>(),
                r.warnings,
                r.error.as_ref().map(|e| &e.message)
            )
        })
        .collect();
    assert!(
        unaccounted.is_empty(),
        "seed {seed}: writes no result reports: {unaccounted:?}\nresults of their models:\n{}",
        concerned.join("\n")
    );
    figures
}

/// `CONVERGENCE_SEEDS=N`: seeds 0..N; `CONVERGENCE_SEEDS=a..b`: seeds a..b (to replay a failure).
fn seeds(fixed: &[u64]) -> Vec<u64> {
    match std::env::var("CONVERGENCE_SEEDS") {
        Ok(range) => match range.split_once("..") {
            Some((a, b)) => (a.parse::<u64>().expect("a seed")..b.parse::<u64>().expect("a seed")).collect(),
            None => (0..range.parse::<u64>().expect("CONVERGENCE_SEEDS is a number")).collect(),
        },
        Err(_) => fixed.to_vec(),
    }
}

async fn check_all(name: &str, seeds: &[u64], shape: Shape) {
    let mut total = Figures::default();
    for seed in seeds {
        let figures = check(*seed, shape).await;
        total.events += figures.events;
        total.deliveries += figures.deliveries;
        total.requests += figures.requests;
        total.cut_short += figures.cut_short;
        total.maybe_written += figures.maybe_written;
    }
    // Read by `cargo test --test convergence -- --nocapture` for RELIABILITY.md.
    println!(
        "convergence ({name}): {} histories, {} events, {} deliveries, {} requests under faults, {} runs cut short by their deadline, {} writes reported as maybe made, violations: 0",
        seeds.len(),
        total.events,
        total.deliveries,
        total.requests,
        total.cut_short,
        total.maybe_written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_histories_under_faults_converge_to_the_oracle() {
    check_all("batches of 1 to 6", &seeds(&[1, 2, 3, 4, 5, 6]), SMALL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_batches_under_faults_converge_to_the_oracle() {
    check_all("batches of 40 to 200", &seeds(&[7, 8]), LARGE).await;
}
