//! Secret rotation: a route built from a Secret follows the Secret. The engine against kube-sim, then
//! the worker process through a real broker.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/worker.rs"]
mod worker;

use base64::Engine as _;
use higress_route_worker::cluster::{connect, Api};
use higress_route_worker::event;
use higress_route_worker::higress::{Kind, ObjectKey};
use serde_json::{json, Value};
use std::time::Duration;

const NS: &str = "higress-system";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn secret(token: &str, credential: &str, readable: bool) -> Value {
    let labels = if readable {
        json!({"higress-route-worker.io/readable": "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "llm-keys", "namespace": NS, "labels": labels},
           "data": {"token": b64(token), "cred": b64(credential)}})
}

fn by_reference(model: &str, revision: u64) -> Value {
    json!({"model": model, "revision": revision,
           "provider": {"name": format!("p-{model}"), "type": "openai", "url": "https://llm.example.com/v1",
                        "apiTokensSecretRef": {"name": "llm-keys", "key": "token"}},
           "route": {"path": format!("/{model}")},
           "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER",
                                   "credentialsSecretRef": {"name": "llm-keys", "key": "cred"}}]}})
}

/// The Secret as an operator's `kubectl apply` would change it: a PUT over HTTP.
async fn change_secret(api: &Api, token: &str, credential: &str, readable: bool) {
    let key = ObjectKey::new(Kind::Secret, "llm-keys");
    let mut current = api.get(&key).await.unwrap().expect("the Secret");
    let new = secret(token, credential, readable);
    current["data"] = new["data"].clone();
    current["metadata"]["labels"] = new["metadata"]["labels"].clone();
    api.replace(&key, &current).await.unwrap();
}

/// `field` of the entry whose `id_key` is `id` in `defaultConfig.<list>` of a plugin CR; null if absent.
fn entry_field(
    get: impl Fn(&str, &str) -> Option<Value>,
    plugin: &str,
    list: &str,
    (id_key, id): (&str, &str),
    field: &str,
) -> Value {
    let cr = get("wasmplugins", plugin).unwrap();
    cr["spec"]["defaultConfig"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[id_key] == id)
        .map(|e| e[field].clone())
        .unwrap_or(Value::Null)
}

fn provider_tokens(get: impl Fn(&str, &str) -> Option<Value>, provider: &str) -> Value {
    entry_field(get, "ai-proxy.internal", "providers", ("id", provider), "apiTokens")
}

fn consumer_credentials(get: impl Fn(&str, &str) -> Option<Value>, consumer: &str) -> Value {
    entry_field(get, "key-auth.internal", "consumers", ("name", consumer), "credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_is_written_where_the_route_uses_it_and_nowhere_else() {
    let cluster = cluster::Cluster::start().await;
    cluster.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let engine = cluster.engine().await;
    let by_ref = cluster::parse(event::DEPLOYED_TYPE, by_reference("m", 1));
    let results = engine.apply_batch(&[by_ref, cluster::deploy("inline", 1)]).await;
    assert!(results.iter().all(|r| r.outcome.as_str() == "applied"), "{results:?}");
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-old"]));

    // Nothing changed: nothing written, nothing reported.
    let writes = cluster.writes();
    assert!(engine.rotate_secrets().await.unwrap().is_empty());
    assert_eq!(cluster.writes(), writes);

    change_secret(engine.api(), "sk-new", "cred-new", true).await;
    let ai_proxy_before = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    let rotated = engine.rotate_secrets().await.unwrap();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let result = serde_json::to_value(&rotated[0]).unwrap();
    assert_eq!(result["model"], "m");
    assert_eq!(result["revision"], 1);
    assert_eq!(result["reason"], "secret-rotated");
    assert_eq!(result["outcome"], "applied");
    let changed: Vec<&str> = result["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["ai-proxy.internal", "key-auth.internal"]);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));
    assert_eq!(consumer_credentials(get, "c-m"), json!(["Bearer cred-new"]));
    // The inline route and everything else in ai-proxy stay as they were.
    assert_eq!(provider_tokens(get, "p-inline"), json!(["sk-inline"]));
    assert_eq!(consumer_credentials(get, "c-inline"), json!(["Bearer key-inline"]));
    let mut ai_proxy_after = cluster.get("wasmplugins", "ai-proxy.internal").unwrap();
    let mut expected = ai_proxy_before.clone();
    // The server's fields (resourceVersion, managedFields) change with any write.
    expected["metadata"] = Value::Null;
    ai_proxy_after["metadata"] = Value::Null;
    let providers = expected["spec"]["defaultConfig"]["providers"].as_array_mut().unwrap();
    for provider in providers.iter_mut().filter(|p| p["id"] == "p-m") {
        provider["apiTokens"] = json!(["sk-new"]);
    }
    assert_eq!(ai_proxy_after, expected, "only the rotated provider's tokens changed");

    // Once written, the next round finds nothing to do.
    assert!(engine.rotate_secrets().await.unwrap().is_empty());

    // A Secret an operator made unreadable is not read again: the route keeps the last value.
    change_secret(engine.api(), "sk-unreadable", "cred-unreadable", false).await;
    assert!(engine.rotate_secrets().await.unwrap().is_empty());
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));

    // A retired route is no longer rotated.
    change_secret(engine.api(), "sk-after-retire", "cred-after-retire", true).await;
    let retired = engine.apply(&cluster::retire("m", 2)).await;
    assert_eq!(retired.outcome.as_str(), "applied", "{retired:?}");
    assert!(engine.rotate_secrets().await.unwrap().is_empty());
    assert_eq!(provider_tokens(get, "p-m"), Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_meets_another_writer_leaves_the_other_writers_object_alone() {
    let cluster = cluster::Cluster::start().await;
    cluster.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let engine = cluster.engine().await;
    let results = engine
        .apply(&cluster::parse(event::DEPLOYED_TYPE, by_reference("m", 1)))
        .await;
    assert_eq!(results.outcome.as_str(), "applied", "{results:?}");
    change_secret(engine.api(), "sk-new", "cred-new", true).await;
    // Every write of ai-proxy answers 409 (another writer got there first): rotation does not merge
    // into what it has not read, and reports nothing for an object it did not write.
    cluster
        .sim
        .faults()
        .conflict_next("wasmplugins", "ai-proxy.internal", 1);
    let rotated = engine.rotate_secrets().await.unwrap();
    assert!(rotated.is_empty(), "{rotated:?}");
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-old"]));
    // The next round reads again and writes.
    let rotated = engine.rotate_secrets().await.unwrap();
    assert_eq!(rotated.len(), 1);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));
    assert_eq!(consumer_credentials(get, "c-m"), json!(["Bearer cred-new"]));
}

/// The proof: the worker process, a real broker, a Secret changed in the API server, the new
/// token in ai-proxy.internal and a `secret-rotated` result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_rotates_a_changed_secret_within_its_interval_and_says_so() {
    let fixture = worker::Fixture::start().await;
    fixture.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let mut worker = fixture.worker("w", "info", &["--secret-rotation-interval-secs", "1"]);
    let deploy = json!({"specversion": "1.0", "id": "deploy-m-1", "source": "tests",
                        "type": event::DEPLOYED_TYPE, "data": by_reference("m", 1)});
    fixture.produce("m", deploy.to_string().as_bytes(), &[]).await;
    let results = fixture.results(1, Duration::from_secs(60)).await;
    assert_eq!(results[0]["outcome"], "applied", "log:\n{}", worker.log());
    let get = |resource: &str, name: &str| fixture.sim.get(resource, NS, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-old"]));

    let client = connect(Some(&fixture.dir.path().join("kubeconfig"))).await.unwrap();
    change_secret(&Api::new(client, NS), "sk-rotated", "cred-rotated", true).await;
    let results = fixture.results(2, Duration::from_secs(60)).await;
    worker.assert_alive();
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    assert_eq!(results[1]["reason"], "secret-rotated");
    assert_eq!(results[1]["model"], "m");
    assert_eq!(results[1]["inputEventId"], "");
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-rotated"]));
    assert_eq!(consumer_credentials(get, "c-m"), json!(["Bearer cred-rotated"]));
    let record = fixture.read(worker::RESULTS, 2, Duration::from_secs(5)).await;
    let event: Value = serde_json::from_slice(&record[1].payload).unwrap();
    assert_eq!(event["source"], "higress-route-worker", "{event}");
    // Further rounds find nothing new and say nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fixture.results(3, Duration::from_secs(1)).await.len(), 2);
    let (_, metrics) = worker.http_get("/metrics").await;
    assert!(
        metrics.contains("higress_route_worker_secret_rotations_total{reason=\"secret-rotated\"} 1"),
        "{metrics}"
    );

    // A Secret the operator no longer lets events read: the route keeps its value, the refusal is counted.
    let client = connect(Some(&fixture.dir.path().join("kubeconfig"))).await.unwrap();
    change_secret(&Api::new(client, NS), "sk-unreadable", "cred-unreadable", false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = worker.http_get("/metrics").await;
        if metrics.contains("higress_route_worker_secret_rotations_total{reason=\"secret-not-allowed\"}") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no refusal counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-rotated"]));
    assert_eq!(fixture.results(3, Duration::from_secs(1)).await.len(), 2);
    assert!(worker.terminate().success());
}

/// A rotation round still reading when the worker is told to stop gets the drain deadline, as a batch
/// does, not the time the round would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_slow_rotation_round_no_longer_than_the_drain_deadline() {
    let fixture = worker::Fixture::start().await;
    fixture.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let worker = fixture.worker(
        "w",
        "info",
        &["--secret-rotation-interval-secs", "1", "--drain-deadline-secs", "1"],
    );
    let deploy = json!({"specversion": "1.0", "id": "deploy-m-1", "source": "tests",
                        "type": event::DEPLOYED_TYPE, "data": by_reference("m", 1)});
    fixture.produce("m", deploy.to_string().as_bytes(), &[]).await;
    let results = fixture.results(1, Duration::from_secs(60)).await;
    assert_eq!(results[0]["outcome"], "applied", "log:\n{}", worker.log());
    // Every request now takes 4 s: a round (the fences, the Secrets and objects, the fences again)
    // takes 12 s or more. Stop once one has begun.
    let fence_lists = || fixture.sim.counters().get("list", "configmaps");
    let before = fence_lists();
    fixture.sim.faults().set_latency(Duration::from_secs(4), Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fence_lists() == before {
        assert!(tokio::time::Instant::now() < deadline, "no rotation round began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = worker.log.clone();
    let asked = std::time::Instant::now();
    let status = worker.terminate();
    let took = asked.elapsed();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(took < Duration::from_secs(8), "stopped after {took:?}\n{log}");
    assert!(log.contains("Secret rotation cut short"), "{log}");
}
