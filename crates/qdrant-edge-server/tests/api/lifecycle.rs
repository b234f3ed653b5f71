//! Health check, API key, shutdown and reload from storage.

use qdrant_client::Qdrant;
use qdrant_client::qdrant::vectors_config::Config;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateFieldIndexCollectionBuilder, Distance, FieldType, Filter, QueryPointsBuilder,
};
use serde_json::json;
use tonic::Code;

use crate::helpers::{client, create_collection, point, spawn_server, start, status, upsert};

#[tokio::test]
async fn the_health_check_reports_a_version_the_client_accepts() {
    let app = spawn_server().await;
    let reply = app.client.health_check().await.unwrap();
    assert_eq!(reply.title, "qdrant - vector search engine");
    let version: Vec<u64> = reply.version.split('.').map(|part| part.parse().unwrap()).collect();
    let client_minor = 20;
    assert_eq!(version[0], 1);
    assert!(version[1].abs_diff(client_minor) <= 1, "version {}", reply.version);
}

/// The client's own compatibility check runs a blocking health check at `build`; a
/// multi-threaded runtime keeps serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_compatibility_check_connects() {
    let app = spawn_server().await;
    let checked = Qdrant::from_url(&app.server.url()).build().unwrap();
    assert!(checked.list_collections().await.unwrap().collections.is_empty());
}

#[tokio::test]
async fn an_api_key_is_required_when_set() {
    let storage = tempfile::tempdir().unwrap();
    let server = start(storage.path(), Some("s3cret")).await;

    let anonymous = client(&server.url(), None);
    let denied = status(anonymous.list_collections().await);
    assert_eq!(denied.code(), Code::Unauthenticated);
    assert_eq!(denied.code(), status(anonymous.health_check().await).code());

    let wrong = client(&server.url(), Some("guess"));
    assert_eq!(status(wrong.list_collections().await).code(), Code::Unauthenticated);

    let right = client(&server.url(), Some("s3cret"));
    create_collection(&right, "notes", 2, Distance::Cosine).await;
    assert!(right.collection_exists("notes").await.unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn after_shutdown_connections_are_refused() {
    let app = spawn_server().await;
    let port = app.server.port();
    assert_eq!(app.server.url(), format!("http://127.0.0.1:{port}"));
    create_collection(&app.client, "notes", 2, Distance::Cosine).await;
    app.server.shutdown().await;

    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err());
    assert!(app.client.list_collections().await.is_err());
}

#[tokio::test]
async fn a_restart_on_the_same_storage_keeps_collections_points_and_indexes() {
    let app = spawn_server().await;
    create_collection(&app.client, "memories", 3, Distance::Cosine).await;
    create_collection(&app.client, "other", 2, Distance::Dot).await;
    let points = (0..20u64)
        .map(|id| point(id, vec![1.0, id as f32, 0.5], json!({"org": if id % 2 == 0 { "a" } else { "b" }})))
        .collect();
    upsert(&app.client, "memories", points).await;
    app.client
        .create_field_index(CreateFieldIndexCollectionBuilder::new("memories", "org", FieldType::Keyword).wait(true))
        .await
        .unwrap();
    let before =
        app.client.query(QueryPointsBuilder::new("memories").query(vec![1.0, 3.0, 0.5]).limit(5)).await.unwrap().result;
    app.server.shutdown().await;

    let server = start(app.storage.path(), None).await;
    let client = client(&server.url(), None);
    let mut names: Vec<String> =
        client.list_collections().await.unwrap().collections.into_iter().map(|collection| collection.name).collect();
    names.sort();
    assert_eq!(names, ["memories", "other"]);

    let info = client.collection_info("memories").await.unwrap().result.unwrap();
    assert_eq!(info.points_count, Some(20));
    assert!(info.payload_schema.contains_key("org"));
    let Some(Config::Params(params)) = info.config.unwrap().params.unwrap().vectors_config.unwrap().config else {
        panic!("expected unnamed vector params");
    };
    assert_eq!((params.size, params.distance), (3, Distance::Cosine as i32));

    let count = client
        .count(CountPointsBuilder::new("memories").filter(Filter::must([Condition::matches("org", "a".to_owned())])))
        .await
        .unwrap();
    assert_eq!(count.result.unwrap().count, 10);
    let after =
        client.query(QueryPointsBuilder::new("memories").query(vec![1.0, 3.0, 0.5]).limit(5)).await.unwrap().result;
    let ids = |points: &[qdrant_client::qdrant::ScoredPoint]| -> Vec<_> {
        points.iter().map(|point| (point.id.clone(), point.score)).collect()
    };
    assert_eq!(ids(&after), ids(&before));

    upsert(&client, "memories", vec![point(100, vec![0.0, 0.0, 1.0], json!({}))]).await;
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_the_server_flushes_and_releases_the_storage() {
    let storage = tempfile::tempdir().unwrap();
    let server = start(storage.path(), None).await;
    let first = client(&server.url(), None);
    create_collection(&first, "notes", 2, Distance::Cosine).await;
    upsert(&first, "notes", vec![point(1, vec![1.0, 0.0], json!({"org": "a"}))]).await;
    drop(server);

    let server = start(storage.path(), None).await;
    let second = client(&server.url(), None);
    let count = second.count(CountPointsBuilder::new("notes")).await.unwrap();
    assert_eq!(count.result.unwrap().count, 1);
    server.shutdown().await;
}
