//! What handlers reach: [`AppState`] for every route, [`MemoryState`] for the routes of
//! memories and jobs, which only the roles that build the memory services mount.

use std::sync::Arc;

use axum::extract::FromRef;
use contextiq_core::generation::GenerationService;
use contextiq_core::{ContextService, KeyService, MemoryService, SessionService, SessionStore};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::routes::gateway::GatewayState;

/// What every handler can reach. Cheap to clone: services and stores are behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub sessions: SessionService,
    pub keys: KeyService,
    pub authenticator: Arc<Authenticator>,
    pub store: Arc<dyn SessionStore>,
    pub metrics: PrometheusHandle,
    pub service_name: Arc<str>,
    pub body_limit: BodyLimit,
    pub clock: Arc<dyn Clock>,
    /// The gateway role's upstream services.
    pub gateway: Option<GatewayState>,
    /// The memory services, in the roles that build them.
    pub memory: Option<MemoryState>,
    /// Cancelled when the server begins to shut down: live streams end then, so they do not
    /// hold the shutdown for its whole grace period.
    pub stopping: CancellationToken,
}

/// What the routes of memories and jobs reach.
#[derive(Clone)]
pub struct MemoryState {
    pub memories: MemoryService,
    pub generation: GenerationService,
    pub context: ContextService,
    /// Wakes an idle worker (and the job relay) when a job is queued.
    pub job_queue_wake: Arc<Notify>,
    pub body_limit: BodyLimit,
    pub clock: Arc<dyn Clock>,
    /// As [`AppState::stopping`].
    pub stopping: CancellationToken,
}

/// The largest request body (`MAX_REQUEST_BODY_BYTES`), which a body extractor names when it
/// refuses one.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> BodyLimit {
        state.body_limit
    }
}

impl FromRef<MemoryState> for BodyLimit {
    fn from_ref(state: &MemoryState) -> BodyLimit {
        state.body_limit
    }
}
