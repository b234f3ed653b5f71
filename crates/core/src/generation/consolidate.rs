//! Consolidation: each candidate fact, against the nearest memories of its scope, becomes
//! ADD, UPDATE, DELETE or NOOP. The cheap checks come first and need no model: an exact
//! duplicate (same normalised text), the same attribute with a new value (a changed
//! preference or address), a near-duplicate (embedding similarity above a threshold). Only
//! candidates in the ambiguous band below that go to the extractor's judge, and only the `llm`
//! extractor judges; the `rules` extractor keeps both memories.
//!
//! The plan is computed against a working set (the memories read, plus what this job already
//! decided), so a job that states a fact twice or changes it twice stays consistent, and then
//! committed in one transaction by the job store.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    Candidate, CandidateKind, ExtractError, Extractor, Job, JobOutcome, LlmUsage, MemoryChange, MetadataMerge,
    Neighbour, Verdict,
};
use crate::embed::MemoryVectors;
use crate::grammar::{attribute_of, content_words, normalise};
use crate::memory::{MemorySnapshot, MemoryStore, Revision, RevisionAction, scope_key};
use crate::{Memory, Result};

#[derive(Debug, Clone, Copy)]
pub struct ConsolidationSettings {
    /// At or above this cosine similarity a candidate says nothing new (NOOP).
    pub duplicate_threshold: f64,
    /// From here up to `duplicate_threshold` a candidate is ambiguous and goes to the judge.
    pub related_threshold: f64,
    /// A "forget" request removes memories that contain every word it names, or that are at
    /// least this similar to it (a paraphrase); the llm extractor judges the band below.
    pub forget_threshold: f64,
    /// Nearest memories considered per candidate.
    pub neighbours: usize,
}

impl Default for ConsolidationSettings {
    fn default() -> ConsolidationSettings {
        ConsolidationSettings {
            duplicate_threshold: 0.92,
            related_threshold: 0.75,
            forget_threshold: 0.75,
            neighbours: 10,
        }
    }
}

/// What a candidate became, and why.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Add,
    /// `vector`: the embedding of `fact` when it is not the candidate's text.
    Update {
        memory_id: Uuid,
        fact: String,
        vector: Option<MemoryVectors>,
        reason: &'static str,
        similarity: Option<f64>,
    },
    Delete {
        memory_ids: Vec<Uuid>,
    },
    Noop,
}

/// A memory as this job sees it.
struct Working {
    memory: Memory,
    /// Its vectors, when this job wrote them (otherwise only the store's similarity is known).
    vector: Option<MemoryVectors>,
    /// The store's similarity to the candidate being decided, refreshed per candidate.
    stored_similarity: Option<f64>,
    live: bool,
}

/// The failure of one consolidation pass.
#[derive(Debug, thiserror::Error)]
pub enum ConsolidationError {
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error(transparent)]
    Judge(#[from] ExtractError),
}

pub struct Plan {
    pub changes: Vec<MemoryChange>,
    pub outcome: JobOutcome,
}

pub struct Consolidator<'a> {
    pub store: &'a dyn MemoryStore,
    pub judge: &'a dyn Extractor,
    pub embedder: &'a dyn crate::Embedder,
    pub settings: ConsolidationSettings,
    pub job: &'a Job,
    pub source_session_id: Option<Uuid>,
    /// When each turn read was said, by event id.
    pub turn_times: &'a HashMap<Uuid, DateTime<Utc>>,
    /// When a fact citing none of those turns was said.
    pub said_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl Consolidator<'_> {
    /// When a candidate was said: the earliest turn it cites.
    fn said_at_of(&self, candidate: &Candidate) -> DateTime<Utc> {
        let cited = candidate.source_event_ids.iter().filter_map(|id| self.turn_times.get(id)).min();
        crate::to_micros(cited.copied().unwrap_or(self.said_at))
    }

    /// Decides every candidate in order; `vectors[i]` is the embedding of `candidates[i]`.
    pub async fn plan(
        &self,
        candidates: &[Candidate],
        vectors: &[MemoryVectors],
        usage: &mut LlmUsage,
    ) -> std::result::Result<Plan, ConsolidationError> {
        let mut working: HashMap<Uuid, Working> = HashMap::new();
        let mut plan = Plan { changes: Vec::new(), outcome: JobOutcome::default() };
        for (candidate, vector) in candidates.iter().zip(vectors) {
            let neighbours = self.neighbours(&mut working, &vector.fact).await?;
            let decision = self.decide(candidate, &neighbours, &working, usage).await?;
            self.apply(decision, candidate, vector, &neighbours, &mut working, &mut plan);
        }
        Ok(plan)
    }

    /// The live memories nearest to `vector`, best first: the store's, seen through this
    /// job's own changes, and the ones this job added.
    async fn neighbours(&self, working: &mut HashMap<Uuid, Working>, vector: &[f32]) -> Result<Vec<Neighbour>> {
        let job = self.job;
        let scored =
            self.store.vector_candidates(&job.org_id, &scope_key(&job.scope), vector, self.settings.neighbours).await?;
        let unseen: Vec<Uuid> = scored.iter().map(|(id, _)| *id).filter(|id| !working.contains_key(id)).collect();
        for memory in self.store.get_memories(&job.org_id, &unseen, self.now).await? {
            working.insert(memory.id, Working { memory, vector: None, stored_similarity: None, live: true });
        }
        working.values_mut().for_each(|entry| entry.stored_similarity = None);
        for (id, similarity) in scored {
            if let Some(entry) = working.get_mut(&id) {
                entry.stored_similarity = Some(similarity);
            }
        }
        let exact = job.config.metadata_merge == MetadataMerge::RequireExactMatch;
        let mut neighbours: Vec<Neighbour> = working
            .values()
            .filter(|entry| entry.live)
            // Memories of other metadata are not this job's to consolidate with.
            .filter(|entry| !exact || entry.memory.metadata == job.config.metadata)
            .filter_map(|entry| {
                let similarity = match &entry.vector {
                    Some(own) => f64::from(own.similarity(vector)),
                    None => entry.stored_similarity?,
                };
                Some(Neighbour { id: entry.memory.id, fact: entry.memory.fact.clone(), similarity })
            })
            .collect();
        neighbours.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.id.cmp(&b.id)));
        neighbours.truncate(self.settings.neighbours);
        Ok(neighbours)
    }

    async fn decide(
        &self,
        candidate: &Candidate,
        neighbours: &[Neighbour],
        working: &HashMap<Uuid, Working>,
        usage: &mut LlmUsage,
    ) -> std::result::Result<Decision, ConsolidationError> {
        let settings = &self.settings;
        if candidate.kind == CandidateKind::Forget {
            let mut memory_ids: Vec<Uuid> = neighbours
                .iter()
                .filter(|neighbour| {
                    neighbour.similarity >= settings.forget_threshold || names(&candidate.fact, &neighbour.fact)
                })
                .map(|neighbour| neighbour.id)
                .collect();
            if memory_ids.is_empty() {
                // A reworded request: the judge (llm extractor only) may still recognise it.
                let band: Vec<Neighbour> = neighbours
                    .iter()
                    .filter(|neighbour| neighbour.similarity >= settings.related_threshold)
                    .cloned()
                    .collect();
                if !band.is_empty()
                    && let Some(Verdict::Delete { memory_id }) = self.judge.judge(candidate, &band, usage).await?
                    && band.iter().any(|neighbour| neighbour.id == memory_id)
                {
                    memory_ids.push(memory_id);
                }
            }
            return Ok(if memory_ids.is_empty() { Decision::Noop } else { Decision::Delete { memory_ids } });
        }
        if self.job.config.disable_consolidation {
            return Ok(Decision::Add);
        }
        let key = normalise(&candidate.fact);
        if neighbours.iter().any(|neighbour| normalise(&neighbour.fact) == key) {
            return Ok(Decision::Noop);
        }
        if let Some(attribute) = attribute_of(&candidate.fact) {
            let same_attribute: Vec<&Neighbour> = neighbours
                .iter()
                .filter(|neighbour| attribute_of(&neighbour.fact).as_ref() == Some(&attribute))
                .collect();
            let denied = denied_fact(&candidate.fact);
            // A denial ("User no longer lives in Berlin") replaces the memory that states what it
            // denies; a memory of another value ("User lives in Hamburg") already says more.
            let same = match &denied {
                Some(denied) => same_attribute
                    .iter()
                    .find(|neighbour| names(denied, &neighbour.fact))
                    .or_else(|| same_attribute.iter().find(|neighbour| denied_fact(&neighbour.fact).is_some())),
                None => same_attribute.first(),
            };
            if denied.is_some() && same.is_none() && !same_attribute.is_empty() {
                return Ok(Decision::Noop);
            }
            if let Some(same) = same {
                return Ok(Decision::Update {
                    memory_id: same.id,
                    fact: candidate.fact.clone(),
                    vector: None,
                    reason: "same attribute, new value",
                    similarity: Some(same.similarity),
                });
            }
        }
        let Some(best) = neighbours.first() else { return Ok(Decision::Add) };
        if best.similarity >= settings.duplicate_threshold {
            return Ok(Decision::Noop);
        }
        if best.similarity < settings.related_threshold {
            return Ok(Decision::Add);
        }
        let band: Vec<Neighbour> =
            neighbours.iter().filter(|neighbour| neighbour.similarity >= settings.related_threshold).cloned().collect();
        let verdict = self.judge.judge(candidate, &band, usage).await?;
        let similarity_of = |id: Uuid| band.iter().find(|neighbour| neighbour.id == id).map(|n| n.similarity);
        Ok(match verdict {
            None | Some(Verdict::Add) => Decision::Add,
            Some(Verdict::Noop) => Decision::Noop,
            Some(Verdict::Update { memory_id, fact }) if working.contains_key(&memory_id) => {
                let vector = if fact == candidate.fact {
                    None
                } else {
                    Some(crate::embed::embed_memory(self.embedder, &fact).await?)
                };
                Decision::Update {
                    memory_id,
                    fact,
                    vector,
                    reason: "judged to refine an existing memory",
                    similarity: similarity_of(memory_id),
                }
            }
            // A contradicted memory is replaced by the candidate rather than dropped, so no
            // information disappears that no surviving memory carries.
            Some(Verdict::Delete { memory_id }) if working.contains_key(&memory_id) => Decision::Update {
                memory_id,
                fact: candidate.fact.clone(),
                vector: None,
                reason: "judged to supersede an existing memory",
                similarity: similarity_of(memory_id),
            },
            Some(Verdict::Update { .. } | Verdict::Delete { .. }) => Decision::Add,
        })
    }

    fn apply(
        &self,
        decision: Decision,
        candidate: &Candidate,
        vector: &MemoryVectors,
        neighbours: &[Neighbour],
        working: &mut HashMap<Uuid, Working>,
        plan: &mut Plan,
    ) {
        let job = self.job;
        let now = self.now;
        let outcome = &mut plan.outcome;
        let best_similarity = neighbours.first().map(|neighbour| neighbour.similarity);
        let revision = |memory_id: Uuid, action, before: Option<&Memory>, after: Option<&Memory>, cause| Revision {
            id: Uuid::now_v7(),
            memory_id,
            org_id: job.org_id.clone(),
            action,
            before: before.map(MemorySnapshot::from),
            after: after.map(MemorySnapshot::from),
            actor: job.actor.clone(),
            job_id: Some(job.id),
            cause: Some(cause),
            created_at: now,
        };
        match decision {
            Decision::Noop => outcome.unchanged += 1,
            Decision::Add => {
                let memory = Memory {
                    org_id: job.org_id.clone(),
                    id: Uuid::now_v7(),
                    scope: job.scope.clone(),
                    fact: candidate.fact.clone(),
                    topic: Some(candidate.topic.clone()).filter(|topic| !topic.is_empty()),
                    confidence: candidate.confidence,
                    source_session_id: self.source_session_id,
                    source_event_ids: candidate.source_event_ids.clone(),
                    metadata: job.config.metadata.clone(),
                    said_at: self.said_at_of(candidate),
                    created_at: now,
                    updated_at: now,
                    expires_at: ttl(job.config.created_ttl_seconds, now),
                };
                let reason = if job.config.disable_consolidation { "consolidation disabled" } else { "new fact" };
                let revision = revision(
                    memory.id,
                    RevisionAction::Created,
                    None,
                    Some(&memory),
                    super::cause(reason, candidate, best_similarity),
                );
                outcome.memories_added.push(memory.id);
                plan.changes.push(MemoryChange::Insert { memory: memory.clone(), embedding: vector.clone(), revision });
                working.insert(
                    memory.id,
                    Working { memory, vector: Some(vector.clone()), stored_similarity: None, live: true },
                );
            }
            Decision::Update { memory_id, fact, vector: own_vector, reason, similarity } => {
                let vector = own_vector.as_ref().unwrap_or(vector);
                let Some(entry) = working.get_mut(&memory_id) else { return };
                let before = entry.memory.clone();
                let mut after = before.clone();
                after.fact = fact;
                after.topic = Some(candidate.topic.clone()).filter(|topic| !topic.is_empty()).or(before.topic.clone());
                after.confidence = candidate.confidence;
                after.source_session_id = self.source_session_id.or(before.source_session_id);
                after.source_event_ids = candidate.source_event_ids.clone();
                // The memory now holds what this candidate said, so it was said when that was.
                after.said_at = self.said_at_of(candidate);
                match job.config.metadata_merge {
                    MetadataMerge::Merge | MetadataMerge::RequireExactMatch => {
                        after
                            .metadata
                            .extend(job.config.metadata.iter().map(|(key, value)| (key.clone(), value.clone())));
                    }
                    MetadataMerge::Overwrite => after.metadata = job.config.metadata.clone(),
                }
                // Never back in time, even if the memory changed after `now` was taken.
                after.updated_at = now.max(before.updated_at + Duration::microseconds(1));
                if let Some(expires_at) = ttl(job.config.updated_ttl_seconds, now) {
                    after.expires_at = Some(expires_at);
                }
                let revision = revision(
                    memory_id,
                    RevisionAction::Updated,
                    Some(&before),
                    Some(&after),
                    super::cause(reason, candidate, similarity),
                );
                plan.changes.push(MemoryChange::Update {
                    memory: after.clone(),
                    expected_updated_at: before.updated_at,
                    embedding: vector.clone(),
                    revision,
                });
                entry.memory = after;
                entry.vector = Some(vector.clone());
                if !outcome.memories_added.contains(&memory_id) && !outcome.memories_updated.contains(&memory_id) {
                    outcome.memories_updated.push(memory_id);
                }
            }
            Decision::Delete { memory_ids } => {
                for memory_id in memory_ids {
                    let Some(entry) = working.get_mut(&memory_id) else { continue };
                    let similarity = neighbours.iter().find(|n| n.id == memory_id).map(|n| n.similarity);
                    let cause = super::cause("the user asked to forget it", candidate, similarity);
                    let revision = revision(memory_id, RevisionAction::Deleted, Some(&entry.memory), None, cause);
                    plan.changes.push(MemoryChange::Delete {
                        id: memory_id,
                        expected_updated_at: entry.memory.updated_at,
                        revision,
                    });
                    entry.live = false;
                    outcome.memories_added.retain(|id| *id != memory_id);
                    outcome.memories_updated.retain(|id| *id != memory_id);
                    outcome.memories_deleted.push(memory_id);
                }
            }
        }
    }
}

/// The candidates a job should consolidate, in order: of several values of one attribute only
/// the last (the conversation's final word), no fact the same job later asks to forget, and each
/// fact once. Re-running a job over events it already processed then changes nothing.
pub fn settle_within_job(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match candidate.kind {
            CandidateKind::Forget => {
                kept.retain(|earlier| earlier.kind == CandidateKind::Forget || !names(&candidate.fact, &earlier.fact));
            }
            CandidateKind::Assert => {
                if let Some(attribute) = attribute_of(&candidate.fact) {
                    let same = |earlier: &Candidate| {
                        earlier.kind == CandidateKind::Assert
                            && attribute_of(&earlier.fact).as_ref() == Some(&attribute)
                    };
                    match denied_fact(&candidate.fact) {
                        // "I moved to Hamburg, so I don't live in Berlin any more": the denial
                        // replaces only what states Berlin, and adds nothing beside Hamburg.
                        Some(denied) => {
                            kept.retain(|earlier| !same(earlier) || !names(&denied, &earlier.fact));
                            if kept.iter().any(|earlier| same(earlier) && denied_fact(&earlier.fact).is_none()) {
                                continue;
                            }
                        }
                        None => kept.retain(|earlier| !same(earlier)),
                    }
                }
            }
        }
        let key = normalise(&candidate.fact);
        kept.retain(|earlier| earlier.kind != candidate.kind || normalise(&earlier.fact) != key);
        kept.push(candidate);
    }
    kept
}

/// What a denial denies: "User lives in Berlin" for "User no longer lives in Berlin".
fn denied_fact(fact: &str) -> Option<String> {
    fact.contains(" no longer ").then(|| fact.replacen(" no longer", "", 1))
}

/// Whether a forget request names `fact`: every content word of the request (but the subject)
/// is one of the fact's. "User's address" names "User's address is 12 Main St", "User's dog is
/// called Biscuit" names "User has a dog called Biscuit"; "User's ex" does not name "User's
/// experience with Rust".
fn names(request: &str, fact: &str) -> bool {
    let fact_words: std::collections::HashSet<String> = content_words(fact).into_iter().collect();
    let mut request_words = content_words(request).into_iter().filter(|word| word != "user").peekable();
    request_words.peek().is_some() && request_words.all(|word| fact_words.contains(&word))
}

fn ttl(seconds: Option<i64>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    seconds.map(|seconds| now + Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(fact: &str, kind: CandidateKind) -> Candidate {
        Candidate { fact: fact.to_owned(), topic: String::new(), confidence: 0.9, source_event_ids: Vec::new(), kind }
    }

    fn facts(candidates: &[Candidate]) -> Vec<(&str, CandidateKind)> {
        candidates.iter().map(|candidate| (candidate.fact.as_str(), candidate.kind)).collect()
    }

    #[test]
    fn a_job_keeps_the_last_value_of_an_attribute_and_drops_what_it_forgets() {
        use CandidateKind::{Assert, Forget};
        let settled = settle_within_job(vec![
            candidate("User's favourite colour is blue", Assert),
            candidate("User works at Acme Corp", Assert),
            candidate("User likes tea", Assert),
            candidate("User's favourite colour is green", Assert),
            candidate("User likes tea", Assert),
            candidate("User works at Acme Corp", Forget),
        ]);
        assert_eq!(
            facts(&settled),
            [
                ("User's favourite colour is green", Assert),
                ("User likes tea", Assert),
                ("User works at Acme Corp", Forget)
            ]
        );
        // A fact stated again after a forget request stands.
        let settled = settle_within_job(vec![
            candidate("User's address", Forget),
            candidate("User's address is 1 Elm Street", Assert),
        ]);
        assert_eq!(settled.len(), 2);
    }

    #[test]
    fn a_denial_replaces_only_what_it_denies() {
        use CandidateKind::Assert;
        // "I moved to Hamburg last month, so I don't live in Berlin any more."
        let settled = settle_within_job(vec![
            candidate("User lives in Hamburg", Assert),
            candidate("User no longer lives in Berlin", Assert),
        ]);
        assert_eq!(facts(&settled), [("User lives in Hamburg", Assert)]);
        // Said the other way round, the new place still wins.
        let settled = settle_within_job(vec![
            candidate("User lives in Berlin", Assert),
            candidate("User no longer lives in Berlin", Assert),
            candidate("User lives in Hamburg", Assert),
        ]);
        assert_eq!(facts(&settled), [("User lives in Hamburg", Assert)]);
        // A denial alone replaces what it denies.
        let settled = settle_within_job(vec![
            candidate("User is vegetarian", Assert),
            candidate("User is no longer vegetarian", Assert),
        ]);
        assert_eq!(facts(&settled), [("User is no longer vegetarian", Assert)]);
    }

    #[test]
    fn a_forget_request_names_whole_words_only() {
        assert!(names("User's address", "User's address is 12 Main Street"));
        assert!(names("User works at Acme Corp", "User works at Acme Corp."));
        assert!(!names("User's ex", "User's experience with Rust is long"));
        assert!(!names("User lives in Paris", "User lives in Berlin"));
        assert!(!names("User", "User likes tea"), "a request naming nothing forgets nothing");
    }
}
