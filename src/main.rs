use clap::{Parser, Subcommand};
use higress_route_worker::cluster::{self, Engine, EngineConfig, RetryPolicy};
use higress_route_worker::higress::{ConsoleVersion, Settings};
use higress_route_worker::metrics::Metrics;
use higress_route_worker::result::Outcome;
use higress_route_worker::telemetry::{self, LogFormat};
use higress_route_worker::worker::{self, Readiness, Worker, WorkerConfig};
use higress_route_worker::{audit, contract, event, render};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// CloudEvents `source` of the result events.
const SOURCE: &str = "higress-route-worker";

/// Applies model lifecycle events from Kafka to the Higress AI gateway, exactly as the Higress console writes its objects.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct MappingArgs {
    /// Namespace of the Higress controller, where the console keeps its objects.
    #[arg(long, env = "HRW_NAMESPACE", default_value = higress_route_worker::higress::names::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Higress console version whose conventions to write (plugin version labels, defaults).
    #[arg(long, env = "HRW_CONSOLE_VERSION", default_value_t = ConsoleVersion::default())]
    console_version: ConsoleVersion,
    /// Do not bind new routes to ai-statistics (the console's AI_ROUTE_AUTO_ENABLE_AI_STATS=false).
    #[arg(long, env = "HRW_NO_AI_STATISTICS")]
    no_ai_statistics: bool,
    /// Do not enable model-router for model predicates (AI_ROUTE_AUTO_ENABLE_MODEL_ROUTER=false).
    #[arg(long, env = "HRW_NO_MODEL_ROUTER")]
    no_model_router: bool,
    /// Days a retired model's tombstone is kept (1 to 36500: 0 would let a replayed deploy revive it).
    #[arg(long, env = "HRW_TOMBSTONE_DAYS", default_value_t = higress_route_worker::higress::plan::DEFAULT_TOMBSTONE_DAYS, value_parser = clap::value_parser!(i64).range(1..=36_500))]
    tombstone_days: i64,
    /// A Secret events may refer to although it lacks the label higress-route-worker.io/readable=true
    /// (repeatable).
    #[arg(long = "readable-secret", env = "HRW_READABLE_SECRETS", value_delimiter = ',')]
    readable_secrets: Vec<String>,
    /// A route plugin of the console's catalogue whose config parser the worker has not ported, to
    /// accept in `route.plugins` unchecked (repeatable). A config its plugin refuses then fails that
    /// plugin for every route bound to it: see README, "What the gateway accepts".
    #[arg(long = "unvalidated-plugin", env = "HRW_UNVALIDATED_PLUGINS", value_delimiter = ',')]
    unvalidated_plugins: Vec<String>,
}

impl MappingArgs {
    fn settings(&self) -> Settings {
        Settings {
            namespace: self.namespace.clone(),
            console: self.console_version,
            ai_statistics: !self.no_ai_statistics,
            model_router: !self.no_model_router,
            tombstone_ttl: chrono::Duration::days(self.tombstone_days),
            readable_secrets: self.readable_secrets.clone(),
            unvalidated_plugins: self.unvalidated_plugins.clone(),
            ..Settings::default()
        }
    }
}

#[derive(clap::Args, Clone)]
struct ClusterArgs {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, env = "HRW_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Attempts per API request before giving up (conflicts and transient errors are retried).
    #[arg(long, env = "HRW_RETRY_ATTEMPTS", default_value_t = RetryPolicy::DEFAULT.max_attempts)]
    retry_attempts: usize,
    /// Longest time spent retrying one request, in seconds.
    #[arg(long, env = "HRW_RETRY_DEADLINE_SECS", default_value_t = RetryPolicy::DEFAULT.max_elapsed.as_secs())]
    retry_deadline_secs: u64,
    /// First backoff delay in milliseconds (doubles up to the cap, with full jitter).
    #[arg(long, env = "HRW_RETRY_BASE_MS", default_value_t = RetryPolicy::DEFAULT.base.as_millis() as u64)]
    retry_base_ms: u64,
    /// Largest backoff delay in milliseconds.
    #[arg(long, env = "HRW_RETRY_CAP_MS", default_value_t = RetryPolicy::DEFAULT.cap.as_millis() as u64)]
    retry_cap_ms: u64,
    /// Object writes of one batch in flight at once.
    #[arg(long, env = "HRW_WRITE_CONCURRENCY", default_value_t = cluster::DEFAULT_WRITE_CONCURRENCY)]
    write_concurrency: usize,
    /// Largest serialized size, in bytes, an event may take a shared object to (McpBridge, plugin CRs).
    #[arg(long, env = "HRW_SHARED_OBJECT_BUDGET_BYTES", default_value_t = cluster::DEFAULT_SHARED_OBJECT_BUDGET)]
    shared_object_budget_bytes: usize,
    /// Seconds from an event's first attempt to its `failed` result (and dead letter), retries included.
    #[arg(long, env = "HRW_EVENT_DEADLINE_SECS", default_value_t = RetryPolicy::DEFAULT.event_deadline.as_secs())]
    event_deadline_secs: u64,
}

impl ClusterArgs {
    fn engine_config(&self, settings: Settings) -> EngineConfig {
        EngineConfig {
            settings,
            retry: RetryPolicy {
                base: Duration::from_millis(self.retry_base_ms),
                cap: Duration::from_millis(self.retry_cap_ms),
                max_attempts: self.retry_attempts,
                max_elapsed: Duration::from_secs(self.retry_deadline_secs),
                event_deadline: Duration::from_secs(self.event_deadline_secs),
            },
            write_concurrency: self.write_concurrency,
            shared_object_budget: self.shared_object_budget_bytes,
        }
    }

    async fn engine(&self, settings: Settings) -> anyhow::Result<Engine> {
        let client = cluster::connect(self.kubeconfig.as_deref()).await?;
        Ok(Engine::new(
            client,
            self.engine_config(settings),
            Arc::new(Metrics::default()),
        ))
    }
}

#[derive(clap::Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "HRW_BROKERS", default_value = worker::DEFAULT_BROKERS)]
    brokers: String,
    /// Consumer group; replicas in one group share the input partitions.
    #[arg(long, env = "HRW_GROUP", default_value = worker::DEFAULT_GROUP)]
    group: String,
    /// Topic of lifecycle events (repeatable).
    #[arg(
        long = "input-topic",
        env = "HRW_INPUT_TOPICS",
        value_delimiter = ',',
        default_value = worker::DEFAULT_INPUT_TOPIC
    )]
    input_topics: Vec<String>,
    /// Topic the route-result events go to.
    #[arg(long, env = "HRW_RESULT_TOPIC", default_value = worker::DEFAULT_RESULT_TOPIC)]
    result_topic: String,
    /// Topic poison input and finally failed events go to.
    #[arg(long, env = "HRW_DLQ_TOPIC", default_value = worker::DEFAULT_DLQ_TOPIC)]
    dlq_topic: String,
    /// Any librdkafka setting as key=value (repeatable, or comma-separated), e.g. security.protocol=SASL_SSL.
    #[arg(long = "kafka-config", env = "HRW_KAFKA_CONFIG", value_delimiter = ',')]
    kafka_config: Vec<String>,
    /// librdkafka settings from a file, one key=value per line (`#` starts a comment), before those
    /// of --kafka-config: for values that hold a comma, and secrets mounted from a Kubernetes Secret.
    #[arg(long = "kafka-config-file", env = "HRW_KAFKA_CONFIG_FILE")]
    kafka_config_file: Option<PathBuf>,
    /// A librdkafka setting for the consumer only (repeatable), e.g. session.timeout.ms=10000.
    #[arg(
        long = "kafka-consumer-config",
        env = "HRW_KAFKA_CONSUMER_CONFIG",
        value_delimiter = ','
    )]
    kafka_consumer_config: Vec<String>,
    /// A librdkafka setting for the producer only (repeatable), e.g. linger.ms=5.
    #[arg(
        long = "kafka-producer-config",
        env = "HRW_KAFKA_PRODUCER_CONFIG",
        value_delimiter = ','
    )]
    kafka_producer_config: Vec<String>,
    /// Records applied together; 1 applies events one at a time, as the console does.
    #[arg(long, env = "HRW_MAX_BATCH", default_value_t = worker::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Milliseconds to wait for a further record before applying the batch (at most 20 times this in all).
    #[arg(long, env = "HRW_LINGER_MS", default_value_t = worker::DEFAULT_LINGER_MS)]
    linger_ms: u64,
    /// Seconds in-flight work may take on shutdown (keep below the group session timeout).
    #[arg(long, env = "HRW_DRAIN_DEADLINE_SECS", default_value_t = worker::DEFAULT_DRAIN_DEADLINE_SECS)]
    drain_deadline_secs: u64,
    /// Seconds between checks of the Secrets routes were built from; a changed value is written
    /// where the route uses it, with a `secret-rotated` result. 0 turns rotation off.
    #[arg(long, env = "HRW_SECRET_ROTATION_INTERVAL_SECS", default_value_t = worker::DEFAULT_SECRET_ROTATION_INTERVAL.as_secs())]
    secret_rotation_interval_secs: u64,
    /// Milliseconds between measurements of the consumer lag of the partitions this worker owns
    /// (higress_route_worker_consumer_lag).
    #[arg(long, env = "HRW_LAG_REFRESH_MS", default_value_t = worker::DEFAULT_LAG_REFRESH_MS, value_parser = clap::value_parser!(u64).range(100..))]
    lag_refresh_ms: u64,
}

/// librdkafka settings given as `key=value`. A value is taken as given (a password may hold spaces);
/// an error never shows the text, which may be part of a secret (a password cut at its comma).
fn kafka_settings<'a>(given: impl IntoIterator<Item = &'a str>, source: &str) -> Result<Vec<(String, String)>, String> {
    given
        .into_iter()
        .enumerate()
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(i, text)| {
            text.split_once('=')
                .map(|(key, value)| (key.trim().to_string(), value.to_string()))
                .ok_or_else(|| {
                    format!(
                        "{source}: setting {} is not key=value (its text is not shown: it may hold a secret; \
                         a value with a comma goes in --kafka-config-file)",
                        i + 1
                    )
                })
        })
        .collect()
}

impl KafkaArgs {
    /// Settings for both clients: the file's, then the flags' (a flag wins).
    fn kafka_config(&self) -> Result<Vec<(String, String)>, String> {
        let mut all = match &self.kafka_config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let lines = text.lines().filter(|line| !line.trim_start().starts_with('#'));
                kafka_settings(lines, &format!("--kafka-config-file {}", path.display()))?
            }
            None => Vec::new(),
        };
        all.extend(kafka_settings(
            self.kafka_config.iter().map(String::as_str),
            "--kafka-config",
        )?);
        Ok(all)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Consume lifecycle events from Kafka, apply them, publish one result per event.
    Run {
        #[command(flatten)]
        kafka: Box<KafkaArgs>,
        #[command(flatten)]
        mapping: MappingArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "HRW_METRICS_ADDR", default_value = "0.0.0.0:9090")]
        metrics_addr: std::net::SocketAddr,
        /// Log format.
        #[arg(long, env = "HRW_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Apply one event to the cluster and print its result event.
    Apply {
        /// The event, a CloudEvent in structured JSON mode.
        #[arg(long)]
        event: PathBuf,
        /// Print the changes without writing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        mapping: MappingArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print every problem the gateway's plugins have with the plugin CRs in the cluster (ours or
    /// another writer's); exit 1 when there is any.
    Audit {
        /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster service account).
        #[arg(long, env = "HRW_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Namespace of the Higress controller.
        #[arg(long, env = "HRW_NAMESPACE", default_value = higress_route_worker::higress::names::DEFAULT_NAMESPACE)]
        namespace: String,
        /// `table` or `json`.
        #[arg(long, value_enum, default_value = "table")]
        output: AuditOutput,
    },
    /// Dry run: print, as YAML, every object an event creates or changes, given the current objects.
    Render {
        /// The event, a CloudEvent in structured JSON mode.
        #[arg(long)]
        event: PathBuf,
        /// Current objects: a YAML file or a directory of them (default: an empty cluster).
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        mapping: MappingArgs,
        /// Largest serialized size, in bytes, an event may take a shared object to, as `apply` checks it.
        #[arg(long, env = "HRW_SHARED_OBJECT_BUDGET_BYTES", default_value_t = cluster::DEFAULT_SHARED_OBJECT_BUDGET)]
        shared_object_budget_bytes: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit {
            kubeconfig,
            namespace,
            output,
        } => runtime().block_on(audit_command(kubeconfig.as_deref(), &namespace, output)),
        Command::Render {
            event,
            state,
            mapping,
            shared_object_budget_bytes,
        } => render_command(
            &event,
            state.as_deref(),
            &mapping.settings(),
            shared_object_budget_bytes,
        ),
        Command::Run {
            kafka,
            mapping,
            cluster,
            metrics_addr,
            log_format,
        } => {
            let runtime = runtime();
            // The OTLP exporter runs on the runtime; the guard flushes its spans before it stops.
            let telemetry = match runtime.block_on(async { telemetry::init(log_format) }) {
                Ok(telemetry) => telemetry,
                Err(e) => {
                    eprintln!("the OpenTelemetry exporter could not be set up: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let code = match runtime.block_on(run_command(*kafka, mapping.settings(), cluster, metrics_addr)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "worker stopped");
                    ExitCode::from(1)
                }
            };
            runtime.block_on(async { drop(telemetry) });
            code
        }
        Command::Apply {
            event,
            dry_run,
            mapping,
            cluster,
        } => runtime().block_on(apply_command(&event, dry_run, mapping.settings(), &cluster)),
    }
}

async fn run_command(
    kafka: KafkaArgs,
    settings: Settings,
    cluster: ClusterArgs,
    metrics_addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let kafka_config = kafka.kafka_config().map_err(anyhow::Error::msg)?;
    let kafka_consumer_config = kafka_settings(
        kafka.kafka_consumer_config.iter().map(String::as_str),
        "--kafka-consumer-config",
    )
    .map_err(anyhow::Error::msg)?;
    let kafka_producer_config = kafka_settings(
        kafka.kafka_producer_config.iter().map(String::as_str),
        "--kafka-producer-config",
    )
    .map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let client = cluster::connect(cluster.kubeconfig.as_deref()).await?;
    let engine = Arc::new(Engine::new(client, cluster.engine_config(settings), metrics.clone()));
    let config = WorkerConfig {
        brokers: kafka.brokers,
        group: kafka.group,
        input_topics: kafka.input_topics,
        result_topic: kafka.result_topic,
        dlq_topic: kafka.dlq_topic,
        kafka_config,
        kafka_consumer_config,
        kafka_producer_config,
        max_batch: kafka.max_batch.max(1),
        linger: Duration::from_millis(kafka.linger_ms),
        drain_deadline: Duration::from_secs(kafka.drain_deadline_secs),
        source: SOURCE.into(),
        secret_rotation_interval: (kafka.secret_rotation_interval_secs > 0)
            .then(|| Duration::from_secs(kafka.secret_rotation_interval_secs)),
        lag_refresh: Duration::from_millis(kafka.lag_refresh_ms),
    };
    let readiness = Arc::new(Readiness::default());
    let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let router = worker::http::router(metrics.clone(), readiness.clone(), engine.api().clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let worker = Worker::new(config, engine, metrics, readiness)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested: finishing in-flight events");
        let _ = stop.send(true);
    });
    worker.run(stopped).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn read_event(path: &std::path::Path) -> Result<event::LifecycleEvent, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(1)
    })?;
    contract::parse(&bytes).map_err(|invalid| {
        eprintln!("error: invalid event ({})", invalid.reason.as_str());
        for problem in &invalid.problems {
            eprintln!("  {problem}");
        }
        ExitCode::from(2)
    })
}

async fn apply_command(path: &std::path::Path, dry_run: bool, settings: Settings, cluster: &ClusterArgs) -> ExitCode {
    let event = match read_event(path) {
        Ok(event) => event,
        Err(code) => return code,
    };
    let engine = match cluster.engine(settings).await {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("error: cannot reach the cluster: {e}");
            return ExitCode::from(1);
        }
    };
    let result = if dry_run {
        match engine.dry_run(std::slice::from_ref(&event)).await {
            Ok((mut results, _)) => results.remove(0),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        engine.apply(&event).await
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&result.to_cloud_event(SOURCE)).expect("results serialise")
    );
    match result.outcome {
        Outcome::Rejected => ExitCode::from(2),
        Outcome::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AuditOutput {
    Table,
    Json,
}

async fn audit_command(kubeconfig: Option<&std::path::Path>, namespace: &str, output: AuditOutput) -> ExitCode {
    let listed = match cluster::connect(kubeconfig).await {
        Ok(client) => cluster::api::Api::new(client, namespace)
            .list(higress_route_worker::higress::Kind::WasmPlugin, "")
            .await
            .map_err(|e| e.error.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let plugins = match listed {
        Ok(plugins) => plugins,
        Err(e) => {
            eprintln!("error: cannot list the WasmPlugins of {namespace}: {e}");
            return ExitCode::from(2);
        }
    };
    let findings = audit::findings(&plugins);
    match output {
        AuditOutput::Table if findings.is_empty() => {
            println!(
                "no problems: the gateway accepts all {} plugin CRs checked",
                plugins.len()
            )
        }
        AuditOutput::Table => print!("{}", audit::table(&findings)),
        AuditOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(&audit::to_json(&findings)).expect("JSON serialises")
        ),
    }
    if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn render_command(
    event_path: &std::path::Path,
    state: Option<&std::path::Path>,
    settings: &Settings,
    budget: usize,
) -> ExitCode {
    let event = match read_event(event_path) {
        Ok(event) => event,
        Err(code) => return code,
    };
    let state = match state.map(render::load_state).transpose() {
        Ok(state) => state.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: cannot load state: {e}");
            return ExitCode::from(1);
        }
    };
    match render::render(&event, &state, settings, budget) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            eprintln!("error: rejected ({}): {}", refusal.reason, refusal.message);
            ExitCode::from(2)
        }
    }
}
