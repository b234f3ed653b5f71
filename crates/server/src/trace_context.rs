//! W3C trace context (`traceparent`, `tracestate`) across process boundaries: read from
//! incoming requests, written into proxied requests, and carried with queued jobs so that a
//! worker's span continues the trace of the request that queued it.
//!
//! Every function goes through the global text-map propagator and the OpenTelemetry layer
//! that [`crate::telemetry::init_logging`] installs when an OTLP endpoint is configured.
//! Without them (no endpoint, tests) each one is a no-op: nothing is read, nothing written,
//! the map is empty.
//!
//! A span's parent can only be set before the span is first entered (or before
//! [`inject_into_headers`] reads its context): set it right after creating the span.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the trace context of the `traceparent`/`tracestate` headers the parent of `span`.
/// Headers without a valid `traceparent` leave `span` where it is (a new root or the child
/// of the current span).
pub fn set_parent_from_headers(span: &Span, headers: &HeaderMap) {
    let context =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderCarrier(headers)));
    set_remote_parent(span, context);
}

/// Writes the context of `span` as `traceparent`/`tracestate` into `headers`, replacing any
/// already there, so that the receiver's spans become children of `span`.
pub fn inject_into_headers(span: &Span, headers: &mut HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderCarrierMut(headers));
    });
}

/// The context of the current span as `traceparent` (and `tracestate` when not empty), to
/// store with a queued job or to put into message headers. Empty outside a span or without
/// an OpenTelemetry layer.
pub fn current_context_map() -> BTreeMap<String, String> {
    let context = Span::current().context();
    let mut map = BTreeMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MapCarrierMut(&mut map));
    });
    map
}

/// Makes the context saved by [`current_context_map`] the parent of `span`; an empty or
/// invalid map leaves `span` where it is.
pub fn set_parent_from_map(span: &Span, map: &BTreeMap<String, String>) {
    let context = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&MapCarrier(map)));
    set_remote_parent(span, context);
}

fn set_remote_parent(span: &Span, context: Context) {
    if !context.span().span_context().is_valid() {
        return;
    }
    // Fails only without an OpenTelemetry layer, for a span it filters out, or for a span
    // already started: all cases where there is nothing to continue.
    let _ = span.set_parent(context);
}

struct HeaderCarrier<'a>(&'a HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderCarrierMut<'a>(&'a mut HeaderMap);

impl Injector for HeaderCarrierMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct MapCarrier<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct MapCarrierMut<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapCarrierMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_ascii_lowercase(), value);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_ID: &str = "00f067aa0ba902b7";

    fn traceparent() -> String {
        format!("00-{TRACE_ID}-{PARENT_ID}-01")
    }

    /// Runs `f` under a subscriber with an OpenTelemetry layer (no exporter) and the W3C
    /// propagator, as `init_logging` sets them up with an endpoint.
    fn with_otel(f: impl FnOnce()) {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    fn trace_id_of(headers: &HeaderMap) -> Option<String> {
        let traceparent = headers.get("traceparent")?.to_str().ok()?;
        traceparent.split('-').nth(1).map(str::to_owned)
    }

    #[test]
    fn a_request_span_continues_the_incoming_trace() {
        with_otel(|| {
            let mut incoming = HeaderMap::new();
            incoming.insert("traceparent", traceparent().parse().unwrap());
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &incoming);

            let mut outgoing = HeaderMap::new();
            inject_into_headers(&span, &mut outgoing);
            let traceparent = outgoing["traceparent"].to_str().unwrap().to_owned();
            assert_eq!(trace_id_of(&outgoing).as_deref(), Some(TRACE_ID));
            assert!(!traceparent.contains(PARENT_ID), "the span's own id is sent, got {traceparent}");
        });
    }

    #[test]
    fn a_job_span_continues_the_trace_saved_when_queued() {
        with_otel(|| {
            let request = tracing::info_span!("request");
            let map = request.in_scope(current_context_map);
            assert!(map.contains_key("traceparent"), "{map:?}");

            let job = tracing::info_span!("job");
            set_parent_from_map(&job, &map);
            let mut headers = HeaderMap::new();
            inject_into_headers(&job, &mut headers);
            let mut request_headers = HeaderMap::new();
            inject_into_headers(&request, &mut request_headers);
            assert_eq!(trace_id_of(&headers), trace_id_of(&request_headers));
        });
    }

    #[test]
    fn garbage_or_missing_context_starts_a_new_trace() {
        with_otel(|| {
            for value in ["", "00-zz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
                let mut incoming = HeaderMap::new();
                incoming.insert("traceparent", value.parse().unwrap());
                let span = tracing::info_span!("request");
                set_parent_from_headers(&span, &incoming);
                let mut outgoing = HeaderMap::new();
                inject_into_headers(&span, &mut outgoing);
                let trace_id = trace_id_of(&outgoing).unwrap();
                assert_eq!(trace_id.len(), 32);
                assert_ne!(trace_id, "0".repeat(32), "for {value:?}");
            }
            let span = tracing::info_span!("job");
            set_parent_from_map(&span, &BTreeMap::new());
        });
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_happens() {
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", traceparent().parse().unwrap());
        let span = tracing::info_span!("request");
        set_parent_from_headers(&span, &incoming);
        set_parent_from_map(&span, &BTreeMap::from([("traceparent".to_owned(), traceparent())]));
        let mut outgoing = HeaderMap::new();
        inject_into_headers(&span, &mut outgoing);
        assert!(outgoing.is_empty());
        assert!(span.in_scope(current_context_map).is_empty());
    }
}
