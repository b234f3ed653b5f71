//! The memory and job stores against a real PostgreSQL with pgvector, each test in a scratch
//! database of its own. Set `CONTEXTIQ_TEST_DATABASE_URL` (see `scripts/services.sh`) to run
//! them; without it they are skipped with a message.

use chrono::{DateTime, Duration, Utc};
use contextiq_core::generation::{
    CommitResult, GenerationConfig, InlineEvent, Job, JobCompletion, JobOutcome, JobStatus, JobStore, LlmUsage,
    MemoryChange, Source,
};
use contextiq_core::memory::{MemoryFilter, MemorySnapshot, scope_key};
use contextiq_core::{Memory, MemoryStore, OrgId, Revision, RevisionAction, Role, Scope, SessionStore, to_micros};
use contextiq_store_postgres::{PostgresOptions, PostgresStore, create_scratch_database};
use serde_json::json;
use uuid::Uuid;

const DATABASE_URL: &str = "CONTEXTIQ_TEST_DATABASE_URL";

/// A store on a new database, and that database's URL; `None` when no server is configured.
async fn scratch_store(test: &str) -> Option<(PostgresStore, String)> {
    let Ok(url) = std::env::var(DATABASE_URL) else {
        eprintln!("{test} skipped: {DATABASE_URL} is not set");
        return None;
    };
    let url = create_scratch_database(&url).await.expect("create a scratch database");
    let options = PostgresOptions { pool_size: 2, ..PostgresOptions::new(url.clone()) };
    Some((PostgresStore::open(&options).await.expect("open the store"), url))
}

/// Closes the store and drops its database. A failed test skips this, leaving its database to
/// look into.
async fn drop_scratch_store(store: PostgresStore, scratch_url: &str) {
    use sqlx::Connection;
    store.close().await;
    let name = scratch_url.rsplit_once('/').map(|(_, name)| name).expect("a database name");
    let mut conn = sqlx::PgConnection::connect(&std::env::var(DATABASE_URL).expect("the server")).await.unwrap();
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("drop the scratch database");
}

fn scope(user: &str) -> Scope {
    [("user_id".to_owned(), user.to_owned())].into()
}

fn memory(scope: &Scope, fact: &str, topic: &str, now: DateTime<Utc>) -> Memory {
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
        created_at: now,
        updated_at: now,
        expires_at: None,
    }
}

fn revision(memory: &Memory, action: RevisionAction, job_id: Option<Uuid>) -> Revision {
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

fn job(scope: &Scope, created_at: DateTime<Utc>) -> Job {
    let created_at = to_micros(created_at);
    Job {
        id: Uuid::now_v7(),
        org_id: OrgId::default_org(),
        scope: scope.clone(),
        status: JobStatus::Pending,
        source: Source::Events {
            events: vec![InlineEvent { id: Uuid::now_v7(), author: "u".into(), role: Role::User, content: "x".into() }],
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

fn completion(job: &Job, attempt: u32, changes: Vec<MemoryChange>) -> JobCompletion {
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

async fn hnsw_indexes(url: &str) -> Vec<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'memories' AND indexname LIKE '%hnsw%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list indexes");
    names.into_iter().map(|(name,)| name).collect()
}

/// Jobs of one scope run one at a time and in submission order; a lapsed lease hands the job
/// to the next claim and the attempt that lost it can no longer commit; a stale memory change
/// rolls back the whole completion.
#[tokio::test]
async fn leases_serialize_a_scope_and_stale_work_never_commits() {
    let Some((store, url)) = scratch_store("leases_serialize_a_scope_and_stale_work_never_commits").await else {
        return;
    };
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
        .insert_memory(existing.clone(), vec![1.0, 0.0], revision(&existing, RevisionAction::Created, None))
        .await
        .unwrap();
    let added = memory(&scope, "User lives in Lyon", "USER_PERSONAL_INFO", now);
    let mut updated = existing.clone();
    updated.fact = "User likes green tea".to_owned();
    updated.updated_at = to_micros(Utc::now());
    let insert = MemoryChange::Insert {
        memory: added.clone(),
        embedding: vec![0.0, 1.0],
        revision: revision(&added, RevisionAction::Created, Some(first.id)),
    };
    let stale_update = MemoryChange::Update {
        memory: updated.clone(),
        expected_updated_at: existing.updated_at - Duration::seconds(1),
        embedding: vec![1.0, 0.0],
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
        embedding: vec![1.0, 0.0],
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
    drop_scratch_store(store, &url).await;
}

/// A memory through its life (update, delete, restore, purge) with its history, the filters and
/// pages of listing, both searches, expiry, and the HNSW index across a change of model.
#[tokio::test]
async fn memories_keep_history_and_search_by_words_and_vectors() {
    let Some((store, url)) = scratch_store("memories_keep_history_and_search_by_words_and_vectors").await else {
        return;
    };
    let org = OrgId::default_org();
    let scope = scope("u1");
    let key = scope_key(&scope);
    let now = Utc::now();
    store.set_embedding_model("test-3", 3).await.unwrap();
    assert_eq!(store.embedding_model().await.unwrap(), Some(("test-3".to_owned(), 3)));
    assert_eq!(hnsw_indexes(&url).await, ["memories_embedding_hnsw_3"]);

    let tea = memory(&scope, "User drinks green tea every morning", "USER_PREFERENCES", now - Duration::seconds(3));
    let mut city = memory(&scope, "User lives in Lyon", "USER_PERSONAL_INFO", now - Duration::seconds(2));
    city.metadata.insert("verified".to_owned(), json!(true));
    let cat = memory(&scope, "User has a cat named Tea", "USER_PERSONAL_INFO", now - Duration::seconds(1));
    let elsewhere = memory(&self::scope("u2"), "User drinks tea too", "USER_PREFERENCES", now);
    for (memory, vector) in
        [(&tea, [1.0, 0.0, 0.0]), (&city, [0.0, 1.0, 0.0]), (&cat, [0.6, 0.8, 0.0]), (&elsewhere, [1.0, 0.0, 0.0])]
    {
        let revision = revision(memory, RevisionAction::Created, None);
        store.insert_memory(memory.clone(), vector.to_vec(), revision).await.unwrap();
    }
    assert_eq!(store.count_memories().await.unwrap(), 4);

    // Listing: newest first, filtered, in pages.
    let list = |filter: MemoryFilter, cursor, limit| {
        let (store, org, key) = (&store, &org, &key);
        async move { store.list_memories(org, key, &filter, cursor, limit, Utc::now()).await.unwrap() }
    };
    let first_page = list(MemoryFilter::default(), None, 2).await;
    assert_eq!(first_page.memories.iter().map(|memory| memory.id).collect::<Vec<_>>(), [cat.id, city.id]);
    let last_page = list(MemoryFilter::default(), first_page.next_cursor, 2).await;
    assert_eq!((last_page.memories.len(), last_page.memories[0].id, last_page.next_cursor), (1, tea.id, None));
    assert_eq!(last_page.memories[0], tea);
    let by_topic = MemoryFilter { topic: Some("USER_PERSONAL_INFO".to_owned()), ..MemoryFilter::default() };
    assert_eq!(list(by_topic, None, 10).await.memories.len(), 2);
    let by_metadata =
        MemoryFilter { metadata: [("verified".to_owned(), json!(true))].into(), ..MemoryFilter::default() };
    assert_eq!(
        list(by_metadata, None, 10).await.memories.iter().map(|memory| memory.id).collect::<Vec<_>>(),
        [city.id]
    );
    let by_time = MemoryFilter { created_after: Some(city.created_at), ..MemoryFilter::default() };
    assert_eq!(list(by_time, None, 10).await.memories.iter().map(|memory| memory.id).collect::<Vec<_>>(), [cat.id]);

    // Both searches stay within the scope and rank the closer memory first.
    let lexical = store.lexical_candidates(&org, &key, "what tea? (drinks)", 10, Utc::now()).await.unwrap();
    assert_eq!(lexical.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [tea.id, cat.id]);
    assert!(lexical[0].1 > lexical[1].1);
    assert!(store.lexical_candidates(&org, &key, " ?! ", 10, Utc::now()).await.unwrap().is_empty());
    let nearest = store.vector_candidates(&org, &key, &[1.0, 0.0, 0.0], 2).await.unwrap();
    assert_eq!(nearest.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [tea.id, cat.id]);
    assert!((nearest[0].1 - 1.0).abs() < 1e-6 && (nearest[1].1 - 0.6).abs() < 1e-6, "{nearest:?}");

    // An update applies to a live memory only; a delete keeps the record and its history.
    let mut updated = tea.clone();
    updated.fact = "User drinks black coffee every morning".to_owned();
    updated.updated_at = to_micros(Utc::now());
    let update_revision = revision(&updated, RevisionAction::Updated, None);
    store.update_memory(updated.clone(), Some(vec![0.0, 0.0, 1.0]), update_revision, Utc::now()).await.unwrap();
    let lexical = store.lexical_candidates(&org, &key, "coffee", 10, Utc::now()).await.unwrap();
    assert_eq!(lexical.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [tea.id]);
    store.delete_memory(&org, tea.id, revision(&updated, RevisionAction::Deleted, None), Utc::now()).await.unwrap();
    assert!(store.get_memories(&org, &[tea.id, cat.id], Utc::now()).await.unwrap().iter().all(|m| m.id == cat.id));
    assert!(store.find_memory(&org, tea.id).await.unwrap().unwrap().deleted_at.is_some());
    assert!(store.lexical_candidates(&org, &key, "coffee", 10, Utc::now()).await.unwrap().is_empty());
    let nearest = store.vector_candidates(&org, &key, &[0.0, 0.0, 1.0], 10).await.unwrap();
    assert!(nearest.iter().all(|(id, _)| *id != tea.id));
    let again = store.delete_memory(&org, tea.id, revision(&updated, RevisionAction::Deleted, None), Utc::now()).await;
    assert!(again.is_err(), "a deleted memory cannot be deleted again");
    let stale =
        store.update_memory(updated.clone(), None, revision(&updated, RevisionAction::Updated, None), Utc::now());
    assert!(stale.await.is_err(), "a deleted memory cannot be updated");

    // A restore brings it back, fields and vector included.
    store
        .restore_memory(tea.clone(), vec![1.0, 0.0, 0.0], revision(&tea, RevisionAction::Restored, None))
        .await
        .unwrap();
    assert_eq!(store.get_memories(&org, &[tea.id], Utc::now()).await.unwrap(), std::slice::from_ref(&tea));
    assert_eq!(store.vector_candidates(&org, &key, &[1.0, 0.0, 0.0], 1).await.unwrap()[0].0, tea.id);
    let actions: Vec<_> = store.list_revisions(&org, tea.id).await.unwrap().iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        [RevisionAction::Created, RevisionAction::Updated, RevisionAction::Deleted, RevisionAction::Restored]
    );

    // A purge erases the record and its history.
    assert!(store.purge_memory(&OrgId::new("other"), tea.id).await.is_err());
    store.purge_memory(&org, tea.id).await.unwrap();
    assert!(store.find_memory(&org, tea.id).await.unwrap().is_none());
    assert!(store.list_revisions(&org, tea.id).await.unwrap().is_empty());

    // Expired memories are no longer live, then purged.
    let mut brief = memory(&scope, "User is at the airport", "KEY_CONVERSATION_DETAILS", now);
    brief.expires_at = Some(to_micros(now + Duration::seconds(10)));
    store
        .insert_memory(brief.clone(), vec![0.0, 0.0, 1.0], revision(&brief, RevisionAction::Created, None))
        .await
        .unwrap();
    let later = now + Duration::seconds(11);
    assert!(store.get_memories(&org, &[brief.id], later).await.unwrap().is_empty());
    assert!(store.lexical_candidates(&org, &key, "airport", 10, later).await.unwrap().is_empty());
    assert_eq!(store.purge_expired_memories(now, 10).await.unwrap(), 0);
    assert_eq!(store.purge_expired_memories(later, 10).await.unwrap(), 1);

    // Re-embedding with a model of another dimension: its vectors replace the old ones, the
    // old index goes, and the new model's index comes once it is recorded.
    let mut facts = Vec::new();
    let mut after = None;
    loop {
        let page = store.memory_facts_after(after, 2).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        facts.extend(page);
    }
    assert_eq!(facts.len(), 3);
    let embeddings = facts.iter().map(|(id, _)| (*id, if *id == cat.id { vec![0.0, 1.0] } else { vec![1.0, 0.0] }));
    store.set_embeddings(embeddings.collect()).await.unwrap();
    assert!(hnsw_indexes(&url).await.is_empty());
    store.set_embedding_model("test-2", 2).await.unwrap();
    assert_eq!(hnsw_indexes(&url).await, ["memories_embedding_hnsw_2"]);
    let nearest = store.vector_candidates(&org, &key, &[0.0, 1.0], 1).await.unwrap();
    assert_eq!(nearest.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [cat.id]);
    // Small scopes are compared exactly; larger ones go through HNSW: both rank the same.
    let through_hnsw = PostgresOptions { pool_size: 1, exact_scan_max: 0, ..PostgresOptions::new(url.clone()) };
    let through_hnsw = PostgresStore::open(&through_hnsw).await.unwrap();
    for query in [[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]] {
        let exact = store.vector_candidates(&org, &key, &query, 10).await.unwrap();
        let approximate = through_hnsw.vector_candidates(&org, &key, &query, 10).await.unwrap();
        assert_eq!(exact.len(), 2, "the live memories of the scope");
        let ids = |found: &[(Uuid, f64)]| found.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        assert_eq!(ids(&exact), ids(&approximate), "{query:?}");
        for ((_, a), (_, b)) in exact.iter().zip(&approximate) {
            assert!((a - b).abs() < 1e-6, "{query:?}: {exact:?} vs {approximate:?}");
        }
    }
    through_hnsw.close().await;
    drop_scratch_store(store, &url).await;
}

/// A job is announced to the broker when it becomes runnable (queued, lease lapsed, retry come
/// due, its scope freed) and not again while its message stands, unless the message went astray;
/// `claim_job_by_id` takes only a runnable job.
#[tokio::test]
async fn runnable_jobs_are_announced_once_each_time_they_become_runnable() {
    let Some((store, url)) = scratch_store("runnable_jobs_are_announced_once_each_time_they_become_runnable").await
    else {
        return;
    };
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
    drop_scratch_store(store, &url).await;
}
