//! Logs (JSON lines or pretty), OpenTelemetry traces over OTLP, and the Prometheus recorder.

use std::fmt;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Spans from targets starting with this (every crate of the workspace) may be exported.
const EXPORTED_TARGETS: &str = "contextiq";

/// Installs the global log subscriber. `RUST_LOG`, when set, wins over the configured level.
/// A second call (tests build many apps in one process) leaves the first in place.
///
/// With `settings.otlp_endpoint`, spans are also exported to `{endpoint}/v1/traces` (OTLP over
/// HTTP, JSON bodies, batched on a background thread), labelled `service.name = service_name`,
/// and the W3C trace context propagator becomes the global one (see [`crate::trace_context`]).
/// The exporter has its own filter: only INFO and above from this workspace's crates, whatever
/// the log level, so the debug spans of sqlx, hyper or lapin never leave the process.
/// Call [`shutdown_tracing`] before exit to flush what is still queued.
pub fn init_logging(settings: &LogSettings, service_name: &str) {
    // Before the OTLP exporter builds its HTTP client.
    contextiq_models::use_ring_for_tls();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let log_layer = match settings.format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { service: service_name.to_owned() })
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![log_layer];
    let mut exporter_error = None;
    let mut provider = None;
    if let Some(endpoint) = settings.otlp_endpoint.as_deref().filter(|endpoint| !endpoint.is_empty()) {
        match tracer_provider(endpoint, service_name) {
            Ok(tracer_provider) => {
                let tracer = tracer_provider.tracer("contextiq");
                let otel_layer = tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(Targets::new().with_target(EXPORTED_TARGETS, Level::INFO));
                layers.push(otel_layer.boxed());
                provider = Some(tracer_provider);
            }
            Err(err) => exporter_error = Some(format!("{err}")),
        }
    }
    if tracing_subscriber::registry().with(layers).try_init().is_err() {
        // Another subscriber was there first; a provider made for nothing is dropped, which
        // shuts it down.
        return;
    }
    if let Some(provider) = provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = TRACER_PROVIDER.set(provider);
    }
    if let Some(error) = exporter_error {
        tracing::warn!(error = %error, "OTLP trace export is off: the exporter could not be built");
    }
}

/// Exports the spans still queued and stops the trace exporter; later spans are dropped. Does
/// nothing when no OTLP endpoint was configured. Blocks the calling thread until the export
/// ends (bounded by the exporter's timeout): from async code on a runtime that also serves the
/// collector (tests), call it through `tokio::task::spawn_blocking`.
pub fn shutdown_tracing() {
    let Some(provider) = TRACER_PROVIDER.get() else { return };
    match provider.shutdown() {
        Ok(()) | Err(OTelSdkError::AlreadyShutdown) => {}
        Err(err) => tracing::warn!(error = %err, "flushing the trace exporter failed"),
    }
}

/// The installed trace pipeline, kept to flush it at exit.
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// OTLP over HTTP with JSON bodies, sent by a blocking reqwest client from the SDK's batch
/// processor thread, so it works under any tokio runtime flavour and outside one.
fn tracer_provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        // Used as given: only the `OTEL_EXPORTER_OTLP_ENDPOINT` variable gets the signal path
        // appended by the exporter itself.
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let resource = Resource::builder().with_service_name(service_name.to_owned()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// One JSON object per line: `timestamp, level, service, target`, the fields of every
/// enclosing span (so `correlation_id` is on each line of a request), then the event's own
/// fields and `message`.
struct JsonLines {
    service: String,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".to_owned(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into(),
        );
        line.insert("level".to_owned(), metadata.level().as_str().into());
        line.insert("service".to_owned(), self.service.clone().into());
        line.insert("target".to_owned(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(span_fields);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// The process-wide Prometheus recorder; the first caller's service name labels every metric.
pub fn metrics_handle(service_name: &str) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .add_global_label("service", service_name)
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".to_owned()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("db_write_group_size".to_owned()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then this handle renders
            // nothing, which the metrics test would catch.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}
