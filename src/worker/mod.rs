//! The Kafka side: consume lifecycle events in batches, apply them, publish one result per event,
//! dead-letter poison input, and commit offsets only after the results are delivered.
//!
//! One loop owns the consumer. It takes a batch (up to `max_batch` records or `linger`), applies it,
//! publishes results and dead letters, awaits their delivery, then stores the batch's offsets and
//! commits in the background. A batch is never in flight while the consumer polls, so a partition
//! revoke (which happens inside a poll) only has to commit what is stored.

pub mod decode;
pub mod http;

use crate::cluster::{is_retryable, Engine};
use crate::contract::InvalidEvent;
use crate::event::LifecycleEvent;
use crate::metrics::{EventLabels, Metrics, ReasonLabels};
use crate::result::{Outcome, RouteResult};
use anyhow::Context as _;
use decode::Headers;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group: "higress-route-worker".into(),
            input_topics: vec!["model-lifecycle".into()],
            result_topic: "model-route-results".into(),
            dlq_topic: "model-lifecycle-dlq".into(),
            kafka_config: Vec::new(),
            kafka_consumer_config: Vec::new(),
            kafka_producer_config: Vec::new(),
            max_batch: 256,
            linger: Duration::from_millis(20),
            drain_deadline: Duration::from_secs(20),
            source: "higress-route-worker".into(),
        }
    }
}

/// Shared between the worker loop, the rebalance callbacks and `/readyz`.
#[derive(Default)]
pub struct Readiness {
    pub joined: AtomicBool,
}

struct Context {
    readiness: Arc<Readiness>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Nothing is in flight during a poll: commit what the finished batches stored.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                info!(error = %e, "no offsets committed on revoke");
            }
            info!(partitions = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.readiness.joined.store(true, Ordering::Relaxed);
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

pub struct Worker {
    config: WorkerConfig,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    consumer: StreamConsumer<Context>,
    producer: FutureProducer,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer<Context> = client_config(
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
        )
        .create_with_context(Context {
            readiness: readiness.clone(),
        })
        .context("creating the consumer")?;
        let producer: FutureProducer = client_config(
            &config,
            &[("enable.idempotence", "true"), ("acks", "all")],
            &config.kafka_producer_config,
        )
        .create()
        .context("creating the producer")?;
        Ok(Self {
            config,
            engine,
            metrics,
            readiness,
            consumer,
            producer,
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
        loop {
            let first = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                record = self.consumer.recv() => record,
            };
            let first = match first {
                Ok(record) => record.detach(),
                Err(e) => {
                    warn!(error = %e, "consumer error");
                    continue;
                }
            };
            let batch = self.fill_batch(first).await;
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
                            break;
                        }
                    }
                    true
                }
            };
            self.store_offsets(&batch);
            self.metrics.in_flight.set(0);
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

    /// Takes records while they keep coming: each may be followed by another within `linger`, up to
    /// `max_batch` records or `LINGER_ROUNDS` lingers in all, so a burst that trickles in is applied
    /// together and a lone event waits only one linger.
    async fn fill_batch(&self, first: OwnedMessage) -> Vec<OwnedMessage> {
        const LINGER_ROUNDS: u32 = 20;
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

    /// Applies a batch and delivers its results and dead letters. An error means delivery failed:
    /// nothing of the batch is committed and it is replayed.
    async fn process(&self, batch: &[OwnedMessage]) -> anyhow::Result<()> {
        let mut valid: Vec<(usize, LifecycleEvent)> = Vec::new();
        let mut deliveries = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let headers = headers_of(record);
            match decode::decode(record.payload(), &headers) {
                Ok(event) => valid.push((index, event)),
                Err(invalid) => deliveries.push(self.reject(record, &headers, &invalid)),
            }
        }
        let started = Instant::now();
        let (indices, events): (Vec<usize>, Vec<LifecycleEvent>) = valid.into_iter().unzip();
        let results = self.apply_until_deadline(&events).await;
        let applied_in = started.elapsed();
        for ((index, event), result) in indices.iter().zip(&events).zip(&results) {
            let span = tracing::info_span!("event", id = %event.envelope.id, model = %event.model(), revision = event.revision(), outcome = result.outcome.as_str());
            async {
                match &result.error {
                    Some(error) => warn!(reason = %error.reason, message = %error.message, "event not applied"),
                    None => info!(changes = result.changes.len(), "event done"),
                }
            }
            .instrument(span)
            .await;
            self.metrics
                .events
                .get_or_create(&EventLabels {
                    r#type: event.envelope.event_type.clone(),
                    outcome: result.outcome.as_str().into(),
                })
                .inc();
            if result.outcome == Outcome::Failed {
                let record = &batch[*index];
                let message = result.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
                // Retried until the deadline, or refused after some of its writes: replay after the fix.
                let reason = if is_retryable(result) {
                    "apply-failed"
                } else {
                    "apply-partial"
                };
                deliveries.push(self.dead_letter(record, &headers_of(record), reason, &message));
            }
            deliveries.push(self.publish(result));
        }
        for delivery in futures::future::join_all(deliveries).await {
            delivery?;
        }
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

    /// Applies events, retrying those that failed transiently (in order, the rest of the model waiting)
    /// in rounds the retry policy allows before the event deadline; the deadline also bounds every
    /// request of every round, so an event's `failed` result comes at the deadline, not after it.
    async fn apply_until_deadline(&self, events: &[LifecycleEvent]) -> Vec<RouteResult> {
        let policy = self.engine.retry_policy();
        let deadline = tokio::time::Instant::now() + policy.event_deadline;
        let mut results: Vec<Option<RouteResult>> = vec![None; events.len()];
        let mut pending: Vec<usize> = (0..events.len()).collect();
        let mut round = 0;
        while !pending.is_empty() {
            let outcomes = if pending.len() == events.len() {
                self.engine.apply_batch_until(events, deadline).await
            } else {
                let retried: Vec<LifecycleEvent> = pending.iter().map(|&i| events[i].clone()).collect();
                self.engine.apply_batch_until(&retried, deadline).await
            };
            let pause = policy.next_round(round, deadline);
            let mut retry = Vec::new();
            for (&i, mut result) in pending.iter().zip(outcomes) {
                // What earlier rounds wrote stays part of the event's result.
                if let Some(earlier) = results[i].take() {
                    for change in earlier.changes.into_iter().rev() {
                        if !result.changes.contains(&change) {
                            result.changes.insert(0, change);
                        }
                    }
                }
                if result.outcome == Outcome::Unchanged && !result.changes.is_empty() {
                    result.outcome = Outcome::Applied;
                }
                if result.outcome == Outcome::Failed && is_retryable(&result) && pause.is_some() {
                    retry.push(i);
                }
                results[i] = Some(result);
            }
            if let (false, Some(pause)) = (retry.is_empty(), pause) {
                warn!(events = retry.len(), ?pause, "retrying events after transient failures");
                tokio::time::sleep(pause).await;
            }
            pending = retry;
            round += 1;
        }
        results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect()
    }

    fn reject<'a>(
        &'a self,
        record: &'a OwnedMessage,
        headers: &Headers,
        invalid: &InvalidEvent,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        let reason = invalid.reason.as_str();
        warn!(reason, message = %invalid.message(), topic = record.topic(), partition = record.partition(), offset = record.offset(), "dead-lettering invalid input");
        let result = RouteResult::for_invalid(invalid);
        self.metrics
            .events
            .get_or_create(&EventLabels {
                r#type: result.input_type.clone(),
                outcome: "rejected".into(),
            })
            .inc();
        let dead_letter = self.dead_letter(record, headers, reason, &invalid.message());
        let published = result.model.is_some().then(|| self.publish(&result));
        Box::pin(async move {
            dead_letter.await?;
            if let Some(published) = published {
                published.await?;
            }
            Ok(())
        })
    }

    fn dead_letter<'a>(
        &'a self,
        record: &'a OwnedMessage,
        headers: &Headers,
        reason: &str,
        message: &str,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        self.metrics
            .dead_lettered
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        let mut out = OwnedHeaders::new();
        for (name, value) in headers {
            out = out.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let partition = record.partition().to_string();
        let offset = record.offset().to_string();
        for (key, value) in [
            ("hrw_dlq_reason", reason),
            ("hrw_dlq_message", message),
            ("hrw_source_topic", record.topic()),
            ("hrw_source_partition", partition.as_str()),
            ("hrw_source_offset", offset.as_str()),
        ] {
            out = out.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let payload = record.payload().map(<[u8]>::to_vec).unwrap_or_default();
        let key = record.key().map(<[u8]>::to_vec);
        let topic = self.config.dlq_topic.clone();
        Box::pin(async move {
            let mut to_send = FutureRecord::<Vec<u8>, Vec<u8>>::to(&topic)
                .payload(&payload)
                .headers(out);
            if let Some(key) = &key {
                to_send = to_send.key(key);
            }
            self.producer
                .send(to_send, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("dead-letter delivery failed: {e}"))?;
            Ok(())
        })
    }

    fn publish<'a>(&'a self, result: &RouteResult) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        let payload = result.to_cloud_event(&self.config.source).to_string();
        let key = result.model.clone().unwrap_or_else(|| result.input_event_id.clone());
        let topic = self.config.result_topic.clone();
        Box::pin(async move {
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "content-type",
                    value: Some("application/cloudevents+json"),
                }));
            self.producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("result delivery failed: {e}"))?;
            Ok(())
        })
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }
}

fn headers_of(record: &OwnedMessage) -> Headers {
    record
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}
