//! The rules of the memory API: validation, scope confinement, revisions, hybrid search.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cached::{CacheLayer, Cached, scope_family, short_hash};
use crate::embed::QueryVectors;
use crate::grammar::attribute_value_of;
use crate::memory::{
    Memory, MemoryFilter, MemoryPage, MemoryPatch, MemoryQuery, MemorySnapshot, MemoryStore, NewMemory,
    ProfileAttribute, Recency, Revision, RevisionAction, ScoredMemory, scope_key,
};
use crate::session::{check_scope, to_micros};
use crate::{Access, Embedder, Error, OrgId, PageCursor, Result, Scope};

use crate::limits::{MAX_FACT_CHARS, MAX_HALF_LIFE_DAYS, MAX_QUERY_CHARS, MAX_TOP_K, MAX_TOPIC_CHARS, MAX_TTL_SECONDS};

const MAX_METADATA_BYTES: usize = 64 * 1024;
const MAX_SOURCE_EVENTS: usize = 1000;
pub const MAX_MEMORIES_PAGE: u32 = 100;

/// How lexical and embedding relevance are fused. Each list of candidates is min-max
/// normalised to [0, 1]; a memory's score is `lexical_weight * lexical + (1 - lexical_weight)
/// * semantic`, a missing score counting as 0 (a convex combination of normalised scores).
#[derive(Debug, Clone, Copy)]
pub struct SearchSettings {
    pub lexical_weight: f64,
    /// Candidates taken from each index before fusion, at least `top_k`.
    pub candidates: usize,
    /// Query vectors kept for queries asked again (0: none).
    pub query_cache: usize,
}

impl Default for SearchSettings {
    fn default() -> SearchSettings {
        SearchSettings { lexical_weight: 0.5, candidates: 100, query_cache: 1024 }
    }
}

#[derive(Clone)]
pub struct MemoryService {
    store: Arc<dyn MemoryStore>,
    embedder: Arc<dyn Embedder>,
    search: SearchSettings,
    /// Caches search rankings per scope; the store must then be a `CachedMemoryStore` on the
    /// same cache, whose writes invalidate them.
    rankings: Option<CacheLayer>,
    query_vectors: Arc<QueryVectors>,
}

impl MemoryService {
    pub fn new(store: Arc<dyn MemoryStore>, embedder: Arc<dyn Embedder>, search: SearchSettings) -> MemoryService {
        let query_vectors = Arc::new(QueryVectors::new(search.query_cache));
        MemoryService { store, embedder, search, rankings: None, query_vectors }
    }

    /// Caches search rankings; `store` must invalidate them on writes (`CachedMemoryStore`).
    pub fn with_ranking_cache(self, cache: CacheLayer) -> MemoryService {
        MemoryService { rankings: Some(cache), ..self }
    }

    /// Refuses to serve vectors of another model than the configured one; records the model
    /// when nothing is stored yet.
    pub async fn check_embedding_model(&self) -> Result<()> {
        let (model_id, dimension) = (self.embedder.model_id(), self.embedder.dimension());
        match self.store.embedding_model().await? {
            Some((stored, stored_dimension)) if stored == model_id && stored_dimension == dimension => Ok(()),
            Some((stored, stored_dimension)) if self.store.count_memories().await? > 0 => Err(Error::validation(
                "embedding_model",
                format!(
                    "the stored memories were embedded with {stored} ({stored_dimension} dimensions) but the \
                     configured model is {model_id} ({dimension}); run `contextiq reindex` to re-embed them"
                ),
            )),
            _ => self.store.set_embedding_model(model_id, dimension).await,
        }
    }

    pub async fn create(&self, access: &Access, actor: &str, new: NewMemory, now: DateTime<Utc>) -> Result<Memory> {
        let now = to_micros(now);
        check_scope(&new.scope)?;
        if !access.reaches(&new.scope) {
            return Err(Error::Forbidden("the memory's scope is outside the credential's scope".to_owned()));
        }
        let fact = check_fact(&new.fact)?;
        check_topic(new.topic.as_deref())?;
        let confidence = check_confidence(new.confidence.unwrap_or(1.0))?;
        check_metadata(&new.metadata)?;
        if new.source_event_ids.len() > MAX_SOURCE_EVENTS {
            return Err(Error::validation("source_event_ids", format!("at most {MAX_SOURCE_EVENTS}")));
        }
        let expires_at = expiry(new.ttl_seconds, new.expires_at.map(Some), now)?.flatten();
        let said_at = new.said_at.map(|at| check_said_at(at, now)).transpose()?.unwrap_or(now);
        let memory = Memory {
            org_id: access.org_id.clone(),
            id: new.id.unwrap_or_else(Uuid::now_v7),
            scope: new.scope,
            fact,
            topic: new.topic,
            confidence,
            source_session_id: new.source_session_id,
            source_event_ids: new.source_event_ids,
            metadata: new.metadata,
            said_at,
            created_at: now,
            updated_at: now,
            expires_at,
        };
        let embedding = crate::embed::embed_memory(self.embedder.as_ref(), &memory.fact).await?;
        let revision =
            revision(&memory, RevisionAction::Created, None, Some(MemorySnapshot::from(&memory)), actor, now);
        self.store.insert_memory(memory, embedding, revision).await
    }

    pub async fn get(&self, access: &Access, id: Uuid, now: DateTime<Utc>) -> Result<Memory> {
        let found = self.store.get_memories(&access.org_id, &[id], now).await?.pop();
        found.filter(|memory| access.reaches(&memory.scope)).ok_or_else(Error::memory_not_found)
    }

    pub async fn list(
        &self,
        access: &Access,
        scope: &Scope,
        filter: &MemoryFilter,
        cursor: Option<PageCursor>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<MemoryPage> {
        check_scope(scope)?;
        if !(1..=MAX_MEMORIES_PAGE).contains(&limit) {
            return Err(Error::validation("limit", format!("must be between 1 and {MAX_MEMORIES_PAGE}")));
        }
        if !access.reaches(scope) {
            return Ok(MemoryPage { memories: Vec::new(), next_cursor: None });
        }
        self.store.list_memories(&access.org_id, Some(&scope_key(scope)), filter, cursor, limit, now).await
    }

    /// Live memories of every scope within reach, newest first: a page of the org's memories
    /// with those outside the credential's scope left out (so a page may hold fewer than
    /// `limit`; `next_cursor` says whether more follow).
    pub async fn list_all(
        &self,
        access: &Access,
        filter: &MemoryFilter,
        cursor: Option<PageCursor>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<MemoryPage> {
        if !(1..=MAX_MEMORIES_PAGE).contains(&limit) {
            return Err(Error::validation("limit", format!("must be between 1 and {MAX_MEMORIES_PAGE}")));
        }
        let mut page = self.store.list_memories(&access.org_id, None, filter, cursor, limit, now).await?;
        page.memories.retain(|memory| access.reaches(&memory.scope));
        Ok(page)
    }

    /// The current value of every attribute the live memories of exactly `scope` set, by
    /// attribute name: for each attribute, the most recently changed memory that sets it, unless
    /// that memory denies it ("User no longer lives in Berlin"). Empty outside the credential's
    /// reach, as a list is.
    pub async fn profile(&self, access: &Access, scope: &Scope, now: DateTime<Utc>) -> Result<Vec<ProfileAttribute>> {
        check_scope(scope)?;
        if !access.reaches(scope) {
            return Ok(Vec::new());
        }
        let key = scope_key(scope);
        let mut newest: BTreeMap<String, (DateTime<Utc>, Option<ProfileAttribute>)> = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_memories(&access.org_id, Some(&key), &MemoryFilter::default(), cursor, MAX_MEMORIES_PAGE, now)
                .await?;
            for memory in page.memories {
                let Some(found) = attribute_value_of(&memory.fact) else { continue };
                if newest.get(&found.attribute).is_some_and(|(at, _)| *at >= memory.updated_at) {
                    continue;
                }
                let value = found.value.map(|value| ProfileAttribute {
                    attribute: found.attribute.clone(),
                    value,
                    memory_id: memory.id,
                    fact: memory.fact.clone(),
                    updated_at: memory.updated_at,
                });
                newest.insert(found.attribute, (memory.updated_at, value));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(newest.into_values().filter_map(|(_, value)| value).collect())
    }

    pub async fn update(
        &self,
        access: &Access,
        actor: &str,
        id: Uuid,
        patch: MemoryPatch,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        let now = to_micros(now);
        let current = self.get(access, id, now).await?;
        let mut updated = current.clone();
        if let Some(fact) = &patch.fact {
            updated.fact = check_fact(fact)?;
        }
        if let Some(topic) = patch.topic {
            check_topic(topic.as_deref())?;
            updated.topic = topic;
        }
        if let Some(confidence) = patch.confidence {
            updated.confidence = check_confidence(confidence)?;
        }
        if let Some(metadata) = patch.metadata {
            check_metadata(&metadata)?;
            updated.metadata = metadata;
        }
        if let Some(expires_at) = expiry(patch.ttl_seconds, patch.expires_at, now)? {
            updated.expires_at = expires_at;
        }
        if let Some(said_at) = patch.said_at {
            updated.said_at = check_said_at(said_at, now)?;
        }
        // A patch that changes nothing writes nothing: no revision, and `updated_at` stays.
        if updated == current {
            return Ok(current);
        }
        updated.updated_at = now.max(current.updated_at);
        let embedding = match updated.fact != current.fact {
            true => Some(crate::embed::embed_memory(self.embedder.as_ref(), &updated.fact).await?),
            false => None,
        };
        let revision = revision(
            &updated,
            RevisionAction::Updated,
            Some(MemorySnapshot::from(&current)),
            Some(MemorySnapshot::from(&updated)),
            actor,
            now,
        );
        self.store.update_memory(updated, embedding, revision, now).await
    }

    /// Deletes a memory, keeping its history; with `purge`, erases it and its history.
    pub async fn delete(&self, access: &Access, actor: &str, id: Uuid, purge: bool, now: DateTime<Utc>) -> Result<()> {
        let now = to_micros(now);
        if purge {
            let stored = self.find_any(access, id).await?;
            return self.store.purge_memory(&access.org_id, stored.memory.id).await;
        }
        let current = self.get(access, id, now).await?;
        let revision =
            revision(&current, RevisionAction::Deleted, Some(MemorySnapshot::from(&current)), None, actor, now);
        self.store.delete_memory(&access.org_id, id, revision, now).await
    }

    /// The history of a memory, live or deleted, oldest first.
    pub async fn revisions(&self, access: &Access, id: Uuid) -> Result<Vec<Revision>> {
        self.find_any(access, id).await?;
        self.store.list_revisions(&access.org_id, id).await
    }

    /// Returns a memory to what it was after `revision_id` (or, for a deletion, just before it).
    pub async fn restore(
        &self,
        access: &Access,
        actor: &str,
        id: Uuid,
        revision_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        let now = to_micros(now);
        let stored = self.find_any(access, id).await?;
        let revisions = self.store.list_revisions(&access.org_id, id).await?;
        let target = revisions
            .iter()
            .find(|revision| revision.id == revision_id)
            .ok_or_else(|| Error::validation("revision_id", "no such revision of this memory"))?;
        let snapshot = target
            .after
            .clone()
            .or_else(|| target.before.clone())
            .ok_or_else(|| Error::validation("revision_id", "that revision holds no state to restore"))?;
        let live = stored.deleted_at.is_none() && stored.memory.expires_at.is_none_or(|at| at > now);
        let before = live.then(|| MemorySnapshot::from(&stored.memory));
        let mut restored = stored.memory.clone();
        restored.fact = snapshot.fact.clone();
        restored.topic = snapshot.topic.clone();
        restored.confidence = snapshot.confidence;
        restored.source_session_id = snapshot.source_session_id;
        restored.source_event_ids = snapshot.source_event_ids.clone();
        restored.metadata = snapshot.metadata.clone();
        if let Some(said_at) = snapshot.said_at {
            restored.said_at = said_at;
        }
        // A restored memory must be readable: an expiry already past is dropped.
        restored.expires_at = snapshot.expires_at.filter(|at| *at > now);
        restored.updated_at = now.max(stored.memory.updated_at);
        let embedding = crate::embed::embed_memory(self.embedder.as_ref(), &restored.fact).await?;
        let mut revision =
            revision(&restored, RevisionAction::Restored, before, Some(MemorySnapshot::from(&restored)), actor, now);
        revision.cause = Some(serde_json::json!({"restored_revision_id": revision_id}));
        self.store.restore_memory(restored, embedding, revision).await
    }

    /// The `top_k` live memories of `scope` most relevant to the query that pass its filter,
    /// best first.
    pub async fn search(
        &self,
        access: &Access,
        scope: &Scope,
        search: &MemoryQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScoredMemory>> {
        let MemoryQuery { text: query, top_k, filter, recency } = search;
        let (query, top_k, recency) = (query.as_str(), *top_k, *recency);
        check_scope(scope)?;
        if query.trim().is_empty() || query.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::validation("search_query", format!("must be 1 to {MAX_QUERY_CHARS} characters")));
        }
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(Error::validation("top_k", format!("must be between 1 and {MAX_TOP_K}")));
        }
        if let Some(recency) = recency {
            check_recency(recency)?;
        }
        if !access.reaches(scope) {
            return Ok(Vec::new());
        }
        let key = scope_key(scope);
        let n_candidates = self.search.candidates.max(top_k as usize * 2);
        let fused = self.ranking(access, &key, query, n_candidates, now).await?;
        let recency = recency.filter(|recency| recency.weight > 0.0);
        let started = Instant::now();
        // Without recency the answer is the first `top_k` candidates, in fused order, that are
        // still live and pass the filter: read them a batch at a time, best first, rather than
        // every candidate. Recency may lift any candidate into the answer, so it reads them all.
        let mut found: Vec<ScoredMemory> = Vec::new();
        let mut batch = if recency.is_some() { fused.len() } else { top_k as usize };
        let mut unread = fused.as_slice();
        while !unread.is_empty() && (recency.is_some() || found.len() < top_k as usize) {
            let (next, rest) = unread.split_at(batch.min(unread.len()));
            unread = rest;
            batch = batch.saturating_mul(2);
            let ids: Vec<Uuid> = next.iter().map(|(id, _)| *id).collect();
            let memories = self.store.get_memories(&access.org_id, &ids, now).await?;
            let mut by_id: HashMap<Uuid, Memory> = memories.into_iter().map(|memory| (memory.id, memory)).collect();
            found.extend(
                next.iter()
                    .filter_map(|(id, score)| by_id.remove(id).map(|memory| ScoredMemory { memory, score: *score }))
                    .filter(|scored| filter.matches(&scored.memory)),
            );
        }
        record_stage("read", started);
        // Recency reorders the candidates relevance found, so a recent memory outranks an old
        // one only among memories that match the query at all.
        if let Some(recency) = recency {
            for scored in &mut found {
                scored.score = recency.weigh(scored.score, scored.memory.said_at, now);
            }
            found.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.memory.id.cmp(&b.memory.id)));
        }
        found.truncate(top_k as usize);
        Ok(found)
    }

    /// The scope's candidates for `query`, fused and best first: from the ranking cache, or
    /// computed (embed the query, BM25 and vector candidates) and cached. Memories are then read
    /// fresh by id, so a cached ranking never shows a changed or deleted memory.
    async fn ranking(
        &self,
        access: &Access,
        key: &str,
        query: &str,
        n_candidates: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, f64)>> {
        let family = scope_family(&access.org_id, key);
        let cache_key = short_hash(&[
            self.embedder.model_id(),
            &self.search.lexical_weight.to_string(),
            &n_candidates.to_string(),
            query,
        ]);
        let generation = match &self.rankings {
            Some(cache) => match cache.get::<Vec<(Uuid, f64)>>("search", &family, &cache_key).await {
                Cached::Hit(ranking) => return Ok(ranking),
                Cached::Miss(generation) => generation,
            },
            None => None,
        };
        let started = Instant::now();
        let query_vector = self.query_vector(&access.org_id, query).await?;
        record_stage("embed", started);
        let started = Instant::now();
        // Function and question words match nearly everything; what is left says what to find.
        let keywords = crate::grammar::keywords(query);
        let lexical_query = if keywords.is_empty() { query.to_owned() } else { keywords.join(" ") };
        let lexical = self.store.lexical_candidates(&access.org_id, key, &lexical_query, n_candidates, now).await?;
        record_stage("lexical", started);
        let started = Instant::now();
        let semantic = self.store.vector_candidates(&access.org_id, key, &query_vector, n_candidates).await?;
        record_stage("semantic", started);
        let fused = fuse(&lexical, &semantic, self.search.lexical_weight);
        if let Some(cache) = &self.rankings {
            cache.put(&family, generation, &cache_key, &fused, crate::cache::ttl::SEARCH).await;
        }
        Ok(fused)
    }

    async fn find_any(&self, access: &Access, id: Uuid) -> Result<crate::memory::StoredMemory> {
        self.store
            .find_memory(&access.org_id, id)
            .await?
            .filter(|stored| access.reaches(&stored.memory.scope))
            .ok_or_else(Error::memory_not_found)
    }

    /// The query's vector: from the cache of recent queries, or embedded and cached. Cached per
    /// org (and so per engine): how fast a search answers must not tell one tenant what another
    /// asked.
    async fn query_vector(&self, org: &OrgId, query: &str) -> Result<Arc<[f32]>> {
        let key = format!("{org}\u{1f}{query}");
        if let Some(vector) = self.query_vectors.get(&key) {
            metrics::counter!("search_query_vectors_total", "result" => "hit").increment(1);
            return Ok(vector);
        }
        metrics::counter!("search_query_vectors_total", "result" => "miss").increment(1);
        let vector: Arc<[f32]> = self.embed_one(query).await?.into();
        self.query_vectors.put(&key, vector.clone());
        Ok(vector)
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let mut vectors = self.embedder.embed(vec![text.to_owned()]).await?;
        vectors.pop().ok_or_else(|| Error::Embedding("the model returned no vector".to_owned()))
    }
}

/// The time a stage of a search took (`search_stage_seconds{stage}`): embed the query, the
/// lexical and the vector candidates, read the memories ranked.
fn record_stage(stage: &'static str, started: Instant) {
    metrics::histogram!("search_stage_seconds", "stage" => stage).record(started.elapsed().as_secs_f64());
}

/// Convex combination of min-max normalised scores, best first; ties by id for stability.
///
/// Each side's floor lies one average step below its weakest candidate (as if the next,
/// unseen candidate were there), so every candidate scores above 0: a memory that made a
/// candidate list matched the query somewhat, and its score says so.
pub fn fuse(lexical: &[(Uuid, f64)], semantic: &[(Uuid, f64)], lexical_weight: f64) -> Vec<(Uuid, f64)> {
    let mut fused: HashMap<Uuid, f64> = HashMap::new();
    for (candidates, weight) in [(lexical, lexical_weight), (semantic, 1.0 - lexical_weight)] {
        let max = candidates.iter().map(|(_, score)| *score).fold(f64::NEG_INFINITY, f64::max);
        let min = candidates.iter().map(|(_, score)| *score).fold(f64::INFINITY, f64::min);
        let floor = min - (max - min) / candidates.len().max(1) as f64;
        let span = max - floor;
        for (id, score) in candidates {
            let normalised = if span > f64::EPSILON { (score - floor) / span } else { 1.0 };
            *fused.entry(*id).or_insert(0.0) += weight * normalised;
        }
    }
    let mut ranked: Vec<(Uuid, f64)> = fused.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

fn revision(
    memory: &Memory,
    action: RevisionAction,
    before: Option<MemorySnapshot>,
    after: Option<MemorySnapshot>,
    actor: &str,
    now: DateTime<Utc>,
) -> Revision {
    Revision {
        id: Uuid::now_v7(),
        memory_id: memory.id,
        org_id: memory.org_id.clone(),
        action,
        before,
        after,
        actor: actor.to_owned(),
        job_id: None,
        cause: None,
        created_at: now,
    }
}

fn check_recency(recency: Recency) -> Result<()> {
    if !(0.0..=1.0).contains(&recency.weight) {
        return Err(Error::validation("recency_weight", "must be between 0 and 1"));
    }
    if !(recency.half_life_days > 0.0 && recency.half_life_days <= MAX_HALF_LIFE_DAYS) {
        return Err(Error::validation(
            "recency_half_life_days",
            format!("must be above 0 and at most {MAX_HALF_LIFE_DAYS}"),
        ));
    }
    Ok(())
}

/// A client may say a memory was said a little later than the server's clock reads: clocks
/// differ. Later than that is a mistake.
const SAID_AT_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

fn check_said_at(said_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if said_at > now + SAID_AT_CLOCK_SKEW {
        return Err(Error::validation("said_at", "must not be in the future"));
    }
    Ok(to_micros(said_at))
}

pub(crate) fn check_fact(fact: &str) -> Result<String> {
    let trimmed = fact.trim();
    if trimmed.is_empty() {
        return Err(Error::validation("fact", "must not be empty"));
    }
    if trimmed.chars().count() > MAX_FACT_CHARS {
        return Err(Error::validation("fact", format!("must be at most {MAX_FACT_CHARS} characters")));
    }
    Ok(trimmed.to_owned())
}

pub(crate) fn check_topic(topic: Option<&str>) -> Result<()> {
    match topic {
        Some(topic) if topic.trim().is_empty() || topic.chars().count() > MAX_TOPIC_CHARS => {
            Err(Error::validation("topic", format!("must be 1 to {MAX_TOPIC_CHARS} characters")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_confidence(confidence: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&confidence) {
        return Err(Error::validation("confidence", "must be between 0 and 1"));
    }
    Ok(confidence)
}

pub(crate) fn check_metadata(metadata: &Map<String, Value>) -> Result<()> {
    let n_bytes = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
    if n_bytes > MAX_METADATA_BYTES {
        return Err(Error::LimitExceeded {
            field: "metadata".to_owned(),
            what: "metadata size in bytes".to_owned(),
            limit: MAX_METADATA_BYTES as u64,
        });
    }
    crate::session::check_json_depth("metadata", metadata)
}

/// `None`: leave the expiry alone; `Some(None)`: no expiry; `Some(Some(at))`: expire at `at`.
fn expiry(
    ttl_seconds: Option<i64>,
    expires_at: Option<Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
) -> Result<Option<Option<DateTime<Utc>>>> {
    match (ttl_seconds, expires_at) {
        (Some(_), Some(_)) => Err(Error::validation("expires_at", "give either ttl_seconds or expires_at, not both")),
        (Some(ttl), None) if !(1..=MAX_TTL_SECONDS).contains(&ttl) => {
            Err(Error::validation("ttl_seconds", format!("must be between 1 and {MAX_TTL_SECONDS}")))
        }
        (Some(ttl), None) => Ok(Some(Some(now + Duration::seconds(ttl)))),
        (None, Some(Some(at))) => {
            let at = to_micros(at);
            if at <= now || at > now + Duration::seconds(MAX_TTL_SECONDS) {
                return Err(Error::validation("expires_at", "must be in the future and at most ten years ahead"));
            }
            Ok(Some(Some(at)))
        }
        (None, Some(None)) => Ok(Some(None)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_is_a_convex_combination_of_normalised_scores() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let lexical = [(a, 12.0), (b, 6.0), (c, 3.0)];
        let semantic = [(c, 0.9), (b, 0.5)];
        let fused = fuse(&lexical, &semantic, 0.5);
        // Floors one average step below the weakest: lexical 3 - 9/3 = 0 (span 12), semantic
        // 0.5 - 0.4/2 = 0.3 (span 0.6).
        // a: 0.5*1 = 0.5; b: 0.5*0.5 + 0.5*(1/3) = 5/12; c: 0.5*0.25 + 0.5*1 = 0.625.
        let score = |id| fused.iter().find(|(candidate, _)| *candidate == id).unwrap().1;
        assert!((score(a) - 0.5).abs() < 1e-9, "{fused:?}");
        assert!((score(b) - 5.0 / 12.0).abs() < 1e-9 && (score(c) - 0.625).abs() < 1e-9, "{fused:?}");
        assert_eq!(fused.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [c, a, b]);
        // The weakest candidate of each side still scores above nothing.
        assert!(fused.iter().all(|(_, score)| *score > 0.0));
        assert_eq!(fuse(&lexical, &[], 1.0)[0].0, a);
        assert!(fuse(&[], &[], 0.5).is_empty());
    }
}
