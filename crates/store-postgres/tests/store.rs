//! The memory and job stores against a real PostgreSQL with pgvector, each test in a scratch
//! database of its own: the shared scenarios of `contextiq-store-tests`, and what only
//! PostgreSQL has. Set `CONTEXTIQ_TEST_DATABASE_URL` (see `scripts/services.sh`) to run
//! them; without it they are skipped with a message (or fail, under `CONTEXTIQ_REQUIRE_SERVICES=1`).

use chrono::{Duration, Utc};
use contextiq_core::memory::{MemoryFilter, scope_key};
use contextiq_core::{
    Memory, MemoryStore, MemoryVectors, OrgId, RevisionAction, SessionStore, VectorOutbox, to_micros,
};
use contextiq_store_postgres::{PostgresOptions, PostgresStore, create_scratch_database};
use contextiq_store_tests::{self as store_tests, memory, revision, scope};
use serde_json::json;
use uuid::Uuid;

const DATABASE_URL: &str = "CONTEXTIQ_TEST_DATABASE_URL";

/// A store on a new database, and that database's URL; `None` when no server is configured.
async fn scratch_store(test: &str) -> Option<(PostgresStore, String)> {
    scratch_store_with(test, false).await
}

/// [`scratch_store`] with the vector outbox on or off.
async fn scratch_store_with(test: &str, vector_outbox: bool) -> Option<(PostgresStore, String)> {
    let Ok(url) = std::env::var(DATABASE_URL) else {
        skip_unless_required(test, &format!("{DATABASE_URL} is not set"));
        return None;
    };
    let url = create_scratch_database(&url).await.expect("create a scratch database");
    Some((open_store(&url, vector_outbox).await, url))
}

/// Skips a test whose service is not configured, with a message; fails it instead under
/// `CONTEXTIQ_REQUIRE_SERVICES=1`, which `scripts/test.sh` sets, so the suite cannot pass
/// without testing what it is meant to.
fn skip_unless_required(test: &str, why: &str) {
    if std::env::var_os("CONTEXTIQ_REQUIRE_SERVICES").is_some_and(|value| value == "1") {
        panic!("{test}: {why}, and CONTEXTIQ_REQUIRE_SERVICES=1 forbids skipping");
    }
    eprintln!("{test} skipped: {why}");
}

async fn open_store(url: &str, vector_outbox: bool) -> PostgresStore {
    let options = PostgresOptions { pool_size: 2, vector_outbox, ..PostgresOptions::new(url) };
    PostgresStore::open(&options).await.expect("open the store")
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

/// The shared scenario of this name, on PostgreSQL.
#[tokio::test]
async fn leases_serialize_a_scope_and_stale_work_never_commits() {
    let test = "leases_serialize_a_scope_and_stale_work_never_commits";
    let Some((store, url)) = scratch_store(test).await else { return };
    store_tests::leases_serialize_a_scope_and_stale_work_never_commits(&store).await;
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
        store.insert_memory(memory.clone(), MemoryVectors::of_fact(vector.to_vec()), revision).await.unwrap();
    }
    assert_eq!(store.count_memories().await.unwrap(), 4);

    // Listing: newest first, filtered, in pages.
    let list = |filter: MemoryFilter, cursor, limit| {
        let (store, org, key) = (&store, &org, &key);
        async move { store.list_memories(org, Some(key), &filter, cursor, limit, Utc::now()).await.unwrap() }
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
    store
        .update_memory(updated.clone(), Some(MemoryVectors::of_fact(vec![0.0, 0.0, 1.0])), update_revision, Utc::now())
        .await
        .unwrap();
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
        .restore_memory(
            tea.clone(),
            MemoryVectors::of_fact(vec![1.0, 0.0, 0.0]),
            revision(&tea, RevisionAction::Restored, None),
        )
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
        .insert_memory(
            brief.clone(),
            MemoryVectors::of_fact(vec![0.0, 0.0, 1.0]),
            revision(&brief, RevisionAction::Created, None),
        )
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
    let embeddings = facts
        .iter()
        .map(|(id, _)| (*id, MemoryVectors::of_fact(if *id == cat.id { vec![0.0, 1.0] } else { vec![1.0, 0.0] })));
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

/// The shared scenario of this name, on PostgreSQL; then through HNSW, where the index finds
/// candidates by their facts' vectors and the passages score them again.
#[tokio::test]
async fn a_memory_scores_as_its_best_vector_its_passages_included() {
    let test = "a_memory_scores_as_its_best_vector_its_passages_included";
    let Some((store, url)) = scratch_store(test).await else { return };
    store.set_embedding_model("test-3", 3).await.unwrap();
    let (scope, long, short) = store_tests::a_memory_scores_as_its_best_vector_its_passages_included(&store).await;
    let through_hnsw = PostgresOptions { pool_size: 1, exact_scan_max: 0, ..PostgresOptions::new(url.clone()) };
    let through_hnsw = PostgresStore::open(&through_hnsw).await.unwrap();
    let found =
        through_hnsw.vector_candidates(&OrgId::default_org(), &scope_key(&scope), &[0.0, 0.0, 1.0], 10).await.unwrap();
    assert_eq!(found.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [long.id, short.id], "{found:?}");
    assert!((found[0].1 - 1.0).abs() < 1e-5, "{found:?}");
    through_hnsw.close().await;
    drop_scratch_store(store, &url).await;
}

/// The shared scenario of this name, on PostgreSQL.
#[tokio::test]
async fn runnable_jobs_are_announced_once_each_time_they_become_runnable() {
    let test = "runnable_jobs_are_announced_once_each_time_they_become_runnable";
    let Some((store, url)) = scratch_store(test).await else { return };
    store_tests::runnable_jobs_are_announced_once_each_time_they_become_runnable(&store).await;
    drop_scratch_store(store, &url).await;
}

async fn n_outbox_entries(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM vector_outbox").fetch_one(&mut conn).await.expect("count the entries")
}

/// The shared scenario of this name, on PostgreSQL.
#[tokio::test]
async fn every_memory_write_leaves_an_outbox_entry_and_the_state_follows_the_memory() {
    let test = "every_memory_write_leaves_an_outbox_entry_and_the_state_follows_the_memory";
    let Some((store, url)) = scratch_store_with(test, true).await else { return };
    store_tests::every_memory_write_leaves_an_outbox_entry_and_the_state_follows_the_memory(&store, async || {
        n_outbox_entries(&url).await
    })
    .await;
    drop_scratch_store(store, &url).await;
}

/// The shared scenario of this name, on PostgreSQL.
#[tokio::test]
async fn pending_vector_memories_are_those_written_before_the_cutoff_oldest_first_each_once() {
    let test = "pending_vector_memories_are_those_written_before_the_cutoff_oldest_first_each_once";
    let Some((store, url)) = scratch_store_with(test, true).await else { return };
    let add_entries = async |memory_id: Uuid, n_entries: usize| {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query("INSERT INTO vector_outbox (memory_id) SELECT $1 FROM generate_series(1, $2)")
            .bind(memory_id)
            .bind(n_entries as i64)
            .execute(&mut conn)
            .await
            .expect("add entries");
    };
    store_tests::pending_vector_memories_are_those_written_before_the_cutoff_oldest_first_each_once(
        &store,
        add_entries,
    )
    .await;
    drop_scratch_store(store, &url).await;
}

/// The shared scenario of this name, on PostgreSQL.
#[tokio::test]
async fn vector_records_after_page_through_the_memories_the_index_holds() {
    let test = "vector_records_after_page_through_the_memories_the_index_holds";
    let Some((store, url)) = scratch_store_with(test, false).await else { return };
    store_tests::vector_records_after_page_through_the_memories_the_index_holds(&store, async || {
        n_outbox_entries(&url).await
    })
    .await;
    drop_scratch_store(store, &url).await;
}

/// Writes a new memory through `store`: an insert, then a re-embedding.
async fn insert_and_reembed(store: &PostgresStore, fact: &str) -> Memory {
    let memory = memory(&scope("u1"), fact, "T", Utc::now());
    let revision = revision(&memory, RevisionAction::Created, None);
    store.insert_memory(memory.clone(), MemoryVectors::of_fact(vec![1.0, 0.0]), revision).await.unwrap();
    store.set_embeddings(vec![(memory.id, MemoryVectors::of_fact(vec![0.0, 1.0]))]).await.unwrap();
    memory
}

/// The switch is each connection's: of two stores open on one database at once, the one opened
/// with the option records its own writes, whichever of its connections runs them, and the
/// other records nothing, even with a default of `on` set for the database; opening, writing
/// through or closing the other never turns the first one's off.
#[tokio::test]
async fn only_the_store_opened_with_the_outbox_records_its_writes() {
    let test = "only_the_store_opened_with_the_outbox_records_its_writes";
    let Some((on, url)) = scratch_store_with(test, true).await else { return };
    let off = open_store(&url, false).await;
    let org = OrgId::default_org();

    let by_off = insert_and_reembed(&off, "a").await;
    off.purge_memory(&org, by_off.id).await.unwrap();
    assert_eq!(n_outbox_entries(&url).await, 0, "the store without the option records nothing");
    // At once, so on more than one connection of the pool.
    let (b, c, d) =
        tokio::join!(insert_and_reembed(&on, "b"), insert_and_reembed(&on, "c"), insert_and_reembed(&on, "d"));
    let by_on = [b.id, c.id, d.id];
    assert_eq!(on.vector_state(&by_on).await.unwrap().entries.len(), 6, "inserts and re-embeddings");
    off.set_embeddings(vec![(b.id, MemoryVectors::of_fact(vec![1.0, 0.0]))]).await.unwrap();
    assert_eq!(n_outbox_entries(&url).await, 6, "not even of a memory the other recorded");

    // A default for the database reaches new connections, but the store without the option
    // sets the switch off on each of its own.
    off.close().await;
    let name = url.rsplit_once('/').map(|(_, name)| name).expect("a database name");
    let sql = format!("ALTER DATABASE \"{name}\" SET contextiq.vector_outbox = on");
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("set a default for the database");
    }
    let off = open_store(&url, false).await;
    insert_and_reembed(&off, "e").await;
    assert_eq!(n_outbox_entries(&url).await, 6);

    // Closing the store without the option leaves the other's on; the entries stay for the relay.
    off.close().await;
    let later = insert_and_reembed(&on, "f").await;
    assert_eq!(on.vector_state(&[later.id]).await.unwrap().entries.len(), 2);
    let mut pending = by_on.to_vec();
    pending.push(later.id);
    pending.sort();
    let mut found = on.pending_vector_memories(Utc::now() + Duration::seconds(1), 10).await.unwrap();
    found.sort();
    assert_eq!(found, pending);
    drop_scratch_store(on, &url).await;
}
