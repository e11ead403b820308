//! The main job on embedded defaults, end to end on this machine: `./scripts/demo`, or
//! `cargo build --release && cargo run --release --example demo`.
//!
//! Starts the in-memory Kubernetes API server (kube-sim) in this process and a Tansu broker, creates
//! the topics, runs the worker binary beside this example (`target/<profile>/higress-route-worker`, or
//! `HRW_BIN`), publishes the seed scenario (deploy, then retire), and after each step prints the result
//! event and the Higress objects as they stand, secrets masked. Cleans up after itself.

#[path = "../tests/support/broker.rs"]
mod broker;

use anyhow::{bail, Context as _};
use broker::Broker;
use higress_route_worker::higress::names;
use higress_route_worker::higress::plugins::BuiltinPlugin;
use higress_route_worker::higress::state::without_server_fields;
use higress_route_worker::higress::ConsoleVersion;
use kube_sim::Sim;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "higress-system";
const INPUT: &str = "model-lifecycle";
const RESULTS: &str = "model-route-results";
const DLQ: &str = "model-lifecycle-dlq";
const STEPS: usize = 5;
/// The seed scenario: the blog's route deployed, then retired.
const SCENARIO: [(&str, &str); 2] = [
    (
        "seed-deployed.json",
        include_str!("../schemas/examples/valid/seed-deployed.json"),
    ),
    (
        "seed-retired.json",
        include_str!("../schemas/examples/valid/seed-retired.json"),
    ),
];
const WAIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match demo().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn demo() -> anyhow::Result<()> {
    let started = Instant::now();
    let worker_bin = worker_binary()?;
    let dir = tempfile::tempdir()?;

    let sim = kube_sim::start().await;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    step(1, &format!("API server (in-memory kube-sim) up on {}", sim.base_url()));

    let broker = Broker::start().await;
    broker.create_topics(&[(INPUT, 3), (RESULTS, 1), (DLQ, 1)]).await;
    step(
        2,
        &format!(
            "broker (Tansu) up on {}; topics {INPUT}, {RESULTS}, {DLQ}",
            broker.bootstrap()
        ),
    );

    let metrics_port = free_port()?;
    let mut worker = WorkerProcess::start(&worker_bin, &broker.bootstrap(), &kubeconfig, metrics_port, dir.path())?;
    worker.wait_ready(metrics_port).await?;
    step(
        3,
        &format!(
            "worker {} ready (pid {}, consumer group joined, metrics on http://127.0.0.1:{metrics_port}/metrics)",
            worker_bin.display(),
            worker.child.id()
        ),
    );

    for (i, (file, text)) in SCENARIO.iter().enumerate() {
        let event: Value = serde_json::from_str(text).with_context(|| format!("parsing {file}"))?;
        let model = event["data"]["model"].as_str().context("event without data.model")?;
        broker.produce(INPUT, Some(model), text.as_bytes(), &[]).await;
        let result = match result_of(&broker, &event, i + 1).await {
            Some(result) => result,
            None => bail!("no result for {file} within {WAIT:?}; worker log:\n{}", worker.log()),
        };
        step(
            4 + i,
            &format!(
                "published {file} ({} of {model}, revision {}): outcome {}",
                event["type"].as_str().unwrap_or_default(),
                event["data"]["revision"],
                result["data"]["outcome"].as_str().unwrap_or("?")
            ),
        );
        println!("\nresult event:\n{}", serde_json::to_string_pretty(&result)?);
        print_objects(&sim, model);
    }

    let events = metric_lines(metrics_port, "higress_route_worker_events_total").await;
    let status = worker.stop()?;
    drop(broker);
    sim.shutdown().await;
    println!("\nworker metrics:\n{}", events.join("\n"));
    println!(
        "\ndone in {:.1}s: worker stopped on SIGTERM ({status}); broker and API server stopped",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("the worker exited with {status}; log:\n{}", worker.log());
    }
    Ok(())
}

fn step(n: usize, text: &str) {
    println!("\n[{n}/{STEPS}] {text}");
}

/// The worker binary of the same profile as this example, unless `HRW_BIN` names one.
fn worker_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("HRW_BIN") {
        Some(path) => PathBuf::from(path),
        // target/<profile>/examples/demo -> target/<profile>/higress-route-worker
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("no target directory above this example")?
            .join("higress-route-worker"),
    };
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release), or set HRW_BIN",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The result event of `event`, the `nth` result on the topic, once the worker has published it.
async fn result_of(broker: &Broker, event: &Value, nth: usize) -> Option<Value> {
    let records = broker.consume_all(RESULTS, nth, WAIT).await;
    records
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.payload).ok())
        .find(|r| r["data"]["inputEventId"] == event["id"])
}

/// The objects a console user would look at for this model, as they stand.
fn print_objects(sim: &Sim, model: &str) {
    let console = ConsoleVersion::default();
    // Title, resource, name, and the part shown (a JSON pointer; "" for the whole object).
    let shown = [
        ("Ingress", "ingresses", names::route_ingress(model), ""),
        ("ConfigMap (AI route)", "configmaps", names::route_config_map(model), ""),
        (
            "McpBridge registries",
            "mcpbridges",
            names::MCP_BRIDGE.into(),
            "/spec/registries",
        ),
        (
            "ai-proxy providers",
            "wasmplugins",
            BuiltinPlugin::AiProxy.cr_name(console),
            "/spec/defaultConfig/providers",
        ),
        (
            "key-auth consumers",
            "wasmplugins",
            BuiltinPlugin::KeyAuth.cr_name(console),
            "/spec/defaultConfig/consumers",
        ),
    ];
    println!("\nHigress objects in {NS}:");
    for (title, resource, name, part) in shown {
        match sim.get(resource, NS, &name) {
            None => println!("--- {title}: {resource}/{name} (none)"),
            Some(object) => {
                let object = without_server_fields(&object);
                let shown = masked(object.pointer(part).cloned().unwrap_or(Value::Null));
                let yaml = serde_yaml_ng::to_string(&shown).unwrap_or_else(|e| format!("<{e}>"));
                println!("--- {title}: {resource}/{name}\n{}", yaml.trim_end());
            }
        }
    }
}

/// Replaces the values of `apiTokens` and `credentials` with a mask, wherever they are.
fn masked(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if key == "apiTokens" || key == "credentials" {
                        *inner = match inner {
                            Value::Array(items) => Value::Array(items.iter().map(|_| json!("****")).collect()),
                            _ => json!("****"),
                        };
                    } else {
                        walk(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// A plain HTTP/1.1 GET on 127.0.0.1: the status code and the body.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

async fn metric_lines(port: u16, name: &str) -> Vec<String> {
    match http_get(port, "/metrics").await {
        Ok((200, body)) => body
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_string)
            .collect(),
        other => vec![format!("<no metrics: {other:?}>")],
    }
}

/// The worker process; killed if dropped before [`WorkerProcess::stop`].
struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    fn start(bin: &Path, brokers: &str, kubeconfig: &Path, metrics_port: u16, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join("worker.log");
        let child = Command::new(bin)
            .args(["run", "--brokers", brokers, "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--linger-ms", "5"])
            // Tansu listens on IPv4 loopback only; a short session makes the group join quickly.
            .args(["--kafka-config", "broker.address.family=v4"])
            .args(["--kafka-consumer-config", "session.timeout.ms=6000"])
            .args(["--kafka-consumer-config", "heartbeat.interval.ms=500"])
            .args(["--kafka-consumer-config", "fetch.wait.max.ms=50"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self { child, log })
    }

    /// Until `/readyz` answers 200: consumer group joined and the API server reachable.
    async fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the worker exited with {status}; log:\n{}", self.log());
            }
            if let Ok((200, _)) = http_get(port, "/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the worker was not ready within {WAIT:?}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then its exit status.
    fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the worker did not stop within {WAIT:?} of SIGTERM; log:\n{}",
            self.log()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Nothing to do when it has stopped already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
