//! The worker process end to end: a real Kafka-protocol broker (Tansu) and the in-memory API server.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/worker.rs"]
mod process;

use broker::Record;
use kube_sim::FaultSpec;
use process::{WorkerProcess, DLQ, INPUT, NS, RESULTS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The shared worker fixture (`support/worker.rs`), with this file's vocabulary: whole result events,
/// JSON events in, a worker at `info`.
struct Fixture(process::Fixture);

impl std::ops::Deref for Fixture {
    type Target = process::Fixture;
    fn deref(&self) -> &process::Fixture {
        &self.0
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut process::Fixture {
        &mut self.0
    }
}

impl Fixture {
    async fn start() -> Self {
        Self(process::Fixture::start().await)
    }

    fn worker(&self, name: &str, extra: &[&str]) -> WorkerProcess {
        self.0.worker(name, "info", extra)
    }

    async fn publish(&self, key: &str, event: &Value) {
        self.produce(key, event.to_string().as_bytes(), &[]).await;
    }

    /// Whole result events (at least `expected`, or the wait is over).
    async fn results(&self, expected: usize) -> Vec<Value> {
        self.read(RESULTS, expected, WAIT)
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.payload).unwrap())
            .collect()
    }

    /// All results so far, once every one of `ids` has one (or the wait is over).
    async fn results_covering(&self, ids: &[String]) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let records = self.read(RESULTS, 10_000, Duration::from_secs(2)).await;
            let results: Vec<Value> = records
                .iter()
                .map(|r| serde_json::from_slice(&r.payload).unwrap())
                .collect();
            let seen = outcomes(&results);
            if ids.iter().all(|id| seen.contains_key(id)) || tokio::time::Instant::now() > deadline {
                return results;
            }
        }
    }

    async fn dead_letters(&self, expected: usize) -> Vec<Record> {
        self.read(DLQ, expected, WAIT).await
    }

    fn get(&self, resource: &str, name: &str) -> Option<Value> {
        self.sim.get(resource, NS, name)
    }
}

fn cloud_event(id: &str, kind: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "tests", "type": kind, "data": data})
}

fn deploy(model: &str, revision: u64) -> Value {
    cloud_event(
        &format!("deploy-{model}-{revision}"),
        "io.higress.model.deployed.v1",
        json!({"model": model, "revision": revision,
               "provider": {"name": format!("p-{model}"), "type": "openai", "url": format!("https://{model}.example.com/v1"), "apiTokens": [format!("sk-{model}")]},
               "route": {"path": format!("/{model}")},
               "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [format!("key-{model}")]}]}}),
    )
}

fn retire(model: &str, revision: u64) -> Value {
    cloud_event(
        &format!("retire-{model}-{revision}"),
        "io.higress.model.retired.v1",
        json!({"model": model, "revision": revision, "deleteConsumers": true}),
    )
}

/// Outcome per input event id (the last one seen, when replays published it twice).
fn outcomes(results: &[Value]) -> BTreeMap<String, String> {
    results
        .iter()
        .map(|r| {
            (
                r["data"]["inputEventId"].as_str().unwrap().to_string(),
                r["data"]["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The worker's log without its colours.
fn plain_log(worker: &WorkerProcess) -> String {
    regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&worker.log(), "")
        .into_owned()
}

/// Every model's route exists and each shared entry is there exactly once.
fn assert_routes_exactly(fixture: &Fixture, models: &[String]) {
    let bridge = fixture.get("mcpbridges", "default").expect("McpBridge");
    let key_auth = fixture.get("wasmplugins", "key-auth.internal").expect("key-auth");
    let registries = bridge["spec"]["registries"].as_array().unwrap();
    let consumers = key_auth["spec"]["defaultConfig"]["consumers"].as_array().unwrap();
    assert_eq!(registries.len(), models.len(), "one registry per model");
    assert_eq!(consumers.len(), models.len(), "one consumer per model");
    for model in models {
        assert!(
            fixture
                .get("ingresses", &format!("ai-route-{model}.internal"))
                .is_some(),
            "{model} Ingress"
        );
        assert!(
            fixture.get("configmaps", &format!("ai-route-{model}")).is_some(),
            "{model} ConfigMap"
        );
        assert_eq!(
            registries
                .iter()
                .filter(|r| r["name"] == format!("llm-p-{model}.internal"))
                .count(),
            1,
            "{model}"
        );
        assert_eq!(
            consumers.iter().filter(|c| c["name"] == format!("c-{model}")).count(),
            1,
            "{model}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_retire_and_a_replayed_event_each_get_their_result() {
    let fixture = Fixture::start().await;
    let worker = fixture.worker("w", &[]);
    fixture.publish("chat", &deploy("chat", 1)).await;
    let results = fixture.results(1).await;
    assert_eq!(results.len(), 1, "log:\n{}", worker.log());
    assert_eq!(results[0]["data"]["outcome"], "applied");
    assert_eq!(results[0]["subject"], "chat");
    assert_eq!(results[0]["type"], "io.higress.model.route.result.v1");
    assert!(fixture.get("ingresses", "ai-route-chat.internal").is_some());
    assert!(!results[0].to_string().contains("key-chat"), "no credential in results");
    assert_eq!(worker.http_get("/healthz").await.0, 200);
    assert_eq!(
        worker.http_get("/readyz").await.0,
        200,
        "joined and the API server answers"
    );
    let (status, metrics) = worker.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains(r#"higress_route_worker_events_total{type="io.higress.model.deployed.v1",outcome="applied"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("higress_route_worker_apply_duration_seconds_count"),
        "{metrics}"
    );

    fixture.publish("chat", &deploy("chat", 1)).await;
    fixture.publish("chat", &retire("chat", 2)).await;
    let results = fixture.results(3).await;
    assert_eq!(results.len(), 3, "log:\n{}", worker.log());
    assert_eq!(results[1]["data"]["outcome"], "unchanged");
    assert_eq!(results[2]["data"]["outcome"], "applied");
    assert!(fixture.get("ingresses", "ai-route-chat.internal").is_none());
    assert!(fixture.get("configmaps", "ai-route-chat").is_none());
    let status = worker.terminate();
    assert!(status.success(), "{status}");
}

/// A librdkafka value holding commas (a SASL password may) comes whole from --kafka-config-file: here
/// the broker list, whose first broker is not there. Cut at its comma, the worker would reach none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_with_commas_comes_whole_from_the_kafka_config_file() {
    let fixture = Fixture::start().await;
    let file = fixture.dir.path().join("kafka.properties");
    std::fs::write(
        &file,
        format!(
            "# as mounted from a Secret\nbootstrap.servers=127.0.0.1:1,{}\n\n",
            fixture.broker.bootstrap()
        ),
    )
    .unwrap();
    let worker = fixture.worker("w", &["--kafka-config-file", file.to_str().unwrap()]);
    applies_a_deploy_and_stops(&fixture, worker).await;
}

/// One model's events, the middle one invalid, taken in one batch: their results come out in the order
/// the events came in (an invalid event's result used to wait for its dead letter, after the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_models_results_keep_the_order_of_its_events_invalid_ones_included() {
    let fixture = Fixture::start().await;
    let invalid = cloud_event(
        "invalid-chat-2",
        "io.higress.model.deployed.v1",
        json!({"model": "chat", "revision": 2, "provider": {"type": 42}}),
    );
    // Queued before the worker starts: its first batch takes all three.
    fixture.publish("chat", &deploy("chat", 1)).await;
    fixture.publish("chat", &invalid).await;
    fixture.publish("chat", &deploy("chat", 3)).await;
    let worker = fixture.worker("w", &[]);
    let results = fixture.results(3).await;
    let order: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["data"]["inputEventId"].as_str().unwrap(),
                r["data"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("deploy-chat-1", "applied"),
            ("invalid-chat-2", "rejected"),
            ("deploy-chat-3", "applied")
        ],
        "log:\n{}",
        worker.log()
    );
    let plain = plain_log(&worker);
    assert!(plain.contains("batch done records=3"), "one batch: {plain}");
    assert!(worker.terminate().success());
}

/// A result goes when it is final, not when the whole batch is: while one model's events wait out a
/// failure of the API server (here, for as long as the test keeps it failing), the batch's other
/// results, an invalid event's and the waiting model's superseded event's included, are published;
/// the waiting event's comes later, after its model's earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_retried_after_a_transient_failure_holds_back_only_its_own_results() {
    let fixture = Fixture::start().await;
    // Every request naming the held route's objects fails, until the test clears the fault.
    fixture
        .sim
        .faults()
        .set_error_rate(1.0, FaultSpec::new(503).for_path("ai-route-held"));
    let invalid = cloud_event(
        "invalid-other-1",
        "io.higress.model.deployed.v1",
        json!({"model": "other", "revision": 1, "provider": {"type": 42}}),
    );
    // Queued before the worker starts: its first batch takes all four.
    fixture.publish("held", &deploy("held", 1)).await;
    fixture.publish("quick", &deploy("quick", 1)).await;
    fixture.publish("held", &deploy("held", 2)).await;
    fixture.publish("other", &invalid).await;
    let worker = fixture.worker("w", &["--event-deadline-secs", "120", "--retry-deadline-secs", "1"]);

    let early = fixture
        .results_covering(&["deploy-quick-1".to_string(), "invalid-other-1".to_string()])
        .await;
    let seen = outcomes(&early);
    assert_eq!(
        seen.get("deploy-quick-1").map(String::as_str),
        Some("applied"),
        "log:\n{}",
        worker.log()
    );
    assert_eq!(seen.get("invalid-other-1").map(String::as_str), Some("rejected"));
    // The held model's first event is final at once (its second supersedes it in the batch); the
    // second has no result while its requests fail.
    assert_eq!(seen.get("deploy-held-1").map(String::as_str), Some("stale"), "{seen:?}");
    assert!(!seen.contains_key("deploy-held-2"), "{seen:?}");
    assert!(fixture.get("ingresses", "ai-route-held.internal").is_none());

    fixture.sim.faults().clear();
    let all = fixture
        .results_covering(&["deploy-held-1".to_string(), "deploy-held-2".to_string()])
        .await;
    let held: Vec<(&str, &str)> = all
        .iter()
        .filter(|r| r["data"]["model"] == "held")
        .map(|r| {
            (
                r["data"]["inputEventId"].as_str().unwrap(),
                r["data"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(held.len(), 2, "one result each: {held:?}\nlog:\n{}", worker.log());
    assert_eq!(
        held[0],
        ("deploy-held-1", "stale"),
        "in the order of the model's events: {held:?}"
    );
    assert_eq!(held[1], ("deploy-held-2", "applied"), "{held:?}");
    assert!(fixture.get("ingresses", "ai-route-held.internal").is_some());
    let plain = plain_log(&worker);
    assert!(plain.contains("batch done records=4"), "one batch: {plain}");
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_input_is_dead_lettered_and_the_next_event_still_applies() {
    let fixture = Fixture::start().await;
    let worker = fixture.worker("w", &[]);
    let oversize = cloud_event(
        "big",
        "io.higress.model.deployed.v1",
        json!({"model": "big", "revision": 1, "pad": "x".repeat(300_000)}),
    );
    type Poison<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a [u8])>);
    let poison: Vec<Poison> = vec![
        ("not-json", b"\x00\xffnot json".to_vec(), vec![]),
        ("not-cloudevent", br#"{"hello":"world"}"#.to_vec(), vec![]),
        (
            "unknown-type",
            cloud_event("u1", "io.example.other", json!({"model": "u"}))
                .to_string()
                .into_bytes(),
            vec![],
        ),
        (
            "schema-violation",
            cloud_event(
                "s1",
                "io.higress.model.deployed.v1",
                json!({"model": "Bad_Name", "revision": 1, "provider": {"apiTokens": ["sk-leak"]}}),
            )
            .to_string()
            .into_bytes(),
            vec![],
        ),
        ("oversize", oversize.to_string().into_bytes(), vec![]),
        (
            "binary-bad-data",
            b"{not json".to_vec(),
            vec![
                ("ce_specversion", b"1.0"),
                ("ce_id", b"b1"),
                ("ce_type", b"io.higress.model.deployed.v1"),
                ("ce_source", b"t"),
            ],
        ),
    ];
    for (name, payload, headers) in &poison {
        fixture.broker.produce(INPUT, Some(name), payload, headers).await;
    }
    // A valid event in binary mode after all of them.
    // (deepseek needs an API token: without one the gateway would refuse it.)
    let data = json!({"model": "after", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-after"]}})
        .to_string();
    fixture
        .broker
        .produce(
            INPUT,
            Some("after"),
            data.as_bytes(),
            &[
                ("ce_specversion", b"1.0"),
                ("ce_id", b"after-1"),
                ("ce_source", b"t"),
                ("ce_type", b"io.higress.model.deployed.v1"),
            ],
        )
        .await;

    let dead = fixture.dead_letters(poison.len()).await;
    assert_eq!(dead.len(), poison.len(), "log:\n{}", worker.log());
    for (name, payload, _) in &poison {
        let letter = dead
            .iter()
            .find(|r| r.key.as_deref() == Some(*name))
            .unwrap_or_else(|| panic!("{name} not dead-lettered"));
        assert_eq!(&letter.payload, payload, "{name}: original bytes kept");
        let header = |key: &str| {
            letter
                .headers
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        };
        let reason = header("hrw_dlq_reason").unwrap();
        let expected = if name.starts_with("binary") { "not-json" } else { name };
        assert_eq!(reason, expected, "{name}");
        assert_eq!(header("hrw_source_topic").as_deref(), Some(INPUT));
        assert!(header("hrw_source_offset").is_some() && header("hrw_source_partition").is_some());
        assert!(!header("hrw_dlq_message").unwrap().contains("sk-leak"));
    }
    // A rejected result for every one of them, also those whose model could not be read (model
    // null, no subject), each with its own id; then the valid event applied.
    let results = fixture.results(poison.len() + 1).await;
    assert_eq!(results.len(), poison.len() + 1, "{results:?}");
    let mut reasons: Vec<&str> = results
        .iter()
        .filter(|r| r["data"]["outcome"] == "rejected")
        .map(|r| r["data"]["error"]["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    let mut expected: Vec<&str> = poison
        .iter()
        .map(|(name, _, _)| if name.starts_with("binary") { "not-json" } else { *name })
        .collect();
    expected.sort_unstable();
    assert_eq!(reasons, expected);
    for unreadable in results.iter().filter(|r| r["data"]["model"].is_null()) {
        assert!(unreadable.get("subject").is_none(), "{unreadable}");
    }
    assert!(results.iter().filter(|r| r["data"]["model"].is_null()).count() >= 2);
    let ids: std::collections::BTreeSet<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), results.len(), "result ids are unique");
    let by_subject: BTreeMap<String, String> = results
        .iter()
        .map(|r| {
            (
                r["data"]["model"].as_str().unwrap_or_default().to_string(),
                r["data"]["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(by_subject.get("u").map(String::as_str), Some("rejected"), "{results:?}");
    assert_eq!(by_subject.get("Bad_Name").map(String::as_str), Some("rejected"));
    assert_eq!(by_subject.get("after").map(String::as_str), Some("applied"));
    assert!(fixture.get("ingresses", "ai-route-after.internal").is_some());
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_converges_after_restart() {
    let fixture = Fixture::start().await;
    let models: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    let worker = fixture.worker("first", &["--max-batch", "4"]);
    for model in &models {
        fixture.publish(model, &deploy(model, 1)).await;
    }
    // Let it apply part of the stream, then kill -9.
    let before_kill = fixture.results(10).await;
    assert!(
        before_kill.len() >= 10,
        "only {} results before the kill; log:\n{}",
        before_kill.len(),
        worker.log()
    );
    worker.kill();
    let worker = fixture.worker("second", &[]);
    let ids: Vec<String> = models.iter().map(|m| format!("deploy-{m}-1")).collect();
    let results = fixture.results_covering(&ids).await;
    let seen = outcomes(&results);
    for model in &models {
        let outcome = seen
            .get(&format!("deploy-{model}-1"))
            .unwrap_or_else(|| panic!("no result for {model}; log:\n{}", worker.log()));
        assert!(outcome == "applied" || outcome == "unchanged", "{model}: {outcome}");
    }
    assert_routes_exactly(&fixture, &models);
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_event() {
    let mut fixture = Fixture::start().await;
    let worker = fixture.worker("w", &[]);
    let models: Vec<String> = (0..30).map(|i| format!("b{i}")).collect();
    for model in &models[..15] {
        fixture.publish(model, &deploy(model, 1)).await;
    }
    let before_restart = fixture.results(5).await;
    assert!(
        before_restart.len() >= 5,
        "only {} results before the broker restart; log:\n{}",
        before_restart.len(),
        worker.log()
    );
    fixture.broker.restart().await;
    for model in &models[15..] {
        fixture.publish(model, &deploy(model, 1)).await;
    }
    let results = fixture.results(models.len()).await;
    let seen = outcomes(&results);
    for model in &models {
        assert!(
            seen.contains_key(&format!("deploy-{model}-1")),
            "no result for {model}; log:\n{}",
            worker.log()
        );
    }
    assert_routes_exactly(&fixture, &models);
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_commits_what_it_finished() {
    let fixture = Fixture::start().await;
    let models: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
    let worker = fixture.worker("first", &[]);
    for model in &models {
        fixture.publish(model, &deploy(model, 1)).await;
    }
    let first = fixture.results(models.len()).await;
    assert_eq!(first.len(), models.len(), "log:\n{}", worker.log());
    let status = worker.terminate();
    assert!(status.success(), "{status}");
    // A new worker in the same group starts after the committed offsets: nothing is replayed.
    let worker = fixture.worker("second", &[]);
    fixture.publish("last", &deploy("last", 1)).await;
    let results = fixture.results(models.len() + 1).await;
    assert_eq!(results.len(), models.len() + 1);
    let extra = fixture
        .broker
        .consume_all(RESULTS, models.len() + 2, Duration::from_secs(3))
        .await;
    assert_eq!(
        extra.len(),
        models.len() + 1,
        "no event was applied twice: {:?}",
        &extra[models.len()..]
    );
    assert_eq!(results.last().unwrap()["data"]["inputEventId"], "deploy-last-1");
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_share_the_work() {
    let fixture = Fixture::start().await;
    let a = fixture.worker("a", &[]);
    let b = fixture.worker("b", &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let models: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    for model in &models {
        fixture.publish(model, &deploy(model, 1)).await;
    }
    for model in &models[..10] {
        fixture.publish(model, &retire(model, 2)).await;
    }
    let results = fixture.results(50).await;
    let seen = outcomes(&results);
    assert_eq!(seen.len(), 50, "a: {}\nb: {}", a.log(), b.log());
    // Two writers contend for the shared objects; a batch that fails falls back to one event at a
    // time, where a deploy that its model's retirement supersedes in the same batch is `stale`
    // (nothing written for it). Every other outcome is `applied`.
    for result in &results {
        let data = &result["data"];
        let id = data["inputEventId"].as_str().unwrap();
        let superseded = models[..10].iter().any(|m| id == format!("deploy-{m}-1"));
        let outcome = data["outcome"].as_str().unwrap();
        let allowed = outcome == "applied"
            || (superseded && outcome == "stale" && data["warnings"].to_string().contains("revision 2"));
        assert!(allowed, "{id}: {data}\na: {}\nb: {}", a.log(), b.log());
    }
    assert_routes_exactly(&fixture, &models[10..]);
    for model in &models[..10] {
        assert!(fixture
            .get("ingresses", &format!("ai-route-{model}.internal"))
            .is_none());
    }
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// The partition count of the last assignment a worker logged (`--log-format json`).
fn last_assignment(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "partitions assigned")
        .find_map(|line| line["fields"]["partitions"].as_u64())
}

/// README: `/readyz` answers once the worker has joined its group, with an assignment that may be
/// empty: a replica beyond the input's partitions is idle, and ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_beyond_the_partitions_is_idle_and_ready() {
    let fixture = Fixture::start().await;
    // Four replicas for the input's three partitions, started together.
    let replicas: Vec<WorkerProcess> = (0..4)
        .map(|i| fixture.worker(&format!("r{i}"), &["--log-format", "json"]))
        .collect();
    let logs = || replicas.iter().map(|r| r.log()).collect::<Vec<_>>().join("\n---\n");
    // Settled: every replica's last assignment is logged, together they hold the three partitions
    // once, and so it stays a second later.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut previous = None;
    let assignments = loop {
        let last: Option<Vec<u64>> = replicas.iter().map(|r| last_assignment(&r.log())).collect();
        let settled = last.clone().filter(|counts| counts.iter().sum::<u64>() == 3);
        if let Some(counts) = settled.as_ref().filter(|_| settled == previous) {
            break counts.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never settled:\n{}",
            logs()
        );
        previous = settled;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let idle: Vec<&WorkerProcess> = replicas
        .iter()
        .zip(&assignments)
        .filter(|(_, partitions)| **partitions == 0)
        .map(|(replica, _)| replica)
        .collect();
    assert_eq!(idle.len(), 1, "{assignments:?}");
    assert_eq!(
        idle[0].wait_ready_status(200, WAIT).await,
        200,
        "the idle replica is ready:\n{}",
        idle[0].log()
    );
    for replica in replicas {
        assert!(replica.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_cluster_errors_wait_then_fail_after_the_deadline() {
    let fixture = Fixture::start().await;
    let worker = fixture.worker("w", &["--event-deadline-secs", "3", "--retry-deadline-secs", "1"]);
    // A short outage is ridden out.
    fixture.sim.faults().fail_next(6, FaultSpec::new(503));
    fixture.publish("t1", &deploy("t1", 1)).await;
    let results = fixture.results(1).await;
    assert_eq!(results[0]["data"]["outcome"], "applied", "log:\n{}", worker.log());
    // A long one fails the event after the deadline and dead-letters it.
    fixture
        .sim
        .faults()
        .set_error_rate(1.0, FaultSpec::new(503).for_path("ingresses"));
    fixture.publish("t2", &deploy("t2", 1)).await;
    let results = fixture.results(2).await;
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    assert_eq!(results[1]["data"]["outcome"], "failed");
    assert_eq!(results[1]["data"]["error"]["retryable"], true);
    let dead = fixture.dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        process::header(&dead[0], "hrw_dlq_reason").as_deref(),
        Some("apply-failed")
    );
    fixture.sim.faults().clear();
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_are_named_at_start_up() {
    let fixture = Fixture::start().await;
    let mut worker = fixture.worker(
        "w",
        &["--result-topic", "no-such-results", "--dlq-topic", "no-such-dlq"],
    );
    let status = worker.child.wait().unwrap();
    assert!(!status.success(), "the worker must not run without its topics");
    let log = worker.log();
    assert!(
        log.contains("missing Kafka topics: no-such-results, no-such-dlq"),
        "{log}"
    );
    // It creates none: the broker's storage holds the topics the fixture made, and not those.
    let topics = |name: &str| {
        fixture
            .broker
            .sql(&format!("select count(*) from topic where name = '{name}';"))
    };
    assert_eq!(topics(process::INPUT).trim(), "1");
    assert_eq!(topics("no-such-results").trim(), "0");
    assert_eq!(topics("no-such-dlq").trim(), "0");
}

/// A permanent refusal after some writes: the result is `failed` and names what was written, the
/// record is dead-lettered `apply-partial`, and replaying it after the fix finishes the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_after_writes_is_dead_lettered_apply_partial_and_a_replay_finishes() {
    let fixture = Fixture::start().await;
    let worker = fixture.worker("w", &["--event-deadline-secs", "5", "--retry-deadline-secs", "1"]);
    fixture.publish("m", &deploy("m", 1)).await;
    assert_eq!(
        fixture.results(1).await[0]["data"]["outcome"],
        "applied",
        "log:\n{}",
        worker.log()
    );

    // Revision 2 moves the path and changes the allow list; the API server refuses every Ingress PUT.
    let mut redeploy = deploy("m", 2);
    redeploy["data"]["route"]["path"] = json!("/m-v2");
    redeploy["data"]["auth"]["consumers"][0] =
        json!({"name": "c-m-v2", "source": "BEARER", "credentials": ["key-m-v2"]});
    fixture.sim.faults().set_error_rate(
        1.0,
        FaultSpec::new(422).for_method(http::Method::PUT).for_path("ingresses"),
    );
    fixture.publish("m", &redeploy).await;
    let results = fixture.results(2).await;
    let failed = &results[1]["data"];
    assert_eq!(failed["outcome"], "failed", "log:\n{}", worker.log());
    assert_eq!(failed["error"]["retryable"], false);
    let written: Vec<&str> = failed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(written.contains(&"key-auth.internal"), "{failed}");
    assert!(
        !written.contains(&"ai-route-m.internal"),
        "the refused Ingress is not claimed: {failed}"
    );
    let dead = fixture.dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        process::header(&dead[0], "hrw_dlq_reason").as_deref(),
        Some("apply-partial")
    );
    assert_eq!(
        dead[0].payload,
        redeploy.to_string().into_bytes(),
        "the original record, for the replay"
    );

    // After the fix, the operator replays the dead letter: the route is whole again.
    fixture.sim.faults().clear();
    fixture.publish("m", &redeploy).await;
    let results = fixture.results(3).await;
    assert_eq!(results[2]["data"]["outcome"], "applied", "log:\n{}", worker.log());
    let ingress = fixture.get("ingresses", "ai-route-m.internal").unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["path"], "/m-v2");
    assert!(worker.terminate().success());
}

/// Trace context through the broker: structured mode (extension attributes) and binary mode
/// (`ce_traceparent`, `ce_tracestate` headers) reach the result and the worker's log line for the
/// event; the result says where the route answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_and_route_access_reach_the_result() {
    let fixture = Fixture::start().await;
    let worker = fixture.worker("w", &[]);
    let structured_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let binary_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let mut structured = deploy("chat", 1);
    structured["traceparent"] = json!(structured_parent);
    structured["tracestate"] = json!("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    structured["data"]["route"] = json!({"domains": ["api.example.com"], "path": "/chat",
        "modelPredicates": [{"matchType": "EQUAL", "matchValue": "gpt-4o"}]});
    fixture.publish("chat", &structured).await;
    let binary = deploy("code", 1);
    let headers: Vec<(&str, &[u8])> = vec![
        ("ce_specversion", b"1.0"),
        ("ce_id", b"deploy-code-1"),
        ("ce_source", b"tests"),
        ("ce_type", b"io.higress.model.deployed.v1"),
        ("ce_traceparent", binary_parent.as_bytes()),
        ("ce_tracestate", b"vendor=x"),
    ];
    fixture
        .broker
        .produce(INPUT, Some("code"), binary["data"].to_string().as_bytes(), &headers)
        .await;
    // A malformed traceparent is refused by the contract, naming the attribute.
    let mut bad = deploy("bad", 1);
    bad["traceparent"] = json!("00-not-a-trace-01");
    fixture.publish("bad", &bad).await;

    let results = fixture.results(3).await;
    assert_eq!(results.len(), 3, "log:\n{}", worker.log());
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r["data"]["inputEventId"] == id)
            .unwrap_or_else(|| panic!("{id}: {results:?}"))
    };
    let chat = by_id("deploy-chat-1");
    assert_eq!(chat["data"]["outcome"], "applied");
    assert_eq!(chat["traceparent"], structured_parent);
    assert_eq!(chat["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    assert_eq!(
        chat["data"]["route"],
        json!({"urls": ["http://api.example.com/chat"], "path": "/chat", "models": ["gpt-4o"]})
    );
    let code = by_id("deploy-code-1");
    assert_eq!(code["data"]["outcome"], "applied");
    assert_eq!(code["traceparent"], binary_parent);
    assert_eq!(code["tracestate"], "vendor=x");
    assert_eq!(code["data"]["route"]["models"], json!(["*"]));
    let refused = by_id("deploy-bad-1");
    assert_eq!(refused["data"]["outcome"], "rejected");
    assert!(
        refused["data"]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("traceparent: "),
        "{refused}"
    );
    assert!(
        refused.get("traceparent").is_none(),
        "an invalid context is not carried"
    );

    let log = worker.log();
    for (parent, state) in [
        (structured_parent, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        (binary_parent, "vendor=x"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains("event done") && l.contains(parent))
            .unwrap_or_else(|| panic!("no log line of the event with traceparent {parent}:\n{log}"));
        assert!(line.contains("tracestate") && line.contains(state), "{line}");
    }
    let status = worker.terminate();
    assert!(status.success(), "{status}");
}

/// Requests of resources kube-sim has received so far (discovery and `/version` left out).
fn api_requests(fixture: &Fixture) -> u64 {
    fixture.sim.counters().requests.values().sum()
}

/// Waits until kube-sim has received more than `seen` resource requests; panics after `WAIT`.
async fn wait_for_requests_past(fixture: &Fixture, seen: u64, worker: &WorkerProcess) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while api_requests(fixture) <= seen {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker made no API request; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the sample `series` (name and labels, exactly as exposed) in a /metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

/// The broker's only address is in --kafka-config-file: --brokers names a port nothing listens on.
/// A worker that ignored the file would reach no broker and stop at its topic check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_config_file_is_read_the_broker_is_found_only_there() {
    let fixture = Fixture::start().await;
    let file = fixture.dir.path().join("kafka.properties");
    std::fs::write(
        &file,
        format!(
            "# as mounted from a Secret\nbootstrap.servers={}\n",
            fixture.broker.bootstrap()
        ),
    )
    .unwrap();
    let worker = fixture.0.worker_with_brokers(
        "w",
        "info",
        "127.0.0.1:1",
        &["--kafka-config-file", file.to_str().unwrap()],
    );
    applies_a_deploy_and_stops(&fixture, worker).await;
}

/// --kafka-config wins over the file: the file names a port nothing listens on, the flag the broker.
/// Were the file's value to win, the worker would reach no broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_config_flag_overrides_the_same_setting_of_the_kafka_config_file() {
    let fixture = Fixture::start().await;
    let file = fixture.dir.path().join("kafka.properties");
    std::fs::write(&file, "bootstrap.servers=127.0.0.1:1\n").unwrap();
    let flag = format!("bootstrap.servers={}", fixture.broker.bootstrap());
    let worker = fixture.0.worker_with_brokers(
        "w",
        "info",
        "127.0.0.1:1",
        &["--kafka-config-file", file.to_str().unwrap(), "--kafka-config", &flag],
    );
    applies_a_deploy_and_stops(&fixture, worker).await;
}

/// SIGTERM while a batch waits on a slow API server (3 s a request, a batch takes several rounds):
/// after --drain-deadline-secs 1 the worker abandons it, exits 0 without its result and without
/// committing it, and the next worker of the group applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_batch_past_the_drain_deadline_and_the_next_worker_replays_it() {
    let fixture = Fixture::start().await;
    let mut first = fixture.worker("first", &["--drain-deadline-secs", "1"]);
    assert_eq!(first.wait_ready_status(200, WAIT).await, 200, "log:\n{}", first.log());
    let before = api_requests(&fixture);
    fixture.sim.faults().set_latency(Duration::from_secs(3), Duration::ZERO);
    fixture.publish("slow", &deploy("slow", 1)).await;
    wait_for_requests_past(&fixture, before, &first).await;

    let signalled = std::time::Instant::now();
    first.send_sigterm();
    let status = first
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no exit 30 s after SIGTERM; log:\n{}", first.log()));
    let took = signalled.elapsed();
    assert!(status.success(), "{status}; log:\n{}", first.log());
    // Finishing the batch would take several 3 s rounds; abandoning it takes the 1 s deadline.
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM");
    assert!(first.log().contains("drain deadline passed"), "{}", first.log());
    let published = fixture.read(RESULTS, 1, Duration::from_secs(3)).await;
    assert!(published.is_empty(), "no result for the abandoned batch: {published:?}");

    fixture.sim.faults().clear();
    let second = fixture.worker("second", &[]);
    let results = fixture.results(1).await;
    assert_eq!(results.len(), 1, "replayed; log:\n{}", second.log());
    assert_eq!(results[0]["data"]["inputEventId"], "deploy-slow-1");
    assert_eq!(results[0]["data"]["outcome"], "applied");
    assert!(fixture.get("ingresses", "ai-route-slow.internal").is_some());
    assert!(second.terminate().success());
}

/// SIGTERM while a batch is under way, with a drain deadline longer than it needs: the batch is
/// finished, its result published and its offset committed before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_batch_in_flight_within_the_drain_deadline() {
    let fixture = Fixture::start().await;
    let mut first = fixture.worker("first", &["--drain-deadline-secs", "20"]);
    assert_eq!(first.wait_ready_status(200, WAIT).await, 200, "log:\n{}", first.log());
    let before = api_requests(&fixture);
    fixture
        .sim
        .faults()
        .set_latency(Duration::from_millis(300), Duration::ZERO);
    fixture.publish("busy", &deploy("busy", 1)).await;
    wait_for_requests_past(&fixture, before, &first).await;

    first.send_sigterm();
    let at_signal = api_requests(&fixture);
    let status = first
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no exit 30 s after SIGTERM; log:\n{}", first.log()));
    assert!(status.success(), "{status}; log:\n{}", first.log());
    // Published before the exit: it is there at once.
    let published = fixture.read(RESULTS, 1, Duration::from_secs(5)).await;
    assert_eq!(published.len(), 1, "log:\n{}", first.log());
    let result: Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(result["data"]["inputEventId"], "deploy-busy-1");
    assert_eq!(result["data"]["outcome"], "applied");
    assert!(
        api_requests(&fixture) > at_signal,
        "the batch was still under way at SIGTERM"
    );

    // Committed: the next worker of the group does not apply it again.
    fixture.sim.faults().clear();
    let second = fixture.worker("second", &[]);
    fixture.publish("next", &deploy("next", 1)).await;
    let results = fixture.results(2).await;
    let extra = fixture.read(RESULTS, 3, Duration::from_secs(3)).await;
    assert_eq!(extra.len(), 2, "nothing replayed; log:\n{}", second.log());
    assert_eq!(results[1]["data"]["inputEventId"], "deploy-next-1");
    assert!(second.terminate().success());
}

/// /metrics after a poison record, a forced 409 on a shared object and a transient 503: the
/// counters, the budget, the shared object's size and the in-flight gauge, during and after a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_dead_letters_conflicts_retries_and_show_sizes_and_work_in_flight() {
    let fixture = Fixture::start().await;
    let worker = fixture.worker("w", &[]);
    fixture.produce("poison", b"this is not JSON", &[]).await;
    fixture.publish("m1", &deploy("m1", 1)).await;
    let results = fixture.results(2).await;
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    let metrics = worker.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"higress_route_worker_dead_lettered_total{reason="not-json"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "higress_route_worker_shared_object_budget_bytes 1400000"),
        "the default budget: {metrics}"
    );
    let ai_proxy = r#"higress_route_worker_shared_object_bytes{object="WasmPlugin/ai-proxy.internal"}"#;
    let one_route = sample(&metrics, ai_proxy).unwrap_or_else(|| panic!("{metrics}"));
    assert!(one_route > 0.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "higress_route_worker_conflicts_total"),
        Some(0.0),
        "{metrics}"
    );

    // The next deploy meets a 409 on ai-proxy.internal and a 503 on an Ingress request, and its
    // requests are slow enough to watch the batch in flight.
    let faults = fixture.sim.faults();
    faults.conflict_next("wasmplugins", "ai-proxy.internal", 1);
    faults.fail_next(1, FaultSpec::new(503).for_path("ingresses"));
    faults.set_latency(Duration::from_millis(500), Duration::ZERO);
    let before = api_requests(&fixture);
    fixture.publish("m2", &deploy("m2", 1)).await;
    wait_for_requests_past(&fixture, before, &worker).await;
    let during = worker.metrics().await;
    assert_eq!(sample(&during, "higress_route_worker_in_flight"), Some(1.0), "{during}");
    let results = fixture.results(3).await;
    assert_eq!(results[2]["data"]["outcome"], "applied", "log:\n{}", worker.log());
    faults.clear();

    // Idle again once the batch is committed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = worker.metrics().await;
        if sample(&metrics, "higress_route_worker_in_flight") == Some(0.0) || tokio::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&metrics, "higress_route_worker_in_flight"),
        Some(0.0),
        "{metrics}"
    );
    let at_least_one = |series: &str| {
        let value = sample(&metrics, series).unwrap_or_else(|| panic!("no {series}: {metrics}"));
        assert!(value >= 1.0, "{series} {value}");
    };
    at_least_one("higress_route_worker_conflicts_total");
    at_least_one(r#"higress_route_worker_retries_total{reason="conflict"}"#);
    at_least_one(r#"higress_route_worker_retries_total{reason="transient"}"#);
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"higress_route_worker_dead_lettered_total{reason="not-json"} 1"#),
        "{metrics}"
    );
    let two_routes = sample(&metrics, ai_proxy).unwrap();
    assert!(
        two_routes > one_route,
        "grows with the second provider: {one_route} -> {two_routes}"
    );
    assert!(worker.terminate().success());
}

/// /readyz follows the API server: 503 while it hangs (answers past the 2 s readiness wait) or is
/// gone (connection refused), 200 again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_unready_while_the_api_server_does_not_answer() {
    let mut fixture = Fixture::start().await;
    let worker = fixture.worker("w", &[]);
    assert_eq!(worker.wait_ready_status(200, WAIT).await, 200, "log:\n{}", worker.log());

    fixture.sim.faults().set_latency(Duration::from_secs(5), Duration::ZERO);
    let (status, body) = worker.http_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("API server unreachable"), "{body}");
    fixture.sim.faults().clear();
    assert_eq!(worker.wait_ready_status(200, Duration::from_secs(10)).await, 200);

    let port: u16 = fixture.sim.base_url().rsplit(':').next().unwrap().parse().unwrap();
    let gone = std::mem::replace(&mut fixture.sim, kube_sim::start().await);
    gone.shutdown().await;
    let (status, body) = worker.http_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("API server unreachable"), "{body}");
    fixture.sim = kube_sim::start_on(port).await.unwrap();
    assert_eq!(
        worker.wait_ready_status(200, Duration::from_secs(10)).await,
        200,
        "log:\n{}",
        worker.log()
    );
    assert!(worker.terminate().success());
}

/// The worker, connected as its test set it up, applies a deploy and stops cleanly.
async fn applies_a_deploy_and_stops(fixture: &Fixture, worker: WorkerProcess) {
    fixture.publish("chat", &deploy("chat", 1)).await;
    let results = fixture.results(1).await;
    assert_eq!(results.len(), 1, "log:\n{}", worker.log());
    assert_eq!(results[0]["data"]["outcome"], "applied");
    assert!(worker.terminate().success());
}

/// One event in a burst whose route-plugin config the gateway would refuse: its result is
/// `rejected`/`gateway-refuses`, it is dead-lettered with that reason, and every other event applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_gateway_would_refuse_in_a_burst_is_rejected_and_dead_lettered_alone() {
    let fixture = Fixture::start().await;
    let models: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    for (i, model) in models.iter().enumerate() {
        let mut event = deploy(model, 1);
        let mut ratelimit = json!({"rule_name": model,
            "rule_items": [{"limit_by_header": "x-api-key", "limit_keys": [{"key": "*", "token_per_minute": 100}]}],
            "redis": {"service_name": "redis.dns", "password": "redis-secret-1"}});
        if i == 5 {
            // No limit_keys: the plugin's parser refuses the rule, and with it the CR for every route.
            ratelimit["rule_items"][0].as_object_mut().unwrap().remove("limit_keys");
        }
        event["data"]["route"]["plugins"] = json!({"ai-token-ratelimit": ratelimit});
        fixture.publish(model, &event).await;
    }
    let worker = fixture.worker("w", &[]);
    let ids: Vec<String> = models.iter().map(|m| format!("deploy-{m}-1")).collect();
    let results = fixture.results_covering(&ids).await;
    let outcomes = outcomes(&results);
    for (i, id) in ids.iter().enumerate() {
        let expected = if i == 5 { "rejected" } else { "applied" };
        assert_eq!(
            outcomes.get(id).map(String::as_str),
            Some(expected),
            "{id}: {results:?}\nlog:\n{}",
            worker.log()
        );
    }
    let refused = results
        .iter()
        .find(|r| r["data"]["inputEventId"] == "deploy-m5-1")
        .unwrap();
    assert_eq!(refused["data"]["error"]["reason"], "gateway-refuses");
    assert!(refused["data"]["changes"].as_array().unwrap().is_empty());
    let message = refused["data"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limit_keys") && message.contains("ai-route-m5.internal"),
        "{message}"
    );
    assert!(!refused.to_string().contains("redis-secret-1"));

    let dead = fixture.dead_letters(1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].key.as_deref(), Some("m5"));
    assert_eq!(
        process::header(&dead[0], "hrw_dlq_reason").as_deref(),
        Some("gateway-refuses")
    );
    assert!(fixture.get("ingresses", "ai-route-m5.internal").is_none());
    assert!(fixture.get("ingresses", "ai-route-m11.internal").is_some());
    let metrics = worker.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"higress_route_worker_dead_lettered_total{reason="gateway-refuses"}"#
        ),
        Some(1.0)
    );
    assert!(worker.terminate().success());
}

/// The consumer lag gauges of a /metrics text, by partition.
fn lag_by_partition(metrics: &str) -> BTreeMap<i32, f64> {
    let series =
        regex::Regex::new(r#"^higress_route_worker_consumer_lag\{topic="model-lifecycle",partition="(\d+)"\} (\S+)$"#)
            .unwrap();
    metrics
        .lines()
        .filter_map(|line| series.captures(line))
        .map(|c| (c[1].parse().unwrap(), c[2].parse().unwrap()))
        .collect()
}

/// Events produced while every API request fails are consumer lag, all of them (nothing is committed),
/// and the batch holding them ages; once the API server answers, the worker applies them and commits,
/// and the lag and the age fall to 0. Read from the live /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_counts_the_events_not_yet_applied_and_falls_to_zero_once_they_are() {
    let fixture = Fixture::start().await;
    fixture.sim.faults().set_error_rate(1.0, FaultSpec::new(503));
    let models: Vec<String> = (0..6).map(|i| format!("lag{i}")).collect();
    for model in &models {
        fixture.publish(model, &deploy(model, 1)).await;
    }
    let worker = fixture.worker("w", &["--lag-refresh-ms", "200"]);
    let stuck = worker
        .metrics_once("lag 6 over the 3 partitions", WAIT, |m| {
            let lags = lag_by_partition(m);
            lags.len() == 3 && lags.values().sum::<f64>() == 6.0
        })
        .await;
    let age = |metrics: &str| sample(metrics, "higress_route_worker_oldest_in_flight_age_seconds");
    let first_age = age(&stuck).unwrap_or_else(|| panic!("{stuck}"));
    assert!(first_age > 0.0, "a batch waits on the API server: {stuck}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = worker.metrics().await;
    assert!(
        age(&later).unwrap() > first_age,
        "the age rises: {first_age} then {later}"
    );
    assert_eq!(lag_by_partition(&later).values().sum::<f64>(), 6.0, "{later}");

    fixture.sim.faults().clear();
    let results = fixture.results(models.len()).await;
    assert!(
        results.iter().all(|r| r["data"]["outcome"] == "applied"),
        "{results:?}\nlog:\n{}",
        worker.log()
    );
    let caught_up = worker
        .metrics_once("lag 0 on each partition, nothing in flight", WAIT, |m| {
            let lags = lag_by_partition(m);
            lags.len() == 3 && lags.values().all(|lag| *lag == 0.0) && age(m) == Some(0.0)
        })
        .await;
    assert_eq!(sample(&caught_up, "higress_route_worker_in_flight"), Some(0.0));
    assert!(worker.terminate().success());
}

/// Lag series only for the partitions a worker owns: when a second worker of the group takes some of
/// them, the first drops their series, and between them each partition shows once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shows_lag_only_for_the_partitions_it_owns() {
    let fixture = Fixture::start().await;
    let first = fixture.worker("first", &["--lag-refresh-ms", "200"]);
    first
        .metrics_once("lag of all 3 partitions", WAIT, |m| lag_by_partition(m).len() == 3)
        .await;
    let second = fixture.worker("second", &["--lag-refresh-ms", "200"]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The second answers nothing (status 0, no series) until it listens.
        let ours: BTreeSet<i32> = lag_by_partition(&first.metrics().await).into_keys().collect();
        let theirs: BTreeSet<i32> = lag_by_partition(&second.http_get("/metrics").await.1)
            .into_keys()
            .collect();
        let shared = ours.is_disjoint(&theirs) && !ours.is_empty() && !theirs.is_empty();
        if shared && ours.union(&theirs).count() == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "first {ours:?}, second {theirs:?}\nfirst's log:\n{}\nsecond's log:\n{}",
            first.log(),
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(second.terminate().success());
    assert!(first.terminate().success());
}
