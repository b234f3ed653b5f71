//! Errors as Google's clients parse them: `{"error": {"code", "message", "status"}}` with
//! Google's canonical status names, rendered from the problem every error of this server
//! already is (so the one table in `error.rs` still decides what an error is).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Problem;

/// The HTTP status and Google's status name for a problem's status: 422 is Google's 400
/// `INVALID_ARGUMENT`, a method a route lacks is a route not found.
pub fn google_status(status: u16) -> (StatusCode, &'static str) {
    match status {
        400 | 413 | 415 | 422 => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        401 => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        403 => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        404 | 405 => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        409 => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        429 => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        502 | 503 => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        504 => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    }
}

/// The Google error body of `problem`, with our stable code and the field at fault as an
/// `ErrorInfo` detail.
pub fn google_body(problem: &Problem) -> (StatusCode, serde_json::Value) {
    let (status, name) = google_status(problem.status);
    let message = match &problem.field {
        Some(field) if !problem.detail.starts_with(field.as_str()) => format!("{field}: {}", problem.detail),
        _ => problem.detail.clone(),
    };
    let mut metadata = serde_json::Map::new();
    if let Some(field) = &problem.field {
        metadata.insert("field".to_owned(), json!(field));
    }
    let body = json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "status": name,
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": problem.code.to_uppercase(),
            "domain": "contextiq",
            "metadata": metadata,
        }],
    }});
    (status, body)
}

/// An error of this server as Google's error body; answers that are no problem pass unchanged.
pub fn google_error(response: Response) -> Response {
    let Some(problem) = response.extensions().get::<Problem>().cloned() else { return response };
    let (mut parts, _) = response.into_parts();
    let (status, body) = google_body(&problem);
    let (new_parts, body) = (status, Json(body)).into_response().into_parts();
    // Keep Retry-After, WWW-Authenticate, the rate-limit headers and the extensions (the
    // error chain the log line reads).
    parts.status = new_parts.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_google_statuses() {
        let problem = Problem {
            problem_type: "urn:contextiq:problem:validation_failed".to_owned(),
            title: "Validation failed".to_owned(),
            status: 422,
            detail: "must be a string".to_owned(),
            code: "validation_failed".to_owned(),
            field: Some("userId".to_owned()),
        };
        let (status, body) = google_body(&problem);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(body["error"]["message"], "userId: must be a string");
        assert_eq!(body["error"]["details"][0]["reason"], "VALIDATION_FAILED");
        for (status, name) in
            [(404, "NOT_FOUND"), (401, "UNAUTHENTICATED"), (429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")]
        {
            assert_eq!(google_status(status).1, name);
        }
    }
}
