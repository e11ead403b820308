//! The worker process against a real broker (Tansu) and the in-memory API server, for tests that
//! feed it records and read what comes out: results, dead letters, log and /metrics.
//!
//! Include with `#[path = "support/worker.rs"] mod worker;` next to `support/broker.rs`.

// Each test binary uses a different subset.
#![allow(dead_code)]

use crate::broker::{Broker, Record};
use kube_sim::Sim;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const INPUT: &str = "model-lifecycle";
pub const RESULTS: &str = "model-route-results";
pub const DLQ: &str = "model-lifecycle-dlq";
pub const NS: &str = "higress-system";

pub struct Fixture {
    pub broker: Broker,
    pub sim: Sim,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start() -> Self {
        let broker = Broker::start().await;
        broker.create_topics(&[(INPUT, 3), (RESULTS, 1), (DLQ, 1)]).await;
        let sim = kube_sim::start().await;
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(dir.path().join("kubeconfig")).unwrap();
        Self { broker, sim, dir }
    }

    /// Starts the worker with `RUST_LOG=rust_log`, its stderr in `<dir>/<name>.log`.
    pub fn worker(&self, name: &str, rust_log: &str, extra: &[&str]) -> WorkerProcess {
        self.worker_with_brokers(name, rust_log, &self.broker.bootstrap(), extra)
    }

    /// As [`Fixture::worker`], with these environment variables besides `RUST_LOG`.
    pub fn worker_with_env(&self, name: &str, rust_log: &str, extra: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        self.spawn(name, rust_log, &self.broker.bootstrap(), extra, env)
    }

    /// As [`Fixture::worker`], with `--brokers brokers` instead of the test broker's address.
    pub fn worker_with_brokers(&self, name: &str, rust_log: &str, brokers: &str, extra: &[&str]) -> WorkerProcess {
        self.spawn(name, rust_log, brokers, extra, &[])
    }

    fn spawn(&self, name: &str, rust_log: &str, brokers: &str, extra: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let log = self.dir.path().join(format!("{name}.log"));
        let metrics_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_higress-route-worker"));
        command
            .args(["run", "--brokers", brokers, "--kubeconfig"])
            .arg(self.dir.path().join("kubeconfig"))
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--linger-ms", "5", "--retry-base-ms", "2", "--retry-cap-ms", "50"]);
        for setting in ["broker.address.family=v4", "reconnect.backoff.max.ms=500"] {
            command.args(["--kafka-config", setting]);
        }
        // Tansu holds every fetch for the full wait; keep it short.
        for setting in [
            "session.timeout.ms=6000",
            "heartbeat.interval.ms=500",
            "fetch.wait.max.ms=50",
        ] {
            command.args(["--kafka-consumer-config", setting]);
        }
        command
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        WorkerProcess {
            child: command.spawn().expect("start the worker"),
            log,
            metrics_port,
        }
    }

    pub async fn produce(&self, key: &str, payload: &[u8], headers: &[(&str, &[u8])]) {
        self.broker.produce(INPUT, Some(key), payload, headers).await;
    }

    /// Every record of `topic` once at least `expected` arrived (or `wait` passed).
    pub async fn read(&self, topic: &str, expected: usize, wait: Duration) -> Vec<Record> {
        self.broker.consume_all(topic, expected, wait).await
    }

    /// The `data` of every result published so far (at least `expected`, or `wait` passed).
    pub async fn results(&self, expected: usize, wait: Duration) -> Vec<Value> {
        self.read(RESULTS, expected, wait)
            .await
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.payload).unwrap()["data"].clone())
            .collect()
    }
}

pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl WorkerProcess {
    /// The body of a GET on the worker's HTTP port, with its status; status 0 while nothing listens.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await else {
            return (0, String::new());
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    /// The worker's `/metrics` text; panics when it does not answer 200.
    pub async fn metrics(&self) -> String {
        let (status, response) = self.http_get("/metrics").await;
        assert_eq!(status, 200, "{response}");
        response
    }

    /// Waits until `/readyz` answers `status` (or `wait` passes); returns the last status seen.
    pub async fn wait_ready_status(&self, status: u16, wait: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let seen = self.http_get("/readyz").await.0;
            if seen == status || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and returns at once; see [`WorkerProcess::wait_exit`].
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status once the process has exited, or `None` when `wait` passes first.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics, with the log, if the worker has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the worker exited ({status}); log:\n{}", self.log());
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("worker did not stop on SIGTERM; log:\n{}", self.log());
    }

    /// SIGKILL: no drain, no commit.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The worker's /metrics once it answers and `holds` is true of it; panics with the last answer and
    /// the log after `wait`.
    pub async fn metrics_once(&self, what: &str, wait: Duration, holds: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Nothing answers (status 0) until the worker listens.
            let (status, metrics) = self.http_get("/metrics").await;
            if status == 200 && holds(&metrics) {
                return metrics;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {wait:?}\n{metrics}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of header `name` of a record, as text.
pub fn header(record: &Record, name: &str) -> Option<String> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}
