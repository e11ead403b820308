//! OpenTelemetry traces of the worker process: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, each event
//! gets a span that continues the event's trace (or starts one), with the messaging attributes of the
//! semantic conventions; the API requests made for it are its children; the result's `traceparent`
//! names the exported span; log lines carry its ids. The spans are received by an OTLP/gRPC
//! collector started in the test (`opentelemetry-proto`'s service on `tonic`).

#[path = "support/broker.rs"]
mod broker;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/worker.rs"]
mod process;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp::Collector;
use process::{Fixture, INPUT, RESULTS};
use serde_json::{json, Value};
use std::time::Duration;

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(AnyValue::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn number(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(AnyValue::IntValue(n)) => Some(*n),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn deploy(model: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("deploy-{model}-1"), "source": "tests", "type": "io.higress.model.deployed.v1",
           "data": {"model": model, "revision": 1,
                    "provider": {"type": "openai", "url": format!("https://{model}.example.com/v1"), "apiTokens": ["sk-1"]},
                    "route": {"domains": ["api.example.com"], "path": format!("/{model}")}}})
}

fn event_span<'a>(spans: &'a [Span], id: &str) -> Option<&'a Span> {
    spans.iter().find(|s| text(s, "id") == Some(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_gets_a_span_in_its_trace_and_its_result_points_at_it() {
    let fixture = Fixture::start().await;
    let (collector, port) = Collector::start().await;
    let endpoint = format!("http://127.0.0.1:{port}");
    let worker = fixture.worker_with_env(
        "traced",
        "info",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut traced = deploy("chat");
    traced["traceparent"] = json!(format!("00-{trace_id}-{parent_id}-01"));
    traced["tracestate"] = json!("rojo=00f067aa0ba902b7");
    fixture.produce("chat", traced.to_string().as_bytes(), &[]).await;
    // Alone in its batch: its API requests are its own.
    let first = fixture.read(RESULTS, 1, Duration::from_secs(60)).await;
    assert_eq!(first.len(), 1, "log:\n{}", worker.log());
    fixture
        .produce("code", deploy("code").to_string().as_bytes(), &[])
        .await;
    let results: Vec<Value> = fixture
        .read(RESULTS, 2, Duration::from_secs(60))
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    let result = |id: &str| {
        results
            .iter()
            .find(|r| r["data"]["inputEventId"] == id)
            .unwrap()
            .clone()
    };

    let spans = collector
        .spans_once(|spans| {
            event_span(spans, "deploy-chat-1").is_some() && event_span(spans, "deploy-code-1").is_some()
        })
        .await;
    let chat = event_span(&spans, "deploy-chat-1").unwrap_or_else(|| panic!("no span of the event: {spans:?}"));
    assert_eq!(hex(&chat.trace_id), trace_id, "the event's trace goes on");
    assert_eq!(
        hex(&chat.parent_span_id),
        parent_id,
        "a child of the event's traceparent"
    );
    assert_eq!(chat.kind, SpanKind::Consumer as i32);
    assert_eq!(chat.name, format!("process {INPUT}"));
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", INPUT),
        ("messaging.consumer.group.name", "higress-route-worker"),
        ("messaging.kafka.message.key", "chat"),
        ("model", "chat"),
        ("outcome", "applied"),
    ] {
        assert_eq!(text(chat, key), Some(value), "{key}: {chat:?}");
    }
    assert!(text(chat, "messaging.destination.partition.id").is_some(), "{chat:?}");
    assert!(
        number(chat, "messaging.kafka.offset").is_some_and(|o| o >= 0),
        "{chat:?}"
    );

    // The result points at the exported span, and keeps the input's tracestate.
    let chat_result = result("deploy-chat-1");
    let chat_span = hex(&chat.span_id);
    assert_eq!(chat_result["traceparent"], format!("00-{trace_id}-{chat_span}-01"));
    assert_eq!(chat_result["tracestate"], "rojo=00f067aa0ba902b7");

    // Its API requests are its children, with verb, kind, name and status.
    let requests: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == chat.span_id).collect();
    let ingress = requests
        .iter()
        .find(|s| text(s, "k8s.verb") == Some("create") && text(s, "k8s.resource") == Some("ingresses"))
        .unwrap_or_else(|| panic!("no create of an Ingress among {requests:?}"));
    assert_eq!(text(ingress, "k8s.object.name"), Some("ai-route-chat.internal"));
    assert_eq!(number(ingress, "http.response.status_code"), Some(201), "{ingress:?}");
    assert_eq!(ingress.kind, SpanKind::Client as i32);
    assert_eq!(ingress.name, "create ingresses");
    assert!(
        requests
            .iter()
            .any(|s| text(s, "k8s.verb") == Some("get") || text(s, "k8s.verb") == Some("list")),
        "the batch's reads are there too: {requests:?}"
    );

    // An event without a context starts a trace of its own, and its result points at it.
    let code = event_span(&spans, "deploy-code-1").unwrap();
    assert_ne!(hex(&code.trace_id), trace_id);
    assert!(code.parent_span_id.is_empty(), "a root span: {code:?}");
    assert_eq!(
        result("deploy-code-1")["traceparent"],
        format!("00-{}-{}-01", hex(&code.trace_id), hex(&code.span_id))
    );

    // Log lines of the event carry its ids.
    let log = worker.log();
    let line = log
        .lines()
        .find(|l| l.contains("event done") && l.contains("deploy-chat-1"))
        .unwrap_or_else(|| panic!("no log line of the event:\n{log}"));
    assert!(line.contains(trace_id) && line.contains(&chat_span), "{line}");
    let status = worker.terminate();
    assert!(status.success(), "{status}");

    // Three events waiting on one partition when a worker starts are applied as one batch: its API
    // requests are children of a batch span linked to each event's span.
    let ids: Vec<String> = ["x", "y", "z"].iter().map(|m| format!("deploy-{m}-1")).collect();
    for model in ["x", "y", "z"] {
        fixture
            .produce("same-partition", deploy(model).to_string().as_bytes(), &[])
            .await;
    }
    let worker = fixture.worker_with_env(
        "traced-batch",
        "info",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let results = fixture.read(RESULTS, 5, Duration::from_secs(60)).await;
    assert_eq!(results.len(), 5, "log:\n{}", worker.log());
    let spans = collector
        .spans_once(|spans| {
            ids.iter().all(|id| event_span(spans, id).is_some()) && spans.iter().any(|s| s.name == "apply batch")
        })
        .await;
    let events: Vec<&Span> = ids
        .iter()
        .map(|id| event_span(&spans, id).unwrap_or_else(|| panic!("{id}")))
        .collect();
    let batch = spans
        .iter()
        .find(|s| s.name == "apply batch" && s.links.len() == 3)
        .unwrap_or_else(|| {
            panic!(
                "no batch span linked to three events: {spans:?}\nlog:\n{}",
                worker.log()
            )
        });
    for event in &events {
        assert!(
            batch
                .links
                .iter()
                .any(|l| l.span_id == event.span_id && l.trace_id == event.trace_id),
            "{event:?} not linked from {batch:?}"
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s.parent_span_id == batch.span_id && text(s, "k8s.verb") == Some("create")),
        "the batch's writes are its children"
    );
    let status = worker.terminate();
    assert!(status.success(), "{status}");
}
