//! A real Kafka-protocol broker for integration tests and benchmarks: Tansu, storing in SQLite.
//!
//! Include with `#[path = "support/broker.rs"] mod broker;` (from benches: `"../tests/support/broker.rs"`).
//! Needs the `tansu` binary (`cargo install tansu --locked --features dynostore,libsql`; override the
//! path with `TANSU_BIN`) and the `sqlite3` CLI.
//!
//! Tansu quirks this harness works around:
//! - `sqlite://` URLs are resolved against the working directory even when absolute, so the broker runs
//!   inside its temp dir with the relative URL `sqlite://tansu.db`.
//! - Its schema has no index on `header`, which makes every fetch scan all headers (quadratic overall);
//!   we add one once the broker has created the table.
//! - Topics are not auto-created; use [`Broker::create_topics`].
//! - Only the classic consumer-group protocol works (`group.protocol=consumer` does not).
//! - Every fetch response is held back for part of `fetch.wait.max.ms` even when data is ready; see
//!   [`consumer_config`].

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a (re)started broker may take to answer; it normally takes about a second.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DB_FILE: &str = "tansu.db";
const LOG_FILE: &str = "tansu.log";
const HEADER_INDEX: &str = "create index if not exists header_topition_offset on header (topition, offset_id);";

/// Settings every client talking to a test broker should carry.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // The broker listens on 127.0.0.1 only; don't let librdkafka try an IPv6 address first.
        .set("broker.address.family", "v4")
        // After a broker restart librdkafka backs off up to 10 s between reconnects by default;
        // tests restart brokers and should not sit idle that long.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500");
    config
}

/// A consumer in `group` that commits only the offsets its owner stores (the worker's pattern) and reads a
/// new group from the start.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Tansu sleeps before answering every fetch, data or not: half of max wait from 500 ms up, all of it
        // below. With librdkafka's 500 ms default each partition gets one batch per 250 ms.
        .set("fetch.wait.max.ms", "50");
    config
}

/// A consumed message, owned and decoded for assertions.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    fn from_message(message: &impl Message) -> Record {
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        });
        Record {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }
}

/// A Tansu broker process with its own SQLite file, killed on drop.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    /// Created on first use and kept: a producer per message would reconnect every time.
    producer: OnceLock<FutureProducer>,
    // Last, so the directory outlives everything that might still write into it.
    dir: tempfile::TempDir,
}

impl Broker {
    /// A fresh broker with empty storage on a free loopback port.
    pub async fn start() -> Broker {
        let dir = tempfile::tempdir().expect("create broker temp dir");
        let mut broker = Broker {
            child: None,
            port: free_port(),
            producer: OnceLock::new(),
            dir,
        };
        broker.spawn_and_wait().await;
        broker.create_header_index().await;
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id while it runs (the benchmark reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The SQLite file holding all broker state.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(DB_FILE)
    }

    /// Creates the topics (replication factor 1); panics if any already exists or fails.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> =
            client_config(&self.bootstrap()).create().expect("create admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|&(name, partitions)| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new, &options).await.expect("create topics") {
            if let Err((topic, code)) = result {
                panic!("creating topic {topic} failed: {code}");
            }
        }
    }

    /// SIGKILLs the broker (no clean shutdown, like a crash) and reaps it. Does nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error here means it has already exited, which is what we want anyway.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker and starts it again on the same port and SQLite file, so data survives and
    /// clients reconnect to the same address.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait().await;
    }

    /// Produces one record and waits for the broker to acknowledge it; panics on failure.
    pub async fn produce(&self, topic: &str, key: Option<&str>, payload: &[u8], headers: &[(&str, &[u8])]) {
        let producer = self.producer.get_or_init(|| {
            client_config(&self.bootstrap())
                // Fail a test in seconds rather than after librdkafka's 5-minute default.
                .set("message.timeout.ms", "15000")
                .create()
                .expect("create producer")
        });
        let headers = headers.iter().fold(OwnedHeaders::new(), |acc, &(key, value)| {
            acc.insert(Header {
                key,
                value: Some(value),
            })
        });
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Err((err, _)) = producer.send(record, Duration::from_secs(15)).await {
            panic!("producing to {topic} failed: {err}; broker log:\n{}", self.log());
        }
    }

    /// Reads `topic` from offset 0 of every partition (assigned, so no group membership and nothing
    /// committed) until `expected` records arrived or `timeout` passed. Returns what arrived, ordered by
    /// partition and offset.
    pub async fn consume_all(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
        // librdkafka refuses assign() without a group id.
        let consumer: StreamConsumer = consumer_config(&self.bootstrap(), "broker-harness-consume-all")
            .create()
            .expect("create consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in self.partitions(topic).await {
            // An explicit offset rather than Offset::Beginning: resolving "beginning" costs a 500 ms
            // librdkafka retry timer when the partition leader is not known yet, which it never is here.
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(0))
                .expect("build assignment");
        }
        consumer.assign(&assignment).expect("assign partitions");

        let deadline = tokio::time::Instant::now() + timeout;
        let mut records = Vec::with_capacity(expected);
        while records.len() < expected {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => records.push(Record::from_message(&message)),
                Ok(Err(err)) => panic!("consuming {topic} failed: {err}; broker log:\n{}", self.log()),
                Err(_elapsed) => break,
            }
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// The partition ids of `topic`, as the broker reports them.
    async fn partitions(&self, topic: &str) -> Vec<i32> {
        let config = client_config(&self.bootstrap());
        let topic = topic.to_owned();
        blocking(move || {
            let client: BaseConsumer = config.create().expect("create metadata client");
            let metadata = client
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .expect("fetch metadata");
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            let found = found.unwrap_or_else(|| panic!("topic {topic} missing from metadata"));
            if let Some(err) = found.error() {
                panic!("metadata for {topic}: {err:?}");
            }
            found.partitions().iter().map(|p| p.id()).collect()
        })
        .await
    }

    async fn spawn_and_wait(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(LOG_FILE))
            .expect("open broker log");
        let child = Command::new(tansu_bin())
            .current_dir(self.dir.path())
            .args(["broker", "--storage-engine", &format!("sqlite://{DB_FILE}")])
            .args(["--listener-url", &listener, "--advertised-listener-url", &listener])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run tansu ({e}); install: cargo install tansu --locked --features dynostore,libsql")
            });
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until the broker answers a metadata request, panicking with its log if it exits or takes longer
    /// than [`READY_TIMEOUT`].
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.assert_running();
            let config = client_config(&self.bootstrap());
            let answered = blocking(move || {
                let client: BaseConsumer = config.create().expect("create metadata client");
                client
                    .fetch_metadata(None, Duration::from_secs(1))
                    .map_err(|e| e.to_string())
            })
            .await;
            match answered {
                Ok(_) => return,
                Err(err) => self.check_deadline(deadline, &format!("waiting for metadata: {err}")),
            }
        }
    }

    /// Adds the missing header index. Tansu's SQLite connections have no busy timeout, so a write lock held
    /// by anyone else fails the broker's own statements (and aborts its startup migrations): this must run
    /// only once the broker is up and before any client uses it. The index persists across restarts.
    async fn create_header_index(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.try_create_header_index() {
                Ok(()) => return,
                Err(err) => self.check_deadline(deadline, &format!("creating the header index: {err}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn try_create_header_index(&self) -> Result<(), String> {
        self.try_sql(HEADER_INDEX).map(drop)
    }

    /// Runs one SQL statement on the broker's storage and returns what it printed: to store what no
    /// Kafka client library will send (a header name that is not UTF-8), as another producer could.
    pub fn sql(&self, statement: &str) -> String {
        self.try_sql(statement).unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    fn try_sql(&self, statement: &str) -> Result<String, String> {
        let output = Command::new("sqlite3")
            .current_dir(self.dir.path())
            // The broker's startup maintenance may hold the write lock for a moment; wait for it.
            .args(["-cmd", ".timeout 5000", DB_FILE, statement])
            .output()
            .unwrap_or_else(|e| panic!("cannot run sqlite3 ({e}); install the sqlite3 package"));
        // sqlite3 reports some errors on stderr while still exiting 0.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() && stderr.trim().is_empty() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!("{}: {}", output.status, stderr.trim()))
        }
    }

    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("broker not spawned");
        if let Some(status) = child.try_wait().expect("poll broker process") {
            self.child = None;
            panic!("tansu exited with {status} on port {}; log:\n{}", self.port, self.log());
        }
    }

    fn check_deadline(&self, deadline: Instant, doing: &str) {
        // Drop kills the broker during unwinding.
        if Instant::now() > deadline {
            panic!(
                "tansu not ready after {READY_TIMEOUT:?} ({doing}); log:\n{}",
                self.log()
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_else(|e| format!("<no log: {e}>"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` (fetch_metadata blocks its thread) off the async workers, re-raising its panic as our own so
/// the test shows the message.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
}

/// A loopback port nothing listens on right now. Another process could take it before the broker binds;
/// that shows up as the broker exiting with "address in use" in the panic message.
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    socket.local_addr().expect("local address").port()
}

fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return path.into();
    }
    // `cargo install` puts it in ~/.cargo/bin, which need not be on the PATH tests run with.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    match cargo_home.map(|home| home.join("bin/tansu")) {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("tansu"),
    }
}
