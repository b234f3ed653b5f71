//! The memory and job stores on SQLite, each test on a file of its own: the shared scenarios of
//! `contextiq-store-tests`.

use contextiq_store_sqlite::{SqliteOptions, SqliteStore};
use contextiq_store_tests as store_tests;
use sqlx::Connection;
use uuid::Uuid;

/// A store on a new file in `dir`.
async fn open(dir: &tempfile::TempDir, vector_outbox: bool) -> (SqliteStore, std::path::PathBuf) {
    let path = dir.path().join("test.db");
    let options = SqliteOptions { vector_outbox, ..SqliteOptions::new(&path) };
    (SqliteStore::open(&options).await.expect("open the store"), path)
}

/// The outbox's rows, counted on a connection of its own.
async fn n_outbox_entries(path: &std::path::Path) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM vector_outbox").fetch_one(&mut conn).await.expect("count the entries")
}

#[tokio::test]
async fn leases_serialize_a_scope_and_stale_work_never_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir, false).await;
    store_tests::leases_serialize_a_scope_and_stale_work_never_commits(&store).await;
    contextiq_core::SessionStore::close(&store).await;
}

#[tokio::test]
async fn runnable_jobs_are_announced_once_each_time_they_become_runnable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir, false).await;
    store_tests::runnable_jobs_are_announced_once_each_time_they_become_runnable(&store).await;
    contextiq_core::SessionStore::close(&store).await;
}

#[tokio::test]
async fn every_memory_write_leaves_an_outbox_entry_and_the_state_follows_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir, true).await;
    let n_entries = async || n_outbox_entries(&path).await;
    store_tests::every_memory_write_leaves_an_outbox_entry_and_the_state_follows_the_memory(&store, n_entries).await;
    contextiq_core::SessionStore::close(&store).await;
}

#[tokio::test]
async fn pending_vector_memories_are_those_written_before_the_cutoff_oldest_first_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir, true).await;
    // Each re-embedding of a memory records an entry of it.
    let add_entries = async |memory_id: Uuid, n_entries: usize| {
        let embeddings = vec![(memory_id, contextiq_core::MemoryVectors::of_fact(vec![0.0, 1.0])); n_entries];
        contextiq_core::MemoryStore::set_embeddings(&store, embeddings).await.expect("re-embed");
    };
    store_tests::pending_vector_memories_are_those_written_before_the_cutoff_oldest_first_each_once(
        &store,
        add_entries,
    )
    .await;
    contextiq_core::SessionStore::close(&store).await;
}

#[tokio::test]
async fn vector_records_after_page_through_the_memories_the_index_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir, false).await;
    let n_entries = async || n_outbox_entries(&path).await;
    store_tests::vector_records_after_page_through_the_memories_the_index_holds(&store, n_entries).await;
    contextiq_core::SessionStore::close(&store).await;
}

#[tokio::test]
async fn a_memory_scores_as_its_best_vector_its_passages_included() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir, false).await;
    store_tests::a_memory_scores_as_its_best_vector_its_passages_included(&store).await;
    contextiq_core::SessionStore::close(&store).await;
}
