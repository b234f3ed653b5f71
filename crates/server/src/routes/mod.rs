//! Routers, one module per URL prefix.

pub mod agent_engine;
pub mod context;
pub mod gateway;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod memories;
pub mod sessions;
pub mod streams;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use contextiq_core::limits;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, Problem};
use crate::extract::{QueryAllowlist, refuse_unknown_query};
use crate::plan::Routes;
use crate::state::AppState;
use agent_engine::openapi::AgentEngineDocument;

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
        sessions::get_state,
        sessions::fork_session,
        sessions::rewind_session,
        context::compact_session,
        context::assemble_context,
        streams::stream_events,
        streams::stream_job,
        memories::create_memory,
        memories::list_memories,
        memories::get_memory,
        memories::update_memory,
        memories::delete_memory,
        memories::list_revisions,
        memories::restore_memory,
        memories::search_memories,
        memories::get_profile,
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
    modifiers(&AgentEngineDocument, &SecuritySchemes),
    security(("api_key" = []), ("bearer" = [])),
    tags((name = "memories", description = "Durable facts of a scope: CRUD, revisions, hybrid search"),
        (name = "keys", description = "API keys of the caller's org (ADMIN)"),
        (name = "sessions", description = "Conversations: events in one total order, and a state dict"),
        (name = "service", description = "Health, readiness and metrics"))
)]
pub struct ApiDoc;

/// The routes of a role's plan: its part of `/api/v1` (the gateway forwards all of it), and
/// health, metrics and the API documentation on every role. The memory routes get the memory
/// services and the gateway its upstreams, both of which `state` holds when the plan built them.
/// A role serving both sessions and memories also serves MCP at `/mcp` (its `Host` header must
/// be one of the server settings' `mcp_allowed_hosts`).
pub fn router(routes: Routes, state: &AppState, server: &crate::config::ServerSettings) -> Router<AppState> {
    let router = match routes {
        Routes::Gateway => {
            let gateway = state.gateway.clone().expect("a gateway plan builds the gateway");
            let gateway = Router::new()
                .route("/api/v1/{*rest}", any(gateway::forward))
                .route("/v1beta1/{*rest}", any(gateway::forward))
                .route("/health", get(gateway::health))
                .with_state(gateway);
            Router::new().merge(gateway)
        }
        Routes::None => Router::new().route("/health", get(health::health)),
        Routes::Api { sessions, memories } => {
            let engine = || axum::middleware::from_fn(crate::auth::select_engine);
            let mut api = Router::new();
            if sessions {
                let session_routes = sessions::router().merge(streams::sessions_router());
                api = api.merge(session_routes.route_layer(engine())).merge(keys::router());
            }
            if memories {
                let memory = state.memory.clone().expect("a plan serving memories builds the memory services");
                let memory_routes =
                    memories::router().merge(jobs::router()).merge(context::router()).merge(streams::jobs_router());
                api = api.merge(memory_routes.route_layer(engine()).with_state(memory));
            }
            let mut router = Router::new()
                .nest("/api/v1", api)
                .merge(agent_engine::router(sessions, memories))
                .route("/health", get(health::health));
            if let (true, Some(memory)) = (sessions, state.memory.clone()) {
                let mcp = crate::mcp::http_service(
                    state.clone(),
                    memory,
                    server.mcp_allowed_hosts(),
                    state.body_limit.0,
                    server.request_timeout_seconds,
                );
                // Behind authentication (the app's layers) and the engine header, like /api/v1.
                router = router.merge(Router::new().nest_service("/mcp", mcp).layer(engine()));
            }
            router
        }
    };
    let openapi = ApiDoc::openapi();
    let allowlist = Arc::new(QueryAllowlist::from_openapi(&openapi, LENIENT_QUERY_ROUTES));
    router
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn_with_state(allowlist, refuse_unknown_query))
}

/// Routes that take any query: the API documentation (Swagger UI's own assets), and the
/// gateway's pass-through, whose services refuse what they do not know. Every other route
/// takes exactly the query parameters its OpenAPI operation declares.
/// The Agent Engine surface checks its own query parameters (its paths are no route templates).
const LENIENT_QUERY_ROUTES: &[&str] =
    &["/openapi.json", "/docs", "/docs/", "/docs/{*rest}", "/api/v1/{*rest}", "/v1beta1/{*path}", "/v1beta1/{*rest}"];

/// Prometheus text exposition of every metric of this process.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// The answer of a change (a PATCH, a restore) to a credential that may write but not read:
/// that the change happened, and nothing of the stored data the request did not carry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
// Only for the schema (`additionalProperties: false`), so a full body never also matches it.
#[serde(deny_unknown_fields)]
pub struct WriteReceipt {
    pub id: uuid::Uuid,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

/// Declares the two credentials (`X-API-Key`, a bearer JWT) and makes every operation
/// declare what the layers around its handler can answer, so no annotation can forget it:
/// every error is `application/problem+json`; any operation can refuse an unknown query
/// parameter (422), fail (500) or time out (503); an authenticated one (`/api/...`) can
/// refuse credentials (401), a permission (403) or a request over the rate limit (429); one
/// with a body can refuse malformed JSON (400), a body over the limit (413), a body that is
/// not JSON (415) or invalid (422); one with an `{id}` can find nothing (404). The service
/// endpoints need no credentials (the default `REQUIRE_AUTH_EXCEPTIONS`).
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        let problem_ref = || RefOr::Ref(Ref::from_schema_name("Problem"));
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(crate::error::PROBLEM_JSON, ContentBuilder::new().schema(Some(problem_ref())).build())
                    .build(),
            )
        };
        let google_error = |description: &str| {
            let schema = RefOr::Ref(Ref::from_schema_name("GoogleError"));
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            // The Agent Engine surface answers Google's error body, with Google's statuses.
            if path.starts_with(agent_engine::PATH_PREFIX) {
                let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete];
                for operation in operations.into_iter().flatten() {
                    let mut statuses = vec![
                        ("400", "INVALID_ARGUMENT: malformed JSON, a field or parameter refused, several credentials"),
                        ("401", "UNAUTHENTICATED: missing or invalid credentials"),
                        ("403", "PERMISSION_DENIED: the credential lacks the permission or the scope"),
                        ("404", "NOT_FOUND: no such resource (or not within reach), or no such method"),
                        ("429", "RESOURCE_EXHAUSTED: rate limited; see Retry-After"),
                        ("500", "INTERNAL (opaque; logged)"),
                        ("503", "UNAVAILABLE: shutting down, the database cannot serve, or timed out; see Retry-After"),
                    ];
                    if operation.request_body.is_some() {
                        statuses.push(("409", "ALREADY_EXISTS: a session or memory of that id exists"));
                    }
                    for (status, description) in statuses {
                        operation
                            .responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert_with(|| google_error(description));
                    }
                }
                continue;
            }
            let authenticated = path.starts_with("/api/");
            // The routes `auth::select_engine` serves: the engine is a header.
            let takes_engine =
                ["/api/v1/sessions", "/api/v1/memories", "/api/v1/jobs"].iter().any(|prefix| path.starts_with(prefix));
            let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
            for operation in operations.into_iter().flatten() {
                if !authenticated {
                    operation.security = Some(Vec::new());
                }
                if takes_engine {
                    let engine: utoipa::openapi::path::Parameter = serde_json::from_value(serde_json::json!({
                        "name": "X-Engine-Id", "in": "header", "required": false,
                        "description": "The reasoning engine (a partition of the org) to act on; default `default`",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$"},
                    }))
                    .expect("a header parameter");
                    operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(engine));
                }
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                // `body = Problem` in an annotation means the problem+json media type.
                for response in responses.values_mut() {
                    let RefOr::T(response) = response else { continue };
                    let is_problem = |content: &RefOr<utoipa::openapi::Content>| {
                        matches!(content, RefOr::T(content)
                            if matches!(&content.schema, Some(RefOr::Ref(schema)) if schema.ref_location.ends_with("/Problem")))
                    };
                    if let Some(content) = response.content.shift_remove("application/json") {
                        let media_type =
                            if is_problem(&content) { crate::error::PROBLEM_JSON } else { "application/json" };
                        response.content.insert(media_type.to_owned(), content);
                    }
                }
                let mut common = vec![
                    ("422", "Invalid input: a query parameter the operation does not declare, or a value it refuses"),
                    ("500", "Internal error (opaque; logged)"),
                    (
                        "503",
                        "Service unavailable (shutting down, the database cannot serve, or the request timed out); see Retry-After",
                    ),
                ];
                if authenticated {
                    common.extend([
                        // Taken before the body's 400 below: one description for both.
                        ("400", "Several credentials at once (conflicting_credentials); with a body, malformed JSON"),
                        ("401", "Missing or invalid credentials"),
                        ("403", "The credential lacks the permission"),
                        ("429", "Rate limited; see Retry-After"),
                    ]);
                }
                if has_body {
                    common.extend([
                        ("400", "Malformed JSON"),
                        ("413", "The body exceeds MAX_REQUEST_BODY_BYTES"),
                        ("415", "The body is not JSON"),
                    ]);
                }
                if path.contains('{') {
                    common.push(("404", "No such resource (or not within the credential's reach)"));
                }
                for (status, description) in common {
                    responses.entry(status.to_owned()).or_insert_with(|| problem(description));
                }
            }
        }
    }
}

// Schemas of the text rules of `core`, so the document bounds what the server accepts: ids,
// names and scope values are 1 to 256 characters, not blank, without control characters
// (Unicode Cc); a scope is 1 to 32 such values under keys of 1 to 64 characters.

/// A character that is not a control character.
const PRINTABLE: &str = r"[^\u0000-\u001f\u007f-\u009f]";
/// A character that is neither a control character nor white space (what `str::trim` removes).
const VISIBLE: &str = r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

fn text_schema(max_chars: usize, nullable: bool) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let schema_type =
        if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { SchemaType::Type(Type::String) };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(format!("^{PRINTABLE}*{VISIBLE}{PRINTABLE}*$")))
        .build()
}

/// An id or name: 1 to 256 characters, not blank, no control characters.
pub(crate) fn id_text() -> utoipa::openapi::Object {
    text_schema(limits::MAX_ID_CHARS, false)
}

/// [`id_text`], or null.
pub(crate) fn optional_id_text() -> utoipa::openapi::Object {
    text_schema(limits::MAX_ID_CHARS, true)
}

/// A name of at most `max_chars` characters, not blank (control characters allowed).
pub(crate) fn not_blank(max_chars: usize, nullable: bool) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let schema_type =
        if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { SchemaType::Type(Type::String) };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(r"[^\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"))
        .build()
}

fn scope_schema_of(nullable: bool) -> utoipa::openapi::Object {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
    let schema_type =
        if nullable { SchemaType::from_iter([Type::Object, Type::Null]) } else { SchemaType::Type(Type::Object) };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .description(Some("Flat string-to-string dict: 1 to 32 keys of 1 to 64 characters"))
        .min_properties(Some(1))
        .max_properties(Some(limits::MAX_SCOPE_KEYS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(limits::MAX_SCOPE_KEY_CHARS)),
        ))
        .additional_properties(Some(RefOr::T(Schema::Object(id_text()))))
        .build()
}

/// A scope in a request.
pub(crate) fn scope_schema() -> utoipa::openapi::Object {
    scope_schema_of(false)
}

/// [`scope_schema`], or null.
pub(crate) fn optional_scope_schema() -> utoipa::openapi::Object {
    scope_schema_of(true)
}

/// Any JSON value but null.
pub(crate) fn any_but_null() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Number, Type::Boolean, Type::Object, Type::Array]))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The maxima the document declares in schema annotations are the limits `core` checks.
    #[test]
    fn declared_maxima_are_the_core_limits() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let expected = |name: &str| match name {
            "ttl_seconds" | "expires_in_seconds" => Some(limits::MAX_TTL_SECONDS as f64),
            "rate_limit_per_second" => Some(f64::from(limits::MAX_RATE_PER_SECOND)),
            "top_k" => Some(f64::from(limits::MAX_TOP_K)),
            _ => None,
        };
        let mut n_checked = 0;
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for (schema_name, schema) in schemas {
            let Some(properties) = schema["properties"].as_object() else { continue };
            for (name, property) in properties {
                let (Some(expected), Some(maximum)) = (expected(name), property["maximum"].as_f64()) else { continue };
                assert_eq!(maximum, expected, "{schema_name}.{name}");
                n_checked += 1;
            }
        }
        assert!(n_checked >= 4, "only {n_checked} maxima found");
    }
}
