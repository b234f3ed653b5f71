//! The store contract: scenarios every backend of the memory and job store must pass, written
//! once, generic over the store traits, and run by each backend's tests (`store-sqlite` and
//! `store-postgres`), as atuin's `tests-database` does. What only one backend has (HNSW
//! indexes, per-connection outbox switches) stays in that backend's tests.
//!
//! A scenario panics on the first broken expectation. Where it needs to look behind the store's
//! back (counting outbox rows, adding them in bulk), the backend passes a closure.

use chrono::{DateTime, Duration, Utc};
use contextiq_core::generation::{
    CommitResult, GenerationConfig, InlineEvent, Job, JobCompletion, JobOutcome, JobStatus, JobStore, LlmUsage,
    MemoryChange, Source,
};
use contextiq_core::memory::{MemorySnapshot, scope_key};
use contextiq_core::{
    Memory, MemoryStore, MemoryVectors, OrgId, Revision, RevisionAction, Role, Scope, VectorOutbox, VectorRecord,
    VectorState, to_micros,
};
use serde_json::json;
use uuid::Uuid;

/// Jobs of one scope run one at a time and in submission order; a lapsed lease hands the job
/// to the next claim and the attempt that lost it can no longer commit; a stale memory change
/// rolls back the whole completion.
pub async fn leases_serialize_a_scope_and_stale_work_never_commits<S: JobStore + ?Sized>(store: &S) {
    let org = OrgId::default_org();
    let now = Utc::now();
    let (scope, other) = (scope("u1"), scope("u2"));
    let first = store.enqueue_job(job(&scope, now - Duration::seconds(3))).await.unwrap();
    let second = store.enqueue_job(job(&scope, now - Duration::seconds(2))).await.unwrap();
    let elsewhere = store.enqueue_job(job(&other, now - Duration::seconds(1))).await.unwrap();
    assert_eq!(store.get_job(&org, first.id).await.unwrap().as_ref(), Some(&first));
    assert_eq!(store.get_job(&OrgId::new("other"), first.id).await.unwrap(), None);
    assert_eq!(store.count_unfinished_jobs().await.unwrap(), 3);

    // A lease that has already lapsed (as if the worker stalled).
    let claimed = store.claim_job(now, now - Duration::milliseconds(1)).await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.attempts, claimed.status), (first.id, 1, JobStatus::Running));
    assert!(!store.renew_lease(first.id, 1, now + Duration::seconds(60)).await.unwrap(), "a lapsed lease stays lapsed");
    assert_eq!(store.complete_job(completion(&first, 1, Vec::new())).await.unwrap(), CommitResult::LeaseLost);

    // The next claim takes the first job over, not the second: order within the scope holds.
    let retaken = store.claim_job(now, now + Duration::seconds(60)).await.unwrap().unwrap();
    assert_eq!((retaken.id, retaken.attempts), (first.id, 2));
    assert!(store.renew_lease(first.id, 2, now + Duration::seconds(90)).await.unwrap());
    // While it runs, its scope is busy; another scope is not.
    let next = store.claim_job(now, now + Duration::seconds(60)).await.unwrap().unwrap();
    assert_eq!(next.id, elsewhere.id);
    assert!(store.claim_job(now, now + Duration::seconds(60)).await.unwrap().is_none());
    assert_eq!(store.complete_job(completion(&first, 1, Vec::new())).await.unwrap(), CommitResult::LeaseLost);

    // A change against a memory that moved on since the job read it: nothing is written, not
    // even the insert before it, and the job stays running.
    let existing = memory(&scope, "User likes tea", "USER_PREFERENCES", now);
    store
        .insert_memory(
            existing.clone(),
            MemoryVectors::of_fact(vec![1.0, 0.0]),
            revision(&existing, RevisionAction::Created, None),
        )
        .await
        .unwrap();
    let added = memory(&scope, "User lives in Lyon", "USER_PERSONAL_INFO", now);
    let mut updated = existing.clone();
    updated.fact = "User likes green tea".to_owned();
    updated.updated_at = to_micros(Utc::now());
    let insert = MemoryChange::Insert {
        memory: added.clone(),
        embedding: MemoryVectors::of_fact(vec![0.0, 1.0]),
        revision: revision(&added, RevisionAction::Created, Some(first.id)),
    };
    let stale_update = MemoryChange::Update {
        memory: updated.clone(),
        expected_updated_at: existing.updated_at - Duration::seconds(1),
        embedding: MemoryVectors::of_fact(vec![1.0, 0.0]),
        revision: revision(&updated, RevisionAction::Updated, Some(first.id)),
    };
    let conflicting = completion(&first, 2, vec![insert.clone(), stale_update]);
    assert_eq!(store.complete_job(conflicting).await.unwrap(), CommitResult::Conflict);
    assert!(store.find_memory(&org, added.id).await.unwrap().is_none());
    assert_eq!(store.get_job(&org, first.id).await.unwrap().unwrap().status, JobStatus::Running);

    // The same work against the memory as it is commits everything, and the watermark only
    // moves forward.
    let fresh_update = MemoryChange::Update {
        memory: updated.clone(),
        expected_updated_at: existing.updated_at,
        embedding: MemoryVectors::of_fact(vec![1.0, 0.0]),
        revision: revision(&updated, RevisionAction::Updated, Some(first.id)),
    };
    let session_id = Uuid::now_v7();
    let mut committed = completion(&first, 2, vec![insert, fresh_update]);
    committed.watermark = Some((session_id, scope_key(&scope), 7));
    committed.outcome.memories_added = vec![added.id];
    assert_eq!(store.complete_job(committed).await.unwrap(), CommitResult::Committed);
    let done = store.get_job(&org, first.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.outcome.memories_added, done.lease_until),
        (JobStatus::Completed, vec![added.id], None)
    );
    let found = store.get_memories(&org, &[added.id, existing.id], Utc::now()).await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.iter().any(|memory| memory.fact == "User likes green tea"));
    let history = store.list_revisions(&org, existing.id).await.unwrap();
    assert_eq!(
        history.iter().map(|revision| revision.action).collect::<Vec<_>>(),
        [RevisionAction::Created, RevisionAction::Updated]
    );
    assert_eq!(history[1].job_id, Some(first.id));
    assert_eq!(store.generation_watermark(&org, session_id, &scope_key(&scope)).await.unwrap(), 7);
    let mut behind = completion(&next, 1, Vec::new());
    behind.watermark = Some((session_id, scope_key(&scope), 3));
    assert_eq!(store.complete_job(behind).await.unwrap(), CommitResult::Committed);
    assert_eq!(store.generation_watermark(&org, session_id, &scope_key(&scope)).await.unwrap(), 7);

    // Once the first job is done, the second of its scope runs. A failed attempt keeps its
    // usage and waits for its retry time; a final failure finishes it.
    let after = store.claim_job(now, now + Duration::seconds(60)).await.unwrap().unwrap();
    assert_eq!(after.id, second.id);
    let usage = LlmUsage { calls: 2, input_tokens: 10, output_tokens: 5, repairs: 1 };
    let retry_at = Utc::now() + Duration::seconds(3600);
    assert!(store.fail_job(second.id, 1, "boom", usage, Some(retry_at), Utc::now()).await.unwrap());
    assert!(!store.fail_job(second.id, 1, "boom", usage, None, Utc::now()).await.unwrap(), "no longer running");
    let failed = store.get_job(&org, second.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.outcome.llm_usage, failed.run_after),
        (JobStatus::Pending, Some("boom"), usage, to_micros(retry_at))
    );
    assert!(store.claim_job(Utc::now(), Utc::now() + Duration::seconds(60)).await.unwrap().is_none());
    let retried = store.claim_job(retry_at, retry_at + Duration::seconds(60)).await.unwrap().unwrap();
    assert_eq!((retried.id, retried.attempts), (second.id, 2));
    assert!(store.fail_job(second.id, 2, "boom again", usage, None, retry_at).await.unwrap());
    assert_eq!(store.count_unfinished_jobs().await.unwrap(), 0);
    assert_eq!(store.purge_finished_jobs(retry_at + Duration::seconds(1), 2).await.unwrap().len(), 2);
    assert_eq!(store.purge_finished_jobs(retry_at + Duration::seconds(1), 2).await.unwrap().len(), 1);
}

/// A job is announced to the broker when it becomes runnable (queued, lease lapsed, retry come
/// due, its scope freed) and not again while its message stands, unless the message went astray;
/// `claim_job_by_id` takes only a runnable job.
pub async fn runnable_jobs_are_announced_once_each_time_they_become_runnable<S: JobStore + ?Sized>(store: &S) {
    let now = Utc::now();
    let seconds = Duration::seconds;
    let scope: Scope = [("user_id".to_owned(), "publication".to_owned())].into();
    let first = store.enqueue_job(job(&scope, now - seconds(3))).await.unwrap();
    let second = store.enqueue_job(job(&scope, now - seconds(2))).await.unwrap();
    let announced = |at: DateTime<Utc>| {
        let store = &store;
        async move {
            let jobs = store.jobs_to_publish(at, at - seconds(60), 10).await.unwrap();
            jobs.iter().map(|job| job.id).collect::<Vec<_>>()
        }
    };

    // Only the first job of the scope may run, so only it is announced, and once.
    assert_eq!(announced(now).await, vec![first.id]);
    store.mark_published(&[first.id], now).await.unwrap();
    assert!(announced(now).await.is_empty(), "its message stands");
    // A message that stood a minute without the job being taken went astray.
    assert_eq!(announced(now + seconds(61)).await, vec![first.id]);

    assert!(store.claim_job_by_id(second.id, now, now + seconds(30)).await.unwrap().is_none(), "its scope waits");
    let claimed = store.claim_job_by_id(first.id, now, now + seconds(30)).await.unwrap().expect("runnable");
    assert_eq!(claimed.attempts, 1);
    assert!(store.claim_job_by_id(first.id, now, now + seconds(30)).await.unwrap().is_none(), "leased");
    assert!(announced(now + seconds(1)).await.is_empty(), "running under a live lease");
    // The lease lapses (its worker died): announced again, once.
    assert_eq!(announced(now + seconds(31)).await, vec![first.id]);
    store.mark_published(&[first.id], now + seconds(31)).await.unwrap();
    assert!(announced(now + seconds(32)).await.is_empty());

    // A failed attempt with a retry: announced when the retry comes due.
    assert!(store.fail_job(first.id, 1, "boom", LlmUsage::default(), Some(now + seconds(40)), now).await.unwrap());
    assert!(announced(now + seconds(35)).await.is_empty(), "not due yet");
    assert_eq!(announced(now + seconds(41)).await, vec![first.id]);
    let retried = store.claim_job_by_id(first.id, now + seconds(41), now + seconds(100)).await.unwrap().unwrap();
    assert_eq!(retried.attempts, 2);
    assert_eq!(store.complete_job(completion(&first, 2, Vec::new())).await.unwrap(), CommitResult::Committed);
    // The scope is free: the second job is announced.
    assert_eq!(announced(now + seconds(41)).await, vec![second.id]);
    assert!(store.claim_job_by_id(first.id, now + seconds(41), now + seconds(100)).await.unwrap().is_none(), "done");
}

/// With the outbox on, every write of a memory (job completions included) records it in the
/// write's transaction, and the state read back follows the memory: its vector record while it
/// is not deleted (expired or not), nothing once deleted or purged. `n_entries` counts the
/// outbox's rows.
pub async fn every_memory_write_leaves_an_outbox_entry_and_the_state_follows_the_memory<S>(
    store: &S,
    n_entries: impl AsyncFn() -> i64,
) where
    S: JobStore + VectorOutbox + ?Sized,
{
    let org = OrgId::new("acme");
    let scope: Scope = [("user_id".to_owned(), "u1".to_owned()), ("agent_id".to_owned(), "a1".to_owned())].into();
    let mut tea = memory(&scope, "User likes tea", "USER_PREFERENCES", Utc::now());
    tea.org_id = org.clone();
    store
        .insert_memory(
            tea.clone(),
            MemoryVectors::of_fact(vec![1.0, 0.0]),
            revision(&tea, RevisionAction::Created, None),
        )
        .await
        .unwrap();
    check_synced(store, tea.id, Some(vector_record(&tea, &[1.0, 0.0])), "insert").await;

    let mut updated = tea.clone();
    updated.fact = "User likes green tea".to_owned();
    let update = |embedding: Vec<f32>| {
        let (store, updated) = (&store, updated.clone());
        async move {
            let revision = revision(&updated, RevisionAction::Updated, None);
            store.update_memory(updated, Some(MemoryVectors::of_fact(embedding)), revision, Utc::now()).await.unwrap();
        }
    };
    update(vec![0.0, 1.0]).await;
    check_synced(store, tea.id, Some(vector_record(&tea, &[0.0, 1.0])), "update").await;

    // An entry written after the state was read survives the acknowledgement of that state.
    update(vec![0.6, 0.8]).await;
    let read = store.vector_state(&[tea.id]).await.unwrap();
    update(vec![0.8, 0.6]).await;
    store.ack_vector_entries(&read.entries).await.unwrap();
    let state = store.vector_state(&[tea.id]).await.unwrap();
    assert_eq!(state.records, [vector_record(&tea, &[0.8, 0.6])]);
    assert_eq!(state.entries.len(), 1, "the later write's entry");
    assert!(state.entries.iter().all(|seq| !read.entries.contains(seq)));
    store.ack_vector_entries(&state.entries).await.unwrap();
    store.ack_vector_entries(&[]).await.unwrap();

    store.delete_memory(&org, tea.id, revision(&tea, RevisionAction::Deleted, None), Utc::now()).await.unwrap();
    check_synced(store, tea.id, None, "delete").await;
    let restore = revision(&tea, RevisionAction::Restored, None);
    store.restore_memory(tea.clone(), MemoryVectors::of_fact(vec![1.0, 0.0]), restore).await.unwrap();
    check_synced(store, tea.id, Some(vector_record(&tea, &[1.0, 0.0])), "restore").await;
    store.set_embeddings(vec![(tea.id, MemoryVectors::of_fact(vec![0.0, 1.0]))]).await.unwrap();
    check_synced(store, tea.id, Some(vector_record(&tea, &[0.0, 1.0])), "set_embeddings").await;
    store.purge_memory(&org, tea.id).await.unwrap();
    check_synced(store, tea.id, None, "purge").await;

    // An expired memory stays in the index until it is purged.
    let now = Utc::now();
    let mut brief = memory(&scope, "User is at the airport", "KEY_CONVERSATION_DETAILS", now);
    brief.expires_at = Some(to_micros(now - Duration::seconds(1)));
    store
        .insert_memory(
            brief.clone(),
            MemoryVectors::of_fact(vec![1.0, 0.0]),
            revision(&brief, RevisionAction::Created, None),
        )
        .await
        .unwrap();
    check_synced(store, brief.id, Some(vector_record(&brief, &[1.0, 0.0])), "insert of an expired one").await;
    assert_eq!(store.purge_expired_memories(now, 10).await.unwrap(), 1);
    check_synced(store, brief.id, None, "purge of expired memories").await;

    // Memories that never existed: no record, no entry.
    assert_eq!(store.vector_state(&[Uuid::now_v7()]).await.unwrap(), VectorState::default());
    assert_eq!(store.vector_state(&[]).await.unwrap(), VectorState::default());
    assert_eq!(n_entries().await, 0, "every entry was acknowledged");

    // A job's changes are recorded with them, and a completion that rolls back records nothing.
    let existing = memory(&scope, "User lives in Lyon", "USER_PERSONAL_INFO", Utc::now());
    let created = revision(&existing, RevisionAction::Created, None);
    store.insert_memory(existing.clone(), MemoryVectors::of_fact(vec![1.0, 0.0]), created).await.unwrap();
    check_synced(store, existing.id, Some(vector_record(&existing, &[1.0, 0.0])), "insert").await;
    let job = store.enqueue_job(self::job(&scope, Utc::now())).await.unwrap();
    let claimed = store.claim_job(Utc::now(), Utc::now() + Duration::seconds(60)).await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    let added = memory(&scope, "User lives in Paris", "USER_PERSONAL_INFO", Utc::now());
    let insert = MemoryChange::Insert {
        memory: added.clone(),
        embedding: MemoryVectors::of_fact(vec![0.0, 1.0]),
        revision: revision(&added, RevisionAction::Created, Some(job.id)),
    };
    let delete = |expected_updated_at| MemoryChange::Delete {
        id: existing.id,
        expected_updated_at,
        revision: revision(&existing, RevisionAction::Deleted, Some(job.id)),
    };
    let stale = completion(&job, 1, vec![insert.clone(), delete(existing.updated_at - Duration::seconds(1))]);
    assert_eq!(store.complete_job(stale).await.unwrap(), CommitResult::Conflict);
    let state = store.vector_state(&[added.id, existing.id]).await.unwrap();
    assert_eq!((state.records, state.entries), (vec![vector_record(&existing, &[1.0, 0.0])], Vec::new()));
    let fresh = completion(&job, 1, vec![insert, delete(existing.updated_at)]);
    assert_eq!(store.complete_job(fresh).await.unwrap(), CommitResult::Committed);
    let state = store.vector_state(&[existing.id, added.id]).await.unwrap();
    assert_eq!((state.records, state.entries.len()), (vec![vector_record(&added, &[0.0, 1.0])], 2));
}

/// The relay's view: memories with entries older than the cutoff, oldest entry first, each once,
/// however many entries one of them has. `add_entries` records that many entries of a memory.
pub async fn pending_vector_memories_are_those_written_before_the_cutoff_oldest_first_each_once<S>(
    store: &S,
    add_entries: impl AsyncFn(Uuid, usize),
) where
    S: JobStore + VectorOutbox + ?Sized,
{
    let (first, second) = (memory(&scope("u1"), "a", "T", Utc::now()), memory(&scope("u2"), "b", "T", Utc::now()));
    for memory in [&first, &second] {
        store
            .insert_memory(
                memory.clone(),
                MemoryVectors::of_fact(vec![1.0, 0.0]),
                revision(memory, RevisionAction::Created, None),
            )
            .await
            .unwrap();
    }
    // More entries of the first memory than a page of the walk holds, as a burst of writes to
    // it leaves.
    add_entries(first.id, 300).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let third = memory(&scope("u3"), "c", "T", Utc::now());
    store
        .insert_memory(
            third.clone(),
            MemoryVectors::of_fact(vec![1.0, 0.0]),
            revision(&third, RevisionAction::Created, None),
        )
        .await
        .unwrap();

    assert_eq!(store.pending_vector_memories(cutoff, 10).await.unwrap(), [first.id, second.id]);
    assert_eq!(store.pending_vector_memories(cutoff, 1).await.unwrap(), [first.id]);
    assert!(store.pending_vector_memories(cutoff, 0).await.unwrap().is_empty());
    let later = Utc::now() + Duration::seconds(1);
    assert_eq!(store.pending_vector_memories(later, 10).await.unwrap(), [first.id, second.id, third.id]);
    let state = store.vector_state(&[first.id]).await.unwrap();
    assert_eq!(state.entries.len(), 301);
    store.ack_vector_entries(&state.entries).await.unwrap();
    assert_eq!(store.pending_vector_memories(later, 10).await.unwrap(), [second.id, third.id]);
}

/// A rebuild pages through every memory the index holds (not deleted, expired or not, every
/// org) in id order. The store's outbox is off: `n_entries` must stay 0.
pub async fn vector_records_after_page_through_the_memories_the_index_holds<S>(
    store: &S,
    n_entries: impl AsyncFn() -> i64,
) where
    S: JobStore + VectorOutbox + ?Sized,
{
    let now = Utc::now();
    let mut memories: Vec<Memory> =
        ["a", "b", "c", "deleted", "purged", "d"].iter().map(|fact| memory(&scope("u1"), fact, "T", now)).collect();
    memories[1].expires_at = Some(to_micros(now - Duration::seconds(1)));
    memories[2].org_id = OrgId::new("other");
    memories[5].scope = scope("u3");
    for (idx, memory) in memories.iter().enumerate() {
        let revision = revision(memory, RevisionAction::Created, None);
        store.insert_memory(memory.clone(), MemoryVectors::of_fact(vec![idx as f32, 1.0]), revision).await.unwrap();
    }
    let org = OrgId::default_org();
    let deleted = memories.remove(3);
    store.delete_memory(&org, deleted.id, revision(&deleted, RevisionAction::Deleted, None), now).await.unwrap();
    let purged = memories.remove(3);
    store.purge_memory(&org, purged.id).await.unwrap();
    let mut expected: Vec<VectorRecord> = [0, 1, 2, 5]
        .into_iter()
        .zip(&memories)
        .map(|(idx, memory)| vector_record(memory, &[idx as f32, 1.0]))
        .collect();
    expected.sort_by_key(|record| record.memory_id);

    let (mut found, mut after) = (Vec::new(), None);
    loop {
        let page = store.vector_records_after(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.memory_id);
        found.extend(page);
    }
    assert_eq!(found, expected);
    assert_eq!(n_entries().await, 0, "the outbox is off");
}

/// Checks a memory's state after a write: its record (`None`: the index must not hold it) and
/// one outbox entry or more; then acknowledges them.
async fn check_synced<S: VectorOutbox + ?Sized>(store: &S, id: Uuid, expect: Option<VectorRecord>, write: &str) {
    let state = store.vector_state(&[id]).await.unwrap();
    assert_eq!(state.records, Vec::from_iter(expect), "{write}");
    assert!(!state.entries.is_empty(), "{write} leaves an entry");
    store.ack_vector_entries(&state.entries).await.unwrap();
    assert!(store.vector_state(&[id]).await.unwrap().entries.is_empty(), "{write}: acknowledged");
}

/// A memory scores as its best vector, its fact's or one of its passages', in searches and
/// when an outside index's candidates are scored again. A write with vectors replaces the
/// passages (with none, there are none), a write without keeps them, a re-embedding replaces
/// them. Answers the scope, the long memory and the short one, for a backend's own checks.
pub async fn a_memory_scores_as_its_best_vector_its_passages_included<S: MemoryStore + ?Sized>(
    store: &S,
) -> (Scope, Memory, Memory) {
    let org = OrgId::default_org();
    let scope = scope("passages");
    let key = scope_key(&scope);
    let now = Utc::now();
    let long = memory(&scope, "Ann: One. Two. Three.", "T", now);
    let short = memory(&scope, "Ann counts to three", "T", now);
    let with_passages =
        MemoryVectors { fact: vec![1.0, 0.0, 0.0], passages: vec![vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]] };
    let created = revision(&long, RevisionAction::Created, None);
    store.insert_memory(long.clone(), with_passages.clone(), created).await.unwrap();
    let created = revision(&short, RevisionAction::Created, None);
    store.insert_memory(short.clone(), MemoryVectors::of_fact(vec![0.0, 0.6, 0.8]), created).await.unwrap();
    let ranked =
        async |query: [f32; 3]| -> Vec<(Uuid, f64)> { store.vector_candidates(&org, &key, &query, 10).await.unwrap() };
    let expect = |found: Vec<(Uuid, f64)>, expected: [(Uuid, f64); 2], what: &str| {
        assert_eq!(found.len(), 2, "{what}: {found:?}");
        for ((id, score), (expected_id, expected_score)) in found.iter().zip(expected) {
            assert!(*id == expected_id && (score - expected_score).abs() < 1e-5, "{what}: {found:?}");
        }
    };

    // The long memory's second passage is the query; the short one's fact is near it.
    expect(ranked([0.0, 0.0, 1.0]).await, [(long.id, 1.0), (short.id, 0.8)], "by a passage");
    expect(ranked([1.0, 0.0, 0.0]).await, [(long.id, 1.0), (short.id, 0.0)], "by the fact");
    // For candidates found elsewhere by the facts' vectors: the best similarity of those with
    // passages; neither a memory without passages nor one the store does not hold.
    let stranger = Uuid::now_v7();
    let best = store.passage_similarities(&org, &[short.id, stranger, long.id], &[0.0, 0.0, 1.0]).await.unwrap();
    assert_eq!(best.keys().collect::<Vec<_>>(), [&long.id], "{best:?}");
    assert!((best[&long.id] - 1.0).abs() < 1e-5, "{best:?}");
    let other_org = OrgId::new("someone-else");
    assert!(store.passage_similarities(&other_org, &[long.id], &[0.0, 0.0, 1.0]).await.unwrap().is_empty());
    assert!(store.passage_similarities(&org, &[], &[0.0, 0.0, 1.0]).await.unwrap().is_empty());

    // A change without vectors (the topic) keeps them.
    let mut retopiced = long.clone();
    retopiced.topic = Some("U".to_owned());
    retopiced.updated_at = to_micros(Utc::now());
    let updated = revision(&retopiced, RevisionAction::Updated, None);
    store.update_memory(retopiced.clone(), None, updated, Utc::now()).await.unwrap();
    expect(ranked([0.0, 0.0, 1.0]).await, [(long.id, 1.0), (short.id, 0.8)], "a change without vectors");
    // New vectors without passages: it has none any more.
    let mut refacted = retopiced.clone();
    refacted.fact = "Ann: One.".to_owned();
    refacted.updated_at = to_micros(Utc::now());
    let updated = revision(&refacted, RevisionAction::Updated, None);
    store
        .update_memory(refacted, Some(MemoryVectors::of_fact(vec![1.0, 0.0, 0.0])), updated, Utc::now())
        .await
        .unwrap();
    expect(ranked([0.0, 0.0, 1.0]).await, [(short.id, 0.8), (long.id, 0.0)], "new vectors, no passages");
    // A re-embedding gives them back.
    store.set_embeddings(vec![(long.id, with_passages)]).await.unwrap();
    expect(ranked([0.0, 0.0, 1.0]).await, [(long.id, 1.0), (short.id, 0.8)], "re-embedded");
    (scope, long, short)
}

pub fn scope(user: &str) -> Scope {
    [("user_id".to_owned(), user.to_owned())].into()
}

pub fn memory(scope: &Scope, fact: &str, topic: &str, now: DateTime<Utc>) -> Memory {
    let now = to_micros(now);
    Memory {
        org_id: OrgId::default_org(),
        id: Uuid::now_v7(),
        scope: scope.clone(),
        fact: fact.to_owned(),
        topic: Some(topic.to_owned()),
        confidence: 0.9,
        source_session_id: None,
        source_event_ids: vec![Uuid::now_v7()],
        metadata: json!({"source": "test"}).as_object().cloned().unwrap_or_default(),
        // Said days before it was stored, as a memory of an older conversation is: a store that
        // dropped the column and read back `created_at` would fail every comparison.
        said_at: now - chrono::Duration::days(3),
        created_at: now,
        updated_at: now,
        expires_at: None,
    }
}

pub fn revision(memory: &Memory, action: RevisionAction, job_id: Option<Uuid>) -> Revision {
    Revision {
        id: Uuid::now_v7(),
        memory_id: memory.id,
        org_id: memory.org_id.clone(),
        action,
        before: None,
        after: Some(MemorySnapshot::from(memory)),
        actor: "test".to_owned(),
        job_id,
        cause: job_id.map(|_| json!({"reason": "test"})),
        // The time of the change, so that history reads in the order of the calls.
        created_at: to_micros(Utc::now()),
    }
}

pub fn job(scope: &Scope, created_at: DateTime<Utc>) -> Job {
    let created_at = to_micros(created_at);
    Job {
        id: Uuid::now_v7(),
        org_id: OrgId::default_org(),
        scope: scope.clone(),
        status: JobStatus::Pending,
        source: Source::Events {
            events: vec![InlineEvent {
                id: Uuid::now_v7(),
                author: "u".into(),
                role: Role::User,
                content: "x".into(),
                said_at: None,
            }],
        },
        config: GenerationConfig::default(),
        actor: "test".to_owned(),
        attempts: 0,
        max_attempts: 3,
        error: None,
        outcome: JobOutcome::default(),
        created_at,
        updated_at: created_at,
        started_at: None,
        finished_at: None,
        run_after: created_at,
        lease_until: None,
        trace_context: Default::default(),
    }
}

pub fn completion(job: &Job, attempt: u32, changes: Vec<MemoryChange>) -> JobCompletion {
    JobCompletion {
        job_id: job.id,
        org_id: job.org_id.clone(),
        attempt,
        changes,
        watermark: None,
        outcome: JobOutcome::default(),
        now: Utc::now(),
    }
}

pub fn vector_record(memory: &Memory, embedding: &[f32]) -> VectorRecord {
    VectorRecord {
        memory_id: memory.id,
        org_id: memory.org_id.clone(),
        scope_key: scope_key(&memory.scope),
        embedding: embedding.to_vec(),
    }
}
