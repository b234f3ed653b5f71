//! What wraps every request: a correlation id, one log line, the HTTP metrics, and
//! problem+json for errors produced outside handlers (unknown methods, timeouts, panics).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{ApiError, ErrorChain, PROBLEM_JSON, Problem, problem_response};
use crate::trace_context::set_parent_from_headers;

pub const CORRELATION_ID: &str = "x-correlation-id";

pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let agent_engine = request.uri().path().starts_with(crate::routes::agent_engine::PATH_PREFIX);
    // MCP's transport answers its own errors (a refused Host, a missing Accept) in plain text,
    // which MCP clients show as they are; only our own refusals (credentials) are problems.
    let mcp = request.uri().path() == "/mcp" || request.uri().path().starts_with("/mcp/");
    // Labelled by the route template, never the raw path, so ids do not explode the series.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let correlation_id = request
        .headers()
        .get(CORRELATION_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_safe_correlation_id(id))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    // Whatever handles the request (the gateway forwarding it, say) sees the id in use.
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        request.headers_mut().insert(CORRELATION_ID, value);
    }
    let span = tracing::info_span!("request", correlation_id = %correlation_id, method = method_label(&method), route = %route);
    set_parent_from_headers(&span, request.headers());

    let response = next.run(request).instrument(span.clone()).await;
    let mut response = match mcp && response.status().is_client_error() {
        true => response,
        false => problem_for_bare_error(response),
    };
    // The one protocol whose clients parse another error body.
    if agent_engine {
        response = crate::routes::agent_engine::errors::google_error(response);
    }

    let status = response.status();
    let elapsed = started.elapsed();
    let labels = [("method", method.to_string()), ("endpoint", route), ("status_code", status.as_u16().to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());

    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if let Some(ErrorChain(chain)) = response.extensions().get::<ErrorChain>() {
            tracing::error!(status = status.as_u16(), duration_ms, error = %chain, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), duration_ms, "request completed");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

/// Made-up methods would each add a series; they share one label.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Ids from clients end up in logs: accept only short, plain ones; otherwise make a new one.
fn is_safe_correlation_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

/// Responses that carry an error status but no problem body (axum's 405, the timeout
/// layer's 503, the panic catcher's 500) get one.
fn problem_for_bare_error(response: Response) -> Response {
    let status = response.status();
    // A JSON body is a handler's own answer (the gateway's health of its services, say).
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|value| {
        value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()) || value.as_bytes().starts_with(b"application/json")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let problem = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.problem(),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout.problem(),
        StatusCode::NOT_FOUND => ApiError::RouteNotFound(String::new()).problem(),
        _ if status.is_server_error() => ApiError::Internal(String::new()).problem(),
        _ => {
            let reason = status.canonical_reason().unwrap_or("Client error");
            Problem {
                problem_type: "urn:contextiq:problem:bad_request".to_owned(),
                title: reason.to_owned(),
                status: status.as_u16(),
                detail: reason.to_owned(),
                code: "bad_request".to_owned(),
                field: None,
            }
        }
    };
    let (mut parts, _) = response.into_parts();
    parts.extensions.insert(problem.clone());
    let (_, body) = problem_response(problem).into_parts();
    // Keep the original headers, such as `Allow` on a 405, and the status.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    // A timeout, like every 503, says when to try again.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        parts.headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    if status.is_server_error() && parts.extensions.get::<ErrorChain>().is_none() {
        parts.extensions.insert(ErrorChain(format!("{status} produced outside a handler (a panic?)")));
    }
    Response::from_parts(parts, body)
}
