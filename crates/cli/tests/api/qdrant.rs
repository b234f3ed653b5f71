//! Qdrant as the vector index, tested against Qdrant's own engine behind its gRPC protocol
//! (`contextiq-qdrant-edge-server`): what the collection holds after each kind of write, writes
//! made while Qdrant is down, a newly configured Qdrant on a store that has memories, a
//! collection of another dimension, and `contextiq reindex --keep-embeddings`.

use std::sync::Arc;
use std::time::Duration;

use contextiq_qdrant_edge_server::EdgeServer;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, Distance, GetPointsBuilder, PointId, VectorParamsBuilder,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{TestApp, binary, id_of, json_of, spawn_app_in};

/// A Qdrant test server of this test, and the client the test inspects it with.
struct TestQdrant {
    server: Option<EdgeServer>,
    storage: TempDir,
    port: u16,
    client: Qdrant,
}

impl TestQdrant {
    async fn start() -> TestQdrant {
        let storage = tempfile::tempdir().unwrap();
        let server = EdgeServer::start("127.0.0.1:0".parse().unwrap(), storage.path(), None).await.unwrap();
        let port = server.port();
        let client = Qdrant::from_url(&server.url()).skip_compatibility_check().build().unwrap();
        TestQdrant { server: Some(server), storage, port, client }
    }

    /// Points the application at this server, in collection `memories`.
    fn configure(&self) -> impl FnOnce(&mut contextiq_server::Settings) + use<> {
        let port = self.port;
        move |settings| {
            settings.qdrant.url = Some(format!("http://127.0.0.1:{port}"));
            settings.qdrant.grpc_port = port;
            settings.qdrant.collection = "memories".to_owned();
        }
    }

    async fn stop(&mut self) {
        self.server.take().expect("running").shutdown().await;
    }

    async fn restart(&mut self) {
        let address = format!("127.0.0.1:{}", self.port).parse().unwrap();
        self.server = Some(EdgeServer::start(address, self.storage.path(), None).await.unwrap());
    }

    async fn count(&self) -> u64 {
        let counted = self.client.count(CountPointsBuilder::new("memories").exact(true)).await.unwrap();
        counted.result.unwrap().count
    }

    /// Whether the collection holds a point for the memory `id`, and its payload.
    async fn point(&self, id: &str) -> Option<Value> {
        let ids = vec![PointId::from(id.to_owned())];
        let found = self.client.get_points(GetPointsBuilder::new("memories", ids).with_payload(true)).await.unwrap();
        found.result.first().map(|point| {
            let payload: serde_json::Map<String, Value> = point
                .payload
                .iter()
                .map(|(key, value)| {
                    let text = match &value.kind {
                        Some(Kind::StringValue(text)) => text.clone(),
                        other => format!("{other:?}"),
                    };
                    (key.clone(), Value::String(text))
                })
                .collect();
            Value::Object(payload)
        })
    }
}

async fn remember(app: &TestApp, scope: Value, fact: &str) -> Value {
    json_of(app.post("/api/v1/memories", &json!({"scope": scope, "fact": fact})).await, StatusCode::CREATED).await
}

async fn search_facts(app: &TestApp, scope: Value, query: &str) -> Vec<String> {
    let found = json_of(
        app.post("/api/v1/memories/search", &json!({"scope": scope, "search_query": query})).await,
        StatusCode::OK,
    )
    .await;
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["memory"]["fact"].as_str().unwrap().to_owned())
        .collect()
}

fn new_data_dir() -> Arc<TempDir> {
    Arc::new(tempfile::tempdir().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_mirrors_every_write_and_searches_one_scope() {
    let qdrant = TestQdrant::start().await;
    let app = spawn_app_in(new_data_dir(), qdrant.configure()).await;
    let hiking = remember(&app, json!({"user_id": "u1"}), "I love hiking in the Alps").await;
    let peanuts = remember(&app, json!({"user_id": "u1"}), "Allergic to peanuts").await;
    remember(&app, json!({"user_id": "u2"}), "Enjoys mountaineering in the Alps").await;
    assert_eq!(qdrant.count().await, 3, "a write is in Qdrant when it is acknowledged");
    let payload = qdrant.point(&id_of(&hiking)).await.expect("the point of a memory");
    assert_eq!(payload["org_id"], "default");
    assert!(payload["scope_key"].as_str().unwrap().contains("u1"), "{payload}");

    // "mountain sports" shares no word with any fact: the ranking comes from Qdrant's vectors,
    // filtered to the scope.
    let facts = search_facts(&app, json!({"user_id": "u1"}), "mountain sports").await;
    assert_eq!(facts.first().map(String::as_str), Some("I love hiking in the Alps"));
    assert!(!facts.iter().any(|fact| fact.contains("mountaineering")), "another scope's memory: {facts:?}");

    let path = format!("/api/v1/memories/{}", id_of(&peanuts));
    let changed =
        app.client.patch(app.url(&path)).json(&json!({"fact": "Allergic to tree nuts"})).send().await.unwrap();
    json_of(changed, StatusCode::OK).await;
    assert_eq!(search_facts(&app, json!({"user_id": "u1"}), "tree nut allergy").await[0], "Allergic to tree nuts");

    assert_eq!(app.delete(&path).await.status(), StatusCode::NO_CONTENT);
    assert!(qdrant.point(&id_of(&peanuts)).await.is_none(), "a deleted memory's vector goes");
    let revisions = json_of(app.get(&format!("{path}/revisions")).await, StatusCode::OK).await;
    let first = revisions["revisions"][0]["id"].clone();
    let restored = app.post(&format!("{path}/restore"), &json!({"revision_id": first})).await;
    json_of(restored, StatusCode::OK).await;
    assert!(qdrant.point(&id_of(&peanuts)).await.is_some(), "a restored memory's vector comes back");

    assert_eq!(app.delete(&format!("{path}?purge=true")).await.status(), StatusCode::NO_CONTENT);
    assert!(qdrant.point(&id_of(&peanuts)).await.is_none(), "a purged memory's vector goes");
    assert_eq!(qdrant.count().await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_qdrant_is_down_reach_it_once_it_is_back() {
    let mut qdrant = TestQdrant::start().await;
    let app = spawn_app_in(new_data_dir(), qdrant.configure()).await;
    remember(&app, json!({"user_id": "u1"}), "I love hiking in the Alps").await;
    let doomed = remember(&app, json!({"user_id": "u1"}), "Lives in Lisbon").await;
    qdrant.stop().await;

    // Writes are acknowledged from the primary store; searches fall back to its vectors.
    let written = remember(&app, json!({"user_id": "u1"}), "Allergic to peanuts").await;
    assert_eq!(app.delete(&format!("/api/v1/memories/{}", id_of(&doomed))).await.status(), StatusCode::NO_CONTENT);
    let facts = search_facts(&app, json!({"user_id": "u1"}), "peanut allergy").await;
    assert_eq!(facts.first().map(String::as_str), Some("Allergic to peanuts"), "{facts:?}");

    qdrant.restart().await;
    // The relay retries every second, for entries older than a few seconds: bounded wait.
    for _ in 0..600 {
        if qdrant.point(&id_of(&written)).await.is_some() && qdrant.point(&id_of(&doomed)).await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(qdrant.point(&id_of(&written)).await.is_some(), "the write made while down arrived");
    assert!(qdrant.point(&id_of(&doomed)).await.is_none(), "the delete made while down arrived");
    assert_eq!(qdrant.count().await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_configured_qdrant_receives_the_stored_vectors() {
    let data_dir = new_data_dir();
    let app = spawn_app_in(data_dir.clone(), |settings| settings.qdrant.url = None).await;
    for fact in ["I love hiking in the Alps", "Allergic to peanuts", "Lives in Lisbon"] {
        remember(&app, json!({"user_id": "u1"}), fact).await;
    }
    app.stop().await;

    let qdrant = TestQdrant::start().await;
    let app = spawn_app_in(data_dir, qdrant.configure()).await;
    assert_eq!(qdrant.count().await, 3, "filled before the server answers");
    assert_eq!(search_facts(&app, json!({"user_id": "u1"}), "peanut allergy").await[0], "Allergic to peanuts");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_of_another_dimension_is_refused() {
    let qdrant = TestQdrant::start().await;
    let collection =
        CreateCollectionBuilder::new("memories").vectors_config(VectorParamsBuilder::new(8, Distance::Cosine));
    qdrant.client.create_collection(collection).await.unwrap();
    let data_dir = new_data_dir();
    let mut settings = contextiq_server::Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.data_dir = data_dir.path().to_owned();
    settings.embedding.model_path = crate::helpers::model_dir();
    if let Some(url) = crate::helpers::test_database_url(data_dir.path()).await {
        settings.database.url = Some(url.into());
    }
    qdrant.configure()(&mut settings);
    let Err(err) = contextiq_server::Application::build(settings).await else {
        panic!("a collection of 8 dimensions must be refused for a 384-dimensional model");
    };
    let message = format!("{err:#}");
    assert!(message.contains("8-dimensional") && message.contains("contextiq reindex"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_keep_embeddings_rebuilds_the_collection_from_the_store() {
    let qdrant = TestQdrant::start().await;
    let data_dir = new_data_dir();
    let app = spawn_app_in(data_dir.clone(), qdrant.configure()).await;
    for fact in ["I love hiking in the Alps", "Allergic to peanuts", "Lives in Lisbon"] {
        remember(&app, json!({"user_id": "u1"}), fact).await;
    }
    app.stop().await;
    qdrant.client.delete_collection("memories").await.unwrap();

    let output = tokio::task::spawn_blocking({
        let (data_dir, port) = (data_dir.path().to_owned(), qdrant.port);
        move || {
            std::process::Command::new(binary())
                .envs(crate::helpers::backend_env(&data_dir))
                .args(["reindex", "--keep-embeddings", "--data-dir"])
                .arg(&data_dir)
                .env("QDRANT_URL", format!("http://127.0.0.1:{port}"))
                .env("QDRANT_GRPC_PORT", port.to_string())
                .env("QDRANT_COLLECTION", "memories")
                .env("EMBEDDING_MODEL_PATH", crate::helpers::model_dir())
                .env("LOG_LEVEL", "warn")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("copied 3 vectors into the Qdrant collection memories"), "{stderr}");
    assert_eq!(qdrant.count().await, 3);

    let app = spawn_app_in(data_dir, qdrant.configure()).await;
    assert_eq!(search_facts(&app, json!({"user_id": "u1"}), "peanut allergy").await[0], "Allergic to peanuts");
    app.stop().await;
}
