//! Many requests at once, as the conformance suite sends them.

use qdrant_client::qdrant::{Condition, CountPointsBuilder, Distance, Filter, QueryPointsBuilder, UpsertPointsBuilder};
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{create_collection, point, spawn_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_upserts_and_queries_all_succeed() {
    let app = spawn_server().await;
    create_collection(&app.client, "busy", 8, Distance::Cosine).await;

    let mut tasks = JoinSet::new();
    for task_idx in 0..50u64 {
        let client = app.client.clone();
        tasks.spawn(async move {
            let vector: Vec<f32> = (0..8).map(|dim| ((task_idx + dim) % 7) as f32 + 0.5).collect();
            let org = format!("org-{}", task_idx % 5);
            client
                .upsert_points(
                    UpsertPointsBuilder::new("busy", vec![point(task_idx, vector.clone(), json!({"org": org}))])
                        .wait(true),
                )
                .await?;
            let result = client
                .query(
                    QueryPointsBuilder::new("busy")
                        .query(vector)
                        .filter(Filter::must([Condition::matches("org", org)]))
                        .limit(5),
                )
                .await?;
            assert!(!result.result.is_empty(), "a query finds at least the point just written");
            Ok::<_, qdrant_client::QdrantError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }

    let count = app.client.count(CountPointsBuilder::new("busy")).await.unwrap();
    assert_eq!(count.result.unwrap().count, 50);
}
