//! Routers, one module per URL prefix.

pub mod health;
pub mod sessions;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, Problem};
use crate::startup::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ContextIQ",
        description = "Sessions (the event log and state of a conversation) and memory for AI agents. \
            Every error is application/problem+json with a stable `code`."
    ),
    paths(
        sessions::create_session,
        sessions::list_sessions,
        sessions::get_session,
        sessions::delete_session,
        sessions::append_events,
        sessions::list_events,
        sessions::patch_state,
        health::health,
        health::ready,
        metrics,
    ),
    components(schemas(Problem, sessions::AppendEventsRequest, sessions::EventBatch)),
    tags((name = "sessions", description = "Conversations: events in one total order, and a state dict"),
        (name = "service", description = "Health, readiness and metrics"))
)]
pub struct ApiDoc;

/// Every route of the `all` role.
pub fn router() -> Router<AppState> {
    Router::new()
        .nest("/api/v1", sessions::router())
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(route_not_found)
}

/// Prometheus text exposition of every metric of this process.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}
