//! The composition root: [`Application`] builds one role of the server from [`Settings`] (the
//! role's [`Plan`] says which routes, components and background tasks) and runs it until told
//! to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use contextiq_core::generation::broker::JobBroker;
use contextiq_core::{
    ContextService, Embedder, KeyService, NewApiKey, OrgId, Permission, SessionLimits, SessionService,
};
use contextiq_queue_rabbitmq::RabbitBroker;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Authenticator;
use crate::backends::{
    ExternalVectors, Stores, build_embedder, generation_service, memory_service, open_stores, prepare_vector_index,
};
use crate::background::{Pass, Schedule, spawn_periodic};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::plan::{Plan, Task};
use crate::routes::gateway::{Gateway, GatewayState};
use crate::state::{AppState, BodyLimit, MemoryState};
use crate::worker::WorkerOptions;
use crate::{auth, backends, middleware, routes, telemetry};

/// The file in the data directory that receives the first admin key.
pub const ADMIN_KEY_FILE: &str = "admin-key.txt";

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    /// What the handlers reach, for the MCP server over stdio.
    state: AppState,
    plan: Plan,
    stores: Stores,
    memory: Option<MemoryState>,
    broker: Option<Arc<RabbitBroker>>,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

/// [`Application::build`] with some components given instead of built from the settings: an
/// embedding model (tests that do not test search use a cheap one) and a clock (tests move it
/// instead of sleeping).
pub struct ApplicationBuilder {
    settings: Settings,
    embedder: Option<Arc<dyn Embedder>>,
    clock: Arc<dyn Clock>,
    stdout_reserved: bool,
}

impl ApplicationBuilder {
    /// The embedding model, instead of the one `EMBEDDING_PROVIDER` names.
    pub fn embedder(self, embedder: Arc<dyn Embedder>) -> ApplicationBuilder {
        ApplicationBuilder { embedder: Some(embedder), ..self }
    }

    /// Stdout carries a protocol (`contextiq mcp`): the first start's admin key goes to stderr.
    pub fn stdout_reserved(self) -> ApplicationBuilder {
        ApplicationBuilder { stdout_reserved: true, ..self }
    }

    /// The clock every handler, worker and background task reads.
    pub fn clock(self, clock: Arc<dyn Clock>) -> ApplicationBuilder {
        ApplicationBuilder { clock, ..self }
    }

    /// Opens the backends the role needs and binds the listener (port 0 picks a free port);
    /// serves nothing yet.
    pub async fn build(self) -> anyhow::Result<Application> {
        let ApplicationBuilder { settings, embedder, clock, stdout_reserved } = self;
        contextiq_models::use_ring_for_tls();
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let plan = settings.server.role.plan();
        let metrics = telemetry::metrics_handle(&settings.service_name);
        let stores = open_stores(&settings).await?;
        let keys = KeyService::new(stores.keys.clone());
        let body_limit = BodyLimit(settings.limits.max_body_bytes);
        let limits = SessionLimits {
            max_events_per_request: settings.sessions.max_events_per_request,
            max_state_bytes: settings.sessions.max_state_bytes,
            default_ttl_seconds: settings.sessions.default_ttl_seconds,
            tokenizer: settings.sessions.tokenizer,
            compaction_policy: settings.sessions.compaction_policy(),
            ..SessionLimits::default()
        };
        let sessions = SessionService::new(stores.sessions.clone(), limits)
            .with_compaction_jobs(stores.jobs.clone(), settings.worker.max_attempts);
        let stopping = CancellationToken::new();
        let memory = match plan.memory_services {
            true => {
                let embedder = match embedder {
                    Some(embedder) => embedder,
                    None => build_embedder(&settings).await?,
                };
                let components = MemoryComponents {
                    embedder,
                    body_limit,
                    clock: clock.clone(),
                    sessions: sessions.clone(),
                    stopping: stopping.clone(),
                };
                Some(memory_components(&settings, &stores, components).await?)
            }
            false => None,
        };
        let consume = plan.runs(Task::Workers) && settings.worker.concurrency > 0;
        let broker = backends::connect_broker(&settings, consume).await?;
        bootstrap_admin_key(&settings, &keys, clock.as_ref(), stdout_reserved).await?;
        let mut authenticator =
            Authenticator::new(&settings.auth, keys.clone(), backends::rate_limiter(&settings).await?, clock.clone());
        if !plan.rate_limits {
            authenticator = authenticator.without_rate_limits();
        }
        let gateway = match plan.routes {
            crate::plan::Routes::Gateway => Some(GatewayState {
                gateway: gateway(&settings)?,
                service_name: settings.service_name.as_str().into(),
                max_body_bytes: settings.limits.max_body_bytes,
            }),
            _ => None,
        };
        let state = AppState {
            sessions,
            keys,
            authenticator: Arc::new(authenticator),
            store: stores.sessions.clone(),
            metrics,
            service_name: settings.service_name.as_str().into(),
            body_limit,
            clock: clock.clone(),
            gateway,
            memory: memory.clone(),
            stopping,
        };
        let router = app_router(state.clone(), &settings);
        let listener = TcpListener::bind(&settings.server.bind)
            .await
            .with_context(|| format!("failed to bind {}", settings.server.bind))?;
        let local_addr = listener.local_addr()?;
        Ok(Application { listener, local_addr, router, state, plan, stores, memory, broker, clock, settings })
    }
}

/// What the memory services are built from, beside the settings and stores.
struct MemoryComponents {
    embedder: Arc<dyn Embedder>,
    body_limit: BodyLimit,
    clock: Arc<dyn Clock>,
    sessions: SessionService,
    stopping: CancellationToken,
}

/// The memory, generation and context services on `embedder`, with the vector index readied
/// for it.
async fn memory_components(
    settings: &Settings,
    stores: &Stores,
    parts: MemoryComponents,
) -> anyhow::Result<MemoryState> {
    let MemoryComponents { embedder, body_limit, clock, sessions, stopping } = parts;
    let memories = memory_service(settings, stores, embedder.clone()).await?;
    prepare_vector_index(stores, embedder.dimension()).await?;
    let generation = generation_service(settings, stores, embedder)?;
    let context = ContextService::new(sessions, memories.clone());
    let job_queue_wake = Arc::new(Notify::new());
    Ok(MemoryState { memories, generation, context, job_queue_wake, body_limit, clock, stopping })
}

/// The gateway role's view of the services behind it.
fn gateway(settings: &Settings) -> anyhow::Result<Arc<Gateway>> {
    let (Some(sessions), Some(memory)) = (&settings.gateway.sessions_url, &settings.gateway.memory_url) else {
        anyhow::bail!("the gateway role needs SESSIONS_URL and MEMORY_URL");
    };
    let timeout = Duration::from_secs(settings.server.request_timeout_seconds.max(1));
    Ok(Arc::new(Gateway::new(sessions, memory, timeout)?))
}

/// On first start with authentication on and no keys at all, creates an admin key of the
/// default org, prints it once to the terminal and saves it in a 0600 file. Never logged.
async fn bootstrap_admin_key(
    settings: &Settings,
    keys: &KeyService,
    clock: &dyn Clock,
    stdout_reserved: bool,
) -> anyhow::Result<()> {
    if !settings.auth.require_auth || keys.count().await? > 0 {
        return Ok(());
    }
    let new = NewApiKey {
        org_id: OrgId::default_org(),
        name: "bootstrap-admin".to_owned(),
        permissions: Permission::ALL.into(),
        scope: None,
        rate_limit_per_second: None,
        expires_at: None,
        parent_id: None,
    };
    let (key, record) = keys.create(new, clock.now()).await?;
    std::fs::create_dir_all(&settings.data_dir)?;
    let path = settings.data_dir.join(ADMIN_KEY_FILE);
    write_private_file(&path, &format!("{key}\n"))
        .with_context(|| format!("failed to save the first admin key to {}", path.display()))?;
    // On stdout, not in the logs (stderr): logs are shipped and kept, this must not be.
    let notice = format!(
        "\n  First start: created an admin API key (org \"default\", all permissions).\n  \
         It is shown this once and saved in {path}:\n\n      {key}\n\n  \
         Send it as the X-API-Key header. Create narrower keys with `contextiq keys create`.\n",
        path = path.display()
    );
    match stdout_reserved {
        // Stdout is a protocol's and an MCP host keeps stderr in its logs: only where the key is.
        true => eprintln!(
            "First start: created an admin API key (org \"default\", all permissions), saved in {}",
            path.display()
        ),
        false => println!("{notice}"),
    }
    tracing::info!(key_id = %record.id, path = %path.display(), "created the first admin key");
    Ok(())
}

fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

impl Application {
    /// Builds the role the settings name, with every component built from them.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::builder(settings).build().await
    }

    /// Builds the role the settings name, with components given in place of some.
    pub fn builder(settings: Settings) -> ApplicationBuilder {
        ApplicationBuilder { settings, embedder: None, clock: Arc::new(SystemClock), stdout_reserved: false }
    }

    /// What the handlers reach (the MCP server over stdio serves from it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (up to the configured grace period), stops background tasks and closes the store.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, local_addr, router, state, plan, stores, memory, broker, clock, settings } = self;
        let background = CancellationToken::new();
        let tasks = BackgroundTasks {
            plan,
            settings: &settings,
            stores: &stores,
            memory: memory.as_ref(),
            broker: broker.clone().map(|broker| broker as Arc<dyn JobBroker>),
            clock,
            cancel: background.clone(),
        };
        let (background_tasks, workers) = tasks.spawn();

        let stopping = state.stopping.clone();
        let grace = Duration::from_secs(settings.server.shutdown_timeout_seconds);
        // The peer's address keys the rate limit of requests without credentials.
        let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(listener, router).with_graceful_shutdown({
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, finishing in-flight requests");
                stopping.cancel();
            }
        });
        tracing::info!(address = %local_addr, role = settings.server.role.as_str(), "listening");
        let served = tokio::select! {
            served = serve.into_future() => served.context("the server failed"),
            () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests outlived the grace period");
                Ok(())
            }
        };

        background.cancel();
        for task in background_tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "a background task failed");
            }
        }
        // Running jobs get the grace period to finish; one cut short is taken over, after its
        // lease lapses, by the next worker to run (its changes commit all at once or not at all).
        let finishing = futures::future::join_all(workers);
        if tokio::time::timeout(grace, finishing).await.is_err() {
            tracing::warn!("generation jobs outlived the grace period; they will run again after a restart");
        }
        if let Some(broker) = broker {
            broker.close().await;
        }
        stores.sessions.close().await;
        tracing::info!("stopped");
        served
    }
}

/// What the background tasks of a role run on.
struct BackgroundTasks<'a> {
    plan: Plan,
    settings: &'a Settings,
    stores: &'a Stores,
    memory: Option<&'a MemoryState>,
    broker: Option<Arc<dyn JobBroker>>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
}

impl BackgroundTasks<'_> {
    /// Starts every task of the plan whose backend is configured: the periodic loops, then the
    /// workers (returned apart: they get the grace period to finish their jobs).
    fn spawn(self) -> (Vec<JoinHandle<()>>, Vec<JoinHandle<()>>) {
        let (plan, settings) = (self.plan, self.settings);
        let worker_options = WorkerOptions {
            concurrency: if plan.runs(Task::Workers) { settings.worker.concurrency } else { 0 },
            lease: Duration::from_secs(settings.worker.lease_seconds),
            poll_interval: Duration::from_millis(settings.worker.poll_interval_ms),
        };
        let mut loops = Vec::new();
        let mut workers = Vec::new();
        for task in plan.tasks {
            match task {
                Task::Workers => {
                    let Some(memory) = self.memory else { continue };
                    workers = crate::worker::spawn_workers(
                        memory.generation.clone(),
                        self.broker.clone(),
                        memory.job_queue_wake.clone(),
                        self.clock.clone(),
                        worker_options,
                        self.cancel.clone(),
                    );
                }
                Task::JobRelay => {
                    let (Some(memory), Some(broker)) = (self.memory, &self.broker) else { continue };
                    loops.push(crate::worker::spawn_relay(
                        memory.generation.clone(),
                        broker.clone(),
                        memory.job_queue_wake.clone(),
                        self.clock.clone(),
                        worker_options,
                        self.cancel.clone(),
                    ));
                }
                Task::VectorRelay => {
                    let Some(vectors) = self.stores.vectors.clone() else { continue };
                    loops.push(relay_vectors(vectors, self.cancel.clone()));
                }
                Task::PurgeSessions => {
                    let store = self.stores.sessions.clone();
                    let interval = settings.sessions.purge_interval_seconds;
                    loops.push(self.purge("sessions", interval, move |now, batch| {
                        let store = store.clone();
                        async move { store.purge_expired_sessions(now, batch).await }
                    }));
                }
                Task::PurgeMemories => {
                    let store = self.stores.memories.clone();
                    let interval = settings.search.purge_interval_seconds;
                    loops.push(self.purge("memories", interval, move |now, batch| {
                        let store = store.clone();
                        async move { store.purge_expired_memories(now, batch).await }
                    }));
                }
                Task::PurgeJobs => {
                    let jobs = self.stores.jobs.clone();
                    let retention =
                        chrono::Duration::seconds(settings.worker.job_retention_seconds.min(i64::MAX as u64) as i64);
                    let interval = settings.jobs.purge_interval_seconds;
                    loops.push(self.purge("jobs", interval, move |now, batch| {
                        let jobs = jobs.clone();
                        async move { jobs.purge_finished_jobs(now - retention, batch).await.map(|ids| ids.len() as u64) }
                    }));
                }
            }
        }
        (loops, workers)
    }

    /// Deletes expired rows every `interval_seconds`, in batches. Reads already hide them;
    /// this reclaims space.
    fn purge<F, Fut>(&self, what: &'static str, interval_seconds: u64, purge: F) -> JoinHandle<()>
    where
        F: Fn(chrono::DateTime<chrono::Utc>, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = contextiq_core::Result<u64>> + Send,
    {
        const BATCH: u32 = 500;
        let purge = Arc::new(purge);
        let clock = self.clock.clone();
        let schedule = Schedule::every(Duration::from_secs(interval_seconds));
        spawn_periodic(what, schedule, self.cancel.clone(), move || {
            let (purge, clock) = (purge.clone(), clock.clone());
            async move {
                match purge(clock.now(), BATCH).await {
                    Ok(n_purged) => {
                        if n_purged > 0 {
                            metrics::counter!(format!("{what}_purged_total")).increment(n_purged);
                            tracing::info!(n_purged, what, "purged expired rows");
                        }
                        if n_purged < u64::from(BATCH) { Pass::Done } else { Pass::More }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, what, "purging expired rows failed; will retry");
                        Pass::Done
                    }
                }
            }
        })
    }
}

/// Brings the external vector index up to date with the primary store's outbox every second:
/// the writes it missed while unreachable, and memories that left without a request (expiry).
fn relay_vectors(vectors: ExternalVectors, cancel: CancellationToken) -> JoinHandle<()> {
    const BATCH: u32 = 256;
    // Entries younger than this belong to writes still mirroring themselves.
    let grace = chrono::Duration::seconds(5);
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_periodic("vector relay", Schedule::every(Duration::from_secs(1)), cancel, move || {
        let (vectors, failing) = (vectors.clone(), failing.clone());
        async move {
            use std::sync::atomic::Ordering;
            let synced = contextiq_core::vector_index::sync_pending(
                vectors.outbox.as_ref(),
                vectors.index.as_ref(),
                chrono::Utc::now(),
                grace,
                BATCH,
            )
            .await;
            match synced {
                Ok(n_synced) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("the vector index is reachable again");
                    }
                    metrics::counter!("vector_outbox_synced_total").increment(n_synced as u64);
                    if n_synced < BATCH as usize { Pass::Done } else { Pass::More }
                }
                Err(err) => {
                    metrics::counter!("vector_index_errors_total").increment(1);
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %err, "the vector index is behind the store; retrying every second");
                    }
                    Pass::Done
                }
            }
        }
    })
}

/// The router with every layer, for `Application` and for in-process handler tests.
pub fn app_router(state: AppState, settings: &Settings) -> Router {
    // Layers wrap outwards: the last added runs first.
    let mut router = routes::router(settings.server.role.plan().routes, &state, &settings.server)
        .layer(DefaultBodyLimit::max(settings.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.authenticator.clone(), auth::authenticate))
        .layer(CatchPanicLayer::new());
    if settings.server.request_timeout_seconds > 0 {
        router = router.layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(settings.server.request_timeout_seconds),
        ));
    }
    let router = router.layer(axum::middleware::from_fn(middleware::observe));
    // Outermost: a browser's preflight gets its answer without credentials.
    match crate::routes::gateway::cors_layer(&settings.gateway.cors_origins) {
        Some(cors) => router.layer(cors).with_state(state),
        None => router.with_state(state),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
