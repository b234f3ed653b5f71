//! Building the application from [`Settings`] and running it until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use contextiq_cache_redis::{RedisCache, RedisOptions, RedisRateLimiter};
use contextiq_core::cached::{CacheLayer, CachedMemoryStore, CachedSessionStore};
use contextiq_core::generation::broker::JobBroker;
use contextiq_core::generation::{GenerationService, GenerationSettings, JobStore};
use contextiq_core::vector_index::{VectorIndex, VectorOutbox};
use contextiq_core::{
    Embedder, InProcessRateLimiter, IndexedMemoryStore, KeyService, KeyStore, MemoryService, MemoryStore, NewApiKey,
    OrgId, Permission, RateLimiter, SessionLimits, SessionService, SessionStore,
};
use contextiq_models::{LocalEmbedder, OpenAiEmbedder, OpenAiOptions};
use contextiq_queue_rabbitmq::{RabbitBroker, RabbitOptions};
use contextiq_store_postgres::{PostgresOptions, PostgresStore};
use contextiq_store_sqlite::{SqliteOptions, SqliteStore};
use contextiq_vector_qdrant::{QdrantIndex, QdrantOptions};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Authenticator;
use crate::config::{Role, Settings, StoreLocation};
use crate::routes::gateway::Gateway;
use crate::worker::WorkerOptions;
use crate::{auth, middleware, routes, telemetry};

/// What every handler can reach. Cheap to clone: services and stores are behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub sessions: SessionService,
    pub memories: MemoryService,
    pub keys: KeyService,
    pub authenticator: Arc<Authenticator>,
    pub store: Arc<dyn SessionStore>,
    pub metrics: PrometheusHandle,
    pub service_name: Arc<str>,
    pub max_body_bytes: usize,
    pub generation: GenerationService,
    /// Wakes an idle worker when a job is queued.
    pub job_queue_wake: Arc<Notify>,
    /// The gateway role's upstream services.
    pub gateway: Option<Arc<Gateway>>,
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    store: Arc<dyn SessionStore>,
    memory_store: Arc<dyn MemoryStore>,
    generation: GenerationService,
    job_queue_wake: Arc<Notify>,
    broker: Option<Arc<RabbitBroker>>,
    vectors: Option<ExternalVectors>,
    settings: Settings,
}

/// The primary store, seen through each of its traits.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub keys: Arc<dyn KeyStore>,
    pub memories: Arc<dyn MemoryStore>,
    pub jobs: Arc<dyn JobStore>,
    /// The shared cache the stores read through (Redis), when one is configured.
    pub cache: Option<CacheLayer>,
    /// The external vector index (Qdrant) and the primary store's outbox feeding it, when one
    /// is configured; `memories` then searches vectors there.
    pub vectors: Option<ExternalVectors>,
}

#[derive(Clone)]
pub struct ExternalVectors {
    pub index: Arc<dyn VectorIndex>,
    pub outbox: Arc<dyn VectorOutbox>,
}

impl Stores {
    /// One backend behind every store trait, with no cache.
    fn of<S: SessionStore + KeyStore + MemoryStore + JobStore + VectorOutbox>(
        store: Arc<S>,
        index: Option<Arc<dyn VectorIndex>>,
    ) -> Stores {
        let Some(index) = index else {
            return Stores {
                sessions: store.clone(),
                keys: store.clone(),
                memories: store.clone(),
                jobs: store,
                cache: None,
                vectors: None,
            };
        };
        let outbox: Arc<dyn VectorOutbox> = store.clone();
        let indexed = Arc::new(IndexedMemoryStore::new(store.clone(), outbox.clone(), index.clone()));
        Stores {
            sessions: store.clone(),
            keys: store,
            memories: indexed.clone(),
            jobs: indexed,
            cache: None,
            vectors: Some(ExternalVectors { index, outbox }),
        }
    }
}

/// The file in the data directory that receives the first admin key.
pub const ADMIN_KEY_FILE: &str = "admin-key.txt";

/// Opens the configured primary store (applying migrations), read through the Redis cache when
/// `REDIS_URL` is set.
pub async fn open_stores(settings: &Settings) -> anyhow::Result<Stores> {
    let stores = open_primary_store(settings).await?;
    let Some(url) = &settings.redis.url else { return Ok(stores) };
    let cache = RedisCache::connect(url.expose_secret(), redis_options(settings))
        .map_err(|err| anyhow::anyhow!("failed to connect to Redis: {err}"))?;
    // A write whose request timed out still invalidates what it changed, in the background.
    let cache = CacheLayer::new(Arc::new(cache), Arc::new(|invalidation| drop(tokio::spawn(invalidation))));
    let memories = Arc::new(CachedMemoryStore::new(stores.jobs, cache.clone()));
    Ok(Stores {
        sessions: Arc::new(CachedSessionStore::new(stores.sessions, cache.clone())),
        keys: stores.keys,
        memories: memories.clone(),
        jobs: memories,
        cache: Some(cache),
        vectors: stores.vectors,
    })
}

fn redis_options(settings: &Settings) -> RedisOptions {
    RedisOptions {
        key_prefix: settings.redis.key_prefix.clone(),
        timeout: Duration::try_from_secs_f64(settings.redis.socket_timeout).unwrap_or(Duration::from_secs(5)),
        ..RedisOptions::default()
    }
}

/// Token buckets per credential: shared through Redis when it is configured (falling back to
/// this process's buckets while Redis is unreachable), else in this process.
async fn rate_limiter(settings: &Settings) -> anyhow::Result<Arc<dyn RateLimiter>> {
    let Some(url) = &settings.redis.url else { return Ok(Arc::new(InProcessRateLimiter::default())) };
    let limiter = RedisRateLimiter::connect(url.expose_secret(), redis_options(settings))
        .map_err(|err| anyhow::anyhow!("failed to connect to Redis: {err}"))?;
    Ok(Arc::new(limiter))
}

/// The gateway role's view of the services behind it.
fn gateway(settings: &Settings) -> anyhow::Result<Option<Arc<Gateway>>> {
    if settings.server.role != Role::Gateway {
        return Ok(None);
    }
    let (Some(sessions), Some(memory)) = (&settings.gateway.sessions_url, &settings.gateway.memory_url) else {
        anyhow::bail!("the gateway role needs SESSIONS_URL and MEMORY_URL");
    };
    let timeout = Duration::from_secs(settings.server.request_timeout_seconds.max(1));
    Ok(Some(Arc::new(Gateway::new(sessions, memory, timeout)?)))
}

/// The message broker of generation jobs, when `RABBITMQ_URL` is set: this process consumes
/// when it runs workers.
async fn connect_broker(settings: &Settings) -> anyhow::Result<Option<Arc<RabbitBroker>>> {
    let Some(url) = &settings.rabbitmq.url else { return Ok(None) };
    let options = RabbitOptions {
        prefetch: settings.worker.prefetch_count.max(1),
        heartbeat_seconds: settings.rabbitmq.heartbeat,
        connection_attempts: settings.rabbitmq.connection_attempts.max(1),
        queue_prefix: settings.rabbitmq.queue_prefix.clone(),
        consume: settings.server.role.runs_workers() && settings.worker.concurrency > 0,
    };
    let broker = RabbitBroker::connect(url.expose_secret(), options)
        .await
        .map_err(|err| anyhow::anyhow!("failed to connect to RabbitMQ: {err}"))?;
    Ok(Some(Arc::new(broker)))
}

/// The Qdrant index, when `QDRANT_URL` is set. Connects lazily: nothing is asked of Qdrant yet.
fn vector_index(settings: &Settings) -> anyhow::Result<Option<Arc<dyn VectorIndex>>> {
    let Some(options) = qdrant_options(settings)? else { return Ok(None) };
    let index = QdrantIndex::connect(options).map_err(|err| anyhow::anyhow!("failed to set up Qdrant: {err}"))?;
    Ok(Some(Arc::new(index)))
}

/// The Qdrant client's options from `QDRANT_*`, when `QDRANT_URL` is set.
pub fn qdrant_options(settings: &Settings) -> anyhow::Result<Option<QdrantOptions>> {
    let Some(url) = settings.qdrant.grpc_url()? else { return Ok(None) };
    let qdrant = &settings.qdrant;
    let options = QdrantOptions {
        api_key: qdrant.api_key.as_ref().map(|key| key.expose_secret().to_owned()),
        timeout: Duration::try_from_secs_f64(qdrant.timeout).unwrap_or(Duration::from_secs(60)),
        collection: qdrant.collection.clone(),
        hnsw_m: qdrant.hnsw_m,
        hnsw_ef_construct: qdrant.hnsw_ef_construct,
        full_scan_threshold: qdrant.full_scan_threshold,
        search_hnsw_ef: qdrant.search_hnsw_ef,
        ..QdrantOptions::new(url)
    };
    Ok(Some(options))
}

async fn open_primary_store(settings: &Settings) -> anyhow::Result<Stores> {
    let index = vector_index(settings)?;
    let vector_outbox = index.is_some();
    match settings.store_location()? {
        StoreLocation::Sqlite(path) => {
            let options = SqliteOptions {
                path: path.clone(),
                read_pool_size: settings.database.pool_size,
                durability: settings.sqlite_durability()?,
                max_write_batch: settings.database.max_write_batch,
                vector_outbox,
            };
            let store = SqliteStore::open(&options)
                .await
                .with_context(|| format!("failed to open the SQLite database {}", path.display()))?;
            Ok(Stores::of(Arc::new(store), index))
        }
        StoreLocation::Postgres(url) => {
            let database = &settings.database;
            let options = PostgresOptions {
                url,
                pool_size: database.pool_size,
                max_overflow: database.max_overflow,
                pool_recycle: Duration::from_secs(database.pool_recycle.max(1)),
                vector_outbox,
                ..PostgresOptions::new("")
            };
            let store = PostgresStore::open(&options)
                .await
                .map_err(|err| anyhow::anyhow!("failed to open the PostgreSQL database: {err}"))?;
            Ok(Stores::of(Arc::new(store), index))
        }
    }
}

/// The configured embedding model, loaded (local) or connected (openai).
pub async fn build_embedder(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    let embedding = &settings.embedding;
    match embedding.provider.as_str() {
        "openai" => {
            let options = OpenAiOptions {
                base_url: embedding.base_url.clone(),
                model: embedding.model.clone(),
                api_key: embedding.api_key.clone().or_else(|| embedding.openai_api_key.clone()),
                dimension: embedding.dimension,
                send_dimensions: embedding.send_dimensions,
                batch_size: 64,
            };
            Ok(Arc::new(OpenAiEmbedder::new(options)?))
        }
        _ => {
            let path = embedding.model_path.clone();
            let embedder = tokio::task::spawn_blocking(move || LocalEmbedder::load(&path)).await??;
            Ok(Arc::new(embedder))
        }
    }
}

/// The memory service on the configured store and model, refusing a model change that would
/// mix vectors.
pub async fn memory_service(
    settings: &Settings,
    stores: &Stores,
    embedder: Arc<dyn Embedder>,
) -> anyhow::Result<MemoryService> {
    let search = contextiq_core::SearchSettings {
        lexical_weight: settings.search.lexical_weight,
        candidates: settings.search.candidates,
    };
    let mut memories = MemoryService::new(stores.memories.clone(), embedder, search);
    if let Some(cache) = &stores.cache {
        memories = memories.with_ranking_cache(cache.clone());
    }
    memories.check_embedding_model().await.map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(memories)
}

/// Readies the external vector index for the model's vectors. A collection created now on a
/// store that already has memories (Qdrant newly configured) is filled from the store first.
pub async fn prepare_vector_index(stores: &Stores, dimension: usize) -> anyhow::Result<()> {
    let Some(vectors) = &stores.vectors else { return Ok(()) };
    let created = vectors.index.ensure(dimension).await.map_err(|err| anyhow::anyhow!("Qdrant: {err}"))?;
    if created && stores.memories.count_memories().await? > 0 {
        tracing::info!("the vector collection is new: copying every memory's vector into it");
        let copied = contextiq_core::vector_index::copy_all_vectors(
            vectors.outbox.as_ref(),
            vectors.index.as_ref(),
            256,
            &|_| {},
        )
        .await?;
        tracing::info!(copied, "copied the stored vectors into the new collection");
    }
    Ok(())
}

/// The generation service: the jobs of the store, the rules extractor, and the LLM extractor
/// when a provider is configured.
pub fn generation_service(
    settings: &Settings,
    stores: &Stores,
    embedder: Arc<dyn Embedder>,
) -> anyhow::Result<GenerationService> {
    let llm = crate::llm::build_llm_extractor(settings)?;
    let consolidation = contextiq_core::generation::ConsolidationSettings {
        duplicate_threshold: settings.consolidation.duplicate_threshold,
        related_threshold: settings.consolidation.related_threshold,
        ..Default::default()
    };
    let generation = GenerationSettings {
        max_attempts: settings.worker.max_attempts,
        retry_base: chrono::Duration::seconds(settings.worker.retry_base_seconds as i64),
        max_events_per_job: settings.worker.max_events_per_job,
        consolidation,
    };
    Ok(GenerationService::new(
        stores.jobs.clone(),
        stores.sessions.clone(),
        stores.memories.clone(),
        embedder,
        llm,
        generation,
    ))
}

/// On first start with authentication on and no keys at all, creates an admin key of the
/// default org, prints it once to the terminal and saves it in a 0600 file. Never logged.
async fn bootstrap_admin_key(settings: &Settings, keys: &KeyService) -> anyhow::Result<()> {
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
    let (key, record) = keys.create(new, chrono::Utc::now()).await?;
    std::fs::create_dir_all(&settings.data_dir)?;
    let path = settings.data_dir.join(ADMIN_KEY_FILE);
    write_private_file(&path, &format!("{key}\n"))
        .with_context(|| format!("failed to save the first admin key to {}", path.display()))?;
    // On stdout, not in the logs (stderr): logs are shipped and kept, this must not be.
    println!(
        "\n  First start: created an admin API key (org \"default\", all permissions).\n  \
         It is shown this once and saved in {path}:\n\n      {key}\n\n  \
         Send it as the X-API-Key header. Create narrower keys with `contextiq keys create`.\n",
        path = path.display()
    );
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
    /// Opens the store and binds the listener (port 0 picks a free port); serves nothing yet.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        contextiq_models::use_ring_for_tls();
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let metrics = telemetry::metrics_handle(&settings.service_name);
        let stores = open_stores(&settings).await?;
        let store = stores.sessions.clone();
        let keys = KeyService::new(stores.keys.clone());
        let embedder = build_embedder(&settings).await?;
        let memories = memory_service(&settings, &stores, embedder.clone()).await?;
        let role = settings.server.role;
        if role.serves_memories() || role.runs_workers() {
            prepare_vector_index(&stores, embedder.dimension()).await?;
        }
        let generation = generation_service(&settings, &stores, embedder)?;
        let job_queue_wake = Arc::new(Notify::new());
        let broker = connect_broker(&settings).await?;
        bootstrap_admin_key(&settings, &keys).await?;
        let mut authenticator = Authenticator::new(&settings.auth, keys.clone(), rate_limiter(&settings).await?);
        if settings.server.role == Role::Gateway {
            authenticator = authenticator.without_rate_limits();
        }
        let authenticator = Arc::new(authenticator);
        let limits = SessionLimits {
            max_events_per_request: settings.sessions.max_events_per_request,
            max_state_bytes: settings.sessions.max_state_bytes,
            default_ttl_seconds: settings.sessions.default_ttl_seconds,
            ..SessionLimits::default()
        };
        let state = AppState {
            sessions: SessionService::new(store.clone(), limits),
            memories,
            keys,
            authenticator,
            store: store.clone(),
            metrics,
            service_name: settings.service_name.as_str().into(),
            max_body_bytes: settings.limits.max_body_bytes,
            generation: generation.clone(),
            job_queue_wake: job_queue_wake.clone(),
            gateway: gateway(&settings)?,
        };
        let router = app_router(state, &settings);
        let listener = TcpListener::bind(&settings.server.bind)
            .await
            .with_context(|| format!("failed to bind {}", settings.server.bind))?;
        let local_addr = listener.local_addr()?;
        let memory_store = stores.memories.clone();
        Ok(Application {
            listener,
            local_addr,
            router,
            store,
            memory_store,
            generation,
            job_queue_wake,
            broker,
            vectors: stores.vectors.clone(),
            settings,
        })
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
        let Application {
            listener,
            local_addr,
            router,
            store,
            memory_store,
            generation,
            job_queue_wake,
            broker,
            vectors,
            settings,
        } = self;
        let background = CancellationToken::new();
        let role = settings.server.role;
        let job_store = generation.job_store().clone();
        let worker_options = WorkerOptions {
            concurrency: if role.runs_workers() { settings.worker.concurrency } else { 0 },
            lease: Duration::from_secs(settings.worker.lease_seconds),
            poll_interval: Duration::from_millis(settings.worker.poll_interval_ms),
        };
        let dyn_broker = broker.clone().map(|broker| broker as Arc<dyn JobBroker>);
        // Every role that queues or runs jobs announces the runnable ones: the memory role the
        // jobs it queues, workers the retries and the jobs of dead workers.
        let mut background_tasks = Vec::new();
        if let Some(broker) = dyn_broker.clone().filter(|_| role.serves_memories() || role.runs_workers()) {
            let wake = job_queue_wake.clone();
            background_tasks.push(crate::worker::spawn_relay(
                generation.clone(),
                broker,
                wake,
                worker_options,
                background.clone(),
            ));
        }
        // Where memories are written: by requests, jobs and the purge of expired ones.
        if let Some(vectors) = vectors.filter(|_| role.serves_memories() || role.runs_workers()) {
            background_tasks.push(tokio::spawn(relay_vectors(vectors, background.clone())));
        }
        let workers =
            crate::worker::spawn_workers(generation, dyn_broker, job_queue_wake, worker_options, background.clone());
        if role.serves_sessions() {
            let store = store.clone();
            background_tasks.push(tokio::spawn(purge_expired(
                "sessions",
                Duration::from_secs(settings.sessions.purge_interval_seconds),
                background.clone(),
                move |now, batch| {
                    let store = store.clone();
                    async move { store.purge_expired_sessions(now, batch).await }
                },
            )));
        }
        if role.serves_memories() {
            background_tasks.push(tokio::spawn(purge_expired(
                "memories",
                Duration::from_secs(settings.search.purge_interval_seconds),
                background.clone(),
                move |now, batch| {
                    let store = memory_store.clone();
                    async move { store.purge_expired_memories(now, batch).await }
                },
            )));
            let jobs = job_store.clone();
            let retention =
                chrono::Duration::seconds(settings.worker.job_retention_seconds.min(i64::MAX as u64) as i64);
            background_tasks.push(tokio::spawn(purge_expired(
                "jobs",
                Duration::from_secs(settings.search.purge_interval_seconds),
                background.clone(),
                move |now, batch| {
                    let jobs = jobs.clone();
                    async move { jobs.purge_finished_jobs(now - retention, batch).await.map(|ids| ids.len() as u64) }
                },
            )));
        }

        let stopping = CancellationToken::new();
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
        tracing::info!(address = %local_addr, role = role.as_str(), "listening");
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
        store.close().await;
        tracing::info!("stopped");
        served
    }
}

/// The router with every layer, for `Application` and for in-process handler tests.
pub fn app_router(state: AppState, settings: &Settings) -> Router {
    // Layers wrap outwards: the last added runs first.
    let mut router = routes::router(settings.server.role)
        .layer(DefaultBodyLimit::max(settings.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
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

/// Deletes expired rows every `interval`, in batches. Reads already hide them; this reclaims
/// space.
async fn purge_expired<F, Fut>(what: &'static str, interval: Duration, cancel: CancellationToken, purge: F)
where
    F: Fn(chrono::DateTime<chrono::Utc>, u32) -> Fut,
    Fut: Future<Output = contextiq_core::Result<u64>>,
{
    const BATCH: u32 = 500;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            match purge(chrono::Utc::now(), BATCH).await {
                Ok(n_purged) => {
                    if n_purged > 0 {
                        metrics::counter!(format!("{what}_purged_total")).increment(n_purged);
                        tracing::info!(n_purged, what, "purged expired rows");
                    }
                    if n_purged < u64::from(BATCH) || cancel.is_cancelled() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, what, "purging expired rows failed; will retry");
                    break;
                }
            }
        }
    }
}

/// Brings the external vector index up to date with the primary store's outbox: the writes it
/// missed while unreachable, and memories that left without a request (expiry).
async fn relay_vectors(vectors: ExternalVectors, cancel: CancellationToken) {
    const BATCH: u32 = 256;
    const INTERVAL: Duration = Duration::from_secs(1);
    // Entries younger than this belong to writes still mirroring themselves.
    let grace = chrono::Duration::seconds(5);
    let mut failing = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        loop {
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
                    if failing {
                        tracing::info!("the vector index is reachable again");
                        failing = false;
                    }
                    metrics::counter!("vector_outbox_synced_total").increment(n_synced as u64);
                    if n_synced < BATCH as usize || cancel.is_cancelled() {
                        break;
                    }
                }
                Err(err) => {
                    metrics::counter!("vector_index_errors_total").increment(1);
                    if !failing {
                        tracing::warn!(error = %err, "the vector index is behind the store; retrying every second");
                        failing = true;
                    }
                    break;
                }
            }
        }
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
