//! The Tansu broker harness itself: records round-trip with keys and headers, data survives a broker
//! restart, idempotent producers deliver, and a consumer group resumes after its committed offsets.

#[path = "support/broker.rs"]
mod broker;

use broker::{client_config, consumer_config, Broker};
use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_with_headers_round_trip_across_partitions() {
    let started = Instant::now();
    let broker = Broker::start().await;
    eprintln!("started in {:?}", started.elapsed());
    assert_header_index(&broker);
    broker.create_topics(&[("roundtrip", 3)]).await;

    let started = Instant::now();
    let broker = &broker;
    // Concurrently, so the producer batches instead of paying a round trip per record.
    join_all((0..500).map(|i| {
        let (key, payload, index) = (format!("key-{i}"), format!("payload-{i}"), i.to_string());
        async move {
            let headers: [(&str, &[u8]); 2] = [("index", index.as_bytes()), ("empty", b"")];
            broker
                .produce("roundtrip", Some(&key), payload.as_bytes(), &headers)
                .await;
        }
    }))
    .await;
    eprintln!("produced 500 in {:?}", started.elapsed());

    let started = Instant::now();
    let records = broker.consume_all("roundtrip", 500, CONSUME_TIMEOUT).await;
    eprintln!("consumed {} in {:?}", records.len(), started.elapsed());
    assert_eq!(records.len(), 500);

    let mut keys = HashSet::new();
    for record in &records {
        let key = record.key.clone().expect("every record was keyed");
        let i = key.strip_prefix("key-").expect("key format");
        assert_eq!(record.topic, "roundtrip");
        assert_eq!(record.payload, format!("payload-{i}").into_bytes(), "payload of {key}");
        let expected_headers = vec![
            ("index".to_owned(), i.as_bytes().to_vec()),
            ("empty".to_owned(), Vec::new()),
        ];
        assert_eq!(record.headers, expected_headers, "headers of {key}");
        assert!(keys.insert(key.clone()), "{key} consumed twice");
    }
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, HashSet::from([0, 1, 2]), "keys spread over all partitions");
    for partition in 0..3 {
        let offsets: Vec<i64> = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.offset)
            .collect();
        let dense: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, dense, "offsets of partition {partition} are dense from 0");
    }
}

/// Without this index every fetch scans all stored headers.
fn assert_header_index(broker: &Broker) {
    let output = std::process::Command::new("sqlite3")
        .arg(broker.db_path())
        .arg("select name from sqlite_master where type = 'index' and tbl_name = 'header';")
        .output()
        .expect("run sqlite3");
    let indexes = String::from_utf8_lossy(&output.stdout);
    assert!(
        indexes.lines().any(|name| name == "header_topition_offset"),
        "header indexes: {indexes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_broker_restart() {
    let mut broker = Broker::start().await;
    broker.create_topics(&[("durable", 1)]).await;
    for i in 0..20 {
        broker
            .produce("durable", None, format!("before-{i}").as_bytes(), &[])
            .await;
    }

    let started = Instant::now();
    broker.restart().await;
    eprintln!("restarted in {:?}", started.elapsed());

    // The harness producer was connected before the restart; it must reconnect and keep appending.
    broker.produce("durable", None, b"after", &[]).await;
    let payloads: Vec<Vec<u8>> = broker
        .consume_all("durable", 21, CONSUME_TIMEOUT)
        .await
        .into_iter()
        .map(|r| r.payload)
        .collect();
    let mut expected: Vec<Vec<u8>> = (0..20).map(|i| format!("before-{i}").into_bytes()).collect();
    expected.push(b"after".to_vec());
    assert_eq!(payloads, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_delivers_across_a_restart() {
    let mut broker = Broker::start().await;
    broker.create_topics(&[("idempotent", 1)]).await;
    let producer: FutureProducer = client_config(&broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("create idempotent producer");
    let send = |i: i64| {
        let producer = producer.clone();
        async move {
            let payload = i.to_string();
            let delivery = producer
                .send(
                    FutureRecord::<(), _>::to("idempotent").payload(&payload),
                    Duration::from_secs(15),
                )
                .await
                .unwrap_or_else(|(err, _)| panic!("idempotent delivery of {i} failed: {err}"));
            assert_eq!(delivery.offset, i, "record {i} landed at offset {}", delivery.offset);
        }
    };

    // Sequentially, so each delivery's offset is known in advance.
    for i in 0..10 {
        send(i).await;
    }
    // The broker must still accept the producer's id and sequence numbers after a crash.
    broker.restart().await;
    for i in 10..20 {
        send(i).await;
    }

    let payloads: Vec<String> = broker
        .consume_all("idempotent", 20, CONSUME_TIMEOUT)
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.payload).unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected);
}

/// A consumer in `group` that commits only what the test stores, like the worker does.
fn group_consumer(broker: &Broker, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = consumer_config(&broker.bootstrap(), group)
        .create()
        .expect("create group consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Receives `count` messages, stores each one's offset, commits synchronously, and returns their offsets.
async fn consume_and_commit(consumer: &StreamConsumer, count: usize) -> Vec<i64> {
    let mut offsets = Vec::new();
    for _ in 0..count {
        let message = tokio::time::timeout(CONSUME_TIMEOUT, consumer.recv())
            .await
            .expect("group consumer received nothing in time")
            .expect("group consumer error");
        consumer.store_offset_from_message(&message).expect("store offset");
        offsets.push(message.offset());
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_resumes_after_committed_offsets() {
    let mut broker = Broker::start().await;
    broker.create_topics(&[("grouped", 1)]).await;
    for i in 0..10 {
        broker.produce("grouped", None, format!("m{i}").as_bytes(), &[]).await;
    }

    let started = Instant::now();
    let first = group_consumer(&broker, "workers", "grouped");
    assert_eq!(consume_and_commit(&first, 4).await, vec![0, 1, 2, 3]);
    drop(first); // leaves the group
    eprintln!("first consumer done in {:?}", started.elapsed());

    let started = Instant::now();
    let second = group_consumer(&broker, "workers", "grouped");
    assert_eq!(
        consume_and_commit(&second, 3).await,
        vec![4, 5, 6],
        "resumes after a consumer restart"
    );
    drop(second);
    eprintln!("second consumer done in {:?}", started.elapsed());

    broker.restart().await;
    let started = Instant::now();
    let third = group_consumer(&broker, "workers", "grouped");
    assert_eq!(
        consume_and_commit(&third, 3).await,
        vec![7, 8, 9],
        "resumes after a broker restart"
    );
    eprintln!("third consumer done in {:?}", started.elapsed());
}
