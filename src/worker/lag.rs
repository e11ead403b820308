//! Consumer lag, `higress_route_worker_consumer_lag{topic,partition}`: for each partition this worker
//! owns, the records its group has not committed.
//!
//! Measured by a client of its own, on a thread of its own, from the brokers' answers: ListOffsets for
//! the watermarks, OffsetFetch for the group's committed offsets. Not from librdkafka's statistics
//! (`statistics.interval.ms`): those are served only while the consumer is polled, and the worker does
//! not poll while a batch is in flight, which is when lag grows; and their high watermark comes from
//! fetch responses, which stop while the prefetch queue is full. Both requests are plain Kafka APIs that
//! Kafka and Tansu answer alike, and neither waits on the consume loop nor holds it up.

use crate::metrics::{Metrics, PartitionLabels};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{info, warn};

/// How long one request of a measurement may take; a round that fails keeps the last values.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The partitions this worker owns, kept by the rebalance callbacks. A lag series exists only for them:
/// a revoked partition's series goes at once, and a measurement that finishes after a revoke sets none.
pub struct Owned {
    metrics: Arc<Metrics>,
    partitions: Mutex<BTreeSet<(String, i32)>>,
}

impl Owned {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            partitions: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<(String, i32)>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Added, not replaced: a cooperative assignment hands over only the new partitions.
    pub fn assigned(&self, partitions: &TopicPartitionList) {
        let mut owned = self.lock();
        for element in partitions.elements() {
            owned.insert((element.topic().to_string(), element.partition()));
        }
    }

    pub fn revoked(&self, partitions: &TopicPartitionList) {
        let mut owned = self.lock();
        for element in partitions.elements() {
            let key = (element.topic().to_string(), element.partition());
            owned.remove(&key);
            self.metrics.consumer_lag.remove(&labels(&key));
        }
    }

    /// A rebalance error leaves the consumer with no partitions.
    pub fn all_revoked(&self) {
        let mut owned = self.lock();
        for key in std::mem::take(&mut *owned) {
            self.metrics.consumer_lag.remove(&labels(&key));
        }
    }

    fn snapshot(&self) -> Vec<(String, i32)> {
        self.lock().iter().cloned().collect()
    }

    fn publish(&self, measured: &[((String, i32), i64)]) {
        let owned = self.lock();
        for (key, lag) in measured.iter().filter(|(key, _)| owned.contains(key)) {
            self.metrics.consumer_lag.get_or_create(&labels(key)).set(*lag);
        }
    }
}

fn labels((topic, partition): &(String, i32)) -> PartitionLabels {
    PartitionLabels {
        topic: topic.clone(),
        partition: *partition,
    }
}

/// Measures the lag of the owned partitions every `every` until dropped.
pub struct Refresher {
    // Dropping it disconnects the channel, which ends the thread at its next wait.
    _stop: mpsc::Sender<()>,
}

impl Refresher {
    /// `config`: the consumer's settings (brokers, credentials, `group.id`); the client never subscribes,
    /// so it never joins the group, it only reads the group's committed offsets.
    pub fn start(config: &ClientConfig, owned: Arc<Owned>, every: Duration) -> anyhow::Result<Self> {
        let client: BaseConsumer = config.create()?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new().name("consumer-lag".into()).spawn(move || {
            let mut failing = false;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                // Errors the client reports (a broker down) queue up until polled; nothing else comes.
                while client.poll(Duration::ZERO).is_some() {}
                let partitions = owned.snapshot();
                if partitions.is_empty() {
                    continue;
                }
                match measure(&client, &partitions) {
                    Ok(measured) => {
                        owned.publish(&measured);
                        if std::mem::take(&mut failing) {
                            info!("consumer lag measured again");
                        }
                    }
                    Err(error) if !failing => {
                        failing = true;
                        warn!(%error, "consumer lag not measured; the gauges keep their last values until it is");
                    }
                    Err(_) => {}
                }
            }
        })?;
        Ok(Self { _stop: stop })
    }
}

/// The lag of each partition: its high watermark minus the group's committed offset.
fn measure(client: &BaseConsumer, partitions: &[(String, i32)]) -> KafkaResult<Vec<((String, i32), i64)>> {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    let committed = client.committed_offsets(list, REQUEST_TIMEOUT)?;
    partitions
        .iter()
        .map(|(topic, partition)| {
            let (low, high) = client.fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)?;
            let committed = match committed.find_partition(topic, *partition) {
                Some(element) => {
                    element.error()?;
                    match element.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    }
                }
                None => None,
            };
            // Nothing committed yet: the worker reads such a partition from its low watermark
            // (`auto.offset.reset=earliest`), so all of it is lag. Records deleted by retention before
            // they were read are no lag: count from the low watermark when the commit is below it.
            let from = committed.map_or(low, |offset| offset.max(low));
            Ok(((topic.clone(), *partition), (high - from).max(0)))
        })
        .collect()
}
