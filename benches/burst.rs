//! Burst benchmark: N deploy events through a real broker (Tansu) and the worker into the in-memory
//! API server with per-request latency, batched (coalesced) against per-event sequential; then the
//! retirement of every model deployed, measured the same way (`--no-retire` skips it).
//!
//! `cargo bench --bench burst -- --events 1000 --latency-ms 5 --providers 1000 --consumers 1`
//! Add `--workers 3 --foreign-writer` for the contention variant, `--existing-routes 5000` to start from
//! a cluster that already holds 5,000 routes, `--tracing` to export the workers' spans to a collector in
//! the bench's process (OTLP). A null worker (consume, produce a result, commit; no API
//! work) moves the same burst through the same kind of broker as the ceiling. The last line is one JSON
//! object.

#[path = "../tests/support/broker.rs"]
mod broker;
#[path = "../tests/support/otlp.rs"]
mod otlp;
#[path = "support/seed.rs"]
mod seed;

use broker::Broker;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use seed::{deploy_with, domain_config_map, existing_state};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Options {
    events: usize,
    latency_ms: u64,
    providers: usize,
    consumers: usize,
    partitions: i32,
    workers: usize,
    foreign_writer: bool,
    baseline_events: usize,
    existing_routes: usize,
    existing_providers: usize,
    existing_consumers: usize,
    /// Writes in flight in batched mode (the worker's default unless given).
    write_concurrency: usize,
    /// Records per batch in batched mode (the worker's default unless given).
    max_batch: usize,
    /// Skip the sequential baseline (for profiling the batched run).
    no_baseline: bool,
    /// Skip the retirement phase (every deployed model retired, `deleteConsumers: true`).
    no_retire: bool,
    /// Export the workers' spans (OpenTelemetry) to a collector in the bench's process.
    tracing: bool,
    /// Where they go, once the collector is up.
    otlp_endpoint: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        events: 1000,
        latency_ms: 5,
        providers: 0,
        consumers: 1,
        partitions: 6,
        workers: 1,
        foreign_writer: false,
        baseline_events: 0,
        existing_routes: 0,
        existing_providers: 0,
        existing_consumers: 0,
        write_concurrency: higress_route_worker::cluster::DEFAULT_WRITE_CONCURRENCY,
        max_batch: higress_route_worker::worker::DEFAULT_MAX_BATCH,
        no_baseline: false,
        no_retire: false,
        tracing: false,
        otlp_endpoint: None,
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
                .parse::<usize>()
                .unwrap()
        };
        match args[i].as_str() {
            "--events" => o.events = value(i),
            "--latency-ms" => o.latency_ms = value(i) as u64,
            "--providers" => o.providers = value(i),
            "--consumers" => o.consumers = value(i),
            "--partitions" => o.partitions = value(i) as i32,
            "--workers" => o.workers = value(i),
            "--baseline-events" => o.baseline_events = value(i),
            "--existing-routes" => o.existing_routes = value(i),
            "--existing-providers" => o.existing_providers = value(i),
            "--existing-consumers" => o.existing_consumers = value(i),
            "--write-concurrency" => o.write_concurrency = value(i),
            "--max-batch" => o.max_batch = value(i),
            "--foreign-writer" => {
                o.foreign_writer = true;
                i += 1;
                continue;
            }
            "--no-baseline" => {
                o.no_baseline = true;
                i += 1;
                continue;
            }
            "--no-retire" => {
                o.no_retire = true;
                i += 1;
                continue;
            }
            "--tracing" => {
                o.tracing = true;
                i += 1;
                continue;
            }
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    if o.providers == 0 {
        o.providers = o.events;
    }
    // Existing routes share providers and consumers, five routes each unless told otherwise (see
    // `seed::existing_state`).
    if o.existing_providers == 0 {
        o.existing_providers = (o.existing_routes / 5).max(1);
    }
    if o.existing_consumers == 0 {
        o.existing_consumers = (o.existing_routes / 5).max(1);
    }
    if o.baseline_events == 0 {
        // The sequential baseline is slow by nature; a fifth of the burst measures its rate well.
        o.baseline_events = (o.events / 5).max(1);
    }
    o
}

fn deploy(run: &str, i: usize, o: &Options) -> (String, Value) {
    deploy_with(run, i, o.providers, o.consumers)
}

/// The existing cluster's objects, for kube-sim. Seeding is not measured.
fn existing_cluster(o: &Options) -> Vec<Value> {
    existing_state(o.existing_routes, o.existing_providers, o.existing_consumers)
        .into_objects()
        .map(|(_, object)| object)
        .collect()
}

/// How a run treats the burst.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The worker with its defaults (coalesced batches).
    Batched,
    /// The worker one event at a time, one write at a time: what the console does.
    Sequential,
    /// No API work: consume, produce a small result per record, commit per batch. The ceiling the
    /// broker and the machine allow.
    Null,
}

/// The null worker, run as a separate process (as the worker is): the worker's consumer and producer
/// settings and its batching (up to its default batch, 20 ms linger, 20 lingers at most), then one small
/// result per record, delivery awaited, offsets stored and committed per batch.
async fn null_worker(brokers: &str, input: &str, results: &str, group: &str) {
    const MAX_BATCH: usize = higress_route_worker::worker::DEFAULT_MAX_BATCH;
    const LINGER: Duration = Duration::from_millis(20);
    let consumer: StreamConsumer = broker::client_config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let producer: FutureProducer = broker::client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    loop {
        let mut batch = vec![consumer.recv().await.unwrap().detach()];
        let cap = tokio::time::Instant::now() + LINGER * 20;
        while batch.len() < MAX_BATCH {
            let until = (tokio::time::Instant::now() + LINGER).min(cap);
            match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(Ok(record)) => batch.push(record.detach()),
                Ok(Err(_)) => {}
                Err(_) => break,
            }
        }
        let sends: Vec<_> = batch
            .iter()
            .map(|record| {
                let event: Value = serde_json::from_slice(record.payload().unwrap_or_default()).unwrap_or(Value::Null);
                let payload = json!({"specversion": "1.0", "type": "io.higress.model.route.result.v1",
                    "data": {"inputEventId": event["id"], "outcome": "unchanged"}})
                .to_string();
                let key = record.key().map(<[u8]>::to_vec).unwrap_or_default();
                let producer = &producer;
                async move {
                    producer
                        .send(
                            FutureRecord::to(results).key(&key).payload(&payload),
                            Duration::from_secs(30),
                        )
                        .await
                        .map_err(|(e, _)| e)
                }
            })
            .collect();
        for sent in futures::future::join_all(sends).await {
            sent.unwrap();
        }
        for record in &batch {
            consumer
                .store_offset(record.topic(), record.partition(), record.offset())
                .unwrap();
        }
        let _ = consumer.commit_consumer_state(CommitMode::Async);
    }
}

struct Worker(Child, u16);

impl Worker {
    /// Status and body of a GET on the worker's HTTP port (status 0: unreachable).
    async fn get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.1)).await else {
            return (0, String::new());
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(request.as_bytes()).await;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text).await;
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, text)
    }

    /// `higress_route_worker_conflicts_total` from the worker's /metrics (a null worker has none).
    async fn conflicts(&self) -> u64 {
        if self.1 == 0 {
            return 0;
        }
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "metrics of the worker on port {}", self.1);
        text.lines()
            .find(|l| l.starts_with("higress_route_worker_conflicts_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// CPU seconds a process's live threads have run so far (`self` for this one), from the scheduler's
/// nanosecond counters: `/proc/<pid>/stat`'s ticks are too coarse for a burst under a second.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    threads
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()))
        .sum::<f64>()
        / 1e9
}

/// Where the machine's CPU went while the burst ran: the worker(s), the broker, and this process (the
/// in-memory API server, the producer and the result reader).
#[derive(Default, Clone, Copy)]
struct CpuUse {
    workers: f64,
    broker: f64,
    bench: f64,
}

impl CpuUse {
    fn now(workers: &[Worker], broker: &Broker) -> CpuUse {
        CpuUse {
            workers: workers.iter().map(|w| cpu_seconds(&w.0.id().to_string())).sum(),
            broker: broker.pid().map_or(0.0, |pid| cpu_seconds(&pid.to_string())),
            bench: cpu_seconds("self"),
        }
    }

    fn since(self, before: CpuUse) -> CpuUse {
        CpuUse {
            workers: self.workers - before.workers,
            broker: self.broker - before.broker,
            bench: self.bench - before.bench,
        }
    }

    fn total(self) -> f64 {
        self.workers + self.broker + self.bench
    }
}

struct Measured {
    events: usize,
    seconds: f64,
    cpu: CpuUse,
    latencies_ms: Vec<f64>,
    requests: Vec<(String, u64)>,
    total_requests: u64,
    conflicts: u64,
    peak_rss_mib: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// A writer like the console that keeps adding its own registries and consumers while the burst runs.
async fn foreign_writer(base_url: String, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let client = reqwest_like::Client::new(base_url);
    let mut written = 0;
    while !*stop.borrow() {
        for (path, pointer, entry) in [
            (
                "/apis/networking.higress.io/v1/namespaces/higress-system/mcpbridges/default",
                "/spec/registries",
                json!({"domain": format!("f{written}.example.com"), "name": format!("foreign-{written}"), "port": 80, "type": "dns"}),
            ),
            (
                "/apis/extensions.higress.io/v1alpha1/namespaces/higress-system/wasmplugins/key-auth.internal",
                "/spec/defaultConfig/consumers",
                json!({"name": format!("foreign-{written}"), "keys": ["x-f"], "in_header": true, "in_query": false, "credentials": [format!("f-{written}")]}),
            ),
        ] {
            loop {
                let Some(mut object) = client.get(path).await else {
                    break;
                };
                let Some(list) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
                    break;
                };
                list.push(entry.clone());
                if client.put(path, &object).await {
                    break;
                }
            }
        }
        written += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    written
}

/// Minimal HTTP/1.1 JSON client for the foreign writer (keeps the bench free of another HTTP stack).
mod reqwest_like {
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Client {
        host: String,
    }

    impl Client {
        pub fn new(base_url: String) -> Self {
            Self {
                host: base_url.trim_start_matches("http://").to_string(),
            }
        }

        async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let mut stream = tokio::net::TcpStream::connect(&self.host).await.unwrap();
            let request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", self.host, body.len());
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            let text = String::from_utf8_lossy(&response);
            let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let json = text.split("\r\n\r\n").nth(1).and_then(|b| {
                // Chunked or plain: take the JSON object within.
                let start = b.find('{')?;
                let end = b.rfind('}')?;
                serde_json::from_str(&b[start..=end]).ok()
            });
            (status, json.unwrap_or(Value::Null))
        }

        pub async fn get(&self, path: &str) -> Option<Value> {
            let (status, body) = self.call("GET", path, None).await;
            (status == 200).then_some(body)
        }

        pub async fn put(&self, path: &str, object: &Value) -> bool {
            self.call("PUT", path, Some(object)).await.0 == 200
        }
    }
}

/// One run: `events` deploys through the worker(s) (or the null worker), then, unless `--no-retire` (and
/// but for the null worker), the retirement of every model they deployed. The second is `None` without it.
async fn run(
    run_name: &str,
    o: &Options,
    events: usize,
    mode: Mode,
    existing: &[Value],
) -> (Measured, Option<Measured>) {
    let broker = Broker::start().await;
    let input = format!("{run_name}-lifecycle");
    let results_topic = format!("{run_name}-results");
    let dlq = format!("{run_name}-dlq");
    broker
        .create_topics(&[
            (input.as_str(), o.partitions),
            (results_topic.as_str(), 1),
            (dlq.as_str(), 1),
        ])
        .await;
    let sim = kube_sim::start().await;
    // The existing routes' objects include the domain ConfigMap.
    if existing.is_empty() {
        sim.insert(domain_config_map()).unwrap();
    }
    for object in existing {
        let name = object["metadata"]["name"].clone();
        sim.insert(object.clone())
            .unwrap_or_else(|e| panic!("seeding {} {name}: {e:?}", object["kind"]));
    }
    if o.foreign_writer {
        sim.insert(json!({"apiVersion": "networking.higress.io/v1", "kind": "McpBridge", "metadata": {"name": "default", "namespace": "higress-system"}, "spec": {"registries": [], "proxies": []}})).unwrap();
        sim.insert(json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "key-auth.internal", "namespace": "higress-system", "labels": {"higress.io/resource-definer": "higress"}},
            "spec": {"defaultConfig": {"global_auth": false, "allow": [], "keys": ["x-higress-dummy-key"], "consumers": []}, "defaultConfigDisable": false, "matchRules": []}})).unwrap();
    }
    sim.faults().set_latency(
        Duration::from_millis(o.latency_ms),
        Duration::from_millis(o.latency_ms / 2),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    // Results are read as they arrive, to time each event from publish to result.
    let consumer: StreamConsumer = broker::client_config(&broker.bootstrap())
        .set("group.id", format!("{run_name}-bench-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&results_topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let (arrived_tx, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let reader = tokio::spawn(async move {
        loop {
            let Ok(message) = consumer.recv().await else { continue };
            let result: Value = serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null);
            let id = result["data"]["inputEventId"].as_str().unwrap_or_default().to_string();
            if arrived_tx.send((id, Instant::now())).is_err() {
                break;
            }
        }
    });

    // Batched mode is the worker's defaults; sequential applies one event at a time, as the console.
    let (batch, concurrency) = if mode == Mode::Sequential {
        ("1".to_string(), "1".to_string())
    } else {
        (o.max_batch.to_string(), o.write_concurrency.to_string())
    };
    // The ceiling is what the broker and the machine allow: one null worker takes every partition, and
    // more of them on the same cores would only add a consumer-group rebalance to the measurement.
    let processes = if mode == Mode::Null { 1 } else { o.workers };
    let workers: Vec<Worker> = (0..processes)
        .map(|w| {
            if mode == Mode::Null {
                let null = Command::new(std::env::current_exe().unwrap())
                    .args(["--null-worker", &broker.bootstrap(), &input, &results_topic, run_name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                return Worker(null, 0);
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Worker(
                worker_command()
                    .args(["run", "--brokers", &broker.bootstrap(), "--kubeconfig"])
                    .arg(&kubeconfig)
                    .args([
                        "--input-topic",
                        &input,
                        "--result-topic",
                        &results_topic,
                        "--dlq-topic",
                        &dlq,
                        "--group",
                        run_name,
                    ])
                    .args([
                        "--metrics-addr",
                        &format!("127.0.0.1:{port}"),
                        "--max-batch",
                        &batch,
                        "--write-concurrency",
                        &concurrency,
                        "--linger-ms",
                        "20",
                    ])
                    .args([
                        "--kafka-config",
                        "broker.address.family=v4",
                        "--kafka-consumer-config",
                        "fetch.wait.max.ms=10",
                    ])
                    .envs(
                        o.otlp_endpoint
                            .iter()
                            .map(|e| ("OTEL_EXPORTER_OTLP_ENDPOINT", e.as_str())),
                    )
                    .env(
                        "RUST_LOG",
                        std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| {
                            if w == 0 {
                                "warn".into()
                            } else {
                                "error".into()
                            }
                        }),
                    )
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap(),
                port,
            )
        })
        .collect();
    // Measure the steady state: every worker has partitions (its /readyz says so), the group has
    // settled, and a first event round-trips.
    for worker in workers.iter().filter(|w| w.1 != 0) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while worker.get("/readyz").await.0 != 200 {
            assert!(Instant::now() < deadline, "worker not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (warm_model, warm) = deploy(&format!("{run_name}-warm"), 0, o);
    broker
        .produce(&input, Some(&warm_model), warm.to_string().as_bytes(), &[])
        .await;
    loop {
        let (id, _) = tokio::time::timeout(Duration::from_secs(60), arrived_rx.recv())
            .await
            .expect("warm-up result")
            .unwrap();
        if id.starts_with(&format!("{run_name}-warm")) {
            break;
        }
    }
    sim.reset_counters();
    let (stop_foreign, stopped) = tokio::sync::watch::channel(false);
    let foreign = o
        .foreign_writer
        .then(|| tokio::spawn(foreign_writer(sim.base_url(), stopped)));

    let payloads: Vec<(String, String, Value)> = (0..events)
        .map(|i| {
            let (model, event) = deploy(run_name, i, o);
            (event["id"].as_str().unwrap().to_string(), model, event)
        })
        .collect();
    let producer: rdkafka::producer::FutureProducer = broker::client_config(&broker.bootstrap())
        .set("linger.ms", "2")
        .create()
        .unwrap();
    let (seconds, cpu, latencies) = phase(&producer, &input, &payloads, &mut arrived_rx, &workers, &broker).await;
    let _ = stop_foreign.send(true);
    let foreign_written = match foreign {
        Some(task) => task.await.unwrap(),
        None => 0,
    };
    let counters = sim.counters();
    let peak_rss_mib = workers.iter().map(Worker::peak_rss_mib).fold(0.0, f64::max);
    let mut conflicts = 0;
    for worker in &workers {
        conflicts += worker.conflicts().await;
    }
    if mode == Mode::Null {
        drop(workers);
        reader.abort();
        return (
            measured(events, seconds, cpu, latencies, &counters, conflicts, peak_rss_mib),
            None,
        );
    }

    // The final state must hold every entry exactly once, the foreign writer's included.
    let bridge = sim.get("mcpbridges", "higress-system", "default").unwrap();
    let registries = bridge["spec"]["registries"].as_array().unwrap();
    let key_auth = sim.get("wasmplugins", "higress-system", "key-auth.internal").unwrap();
    let consumers = key_auth["spec"]["defaultConfig"]["consumers"].as_array().unwrap();
    let distinct_providers = o.providers.min(events);
    let ours = registries
        .iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("llm-{run_name}-p"))
        })
        .count();
    assert_eq!(ours, distinct_providers, "one registry per provider");
    assert_eq!(
        registries
            .iter()
            .filter(|r| r["name"].as_str().unwrap_or_default().starts_with("foreign-"))
            .count(),
        foreign_written
    );
    assert_eq!(
        consumers
            .iter()
            .filter(|c| c["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{run_name}-m")))
            .count(),
        events * o.consumers
    );
    assert_eq!(
        consumers
            .iter()
            .filter(|c| c["name"].as_str().unwrap_or_default().starts_with("foreign-"))
            .count(),
        foreign_written
    );
    for i in [0, events / 2, events - 1] {
        assert!(sim
            .get(
                "ingresses",
                "higress-system",
                &format!("ai-route-{run_name}-m{i}.internal")
            )
            .is_some());
    }

    let deployed = measured(events, seconds, cpu, latencies, &counters, conflicts, peak_rss_mib);
    if o.no_retire {
        drop(workers);
        reader.abort();
        return (deployed, None);
    }

    // Teardown: every model just deployed retires (its consumers too), as fast as the producer goes.
    sim.reset_counters();
    let retirements: Vec<(String, String, Value)> = payloads
        .iter()
        .map(|(_, model, _)| {
            let id = format!("{model}-retire");
            let event = json!({"specversion": "1.0", "id": id, "source": "bench", "type": "io.higress.model.retired.v1",
                               "data": {"model": model, "revision": 2, "deleteConsumers": true}});
            (id, model.clone(), event)
        })
        .collect();
    let (seconds, cpu, latencies) = phase(&producer, &input, &retirements, &mut arrived_rx, &workers, &broker).await;
    let counters = sim.counters();
    let peak_rss_mib = workers.iter().map(Worker::peak_rss_mib).fold(0.0, f64::max);
    let mut conflicts_after = 0;
    for worker in &workers {
        conflicts_after += worker.conflicts().await;
    }
    drop(workers);
    reader.abort();
    // The routes are gone, and so are their consumers.
    for i in [0, events / 2, events - 1] {
        let name = format!("ai-route-{run_name}-m{i}.internal");
        assert!(
            sim.get("ingresses", "higress-system", &name).is_none(),
            "{name} retired"
        );
    }
    let key_auth = sim.get("wasmplugins", "higress-system", "key-auth.internal").unwrap();
    let left = key_auth["spec"]["defaultConfig"]["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{run_name}-m"))
        })
        .count();
    assert_eq!(left, 0, "every retired route's consumers deleted");
    let retired = measured(
        events,
        seconds,
        cpu,
        latencies,
        &counters,
        conflicts_after.saturating_sub(conflicts),
        peak_rss_mib,
    );
    (deployed, Some(retired))
}

/// The worker binary, or a profiler running it: `BENCH_WORKER_WRAP=heaptrack` (any program taking the
/// binary and its arguments).
fn worker_command() -> Command {
    let worker = env!("CARGO_BIN_EXE_higress-route-worker");
    match std::env::var("BENCH_WORKER_WRAP") {
        Ok(wrapper) => {
            let mut command = Command::new(wrapper);
            command.arg(worker);
            command
        }
        Err(_) => Command::new(worker),
    }
}

/// Publishes `payloads` as fast as the producer goes and waits for each one's result: the phase's
/// seconds, the CPU each process used meanwhile, and the publish→result latency of each event.
async fn phase(
    producer: &rdkafka::producer::FutureProducer,
    input: &str,
    payloads: &[(String, String, Value)],
    arrived_rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    workers: &[Worker],
    broker: &Broker,
) -> (f64, CpuUse, Vec<f64>) {
    let events = payloads.len();
    let started = Instant::now();
    let cpu_before = CpuUse::now(workers, broker);
    let mut published: HashMap<String, Instant> = HashMap::new();
    let sends: Vec<_> = payloads
        .iter()
        .map(|(id, model, event)| {
            published.insert(id.clone(), Instant::now());
            let payload = event.to_string();
            let producer = producer.clone();
            let topic = input.to_string();
            let key = model.clone();
            async move {
                producer
                    .send(
                        rdkafka::producer::FutureRecord::to(&topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
    let mut latencies = Vec::with_capacity(events);
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.len() < events {
        let Ok(Some((id, at))) = tokio::time::timeout_at(deadline.into(), arrived_rx.recv()).await else {
            panic!("only {} of {events} results arrived", latencies.len())
        };
        if let Some(sent) = published.remove(&id) {
            latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
        }
    }
    (
        started.elapsed().as_secs_f64(),
        CpuUse::now(workers, broker).since(cpu_before),
        latencies,
    )
}

fn measured(
    events: usize,
    seconds: f64,
    cpu: CpuUse,
    mut latencies: Vec<f64>,
    counters: &kube_sim::Counters,
    conflicts: u64,
    peak_rss_mib: f64,
) -> Measured {
    let mut requests: Vec<(String, u64)> = counters
        .requests
        .iter()
        .map(|((verb, resource), n)| (format!("{verb} {resource}"), *n))
        .collect();
    requests.sort();
    let total_requests: u64 = counters.requests.values().sum();
    latencies.sort_by(f64::total_cmp);
    Measured {
        events,
        seconds,
        cpu,
        latencies_ms: latencies,
        requests,
        total_requests,
        conflicts,
        peak_rss_mib,
    }
}

fn report_latency(label: &str, m: &Measured) {
    println!(
        "{label}: {} events in {:.2} s = {:.1} events/s",
        m.events,
        m.seconds,
        m.events as f64 / m.seconds
    );
    println!(
        "  publish->result latency ms: p50 {:.0}, p95 {:.0}, p99 {:.0}, max {:.0}",
        percentile(&m.latencies_ms, 0.5),
        percentile(&m.latencies_ms, 0.95),
        percentile(&m.latencies_ms, 0.99),
        percentile(&m.latencies_ms, 1.0)
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    println!(
        "  CPU: worker {:.2} s, broker {:.2} s, API server and bench {:.2} s = {:.2} s in {:.2} s ({:.2} of {cores} cores busy)",
        m.cpu.workers,
        m.cpu.broker,
        m.cpu.bench,
        m.cpu.total(),
        m.seconds,
        m.cpu.total() / m.seconds
    );
}

/// Rate and latency only: what a null worker has.
fn report_rate(label: &str, m: &Measured) {
    report_latency(label, m);
    println!("  peak RSS: {:.1} MiB", m.peak_rss_mib);
}

fn report(label: &str, m: &Measured) {
    report_latency(label, m);
    println!(
        "  API requests: {} = {:.2} per event",
        m.total_requests,
        m.total_requests as f64 / m.events as f64
    );
    for (verb, n) in &m.requests {
        println!("    {verb:<24} {n:>7}  ({:.2}/event)", *n as f64 / m.events as f64);
    }
    println!("  conflicts (409s met by the workers): {}", m.conflicts);
    println!("  worker peak RSS: {:.1} MiB", m.peak_rss_mib);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, brokers, input, results, group] = args.as_slice() {
        if mode == "--null-worker" {
            null_worker(brokers, input, results, group).await;
            return;
        }
    }
    // `cargo test --all-targets` runs benches too, without `--bench`: a benchmark is not a test.
    if !args.iter().any(|a| a == "--bench") {
        println!("burst: run with `cargo bench --bench burst`; skipped");
        return;
    }
    let mut o = options();
    let collector = if o.tracing {
        let (collector, port) = otlp::Collector::start().await;
        o.otlp_endpoint = Some(format!("http://127.0.0.1:{port}"));
        Some(collector)
    } else {
        None
    };
    println!("burst: {o:?}");
    let seeding = Instant::now();
    let existing = existing_cluster(&o);
    if o.existing_routes > 0 {
        println!(
            "existing cluster: {} routes = {} objects, planned in {:.1} s",
            o.existing_routes,
            existing.len(),
            seeding.elapsed().as_secs_f64()
        );
    }
    let (ceiling, _) = run("null", &o, o.events, Mode::Null, &[]).await;
    report_rate("null worker (no API work)", &ceiling);
    let (batched, batched_retire) = run("batched", &o, o.events, Mode::Batched, &existing).await;
    report("batched deploys", &batched);
    if let Some(retired) = &batched_retire {
        report("batched retirements", retired);
    }
    let rate = |m: &Measured| m.events as f64 / m.seconds;
    let (baseline, baseline_retire) = if o.no_baseline {
        (None, None)
    } else {
        let (baseline, retired) = run("sequential", &o, o.baseline_events, Mode::Sequential, &existing).await;
        report("sequential deploys (batch 1, concurrency 1)", &baseline);
        if let Some(retired) = &retired {
            report("sequential retirements (batch 1, concurrency 1)", retired);
        }
        (Some(baseline), retired)
    };
    let ceiling_rate = rate(&ceiling);
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    // One phase, as the JSON line shows it; `baseline`: the sequential run's same phase.
    let phase_json = |m: &Measured, baseline: Option<&Measured>| {
        let baseline_rate = baseline.map_or(f64::NAN, rate);
        json!({
            "events_per_s": round(rate(m), 1),
            "baseline_events_per_s": round(baseline_rate, 1),
            "ratio": round(rate(m) / baseline_rate, 1),
            "p50_ms": percentile(&m.latencies_ms, 0.5).round(),
            "p99_ms": percentile(&m.latencies_ms, 0.99).round(),
            "requests_per_event": round(m.total_requests as f64 / m.events as f64, 2),
            "requests_by_verb": m.requests.iter().map(|(verb, n)| (verb.clone(), json!(round(*n as f64 / m.events as f64, 2)))).collect::<serde_json::Map<_, _>>(),
            "conflicts": m.conflicts,
            "cpu_s": {
                "worker": round(m.cpu.workers, 2),
                "broker": round(m.cpu.broker, 2),
                "api_server_and_bench": round(m.cpu.bench, 2),
            },
            "worker_cpu_s_per_1000_events": round(m.cpu.workers * 1000.0 / m.events as f64, 2),
            // The worker's high-water mark at the end of the phase: the retirements' is the whole run's.
            "peak_rss_mib": round(m.peak_rss_mib, 1),
        })
    };
    let baseline_rate = baseline.as_ref().map_or(f64::NAN, rate);
    println!("ratio: {:.1}x", rate(&batched) / baseline_rate);
    println!("of the null worker: {:.0} %", 100.0 * rate(&batched) / ceiling_rate);
    if let Some(retired) = &batched_retire {
        println!(
            "retirements at {:.0} % of the deploys' events/s",
            100.0 * rate(retired) / rate(&batched)
        );
    }
    println!(
        "{}",
        json!({
            "events": batched.events,
            "latency_ms": o.latency_ms,
            "existing_routes": o.existing_routes,
            "events_per_s": round(rate(&batched), 1),
            "baseline_events_per_s": round(baseline_rate, 1),
            "ratio": round(rate(&batched) / baseline_rate, 1),
            "p50_ms": percentile(&batched.latencies_ms, 0.5).round(),
            "p99_ms": percentile(&batched.latencies_ms, 0.99).round(),
            "requests_per_event": round(batched.total_requests as f64 / batched.events as f64, 2),
            "conflicts": batched.conflicts,
            // The whole run's: the worker's high-water mark, read after its last phase.
            "peak_rss_mib": round(batched_retire.as_ref().unwrap_or(&batched).peak_rss_mib, 1),
            "null_events_per_s": round(ceiling_rate, 1),
            "null_p99_ms": percentile(&ceiling.latencies_ms, 0.99).round(),
            "of_null_pct": (100.0 * rate(&batched) / ceiling_rate).round(),
            "cpu_s": {
                "worker": round(batched.cpu.workers, 2),
                "broker": round(batched.cpu.broker, 2),
                "api_server_and_bench": round(batched.cpu.bench, 2),
            },
            "deploy": phase_json(&batched, baseline.as_ref()),
            "retire": batched_retire.as_ref().map(|m| phase_json(m, baseline_retire.as_ref())),
            "tracing": o.tracing,
            "spans_received": collector.as_ref().map(otlp::Collector::received),
            "retire_of_deploy_pct": batched_retire.as_ref().map(|m| (100.0 * rate(m) / rate(&batched)).round()),
        })
    );
}
