//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
    pub service: String,
    pub version: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, body = HealthBody)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthBody> {
    Json(HealthBody { status: "ok", service: state.service_name.to_string(), version: env!("CARGO_PKG_VERSION") })
}

/// The store answers: ready to serve.
#[utoipa::path(get, path = "/health/ready", tag = "service",
    responses((status = 200, body = HealthBody), (status = 503, body = Problem)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthBody>, ApiError> {
    if let Err(err) = state.store.ping().await {
        tracing::warn!(error = %err, "readiness check failed");
        return Err(ApiError::Domain(contextiq_core::Error::Unavailable));
    }
    Ok(Json(HealthBody {
        status: "ready",
        service: state.service_name.to_string(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}
