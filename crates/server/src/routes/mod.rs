//! Routers, one module per URL prefix.

pub mod gateway;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod memories;
pub mod sessions;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Role;
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
        memories::create_memory,
        memories::list_memories,
        memories::get_memory,
        memories::update_memory,
        memories::delete_memory,
        memories::list_revisions,
        memories::restore_memory,
        memories::search_memories,
        jobs::generate_memories,
        jobs::get_job,
        keys::create_key,
        keys::list_keys,
        keys::get_key,
        keys::revoke_key,
        health::health,
        health::ready,
        metrics,
    ),
    components(schemas(Problem, sessions::AppendEventsRequest, sessions::EventBatch)),
    modifiers(&SecuritySchemes),
    security(("api_key" = []), ("bearer" = [])),
    tags((name = "memories", description = "Durable facts of a scope: CRUD, revisions, hybrid search"),
        (name = "keys", description = "API keys of the caller's org (ADMIN)"),
        (name = "sessions", description = "Conversations: events in one total order, and a state dict"),
        (name = "service", description = "Health, readiness and metrics"))
)]
pub struct ApiDoc;

/// The routes a role serves: its part of `/api/v1` (the gateway forwards all of it), and
/// health, metrics and the API documentation on every role.
pub fn router(role: Role) -> Router<AppState> {
    let mut api = Router::new();
    if role.serves_sessions() {
        api = api.merge(sessions::router()).merge(keys::router());
    }
    if role.serves_memories() {
        api = api.merge(memories::router()).merge(jobs::router());
    }
    let router = match role {
        Role::Gateway => {
            Router::new().route("/api/v1/{*rest}", any(gateway::forward)).route("/health", get(gateway::health))
        }
        Role::Worker => Router::new().route("/health", get(health::health)),
        _ => Router::new().nest("/api/v1", api).route("/health", get(health::health)),
    };
    router
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

/// The answer of a change (a PATCH, a restore) to a credential that may write but not read:
/// that the change happened, and nothing of the stored data the request did not carry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WriteReceipt {
    pub id: uuid::Uuid,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

/// Declares the two credentials (`X-API-Key`, a bearer JWT) and adds the responses every
/// authenticated operation can give (401, 403, 429) to each of them.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        let problem = |description: &str| {
            utoipa::openapi::ResponseBuilder::new()
                .description(description)
                .content(
                    crate::error::PROBLEM_JSON,
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert("401".to_owned(), problem("Missing or invalid credentials").into());
                responses.insert("403".to_owned(), problem("The credential lacks the permission").into());
                responses.insert("429".to_owned(), problem("Rate limited; see Retry-After").into());
            }
        }
    }
}
