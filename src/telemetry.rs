//! Logs, and OpenTelemetry traces when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: one span per event, a child of the event's
//! `traceparent`, and a span per API request the event's batch makes, exported over OTLP/gRPC by the
//! field's crates (`opentelemetry-otlp`, `tracing-opentelemetry`). With neither variable set nothing is
//! exported and no request span is made, so tracing off costs nothing.

use crate::event::TraceContext;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Flushes the spans not yet exported when dropped (at the end of `main`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("traces not all exported at shutdown: {error}");
            }
        }
    }
}

/// Whether the OTLP exporter is asked for, by the standard variables.
fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Logs to stderr (`RUST_LOG`, default `info`), and spans over OTLP when configured. The exporter
/// reads the other `OTEL_*` variables itself (headers, timeout, `OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, the batch processor's `OTEL_BSP_*`). Must run inside a Tokio runtime.
pub fn init(format: LogFormat) -> anyhow::Result<Telemetry> {
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().boxed(),
        LogFormat::Text => logs.boxed(),
    }
    .with_filter(filter());
    let provider = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(env!("CARGO_PKG_NAME"))
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    // Only the worker's own spans (events, batches, API requests) are exported, whatever RUST_LOG says.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(env!("CARGO_PKG_NAME").replace('-', "_"), tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry().with(logs).with(traces).init();
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// Whether spans are exported (then request spans are worth making).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Makes `span` a child of the event's trace context (W3C Trace Context, as the CloudEvents
/// distributed-tracing extension carries it); without one, `span` starts a trace.
pub fn continue_trace(span: &tracing::Span, trace: Option<&TraceContext>) {
    let Some(trace) = trace else { return };
    let mut carrier = HashMap::from([("traceparent".to_string(), trace.traceparent.clone())]);
    if let Some(state) = &trace.tracestate {
        carrier.insert("tracestate".to_string(), state.clone());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Only fails when no OpenTelemetry layer is installed: then there is no span to parent.
    let _ = span.set_parent(parent);
}

/// The span's OpenTelemetry context, when it is exported.
fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    if !exporting() {
        return None;
    }
    let context = span.context().span().span_context().clone();
    context.is_valid().then_some(context)
}

/// The span as a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), when it is exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    span_context(span).map(|c| format!("00-{}-{}-{:02x}", c.trace_id(), c.span_id(), c.trace_flags().to_u8()))
}

/// Records the span's trace and span ids in its `trace_id` and `span_id` fields, so that every log
/// line inside it carries them.
pub fn record_ids(span: &tracing::Span) {
    if let Some(context) = span_context(span) {
        span.record("trace_id", context.trace_id().to_string());
        span.record("span_id", context.span_id().to_string());
    }
}

/// A span for one API request, when spans are exported (a disabled span otherwise).
pub fn request_span(verb: &'static str, resource: &str, name: Option<&str>) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "kube request",
        otel.name = %format!("{verb} {resource}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        k8s.verb = verb,
        k8s.resource = resource,
        k8s.object.name = name,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Records a request's answer on its span: the HTTP status (200 when the call succeeded; the API's
/// status when it refused; none when no answer came).
pub fn record_answer<T>(span: &tracing::Span, answer: &Result<T, kube::Error>, success: u16) {
    if span.is_disabled() {
        return;
    }
    match answer {
        Ok(_) => {
            span.record("http.response.status_code", i64::from(success));
        }
        Err(kube::Error::Api(status)) => {
            span.record("http.response.status_code", i64::from(status.code));
            span.record("otel.status_code", "ERROR");
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Links `span` (a batch's) to each event span it serves.
pub fn link_to(span: &tracing::Span, events: &[tracing::Span]) {
    for context in events.iter().filter_map(span_context) {
        span.add_link(context);
    }
}
