//! Trace export: a stand-in OTLP/HTTP collector that records the spans it is sent, and a
//! test that the request span is exported and continues the caller's W3C trace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use contextiq_server::config::LogSettings;
use contextiq_server::telemetry;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::helpers::without_model::spawn_app_with;

/// One span as a collector received it. Ids are lowercase hex, as OTLP/JSON encodes them.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The `service.name` resource attribute of the batch the span came in.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// The span's attributes as a JSON object of plain values (`{"route": "/api/v1/sessions"}`).
    pub attributes: Value,
}

/// An OTLP/HTTP collector accepting JSON bodies on `POST /v1/traces`, on 127.0.0.1 with a
/// free port. It serves from a thread and runtime of its own, so it keeps answering while the
/// test's runtime is blocked (in `shutdown_tracing`, say), and it works for exporters in other
/// processes alike. Stops when dropped.
pub struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    _stop: oneshot::Sender<()>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("a bound address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Router::new().route("/v1/traces", post(receive)).with_state(Arc::clone(&spans));
        std::thread::Builder::new()
            .name("otlp-receiver".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .expect("the receiver thread starts");
        OtlpReceiver { endpoint, spans, _stop: stop }
    }

    /// The base URL to configure as the OTLP endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Polls until `predicate` holds for the spans received so far and returns them; panics
    /// with what did arrive after `timeout`.
    pub async fn wait_for(&self, predicate: impl Fn(&[ReceivedSpan]) -> bool, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if predicate(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "the expected spans did not arrive within {timeout:?}; got {spans:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    axum::extract::State(spans): axum::extract::State<Arc<Mutex<Vec<ReceivedSpan>>>>,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        // A protobuf body (the exporter's default protocol) is not what this receiver speaks.
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(json!({"message": "expected OTLP/JSON"})));
    };
    spans.lock().expect("spans lock").extend(parse_spans(&request));
    // An `ExportTraceServiceResponse` with no partial success.
    (StatusCode::OK, axum::Json(json!({})))
}

/// Flattens `resourceSpans[].scopeSpans[].spans[]` of an `ExportTraceServiceRequest`.
fn parse_spans(request: &Value) -> Vec<ReceivedSpan> {
    let mut received = Vec::new();
    for resource_spans in array(&request["resourceSpans"]) {
        let resource = attributes(&resource_spans["resource"]["attributes"]);
        let service = resource["service.name"].as_str().unwrap_or_default().to_owned();
        for scope_spans in array(&resource_spans["scopeSpans"]) {
            for span in array(&scope_spans["spans"]) {
                let id = |field: &str| span[field].as_str().unwrap_or_default().to_ascii_lowercase();
                let parent_span_id = Some(id("parentSpanId")).filter(|id| !id.is_empty());
                received.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: id("traceId"),
                    span_id: id("spanId"),
                    parent_span_id,
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    received
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// `[{"key": k, "value": AnyValue}]` as `{k: plain value}`.
fn attributes(key_values: &Value) -> Value {
    let map: Map<String, Value> = array(key_values)
        .iter()
        .filter_map(|key_value| Some((key_value["key"].as_str()?.to_owned(), any_value(&key_value["value"]))))
        .collect();
    Value::Object(map)
}

/// An OTLP/JSON `AnyValue` (`{"stringValue": "x"}`, `{"intValue": "5"}`, ...) as plain JSON.
fn any_value(value: &Value) -> Value {
    let Some((kind, inner)) = value.as_object().and_then(|object| object.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        // 64-bit integers travel as strings.
        "intValue" => {
            inner.as_str().and_then(|text| text.parse::<i64>().ok()).map_or_else(|| inner.clone(), Value::from)
        }
        "arrayValue" => Value::Array(array(&inner["values"]).iter().map(any_value).collect()),
        "kvlistValue" => attributes(&inner["values"]),
        _ => inner.clone(),
    }
}

#[tokio::test]
async fn request_spans_are_exported_and_continue_the_callers_trace() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
    let receiver = OtlpReceiver::start();
    // The subscriber is process-wide, and nextest runs each test in a process of its own.
    let log_settings = LogSettings { otlp_endpoint: Some(receiver.endpoint()), ..LogSettings::default() };
    telemetry::init_logging(&log_settings, "contextiq-test");
    let app = spawn_app_with(|settings| settings.log = log_settings.clone()).await;

    app.client
        .get(app.url("/api/v1/sessions"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
        .send()
        .await
        .expect("the request is sent");
    // Flushes the batch now rather than after the processor's delay.
    tokio::task::spawn_blocking(telemetry::shutdown_tracing).await.expect("the flush does not panic");

    let is_request = |span: &ReceivedSpan| span.name == "request" && span.trace_id == TRACE_ID;
    let spans = receiver.wait_for(|spans| spans.iter().any(is_request), Duration::from_secs(10)).await;
    let request = spans.iter().find(|span| is_request(span)).expect("a request span");
    assert_eq!(request.parent_span_id.as_deref(), Some(PARENT_SPAN_ID), "{request:#?}");
    assert_eq!(request.service, "contextiq-test");
    assert_eq!(request.span_id.len(), 16, "{request:#?}");
    assert_ne!(request.span_id, PARENT_SPAN_ID);
    assert_eq!(request.attributes["route"], "/api/v1/sessions", "{request:#?}");
    assert_eq!(request.attributes["method"], "GET", "{request:#?}");
    assert_eq!(request.attributes["target"], "contextiq_server::middleware", "{request:#?}");
    // Only the workspace's own spans leave the process: no sqlx, hyper or h2 ones.
    for span in &spans {
        let target = span.attributes["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("contextiq"), "unexpected exported span {span:#?}");
    }
}
