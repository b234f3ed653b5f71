//! The backends a process runs on, opened from [`Settings`]: the primary store (with its cache
//! and external vector index), the rate limiter, the broker, the embedding model, and the
//! services built on them. `startup` composes them per role; the CLI opens what it needs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use contextiq_cache_redis::{RedisCache, RedisOptions, RedisRateLimiter};
use contextiq_core::cached::{CacheLayer, CachedMemoryStore, CachedSessionStore};
use contextiq_core::generation::{GenerationService, GenerationSettings, JobStore};
use contextiq_core::vector_index::{VectorIndex, VectorOutbox};
use contextiq_core::{
    Embedder, InProcessRateLimiter, IndexedMemoryStore, KeyStore, MemoryService, MemoryStore, RateLimiter, SessionStore,
};
use contextiq_models::{LocalEmbedder, OpenAiEmbedder, OpenAiOptions};
use contextiq_queue_rabbitmq::{RabbitBroker, RabbitOptions};
use contextiq_store_postgres::{PostgresOptions, PostgresStore};
use contextiq_store_sqlite::{SqliteOptions, SqliteStore};
use contextiq_vector_qdrant::{QdrantIndex, QdrantOptions};
use secrecy::ExposeSecret;

use crate::config::{EmbeddingProvider, Settings, StoreLocation};

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
pub async fn rate_limiter(settings: &Settings) -> anyhow::Result<Arc<dyn RateLimiter>> {
    let Some(url) = &settings.redis.url else { return Ok(Arc::new(InProcessRateLimiter::default())) };
    let limiter = RedisRateLimiter::connect(url.expose_secret(), redis_options(settings))
        .map_err(|err| anyhow::anyhow!("failed to connect to Redis: {err}"))?;
    Ok(Arc::new(limiter))
}

/// The message broker of generation jobs, when `RABBITMQ_URL` is set; `consume`: this process
/// takes deliveries (it runs workers).
pub async fn connect_broker(settings: &Settings, consume: bool) -> anyhow::Result<Option<Arc<RabbitBroker>>> {
    let Some(url) = &settings.rabbitmq.url else { return Ok(None) };
    let options = RabbitOptions {
        prefetch: settings.worker.prefetch_count.max(1),
        heartbeat_seconds: settings.rabbitmq.heartbeat,
        connection_attempts: settings.rabbitmq.connection_attempts.max(1),
        queue_prefix: settings.rabbitmq.queue_prefix.clone(),
        consume,
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
                durability: settings.sqlite_durability(),
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
    match embedding.provider {
        EmbeddingProvider::Openai => {
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
        EmbeddingProvider::Local => {
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
        query_cache: settings.search.query_cache,
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
        tokenizer: settings.sessions.tokenizer,
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
