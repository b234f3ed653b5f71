//! `contextiq bench vectors`: vector search alone, on the configured vector backend (the
//! embedded index, pgvector with `DATABASE_URL`, Qdrant with `QDRANT_URL`), at 100,000
//! memories by default. Memories are written through the memory service (so Qdrant is fed by
//! the same mirroring path as in production), then the store's vector search is timed, with
//! its recall@10 against an exact scan.
//!
//! Embedding 100,000 facts would take most of ten minutes, so vectors are derived: 1,000 facts
//! are embedded with the configured model, and each memory's vector is one of them plus noise,
//! normalised. That keeps the clustered shape of real sentence embeddings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use contextiq_core::memory::{NewMemory, scope_key};
use contextiq_core::{Access, Embedder, MemoryService, OrgId, Scope, SearchSettings};
use contextiq_server::backends::{build_embedder, open_stores, prepare_vector_index};
use contextiq_server::{Overrides, Settings};
use futures::StreamExt;

use super::measure::{format_rate, machine_description, measure, print_header};
use super::memories::fact;

const BASE_FACTS: usize = 1_000;
const TOP_K: usize = 10;
/// What the memory service asks each index for (`SEARCH_CANDIDATES`).
const CANDIDATES: usize = 100;
const RECALL_QUERIES: usize = 200;

/// What `bench vectors` measures.
pub struct Options {
    pub memories: usize,
    pub scopes: usize,
    pub clients: usize,
    pub seconds: u64,
    pub data_dir: Option<std::path::PathBuf>,
}

pub async fn run(args: &Options) -> anyhow::Result<()> {
    let temp_dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut settings = Settings::load(&Overrides::default())?;
    settings.data_dir = args.data_dir.clone().unwrap_or_else(|| temp_dir.path().to_owned());
    let backend = match (&settings.qdrant.url, &settings.database.url) {
        (Some(_), _) => "Qdrant",
        (None, Some(_)) => "PostgreSQL + pgvector",
        (None, None) => "embedded (SQLite, in-process index)",
    };
    println!("{}", machine_description());
    println!("vector backend: {backend}; {} memories over {} scopes\n", args.memories, args.scopes);

    let model = build_embedder(&settings).await?;
    let started = Instant::now();
    let bases = model.embed((0..BASE_FACTS).map(fact).collect()).await?;
    println!("embedded {BASE_FACTS} base facts in {:.1} s", started.elapsed().as_secs_f64());
    let vectors: Arc<Vec<Vec<f32>>> = Arc::new((0..args.memories).map(|n| derived(&bases, n)).collect());

    let stores = open_stores(&settings).await?;
    prepare_vector_index(&stores, model.dimension()).await?;
    let embedder = Arc::new(TableEmbedder { model_id: model.model_id().to_owned(), vectors: vectors.clone() });
    let search = SearchSettings { lexical_weight: 0.5, candidates: CANDIDATES, query_cache: 0 };
    let service = MemoryService::new(stores.memories.clone(), embedder, search);
    service.check_embedding_model().await?;
    let access = Access::org(OrgId::default_org());
    let scopes: Vec<Scope> = (0..args.scopes.max(1)).map(scope_of).collect();

    let started = Instant::now();
    let progress = indicatif::ProgressBar::new(args.memories as u64);
    let mut writes = futures::stream::iter(0..args.memories)
        .map(|n| {
            let (service, access, scope) = (&service, &access, scopes[n % scopes.len()].clone());
            async move {
                let new = NewMemory {
                    id: None,
                    scope,
                    fact: format!("#{n}"),
                    topic: None,
                    confidence: None,
                    ..NewMemory::default()
                };
                service.create(access, "bench", new, chrono::Utc::now()).await.map(|memory| (n, memory.id))
            }
        })
        .buffer_unordered(32);
    let mut ids = vec![uuid::Uuid::nil(); args.memories];
    while let Some(written) = writes.next().await {
        let (n, id) = written?;
        ids[n] = id;
        progress.inc(1);
    }
    drop(writes);
    progress.finish_and_clear();
    let load = started.elapsed();
    println!(
        "stored {} memories in {:.1} s ({})\n",
        args.memories,
        load.as_secs_f64(),
        format_rate(args.memories as f64 / load.as_secs_f64())
    );

    if let Some(options) = contextiq_server::backends::qdrant_options(&settings)? {
        wait_until_indexed(&contextiq_vector_qdrant::QdrantIndex::connect(options)?).await?;
    }

    // Queries: other noisy copies of the base facts, each searched in one scope.
    let queries: Arc<Vec<(String, Vec<f32>)>> = Arc::new(
        (0..1_000).map(|n| (scope_key(&scopes[n % scopes.len()]), derived(&bases, args.memories + n * 7919))).collect(),
    );
    let org = OrgId::default_org();
    let recall = recall_at_k(&stores, &org, &queries, &vectors, &ids, scopes.len()).await?;

    print_header();
    let duration = Duration::from_secs(args.seconds);
    for clients in [1, args.clients] {
        let measured = measure(clients, duration, |client_idx, n| {
            let (memories, queries, org) = (stores.memories.clone(), queries.clone(), org.clone());
            async move {
                let (key, vector) = &queries[(client_idx * 131 + n) % queries.len()];
                memories.vector_candidates(&org, key, vector, CANDIDATES).await?;
                Ok(())
            }
        })
        .await?;
        measured.print(&format!("search, {clients} client{}", if clients == 1 { "" } else { "s" }));
    }
    println!("\nrecall@{TOP_K} against an exact scan, {RECALL_QUERIES} queries: {recall:.3}");
    stores.sessions.close().await;
    Ok(())
}

/// Waits until Qdrant has finished optimizing (it builds HNSW in the background, as the
/// measurement should see a collection at rest): green, with the same number of indexed
/// vectors over three polls, as an optimization pass may start a few seconds after the load.
async fn wait_until_indexed(index: &contextiq_vector_qdrant::QdrantIndex) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut last, mut n_stable) = (u64::MAX, 0);
    while n_stable < 3 && started.elapsed() < Duration::from_secs(1800) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (green, indexed, _) = index.indexing_progress().await?;
        n_stable = if green && indexed == last { n_stable + 1 } else { 0 };
        last = indexed;
    }
    let (_, indexed, points) = index.indexing_progress().await?;
    println!(
        "Qdrant optimized the collection in {:.0} s: {indexed} of {points} vectors in HNSW segments\n",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Base fact `n % 1000` plus noise, normalised: deterministic in `n`.
fn derived(bases: &[Vec<f32>], n: usize) -> Vec<f32> {
    let base = &bases[n % bases.len()];
    let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let mut vector: Vec<f32> = base.iter().map(|x| x + 0.12 * noise()).collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    vector.iter_mut().for_each(|x| *x /= norm);
    vector
}

fn scope_of(n: usize) -> Scope {
    Scope::from([("user_id".to_owned(), format!("bench-user-{n}"))])
}

/// The share of the exact top 10 (by brute force over the scope's vectors) that the store's
/// search returns in its top 10.
async fn recall_at_k(
    stores: &contextiq_server::backends::Stores,
    org: &OrgId,
    queries: &[(String, Vec<f32>)],
    vectors: &[Vec<f32>],
    ids: &[uuid::Uuid],
    n_scopes: usize,
) -> anyhow::Result<f64> {
    let mut hits = 0;
    for (query_idx, (key, query)) in queries.iter().take(RECALL_QUERIES).enumerate() {
        let scope_idx = query_idx % n_scopes;
        let mut exact: Vec<(f32, uuid::Uuid)> = (scope_idx..vectors.len())
            .step_by(n_scopes)
            .map(|n| (contextiq_core::embed::cosine(&vectors[n], query), ids[n]))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let found = stores.memories.vector_candidates(org, key, query, TOP_K).await?;
        hits += exact.iter().take(TOP_K).filter(|(_, id)| found.iter().any(|(found_id, _)| found_id == id)).count();
    }
    Ok(hits as f64 / (RECALL_QUERIES * TOP_K) as f64)
}

/// Answers the derived vector of fact `#n`; queries are never embedded through it.
struct TableEmbedder {
    model_id: String,
    vectors: Arc<Vec<Vec<f32>>>,
}

#[async_trait]
impl Embedder for TableEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.vectors.first().map_or(0, Vec::len)
    }

    async fn embed(&self, texts: Vec<String>) -> contextiq_core::Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|text| {
                text.strip_prefix('#')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| self.vectors.get(n).cloned())
                    .ok_or_else(|| contextiq_core::Error::Embedding(format!("no vector for {text:?}")))
            })
            .collect()
    }
}
