//! The gateway role: authenticates every `/api/v1` and `/v1beta1` request (the middleware has,
//! by the time a handler runs), then forwards it to the role that serves it: sessions and keys
//! (and the Agent Engine sessions) to `SESSIONS_URL`, memories and jobs (and the Agent Engine
//! memories and operations) to `MEMORY_URL`. The services verify the credentials again,
//! so they never trust the network. The correlation id and the trace context travel along.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::CorsOrigins;
use crate::error::ApiError;
use crate::middleware::CORRELATION_ID;

/// What the gateway's handlers reach.
#[derive(Clone)]
pub struct GatewayState {
    pub gateway: Arc<Gateway>,
    pub service_name: Arc<str>,
    /// `MAX_REQUEST_BODY_BYTES`.
    pub max_body_bytes: usize,
}

/// Where the gateway sends each request.
pub struct Gateway {
    client: reqwest::Client,
    /// For live streams, which last as long as the client listens: no overall timeout.
    streaming_client: reqwest::Client,
    sessions_url: String,
    memory_url: String,
}

impl Gateway {
    pub fn new(sessions_url: &str, memory_url: &str, timeout: Duration) -> anyhow::Result<Gateway> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let streaming_client = reqwest::Client::builder().connect_timeout(timeout).build()?;
        let trim = |url: &str| url.trim_end_matches('/').to_owned();
        Ok(Gateway { client, streaming_client, sessions_url: trim(sessions_url), memory_url: trim(memory_url) })
    }

    fn upstream_of(&self, path: &str) -> Option<&str> {
        if let Some(relative) = path.strip_prefix(crate::routes::agent_engine::PATH_PREFIX) {
            let (_, target) = crate::routes::agent_engine::names::parse(relative).ok()??;
            return Some(match target.service() {
                crate::routes::agent_engine::names::Service::Sessions => &self.sessions_url,
                crate::routes::agent_engine::names::Service::Memory => &self.memory_url,
            });
        }
        let relative = path.strip_prefix("/api/v1/")?;
        // Compacting and assembling a context need the memory services (jobs, search).
        if relative.starts_with("sessions/") && (relative.ends_with("/compact") || relative.ends_with("/context")) {
            return Some(&self.memory_url);
        }
        let resource = relative.split('/').next()?;
        match resource {
            "sessions" | "keys" => Some(&self.sessions_url),
            "memories" | "jobs" => Some(&self.memory_url),
            _ => None,
        }
    }
}

/// Headers that describe one hop, not the message (RFC 9110, 7.6.1), and the host.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Forwards an `/api/v1` request to its service and relays the answer as it is.
pub async fn forward(State(state): State<GatewayState>, request: Request) -> Result<Response, ApiError> {
    let gateway = &state.gateway;
    let path = request.uri().path().to_owned();
    let Some(upstream) = gateway.upstream_of(&path) else { return Err(ApiError::RouteNotFound(path)) };
    let path_and_query = request.uri().path_and_query().map_or(path.as_str(), |value| value.as_str());
    let url = format!("{upstream}{path_and_query}");
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit: state.max_body_bytes })?;

    let mut headers = HeaderMap::new();
    copy_end_to_end(&parts.headers, &mut headers);
    crate::trace_context::inject_into_headers(&tracing::Span::current(), &mut headers);
    let is_stream = path.ends_with("/stream");
    let client = if is_stream { &gateway.streaming_client } else { &gateway.client };
    let forwarded = client.request(parts.method, &url).headers(headers).body(body).send().await;
    let upstream_response = forwarded.map_err(|err| {
        tracing::warn!(error = %err, url, "the upstream service did not answer");
        ApiError::UpstreamUnavailable
    })?;

    let status = upstream_response.status();
    let mut response_headers = HeaderMap::new();
    copy_end_to_end(upstream_response.headers(), &mut response_headers);
    // The gateway's own correlation id is set on the way out by the middleware.
    response_headers.remove(CORRELATION_ID);
    let is_event_stream = response_headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if is_event_stream {
        // Relayed as it arrives, not gathered: a live stream never ends by itself.
        let mut response = Response::new(Body::from_stream(upstream_response.bytes_stream()));
        *response.status_mut() = status;
        *response.headers_mut() = response_headers;
        return Ok(response);
    }
    let body = upstream_response.bytes().await.map_err(|err| {
        tracing::warn!(error = %err, url, "the upstream answer was cut off");
        ApiError::UpstreamUnavailable
    })?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// The gateway is healthy when the services behind it are: each one's `/health`, side by side.
pub async fn health(State(state): State<GatewayState>) -> Response {
    let gateway = &state.gateway;
    let check = |name: &'static str, base: String| {
        let client = gateway.client.clone();
        async move {
            let answered = client.get(format!("{base}/health")).timeout(Duration::from_secs(5)).send().await;
            let healthy = answered.is_ok_and(|response| response.status().is_success());
            (name, if healthy { "ok" } else { "unavailable" })
        }
    };
    let services = futures::future::join_all([
        check("sessions", gateway.sessions_url.clone()),
        check("memory", gateway.memory_url.clone()),
    ])
    .await;
    let healthy = services.iter().all(|(_, status)| *status == "ok");
    let body = Json(json!({
        "status": if healthy { "ok" } else { "degraded" },
        "service": state.service_name.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "services": services
            .into_iter()
            .map(|(name, status)| (name.to_owned(), serde_json::Value::from(status)))
            .collect::<serde_json::Map<_, _>>(),
    }));
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body).into_response()
}

/// The CORS layer of `CORS_ORIGINS`; `None` when no origin is allowed.
pub fn cors_layer(origins: &CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let allow_origin = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().filter_map(|origin| origin.parse().ok())),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(Any)
            .allow_headers(Any)
            .expose_headers([HeaderName::from_static(CORRELATION_ID), header::RETRY_AFTER, header::LOCATION])
            .max_age(Duration::from_secs(3600)),
    )
}
