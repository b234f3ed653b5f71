//! Every error a client can see, mapped to HTTP in one place, as RFC 9457
//! `application/problem+json`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contextiq_core::{Error as CoreError, Resource};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem, plus a stable `code` clients can match on and, for validation
/// failures, the `field` at fault.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:contextiq:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, snake_case: one per kind of problem.
    pub code: String,
    /// The JSON path (body) or name (query) of the offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] CoreError),
    #[error(
        "no credentials: send an API key as X-API-Key (or x-goog-api-key, or Authorization: Bearer), or a JWT as \
         Authorization: Bearer"
    )]
    MissingCredentials,
    #[error("the credentials are invalid, expired or revoked")]
    InvalidCredentials,
    #[error("send one credential: one X-API-Key header or one Authorization header, not several")]
    ConflictingCredentials,
    #[error("the credential lacks the {0} permission")]
    MissingPermission(contextiq_core::Permission),
    #[error("too many requests: retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("{0}")]
    MalformedJson(String),
    #[error("{field}: {detail}")]
    InvalidBody { field: String, detail: String },
    #[error("{detail}")]
    InvalidQuery { field: Option<String>, detail: String },
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the request took longer than the server allows; a write it carried may still have been applied")]
    Timeout,
    #[error("the service behind the gateway did not answer; retry later")]
    UpstreamUnavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The full chain of a server-side failure, for the logging middleware: clients only see an
/// opaque message.
#[derive(Debug, Clone)]
pub struct ErrorChain(pub String);

impl ApiError {
    /// Status, code and title: the one table of client-visible errors.
    fn describe(&self) -> (StatusCode, &'static str, &'static str) {
        use contextiq_core::Error as E;
        match self {
            ApiError::Domain(E::NotFound { resource: Resource::Session }) => {
                (StatusCode::NOT_FOUND, "session_not_found", "Session not found")
            }
            ApiError::Domain(E::NotFound { resource: Resource::Memory }) => {
                (StatusCode::NOT_FOUND, "memory_not_found", "Memory not found")
            }
            ApiError::Domain(E::NotFound { resource: Resource::Job }) => {
                (StatusCode::NOT_FOUND, "job_not_found", "Job not found")
            }
            ApiError::Domain(E::NotFound { resource: Resource::ApiKey }) => {
                (StatusCode::NOT_FOUND, "api_key_not_found", "API key not found")
            }
            ApiError::Domain(E::NotFound { resource: Resource::Revision }) => {
                (StatusCode::NOT_FOUND, "revision_not_found", "Revision not found")
            }
            ApiError::Domain(E::NotFound { resource: Resource::Operation }) => {
                (StatusCode::NOT_FOUND, "operation_not_found", "Operation not found")
            }
            ApiError::Domain(E::AlreadyExists { resource: Resource::Memory }) => {
                (StatusCode::CONFLICT, "memory_exists", "Memory exists")
            }
            ApiError::Domain(E::AlreadyExists { resource }) => {
                // Only sessions and memories are created under a name the client chose.
                debug_assert_eq!(*resource, Resource::Session);
                (StatusCode::CONFLICT, "session_exists", "Session exists")
            }
            ApiError::Domain(E::Forbidden(_)) | ApiError::MissingPermission(_) => {
                (StatusCode::FORBIDDEN, "forbidden", "Forbidden")
            }
            ApiError::MissingCredentials => (StatusCode::UNAUTHORIZED, "missing_credentials", "Unauthorized"),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Unauthorized"),
            ApiError::ConflictingCredentials => {
                (StatusCode::BAD_REQUEST, "conflicting_credentials", "Conflicting credentials")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            ApiError::Domain(E::Validation { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed")
            }
            ApiError::Domain(E::LimitExceeded { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded", "Limit exceeded")
            }
            ApiError::Domain(E::Unavailable) => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "Service unavailable")
            }
            ApiError::Domain(E::Outage(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "Store unavailable")
            }
            ApiError::Domain(E::Embedding(_)) => (StatusCode::BAD_GATEWAY, "embedding_failed", "Embedding failed"),
            ApiError::Domain(E::Store(_)) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error")
            }
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            ApiError::InvalidBody { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed")
            }
            ApiError::InvalidQuery { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Invalid query parameter")
            }
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type")
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large")
            }
            ApiError::RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found", "Route not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed"),
            // 503, not 408: the client was not slow, the server was.
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out"),
            ApiError::UpstreamUnavailable => (StatusCode::BAD_GATEWAY, "upstream_unavailable", "Upstream unavailable"),
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::Domain(CoreError::Validation { field, .. })
            | ApiError::Domain(CoreError::LimitExceeded { field, .. })
            | ApiError::InvalidBody { field, .. } => Some(field.clone()),
            ApiError::InvalidQuery { field, .. } => field.clone(),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Domain(CoreError::Validation { message, .. }) => message.clone(),
            ApiError::Domain(CoreError::LimitExceeded { what, limit, .. }) => {
                format!("{what} exceeds the limit of {limit}")
            }
            ApiError::InvalidBody { detail, .. } => detail.clone(),
            ApiError::Domain(CoreError::Store(_)) | ApiError::Internal(_) => {
                "the server failed to handle the request; it has been logged".to_owned()
            }
            ApiError::Domain(CoreError::Embedding(_)) => {
                "the embedding model failed; the request changed nothing and may be retried".to_owned()
            }
            ApiError::Domain(CoreError::Outage(_)) => {
                "the database cannot serve now (unreachable, restarting or out of resources); retry shortly".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// When to try again, for the failures a retry may cure: a backend that cannot serve now.
    fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            ApiError::Domain(CoreError::Unavailable | CoreError::Outage(_)) | ApiError::Timeout => Some(1),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.describe();
        Problem {
            problem_type: format!("urn:contextiq:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code: code.to_owned(),
            field: self.field(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut response = problem_response(problem);
        if response.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"contextiq\""));
        }
        if let Some(seconds) = self.retry_after_seconds() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if response.status().is_server_error() {
            response.extensions_mut().insert(ErrorChain(error_chain(&self)));
        }
        response
    }
}

/// The problem as its response; the problem rides along as an extension, for a protocol that
/// renders errors its own way (the Agent Engine surface).
pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(problem.clone())).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response.extensions_mut().insert(problem);
    response
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}
