//! The Kafka side: consume lifecycle events in batches, apply them, publish one result per event,
//! dead-letter poison input, and commit offsets only after the results are delivered.
//!
//! One loop owns the consumer. It takes a batch (up to `max_batch` records or `linger`), applies it,
//! publishes results and dead letters, awaits their delivery, then stores the batch's offsets and
//! commits in the background. A batch is never in flight while the consumer polls, so a partition
//! revoke (which happens inside a poll) only has to commit what is stored.

pub mod decode;
pub mod http;
pub mod lag;
mod order;

use order::Outbox;

use crate::cluster::{is_retryable, Engine};
use crate::contract::InvalidEvent;
use crate::event::LifecycleEvent;
use crate::metrics::{event_type_label, EventLabels, Metrics, ReasonLabels, UndeliverableLabels};
use crate::reason::Reason;
use crate::result::{
    bounded, floor_char_boundary, problems_summary, Outcome, RouteResult, MAX_MESSAGE_BYTES, MAX_NAME_BYTES,
};
use crate::telemetry;
use anyhow::Context as _;
use decode::Headers;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn, Instrument};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub brokers: String,
    pub group: String,
    pub input_topics: Vec<String>,
    pub result_topic: String,
    pub dlq_topic: String,
    /// Any librdkafka setting, applied to the consumer and the producer (SASL, SSL, …).
    pub kafka_config: Vec<(String, String)>,
    /// Settings for one side only: librdkafka warns about consumer properties given to a producer.
    pub kafka_consumer_config: Vec<(String, String)>,
    pub kafka_producer_config: Vec<(String, String)>,
    /// Records applied together (coalesced); 1 is the console's one-event-at-a-time behaviour.
    pub max_batch: usize,
    /// How long to wait for a further record before applying the batch (at most 20 times this in all).
    pub linger: Duration,
    /// On shutdown, how long in-flight work may take before it is abandoned (not committed).
    pub drain_deadline: Duration,
    /// CloudEvents `source` of results.
    pub source: String,
    /// How often the Secrets routes were built from are read again, and changed values re-applied
    /// ([`Engine::rotate_secrets`]); `None`: never.
    pub secret_rotation_interval: Option<Duration>,
    /// How often the consumer lag of the owned partitions is measured ([`lag`]).
    pub lag_refresh: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            brokers: DEFAULT_BROKERS.into(),
            group: DEFAULT_GROUP.into(),
            input_topics: vec![DEFAULT_INPUT_TOPIC.into()],
            result_topic: DEFAULT_RESULT_TOPIC.into(),
            dlq_topic: DEFAULT_DLQ_TOPIC.into(),
            kafka_config: Vec::new(),
            kafka_consumer_config: Vec::new(),
            kafka_producer_config: Vec::new(),
            max_batch: DEFAULT_MAX_BATCH,
            linger: Duration::from_millis(DEFAULT_LINGER_MS),
            drain_deadline: Duration::from_secs(DEFAULT_DRAIN_DEADLINE_SECS),
            source: "higress-route-worker".into(),
            secret_rotation_interval: Some(DEFAULT_SECRET_ROTATION_INTERVAL),
            lag_refresh: Duration::from_millis(DEFAULT_LAG_REFRESH_MS),
        }
    }
}

pub const DEFAULT_BROKERS: &str = "localhost:9092";
pub const DEFAULT_GROUP: &str = "higress-route-worker";
pub const DEFAULT_INPUT_TOPIC: &str = "model-lifecycle";
pub const DEFAULT_RESULT_TOPIC: &str = "model-route-results";
pub const DEFAULT_DLQ_TOPIC: &str = "model-lifecycle-dlq";
/// How long a batch waits for a further record, unless configured otherwise.
pub const DEFAULT_LINGER_MS: u64 = 20;
/// How long in-flight work may take on shutdown, unless configured otherwise.
pub const DEFAULT_DRAIN_DEADLINE_SECS: u64 = 20;

/// Records applied together unless told otherwise. Each batch writes every shared object it touches
/// whole (megabytes on a large cluster), so larger batches pay that less often; 512 new routes' objects
/// fit well within 64 MiB (BENCHMARKS.md).
pub const DEFAULT_MAX_BATCH: usize = 512;

/// How often Secrets are checked for rotation, unless configured otherwise.
pub const DEFAULT_SECRET_ROTATION_INTERVAL: Duration = Duration::from_secs(60);

/// How often consumer lag is measured, unless configured otherwise: within a scrape interval or two.
pub const DEFAULT_LAG_REFRESH_MS: u64 = 10_000;

/// Shared between the worker loop, the rebalance callbacks and `/readyz`.
#[derive(Default)]
pub struct Readiness {
    pub joined: AtomicBool,
}

struct Context {
    readiness: Arc<Readiness>,
    owned: Arc<lag::Owned>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Nothing is in flight during a poll: commit what the finished batches stored.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                info!(error = %e, "no offsets committed on revoke");
            }
            self.owned.revoked(partitions);
            info!(partitions = partitions.count(), "partitions revoked");
        }
        if let Rebalance::Error(_) = rebalance {
            self.owned.all_revoked();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.readiness.joined.store(true, Ordering::Relaxed);
            self.owned.assigned(partitions);
            info!(partitions = partitions.count(), "partitions assigned");
        }
    }
}

/// Our settings for a client, then the operator's common and side-specific settings, which win.
fn client_config(config: &WorkerConfig, ours: &[(&str, &str)], theirs: &[(String, String)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in ours {
        client.set(*key, *value);
    }
    for (key, value) in config.kafka_config.iter().chain(theirs) {
        client.set(key, value);
    }
    client
}

/// A librdkafka setting as the client will use it: given, or librdkafka's default.
fn effective<T: std::str::FromStr>(config: &ClientConfig, key: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    config
        .create_native_config()
        .and_then(|native| native.get(key))
        .with_context(|| format!("reading the Kafka setting {key}"))?
        .parse()
        .with_context(|| format!("the Kafka setting {key}"))
}

/// How long a send waits for room in the producer's queue.
const SEND_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// A batch fills for at most this many lingers.
const LINGER_ROUNDS: u32 = 20;

pub struct Worker {
    config: WorkerConfig,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    consumer: StreamConsumer<Context>,
    /// The partitions the consumer owns, for the consumer lag.
    owned: Arc<lag::Owned>,
    /// Settings of the client that measures consumer lag: the consumer's.
    lag_client_config: ClientConfig,
    producer: FutureProducer,
    /// The producer's effective `message.max.bytes`: what a dead letter must fit in.
    max_message_bytes: usize,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> anyhow::Result<Self> {
        let consumer_config = client_config(
            &config,
            &[
                ("group.id", &config.group),
                // Offsets are stored by the worker once results are delivered, then committed.
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // librdkafka prefetches up to 64 MiB per consumer by default; events are small.
                ("queued.max.messages.kbytes", "8192"),
            ],
            &config.kafka_consumer_config,
        );
        // A batch is never in flight while the consumer polls; if one took longer than the poll
        // interval, the group would hand its partitions to another replica while it still writes.
        let max_poll_interval: u64 = effective(&consumer_config, "max.poll.interval.ms")?;
        let producer_config = client_config(
            &config,
            // A result the broker has not taken within a minute stops the worker (nothing of its batch
            // is committed, and it is replayed): librdkafka would wait five, past the poll interval.
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", "60000"),
            ],
            &config.kafka_producer_config,
        );
        let delivery_timeout: u64 = effective(&producer_config, "message.timeout.ms")?;
        // The request under way at the deadline, then the look after a lost answer: one timeout each.
        let longest_batch = engine.retry_policy().event_deadline
            + crate::cluster::REQUEST_TIMEOUT * 2
            + config.linger * LINGER_ROUNDS
            + config.drain_deadline
            + SEND_QUEUE_TIMEOUT
            + Duration::from_millis(delivery_timeout);
        anyhow::ensure!(
            longest_batch < Duration::from_millis(max_poll_interval),
            "--event-deadline-secs plus two request timeouts, the batch fill, --drain-deadline-secs and the results' \
             delivery (the producer's queue wait and message.timeout.ms, {delivery_timeout} ms) ({longest_batch:?}) \
             must stay below the consumer's max.poll.interval.ms ({max_poll_interval} ms)"
        );
        let owned = Arc::new(lag::Owned::new(metrics.clone()));
        let consumer: StreamConsumer<Context> = consumer_config
            .create_with_context(Context {
                readiness: readiness.clone(),
                owned: owned.clone(),
            })
            .context("creating the consumer")?;
        // librdkafka refuses a record (key, payload and headers) larger than this before sending it.
        let max_message_bytes = effective(&producer_config, "message.max.bytes")?;
        let producer: FutureProducer = producer_config.create().context("creating the producer")?;
        Ok(Self {
            config,
            engine,
            metrics,
            readiness,
            consumer,
            owned,
            lag_client_config: consumer_config,
            producer,
            max_message_bytes,
        })
    }

    /// Says clearly which topics are missing: topics are not created automatically.
    pub fn check_topics(&self) -> anyhow::Result<()> {
        let metadata = self
            .consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .context("reading broker metadata")?;
        let wanted = self
            .config
            .input_topics
            .iter()
            .chain([&self.config.result_topic, &self.config.dlq_topic]);
        let missing: Vec<&String> = wanted
            .filter(|t| {
                !metadata
                    .topics()
                    .iter()
                    .any(|m| m.name() == t.as_str() && m.error().is_none() && !m.partitions().is_empty())
            })
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "missing Kafka topics: {} (create them first; the worker does not)",
                missing.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true; returns after committing finished work.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.check_topics()?;
        let topics: Vec<&str> = self.config.input_topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics).context("subscribing")?;
        info!(topics = ?topics, group = %self.config.group, "consuming");
        let _lag = lag::Refresher::start(&self.lag_client_config, self.owned.clone(), self.config.lag_refresh)
            .context("starting the consumer lag measurement")?;
        // Rotation runs between batches, so the worker's own writes never race it.
        let mut rotation = self.config.secret_rotation_interval.map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let first = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                record = self.consumer.recv() => Some(record),
                _ = async { rotation.as_mut().expect("only polled when set").tick().await }, if rotation.is_some() => None,
            };
            let Some(first) = first else {
                if self.rotate_secrets_until(&mut shutdown).await? {
                    break;
                }
                continue;
            };
            let first = match first {
                Ok(record) => {
                    self.metrics.in_flight_since(Some(Instant::now()));
                    record.detach()
                }
                Err(e) => {
                    warn!(error = %e, "consumer error");
                    continue;
                }
            };
            let batch = self.still_assigned(self.fill_batch(first).await);
            if batch.is_empty() {
                self.metrics.in_flight_since(None);
                continue;
            }
            self.metrics
                .in_flight
                .set(i64::try_from(batch.len()).unwrap_or(i64::MAX));
            let processing = self.process(&batch);
            tokio::pin!(processing);
            let stopping = tokio::select! {
                done = &mut processing => { done?; false }
                _ = shutdown.wait_for(|stop| *stop) => {
                    match tokio::time::timeout(self.config.drain_deadline, &mut processing).await {
                        Ok(done) => done?,
                        Err(_) => {
                            warn!(records = batch.len(), "drain deadline passed; in-flight records are abandoned and will be replayed");
                            self.metrics.in_flight.set(0);
                            self.metrics.in_flight_since(None);
                            break;
                        }
                    }
                    true
                }
            };
            self.store_offsets(&batch);
            self.metrics.in_flight.set(0);
            self.metrics.in_flight_since(None);
            if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                warn!(error = %e, "offset commit failed; it is retried with the next batch");
            }
            if stopping {
                break;
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            info!(error = %e, "final commit: nothing to commit");
        }
        info!("stopped");
        Ok(())
    }

    /// A rotation round; on shutdown it gets the drain deadline, as a batch does. Cut short, it has
    /// written each object whole or not at all, and the next round finds what is left. Whether the
    /// worker is stopping.
    async fn rotate_secrets_until(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<bool> {
        let rotating = self.rotate_secrets();
        tokio::pin!(rotating);
        tokio::select! {
            rotated = &mut rotating => rotated.map(|()| false),
            _ = shutdown.wait_for(|stop| *stop) => {
                match tokio::time::timeout(self.config.drain_deadline, &mut rotating).await {
                    Ok(rotated) => rotated?,
                    Err(_) => warn!("drain deadline passed; Secret rotation cut short (the next round finishes it)"),
                }
                Ok(true)
            }
        }
    }

    /// Re-applies routes whose Secrets changed and publishes their `secret-rotated` results. A cluster
    /// that cannot be read now is tried again next round; only a broker that cannot take a result stops
    /// the worker, as for any result.
    async fn rotate_secrets(&self) -> anyhow::Result<()> {
        let results = match self.engine.rotate_secrets().await {
            Ok(results) => results,
            Err(error) => {
                warn!(%error, "Secrets not checked for rotation; trying again next round");
                return Ok(());
            }
        };
        for result in &results {
            let span = tracing::info_span!(
                "rotation",
                model = result.model.as_deref().unwrap_or_default(),
                revision = result.revision
            );
            info!(parent: &span, changes = result.changes.len(), "route's Secret values rotated");
        }
        // Delivered together, in order, as a batch's results: one Secret may feed thousands of routes.
        for sent in futures::future::join_all(results.iter().map(|result| self.send_result(result))).await {
            if let Err((error, _)) = sent {
                self.refused_for_good(error, "results", None, "rotation result")?;
            }
        }
        Ok(())
    }

    /// Takes records while they keep coming: each may be followed by another within `linger`, up to
    /// `max_batch` records or `LINGER_ROUNDS` lingers in all, so a burst that trickles in is applied
    /// together and a lone event waits only one linger.
    async fn fill_batch(&self, first: OwnedMessage) -> Vec<OwnedMessage> {
        let mut batch = vec![first];
        let cap = tokio::time::Instant::now() + self.config.linger * LINGER_ROUNDS;
        while batch.len() < self.config.max_batch {
            let until = (tokio::time::Instant::now() + self.config.linger).min(cap);
            match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Ok(Ok(record)) => batch.push(record.detach()),
                Ok(Err(e)) => warn!(error = %e, "consumer error"),
                Err(_) => break,
            }
        }
        batch
    }

    /// Records of partitions revoked while the batch filled (a rebalance runs inside `recv`) are
    /// dropped: their new owner replays them, and applying them here could land an old owner's deploy
    /// after the new owner's retirement.
    fn still_assigned(&self, batch: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
        let Ok(assignment) = self.consumer.assignment() else {
            return batch;
        };
        let taken = batch.len();
        let kept = assigned_only(batch, &assignment);
        if kept.len() < taken {
            info!(
                dropped = taken - kept.len(),
                "records of revoked partitions (their new owner replays them) or fetched twice dropped"
            );
        }
        kept
    }

    fn store_offsets(&self, batch: &[OwnedMessage]) {
        for record in batch {
            if let Err(e) = self
                .consumer
                .store_offset(record.topic(), record.partition(), record.offset())
            {
                // The partition was revoked meanwhile: its new owner replays the record.
                info!(error = %e, topic = record.topic(), partition = record.partition(), "offset not stored");
            }
        }
    }

    /// Applies a batch and delivers its results and dead letters. An error means the broker could not
    /// be reached: nothing of the batch is committed and it is replayed.
    async fn process(&self, batch: &[OwnedMessage]) -> anyhow::Result<()> {
        // Each result goes as soon as it is final (an invalid record's at once, an event's when the
        // retry round that settled it is over), after those of its model's earlier records (`order`).
        // A record's deliveries start in order (a producer keeps the order it is given), so one
        // model's results come out in the order its events came in, invalid ones included.
        let mut keys = Vec::with_capacity(batch.len());
        let mut invalid = Vec::new();
        let mut valid: Vec<(usize, LifecycleEvent)> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let headers = headers_of(record);
            match decode::decode(record.payload(), &headers) {
                Ok(event) => {
                    keys.push(event.model().to_string());
                    valid.push((index, event));
                }
                Err(problem) => {
                    let (key, delivery) = self.reject(record, headers, &problem);
                    keys.push(key);
                    invalid.push((index, delivery));
                }
            }
        }
        let mut outbox: Outbox<Delivery<'_>> = Outbox::new(keys);
        for (index, delivery) in invalid {
            outbox.finished(index, vec![delivery]);
        }

        let started = Instant::now();
        let (indices, events): (Vec<usize>, Vec<LifecycleEvent>) = valid.into_iter().unzip();
        let spans: Vec<tracing::Span> = indices
            .iter()
            .zip(&events)
            .map(|(&index, event)| self.event_span(&batch[index], event))
            .collect();
        // The API requests of a batch serve all its events: a single event's are its children, a
        // batch's are children of a batch span linked to each event's.
        let batch_span = match spans.as_slice() {
            [one] => one.clone(),
            _ if telemetry::exporting() => {
                let span = tracing::info_span!("apply batch", otel.kind = "internal", events = events.len());
                telemetry::link_to(&span, &spans);
                span
            }
            _ => tracing::Span::none(),
        };
        // Events that failed transiently are retried (in order, the rest of their model waiting) in
        // rounds the retry policy allows before the event deadline; the deadline also bounds every
        // request of every round, so an event's `failed` result comes at the deadline, not after it.
        let policy = self.engine.retry_policy();
        let deadline = tokio::time::Instant::now() + policy.event_deadline;
        let mut earlier: Vec<Option<RouteResult>> = vec![None; events.len()];
        let mut pending: Vec<usize> = (0..events.len()).collect();
        let mut round = 0;
        while !pending.is_empty() {
            let apply = async {
                if pending.len() == events.len() {
                    self.engine.apply_batch_until(&events, deadline).await
                } else {
                    let retried: Vec<LifecycleEvent> = pending.iter().map(|&i| events[i].clone()).collect();
                    self.engine.apply_batch_until(&retried, deadline).await
                }
            };
            let (outcomes, delivered) =
                futures::join!(apply.instrument(batch_span.clone()), deliver(outbox.take_ready()));
            delivered?;
            let pause = policy.next_round(round, deadline);
            let mut retry = Vec::new();
            for (&i, mut result) in pending.iter().zip(outcomes) {
                // What earlier rounds wrote stays part of the event's result.
                if let Some(before) = earlier[i].take() {
                    result.add_earlier(before);
                }
                if result.outcome == Outcome::Failed && is_retryable(&result) && pause.is_some() {
                    retry.push(i);
                    earlier[i] = Some(result);
                    continue;
                }
                let index = indices[i];
                outbox.finished(index, self.deliveries(&batch[index], &events[i], result, &spans[i]));
            }
            if let (false, Some(pause)) = (retry.is_empty(), pause) {
                warn!(events = retry.len(), ?pause, "retrying events after transient failures");
                let (_, delivered) = futures::join!(tokio::time::sleep(pause), deliver(outbox.take_ready()));
                delivered?;
            }
            pending = retry;
            round += 1;
        }
        let applied_in = started.elapsed();
        deliver(outbox.take_ready()).await?;
        debug_assert!(outbox.is_empty(), "every record's result is delivered");
        let delivered_in = started.elapsed() - applied_in;
        info!(
            records = batch.len(),
            events = events.len(),
            ?applied_in,
            ?delivered_in,
            "batch done"
        );
        Ok(())
    }

    /// What an event's final result sends: a dead letter when it failed or the gateway refused it,
    /// then the result. Also records the outcome on the event's span and in the metrics.
    fn deliveries<'a>(
        &'a self,
        record: &'a OwnedMessage,
        event: &LifecycleEvent,
        mut result: RouteResult,
        span: &tracing::Span,
    ) -> Vec<Delivery<'a>> {
        span.record("outcome", result.outcome.as_str());
        if let Some(error) = &result.error {
            span.record("reason", bounded(&error.reason, MAX_NAME_BYTES));
            if result.outcome == Outcome::Failed {
                span.record("otel.status_code", "ERROR");
            }
        }
        // The pipeline's trace continues through the worker's span; the input's state goes on.
        if let Some(traceparent) = telemetry::traceparent_of(span) {
            result.trace = Some(crate::event::TraceContext {
                traceparent,
                tracestate: event.envelope.trace.as_ref().and_then(|t| t.tracestate.clone()),
            });
        }
        span.in_scope(|| match &result.error {
            Some(error) => warn!(reason = %bounded(&error.reason, MAX_NAME_BYTES), message = %bounded(&error.message, MAX_MESSAGE_BYTES), "event not applied"),
            None => info!(changes = result.changes.len(), "event done"),
        });
        self.metrics
            .events
            .get_or_create(&EventLabels {
                r#type: event_type_label(Some(&event.envelope.event_type)),
                outcome: result.outcome.as_str(),
            })
            .inc();
        let mut deliveries: Vec<Delivery<'a>> = Vec::new();
        if result.outcome == Outcome::Failed {
            let message = result.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
            // Retried until the deadline, or refused after some of its writes: replay after the fix.
            let reason = if is_retryable(&result) {
                "apply-failed"
            } else {
                "apply-partial"
            };
            deliveries.push(Box::pin(self.dead_letter(record, headers_of(record), reason, message)));
        }
        // An event refused for what the gateway would do with it is valid input that must be fixed and
        // replayed, as an invalid one is: it goes to the dead-letter topic too.
        let refused_for_the_gateway = [Reason::GatewayRefuses, Reason::PluginNotValidated]
            .into_iter()
            .find(|reason| result.error.as_ref().is_some_and(|e| e.reason == reason.as_str()));
        if let (Outcome::Rejected, Some(reason)) = (result.outcome, refused_for_the_gateway) {
            let message = result.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
            deliveries.push(Box::pin(self.dead_letter(
                record,
                headers_of(record),
                reason.as_str(),
                message,
            )));
        }
        deliveries.push(Box::pin(async move { self.publish(&result, record).await }));
        deliveries
    }

    /// The event's span: a child of its `traceparent` (validated by the contract), with the messaging
    /// attributes of OpenTelemetry's semantic conventions; its log lines carry the input's context and,
    /// when spans are exported, the worker's trace and span ids.
    fn event_span(&self, record: &OwnedMessage, event: &LifecycleEvent) -> tracing::Span {
        let trace = event.envelope.trace.as_ref();
        let key = record
            .key()
            .map(|key| bounded(&String::from_utf8_lossy(key), MAX_NAME_BYTES));
        let span = tracing::info_span!("event",
            otel.name = %format!("process {}", record.topic()),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = record.topic(),
            messaging.consumer.group.name = %self.config.group,
            messaging.destination.partition.id = %record.partition(),
            messaging.kafka.offset = record.offset(),
            messaging.kafka.message.key = key.as_deref(),
            id = %bounded(&event.envelope.id, MAX_NAME_BYTES),
            model = %event.model(),
            revision = event.revision(),
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
            traceparent = trace.map(|t| t.traceparent.as_str()),
            tracestate = trace.and_then(|t| t.tracestate.as_deref()),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::continue_trace(&span, trace);
        telemetry::record_ids(&span);
        span
    }

    /// An invalid record's dead letter and result, and the key its result is published under.
    fn reject<'a>(
        &'a self,
        record: &'a OwnedMessage,
        headers: Headers,
        invalid: &InvalidEvent,
    ) -> (String, Delivery<'a>) {
        let reason = invalid.reason.as_str();
        let message = problems_summary(&invalid.problems);
        warn!(reason, %message, topic = record.topic(), partition = record.partition(), offset = record.offset(), "dead-lettering invalid input");
        let result = RouteResult::for_invalid(invalid);
        self.metrics
            .events
            .get_or_create(&EventLabels {
                r#type: event_type_label(invalid.event_type.as_deref()),
                outcome: Outcome::Rejected.as_str(),
            })
            .inc();
        // Every input gets its result, also one whose model could not be read (`model` null). Both
        // are sent at once.
        let key = result_key(&result).to_string();
        let delivery = Box::pin(async move {
            futures::try_join!(
                self.dead_letter(record, headers, reason, message),
                self.publish(&result, record)
            )
            .map(drop)
        });
        (key, delivery)
    }

    /// Sends `record` to the dead-letter topic, bounded (see [`DeadLetter`]). When the broker refuses
    /// it for good, a minimal form is sent; when even that is refused, the loss is logged and counted.
    /// Only an unreachable broker is an error.
    async fn dead_letter(
        &self,
        record: &OwnedMessage,
        headers: Headers,
        reason: &'static str,
        message: String,
    ) -> anyhow::Result<()> {
        self.metrics.dead_lettered.get_or_create(&ReasonLabels { reason }).inc();
        let original = Original {
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().unwrap_or_default(),
            payload: record.payload().unwrap_or_default(),
            headers: &headers,
        };
        for form in [Form::Bounded, Form::Minimal] {
            let letter = DeadLetter::new(&original, reason, &message, self.max_message_bytes, form);
            match self
                .send(&self.config.dlq_topic, &letter.key, &letter.payload, letter.headers())
                .await
            {
                Ok(()) => {
                    if letter.truncated {
                        self.metrics.dead_letters_truncated.inc();
                    }
                    return Ok(());
                }
                Err(e) => self.refused_for_good(e, "dead-letters", Some(record), "dead-letter")?,
            }
        }
        warn!(
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            "dead letter dropped: the broker refused even its minimal form"
        );
        Ok(())
    }

    /// Publishes the (bounded) result; if the broker refuses it for good, the input is dead-lettered.
    async fn publish(&self, result: &RouteResult, record: &OwnedMessage) -> anyhow::Result<()> {
        let Err((error, bytes)) = self.send_result(result).await else {
            return Ok(());
        };
        self.refused_for_good(error, "results", Some(record), "result")?;
        let message = format!("the result event could not be delivered ({bytes} bytes)");
        self.dead_letter(record, headers_of(record), "result-undeliverable", message)
            .await
    }

    /// Sends the result event (bounded), keyed by its model; an error comes with the payload's size.
    async fn send_result(&self, result: &RouteResult) -> Result<(), (KafkaError, usize)> {
        let payload = result.to_cloud_event(&self.config.source).to_string();
        let key = bounded(result_key(result), MAX_NAME_BYTES);
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/cloudevents+json"),
        });
        self.send(&self.config.result_topic, key.as_bytes(), payload.as_bytes(), headers)
            .await
            .map_err(|error| (error, payload.len()))
    }

    async fn send(&self, topic: &str, key: &[u8], payload: &[u8], headers: OwnedHeaders) -> Result<(), KafkaError> {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if !key.is_empty() {
            record = record.key(key);
        }
        self.producer
            .send(record, SEND_QUEUE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Logs and counts a delivery error that retrying cannot cure; any other error (the broker is
    /// gone, a timeout) is returned so the worker stops without committing.
    fn refused_for_good(
        &self,
        error: KafkaError,
        output: &'static str,
        record: Option<&OwnedMessage>,
        what: &str,
    ) -> anyhow::Result<()> {
        let Some(label) = permanent_refusal(&error) else {
            anyhow::bail!("{what} delivery failed: {error}");
        };
        warn!(error = %error, output, topic = record.map(|r| r.topic()), partition = record.map(|r| r.partition()), offset = record.map(|r| r.offset()), "{what} refused by the broker");
        self.metrics
            .undeliverable
            .get_or_create(&UndeliverableLabels { output, error: label })
            .inc();
        Ok(())
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }
}

/// The records whose partition is in `assignment`, in their order, each once: a partition revoked and
/// given back while the batch filled is fetched again from its committed offset.
/// A record's dead letter or result on its way to the broker.
type Delivery<'a> = futures::future::BoxFuture<'a, anyhow::Result<()>>;

/// Delivers in the order given (each is handed to the producer in turn), all at once.
async fn deliver(deliveries: Vec<Delivery<'_>>) -> anyhow::Result<()> {
    for delivered in futures::future::join_all(deliveries).await {
        delivered?;
    }
    Ok(())
}

/// The key a result is published under: its model, or the input's id when no model could be read.
fn result_key(result: &RouteResult) -> &str {
    result.model.as_deref().unwrap_or(&result.input_event_id)
}

fn assigned_only(batch: Vec<OwnedMessage>, assignment: &TopicPartitionList) -> Vec<OwnedMessage> {
    let mut seen = std::collections::HashSet::new();
    batch
        .into_iter()
        .filter(|r| assignment.find_partition(r.topic(), r.partition()).is_some())
        .filter(|r| seen.insert((r.topic().to_string(), r.partition(), r.offset())))
        .collect()
}

/// The record's headers, without those whose name is not UTF-8. Producers may send any bytes as a
/// header name (librdkafka does not check them), and rdkafka panics on reading one: unguarded, one such
/// record would stop the worker at every start. Such a header is no CloudEvents attribute.
fn headers_of(record: &OwnedMessage) -> Headers {
    let Some(headers) = record.headers() else {
        return Headers::new();
    };
    let read = (0..headers.count()).map(|index| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            headers
                .try_get(index)
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
        }))
    });
    let (readable, unreadable): (Vec<_>, Vec<_>) = read.partition(Result::is_ok);
    if !unreadable.is_empty() {
        warn!(
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            headers = unreadable.len(),
            "headers whose name is not UTF-8 left out"
        );
    }
    readable.into_iter().filter_map(Result::ok).flatten().collect()
}

/// The metric label of a delivery error that retrying cannot cure, or `None` for one it may.
fn permanent_refusal(error: &KafkaError) -> Option<&'static str> {
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::MessageBatchTooLarge => Some("message-too-large"),
        RDKafkaErrorCode::InvalidTopic => Some("invalid-topic"),
        RDKafkaErrorCode::InvalidMessage | RDKafkaErrorCode::InvalidRecord => Some("invalid-record"),
        _ => None,
    }
}

/// Most input headers copied into a dead letter.
const MAX_COPIED_HEADERS: usize = 32;
/// Longest copied header name and value, in bytes.
const MAX_COPIED_HEADER_NAME_BYTES: usize = 256;
const MAX_COPIED_HEADER_VALUE_BYTES: usize = 1024;
const MAX_KEY_BYTES: usize = 1024;
/// Room left in `message.max.bytes` for librdkafka's framing of the record and the headers added
/// after the payload is cut (`hrw_truncated`, `hrw_original_size`).
const FRAMING_BYTES: usize = 1024;
/// Payload and message kept in the minimal form, sent when the broker refused the bounded one.
const MINIMAL_PAYLOAD_BYTES: usize = 1024;
const MINIMAL_MESSAGE_BYTES: usize = 256;

/// The record being dead-lettered, as read.
struct Original<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    key: &'a [u8],
    payload: &'a [u8],
    headers: &'a Headers,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The original bytes when they fit, the input headers copied (bounded).
    Bounded,
    /// A last resort: our headers (a shorter message) and the first bytes of the payload only.
    Minimal,
}

/// A dead letter that fits `message.max.bytes`, whatever the input: the input's headers (at most
/// [`MAX_COPIED_HEADERS`], each cut; `hrw_*` ones dropped so input cannot forge ours), our `hrw_*`
/// headers (each bounded), and the original payload, cut to what is left (`hrw_truncated: true` and
/// `hrw_original_size`) when it does not fit.
struct DeadLetter {
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    truncated: bool,
}

impl DeadLetter {
    fn new(original: &Original<'_>, reason: &str, message: &str, max_message_bytes: usize, form: Form) -> Self {
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        let message_bytes = match form {
            Form::Bounded => MAX_MESSAGE_BYTES,
            Form::Minimal => MINIMAL_MESSAGE_BYTES,
        };
        if form == Form::Bounded {
            let copied = original.headers.iter().filter(|(name, _)| !name.starts_with("hrw_"));
            let mut cut = 0;
            for (name, value) in copied.clone().take(MAX_COPIED_HEADERS) {
                let name_fits = name.len() <= MAX_COPIED_HEADER_NAME_BYTES;
                let value_fits = value.len() <= MAX_COPIED_HEADER_VALUE_BYTES;
                if !name_fits || !value_fits {
                    cut += 1;
                }
                let name = name[..floor_char_boundary(name, MAX_COPIED_HEADER_NAME_BYTES)].to_string();
                headers.push((name, value[..value.len().min(MAX_COPIED_HEADER_VALUE_BYTES)].to_vec()));
            }
            let dropped = copied.count().saturating_sub(MAX_COPIED_HEADERS);
            if cut + dropped > 0 {
                headers.push(("hrw_headers_cut".into(), (cut + dropped).to_string().into_bytes()));
            }
        }
        for (name, value) in [
            ("hrw_dlq_reason", bounded(reason, MAX_NAME_BYTES)),
            ("hrw_dlq_message", bounded(message, message_bytes)),
            ("hrw_source_topic", original.topic.to_string()),
            ("hrw_source_partition", original.partition.to_string()),
            ("hrw_source_offset", original.offset.to_string()),
        ] {
            headers.push((name.into(), value.into_bytes()));
        }
        let key = original.key[..original.key.len().min(MAX_KEY_BYTES)].to_vec();
        let used: usize = key.len() + headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
        let mut room = max_message_bytes.saturating_sub(used + FRAMING_BYTES);
        if form == Form::Minimal {
            room = room.min(MINIMAL_PAYLOAD_BYTES);
        }
        let truncated = original.payload.len() > room;
        if truncated {
            headers.push(("hrw_truncated".into(), b"true".to_vec()));
            headers.push((
                "hrw_original_size".into(),
                original.payload.len().to_string().into_bytes(),
            ));
        }
        Self {
            key,
            payload: original.payload[..original.payload.len().min(room)].to_vec(),
            headers,
            truncated,
        }
    }

    fn headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(OwnedHeaders::new(), |out, (key, value)| {
            out.insert(Header {
                key,
                value: Some(value),
            })
        })
    }

    #[cfg(test)]
    fn size(&self) -> usize {
        self.key.len() + self.payload.len() + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original<'a>(payload: &'a [u8], headers: &'a Headers) -> Original<'a> {
        Original {
            topic: "in",
            partition: 2,
            offset: 7,
            key: b"k",
            payload,
            headers,
        }
    }

    fn header<'a>(letter: &'a DeadLetter, name: &str) -> Option<&'a [u8]> {
        letter
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn record(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.into(),
            rdkafka::Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn records_of_a_partition_revoked_while_the_batch_filled_are_dropped() {
        // The batch holds records of partitions 0 and 1 of `in` and 0 of `other`; a rebalance inside
        // `recv` left this worker with `in`/1 and `other`/0 only.
        let batch = vec![
            record("in", 0, 10),
            record("in", 1, 20),
            record("other", 0, 5),
            record("in", 0, 11),
            record("in", 1, 21),
        ];
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition("in", 1);
        assignment.add_partition("other", 0);
        let kept: Vec<(String, i32, i64)> = assigned_only(batch, &assignment)
            .iter()
            .map(|r| (r.topic().to_string(), r.partition(), r.offset()))
            .collect();
        assert_eq!(
            kept,
            [
                ("in".to_string(), 1, 20),
                ("other".to_string(), 0, 5),
                ("in".to_string(), 1, 21)
            ]
        );
        assert!(assigned_only(vec![record("in", 0, 1)], &TopicPartitionList::new()).is_empty());
    }

    #[test]
    fn records_fetched_again_after_their_partition_came_back_are_taken_once() {
        let batch = vec![
            record("in", 0, 10),
            record("in", 0, 11),
            record("in", 0, 10),
            record("in", 0, 11),
            record("in", 0, 12),
        ];
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition("in", 0);
        let offsets: Vec<i64> = assigned_only(batch, &assignment).iter().map(|r| r.offset()).collect();
        assert_eq!(offsets, [10, 11, 12]);
    }

    #[test]
    fn a_dead_letter_that_fits_keeps_the_original_bytes() {
        let headers: Headers = vec![("content-type".into(), b"application/json".to_vec())];
        let letter = DeadLetter::new(&original(b"{}", &headers), "not-json", "x", 1_000_000, Form::Bounded);
        assert_eq!(letter.payload, b"{}");
        assert!(!letter.truncated);
        assert_eq!(header(&letter, "content-type"), Some(&b"application/json"[..]));
        assert_eq!(header(&letter, "hrw_source_offset"), Some(&b"7"[..]));
        assert_eq!(header(&letter, "hrw_truncated"), None);
    }

    #[test]
    fn a_dead_letter_too_large_is_cut_to_fit() {
        let payload = vec![b'x'; 2_000_000];
        // Hostile headers: many, long names, long values, and one forging ours.
        let mut headers: Headers = (0..100)
            .map(|i| (format!("h{i}{}", "n".repeat(1000)), vec![b'v'; 100_000]))
            .collect();
        headers.insert(0, ("hrw_truncated".into(), b"false".to_vec()));
        let message = "m".repeat(1_000_000);
        let letter = DeadLetter::new(
            &original(&payload, &headers),
            "oversize",
            &message,
            1_000_000,
            Form::Bounded,
        );
        assert!(letter.truncated);
        // It fills what is left of message.max.bytes once the framing room is kept.
        let size = letter.size();
        assert!(
            (1_000_000 - FRAMING_BYTES..=1_000_000 - FRAMING_BYTES / 2).contains(&size),
            "{size}"
        );
        assert_eq!(header(&letter, "hrw_truncated"), Some(&b"true"[..]));
        assert_eq!(header(&letter, "hrw_original_size"), Some(&b"2000000"[..]));
        assert_eq!(
            header(&letter, "hrw_headers_cut"),
            Some(&b"100"[..]),
            "32 cut, 68 dropped"
        );
        assert!(header(&letter, "hrw_dlq_message").unwrap().len() <= MAX_MESSAGE_BYTES);
        assert_eq!(letter.headers.iter().filter(|(n, _)| n == "hrw_truncated").count(), 1);
        assert_eq!(&letter.payload[..], &payload[..letter.payload.len()]);

        let minimal = DeadLetter::new(
            &original(&payload, &headers),
            "oversize",
            &message,
            1_000_000,
            Form::Minimal,
        );
        assert_eq!(minimal.payload.len(), MINIMAL_PAYLOAD_BYTES);
        assert!(minimal.size() < 8 * 1024, "{}", minimal.size());
        assert_eq!(header(&minimal, "hrw_dlq_reason"), Some(&b"oversize"[..]));
        assert!(header(&minimal, "hrw_dlq_message").unwrap().len() <= MINIMAL_MESSAGE_BYTES);
    }
}
