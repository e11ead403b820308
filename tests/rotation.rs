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
use higress_route_worker::higress::{names, Kind, ObjectKey};
use http::Method;
use kube_sim::FaultSpec;
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

    // A retired route is no longer rotated. The retirement keeps the provider and the consumer, so
    // their entries are still there to be (wrongly) written.
    let fence_key = ObjectKey::new(Kind::ConfigMap, names::fence("m"));
    let fence_entry = |shard: &Value| -> Value { serde_json::from_str(shard["data"]["m"].as_str().unwrap()).unwrap() };
    let deployed = fence_entry(&engine.api().get(&fence_key).await.unwrap().unwrap());
    assert_eq!(deployed["secrets"].as_array().map(Vec::len), Some(2), "{deployed}");
    let retirement = json!({"model": "m", "revision": 2, "deleteProvider": false, "deleteConsumers": false});
    let retired = engine.apply(&cluster::parse(event::RETIRED_TYPE, retirement)).await;
    assert_eq!(retired.outcome.as_str(), "applied", "{retired:?}");
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));
    assert_eq!(consumer_credentials(get, "c-m"), json!(["Bearer cred-new"]));
    // Being retired is what stops the rotation, not a retirement's entry recording no Secrets, nor the
    // entries' source records naming the deploy: the retired entry is given back the deploy's records
    // without their source check, as a fence entry written by an older version would hold them.
    let mut shard = engine.api().get(&fence_key).await.unwrap().unwrap();
    let mut entry = fence_entry(&shard);
    assert!(entry["retiredAt"].is_string(), "{entry}");
    entry["secrets"] = deployed["secrets"].clone();
    for record in entry["secrets"].as_array_mut().unwrap() {
        record.as_object_mut().unwrap().remove("recorded");
    }
    shard["data"]["m"] = json!(entry.to_string());
    engine.api().replace(&fence_key, &shard).await.unwrap();
    change_secret(engine.api(), "sk-after-retire", "cred-after-retire", true).await;
    let rotated = engine.rotate_secrets().await.unwrap();
    assert!(
        rotated.iter().all(|r| r.model.as_deref() != Some("m")),
        "a result for the retired route: {rotated:?}"
    );
    assert!(rotated.is_empty(), "{rotated:?}");
    assert_eq!(
        provider_tokens(get, "p-m"),
        json!(["sk-new"]),
        "the retired route's provider was rotated"
    );
    assert_eq!(
        consumer_credentials(get, "c-m"),
        json!(["Bearer cred-new"]),
        "the retired route's consumer was rotated"
    );
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
    // The write of ai-proxy answers 409 (another writer got there first): rotation does not merge
    // into what it has not read, and reports only what it wrote; key-auth, an object of its own,
    // still rotates.
    cluster
        .sim
        .faults()
        .conflict_next("wasmplugins", "ai-proxy.internal", 1);
    let changed = |rotated: &[higress_route_worker::result::RouteResult]| -> Vec<String> {
        rotated
            .iter()
            .flat_map(|r| r.changes.iter().map(|c| c.name.clone()))
            .collect()
    };
    let rotated = engine.rotate_secrets().await.unwrap();
    assert_eq!(changed(&rotated), ["key-auth.internal"], "{rotated:?}");
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-old"]));
    assert_eq!(consumer_credentials(get, "c-m"), json!(["Bearer cred-new"]));
    // The next round reads again and writes.
    let rotated = engine.rotate_secrets().await.unwrap();
    assert_eq!(changed(&rotated), ["ai-proxy.internal"], "{rotated:?}");
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));
}

/// A rotation's write whose answer was lost (stored, then the connection closed): its retry meets a
/// 409, the version having moved with its own write; a look shows the new values there, and the
/// result lists the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_write_whose_answer_was_lost_is_listed() {
    let cluster = cluster::Cluster::start().await;
    cluster.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let engine = cluster.engine().await;
    let deployed = engine
        .apply(&cluster::parse(event::DEPLOYED_TYPE, by_reference("m", 1)))
        .await;
    assert_eq!(deployed.outcome.as_str(), "applied", "{deployed:?}");
    change_secret(engine.api(), "sk-new", "cred-new", true).await;
    let faults = cluster.sim.faults();
    faults.lose_answer_next(1, Some(Method::PUT), Some("ai-proxy.internal"));
    let rotated = engine.rotate_secrets().await.unwrap();
    assert_eq!(faults.pending(), 0, "the answer was lost");
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));
    let mut changed: Vec<&str> = rotated
        .iter()
        .flat_map(|r| r.changes.iter().map(|c| c.name.as_str()))
        .collect();
    changed.sort_unstable();
    assert_eq!(changed, ["ai-proxy.internal", "key-auth.internal"], "{rotated:?}");
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

/// The Secret with two keys, so two routes (or two revisions) can take different values from it.
fn two_key_secret(first: &str, second: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "llm-keys", "namespace": NS, "labels": {"higress-route-worker.io/readable": "true"}},
           "data": {"token": b64(first), "token2": b64(second), "cred": b64("cred")}})
}

/// A deploy of `model` whose provider `provider`, at `url`, takes its token from `key` of llm-keys.
fn provider_from(model: &str, revision: u64, provider: &str, url: &str, key: &str) -> Value {
    json!({"model": model, "revision": revision,
           "provider": {"name": provider, "type": "openai", "url": url,
                        "apiTokensSecretRef": {"name": "llm-keys", "key": key}},
           "route": {"path": format!("/{model}")}})
}

async fn set_two_keys(api: &Api, first: &str, second: &str) {
    let key = ObjectKey::new(Kind::Secret, "llm-keys");
    let mut current = api.get(&key).await.unwrap().expect("the Secret");
    current["data"] = two_key_secret(first, second)["data"].clone();
    api.replace(&key, &current).await.unwrap();
}

/// A redeploy that moves provider p-m to another endpoint and another Secret key fails after its
/// fence entry (which records the new key) and before ai-proxy: the entry is still revision 1's, at
/// revision 1's endpoint. Rotation leaves it: it would send the new key's value to the old endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_leaves_an_entry_a_failed_redeploy_did_not_write() {
    let cluster = cluster::Cluster::start().await;
    cluster.sim.insert(two_key_secret("sk-one", "sk-two")).unwrap();
    let engine = cluster.engine().await;
    let first = provider_from("m", 1, "p-m", "https://one.example.com/v1", "token");
    let applied = engine.apply(&cluster::parse(event::DEPLOYED_TYPE, first)).await;
    assert_eq!(applied.outcome.as_str(), "applied", "{applied:?}");
    let faults = cluster.sim.faults();
    faults.set_error_rate(
        1.0,
        FaultSpec::new(422)
            .for_method(Method::PUT)
            .for_path("wasmplugins/ai-proxy.internal"),
    );
    let moved = provider_from("m", 2, "p-m", "https://two.example.com/v1", "token2");
    let failed = engine.apply(&cluster::parse(event::DEPLOYED_TYPE, moved)).await;
    assert_eq!(failed.outcome.as_str(), "failed", "{failed:?}");
    faults.clear();
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-one"]));

    set_two_keys(engine.api(), "sk-one-new", "sk-two-new").await;
    let rotated = engine.rotate_secrets().await.unwrap();
    assert!(rotated.is_empty(), "{rotated:?}");
    assert_eq!(
        provider_tokens(get, "p-m"),
        json!(["sk-one"]),
        "revision 2's key went to revision 1's endpoint"
    );
}

/// Two routes deploy one provider from two keys; the later deploy wrote the entry last, so rotation
/// follows its key, whatever order the models sort in, and once written reports nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_two_routes_build_from_different_secrets_follows_the_last_deploy() {
    let cluster = cluster::Cluster::start().await;
    cluster.sim.insert(two_key_secret("sk-z", "sk-a")).unwrap();
    let engine = cluster.engine().await;
    // z first, then a: a wrote last, but z sorts last.
    for (model, key) in [("z", "token"), ("a", "token2")] {
        let deploy = provider_from(model, 1, "shared", "https://shared.example.com/v1", key);
        let applied = engine.apply(&cluster::parse(event::DEPLOYED_TYPE, deploy)).await;
        assert_eq!(applied.outcome.as_str(), "applied", "{applied:?}");
    }
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "shared"), json!(["sk-a"]));

    set_two_keys(engine.api(), "sk-z-new", "sk-a-new").await;
    let rotated = engine.rotate_secrets().await.unwrap();
    let models: Vec<_> = rotated.iter().map(|r| r.model.clone().unwrap()).collect();
    assert_eq!(models, ["a"], "{rotated:?}");
    assert_eq!(provider_tokens(get, "shared"), json!(["sk-a-new"]));
    let again = engine.rotate_secrets().await.unwrap();
    assert!(again.is_empty(), "reported again: {again:?}");
}

/// The objects are read before the Secrets: held on its ai-proxy read, a round has read no Secret
/// yet, so no Secret value it writes is older than what another writer put in ai-proxy before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reads_the_secrets_after_the_objects_they_go_into() {
    let cluster = cluster::Cluster::start().await;
    cluster.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let engine = cluster.engine().await;
    let applied = engine
        .apply(&cluster::parse(event::DEPLOYED_TYPE, by_reference("m", 1)))
        .await;
    assert_eq!(applied.outcome.as_str(), "applied", "{applied:?}");
    change_secret(engine.api(), "sk-new", "cred-new", true).await;
    let secret_reads = cluster.sim.counters().get("get", "secrets");
    let plugin_reads = cluster.sim.counters().get("get", "wasmplugins");
    cluster.sim.faults().fail_next(
        1,
        FaultSpec::new(503)
            .with_retry_after(1)
            .for_method(Method::GET)
            .for_path("wasmplugins/ai-proxy.internal"),
    );
    let rotating = tokio::spawn(async move { engine.rotate_secrets().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cluster.sim.counters().get("get", "wasmplugins") == plugin_reads {
        assert!(std::time::Instant::now() < deadline, "the round never read ai-proxy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The round waits out the Retry-After before reading ai-proxy again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster.sim.counters().get("get", "secrets"),
        secret_reads,
        "a Secret read before ai-proxy"
    );
    let rotated = rotating.await.unwrap().unwrap();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let get = |resource: &str, name: &str| cluster.get(resource, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-new"]));
}

/// `--secret-rotation-interval-secs 0` turns rotation off: a changed Secret is not written, nothing is
/// published, and the worker keeps running (a zero interval must not be taken as "always").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_of_zero_turns_rotation_off() {
    let fixture = worker::Fixture::start().await;
    fixture.sim.insert(secret("sk-old", "cred-old", true)).unwrap();
    let mut worker = fixture.worker("w", "info", &["--secret-rotation-interval-secs", "0"]);
    let deploy = json!({"specversion": "1.0", "id": "deploy-m-1", "source": "tests",
                        "type": event::DEPLOYED_TYPE, "data": by_reference("m", 1)});
    fixture.produce("m", deploy.to_string().as_bytes(), &[]).await;
    let results = fixture.results(1, Duration::from_secs(60)).await;
    assert_eq!(results[0]["outcome"], "applied", "log:\n{}", worker.log());
    let client = connect(Some(&fixture.dir.path().join("kubeconfig"))).await.unwrap();
    change_secret(&Api::new(client, NS), "sk-rotated", "cred-rotated", true).await;
    let reads_of_secrets = fixture.sim.counters().get("get", "secrets");
    // Three seconds: the other test's worker, with an interval of one second, has rotated by then.
    tokio::time::sleep(Duration::from_secs(3)).await;
    worker.assert_alive();
    let get = |resource: &str, name: &str| fixture.sim.get(resource, NS, name);
    assert_eq!(provider_tokens(get, "p-m"), json!(["sk-old"]));
    assert_eq!(fixture.results(2, Duration::from_secs(1)).await.len(), 1);
    assert_eq!(
        fixture.sim.counters().get("get", "secrets"),
        reads_of_secrets,
        "no round read the Secret"
    );
    assert!(worker.terminate().success());
}
