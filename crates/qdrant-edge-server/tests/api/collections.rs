//! Create, exists, get, list and delete, with Qdrant's answers and errors.

use qdrant_client::qdrant::vectors_config::Config;
use qdrant_client::qdrant::{
    CollectionStatus, CreateAliasBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeleteFieldIndexCollectionBuilder, Distance, FieldType, HnswConfigDiffBuilder, PayloadSchemaType,
    QueryPointsBuilder, VectorParamsBuilder,
};
use serde_json::json;
use tonic::Code;

use crate::helpers::{create_collection, point, spawn_server, status, upsert};

#[tokio::test]
async fn a_collection_is_created_listed_described_and_deleted() {
    let app = spawn_server().await;
    let client = &app.client;
    client
        .create_collection(
            CreateCollectionBuilder::new("notes")
                .vectors_config(VectorParamsBuilder::new(384, Distance::Cosine))
                .hnsw_config(HnswConfigDiffBuilder::default().m(32).ef_construct(200)),
        )
        .await
        .unwrap();

    assert!(client.collection_exists("notes").await.unwrap());
    assert!(!client.collection_exists("other").await.unwrap());
    let names: Vec<String> =
        client.list_collections().await.unwrap().collections.into_iter().map(|collection| collection.name).collect();
    assert_eq!(names, ["notes"]);

    let info = client.collection_info("notes").await.unwrap().result.unwrap();
    assert_eq!(info.status, CollectionStatus::Green as i32);
    assert_eq!(info.points_count, Some(0));
    let config = info.config.unwrap();
    let Some(Config::Params(params)) = config.params.unwrap().vectors_config.unwrap().config else {
        panic!("expected unnamed vector params");
    };
    assert_eq!(params.size, 384);
    assert_eq!(params.distance, Distance::Cosine as i32);
    let hnsw = config.hnsw_config.unwrap();
    assert_eq!((hnsw.m, hnsw.ef_construct), (Some(32), Some(200)));

    let deleted = client.delete_collection("notes").await.unwrap();
    assert!(deleted.result);
    assert!(!client.collection_exists("notes").await.unwrap());
    assert!(!app.storage.path().join("notes").exists());
    let deleted_again = client.delete_collection("notes").await.unwrap();
    assert!(!deleted_again.result);
}

#[tokio::test]
async fn a_missing_collection_is_not_found_with_qdrants_message() {
    let app = spawn_server().await;
    let status = status(app.client.collection_info("missing").await);
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Not found: Collection `missing` doesn't exist!");

    let query = app.client.query(QueryPointsBuilder::new("missing").query(vec![1.0, 0.0])).await;
    assert_eq!(status_code(query), Code::NotFound);
}

#[tokio::test]
async fn creating_an_existing_collection_is_invalid_argument() {
    let app = spawn_server().await;
    create_collection(&app.client, "notes", 4, Distance::Cosine).await;
    let again = app
        .client
        .create_collection(
            CreateCollectionBuilder::new("notes").vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await;
    let status = status(again);
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "Wrong input: Collection `notes` already exists!");
}

#[tokio::test]
async fn names_that_are_not_a_plain_directory_name_are_rejected() {
    let app = spawn_server().await;
    for name in ["", "a/b", "..", ".", "../escape", "a\\b"] {
        let created = app
            .client
            .create_collection(
                CreateCollectionBuilder::new(name).vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
            )
            .await;
        assert_eq!(status_code(created), Code::InvalidArgument, "name {name:?}");
    }
    assert!(app.client.list_collections().await.unwrap().collections.is_empty());
    assert_eq!(std::fs::read_dir(app.storage.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_zero_size_or_unknown_distance_is_invalid_argument() {
    let app = spawn_server().await;
    for params in
        [VectorParamsBuilder::new(0, Distance::Cosine), VectorParamsBuilder::new(4, Distance::UnknownDistance)]
    {
        let created = app.client.create_collection(CreateCollectionBuilder::new("bad").vectors_config(params)).await;
        assert_eq!(status_code(created), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn field_indexes_show_in_the_payload_schema() {
    let app = spawn_server().await;
    let client = &app.client;
    create_collection(client, "notes", 2, Distance::Cosine).await;
    upsert(
        client,
        "notes",
        vec![
            point(1, vec![1.0, 0.0], json!({"org": "a", "rank": 1})),
            point(2, vec![0.0, 1.0], json!({"org": "b", "rank": 2})),
        ],
    )
    .await;
    for (field, field_type) in [("org", FieldType::Keyword), ("rank", FieldType::Integer)] {
        client
            .create_field_index(CreateFieldIndexCollectionBuilder::new("notes", field, field_type).wait(true))
            .await
            .unwrap();
    }

    let schema = client.collection_info("notes").await.unwrap().result.unwrap().payload_schema;
    assert_eq!(schema["org"].data_type, PayloadSchemaType::Keyword as i32);
    assert_eq!(schema["org"].points, Some(2));
    assert_eq!(schema["rank"].data_type, PayloadSchemaType::Integer as i32);

    client.delete_field_index(DeleteFieldIndexCollectionBuilder::new("notes", "rank").wait(true)).await.unwrap();
    let schema = client.collection_info("notes").await.unwrap().result.unwrap().payload_schema;
    assert!(schema.contains_key("org"));
    assert!(!schema.contains_key("rank"));
}

#[tokio::test]
async fn other_rpcs_are_unimplemented() {
    let app = spawn_server().await;
    create_collection(&app.client, "notes", 2, Distance::Cosine).await;
    let alias = app.client.create_alias(CreateAliasBuilder::new("notes", "alias")).await;
    assert_eq!(status_code(alias), Code::Unimplemented);
}

fn status_code<T: std::fmt::Debug>(result: Result<T, qdrant_client::QdrantError>) -> Code {
    status(result).code()
}
