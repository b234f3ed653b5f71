//! Background optimization: past the indexing threshold segments get an HNSW index built with
//! the collection's config, and search, filters and counts are the same before and after.

use std::path::Path;
use std::time::Duration;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    CollectionStatus, Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, GetPointsBuilder, HnswConfigDiffBuilder,
    OptimizersConfigDiffBuilder, PointId, PointStruct, PointsIdsList, QueryPointsBuilder, SearchParamsBuilder,
    VectorParamsBuilder,
};
use serde_json::json;

use crate::helpers::{client, create_collection, point, spawn_server, start, upsert};

const DIM: usize = 32;
const N_POINTS: u64 = 2_000;
const N_ORGS: u64 = 4;
const N_SCOPES: u64 = 3;

#[tokio::test]
async fn optimize_now_indexes_a_collection_past_its_threshold_and_answers_stay_the_same() {
    let app = spawn_server().await;
    let client = &app.client;
    create_small_threshold_collection(client, "memories").await;
    load_points(client, "memories", 0..N_POINTS).await;
    let counts_before = counts(client, "memories").await;
    assert_eq!(counts_before[0], N_POINTS);

    app.server.optimize_now().await;

    let info = client.collection_info("memories").await.unwrap().result.unwrap();
    assert!(info.indexed_vectors_count.unwrap() > 0, "indexed: {:?}", info.indexed_vectors_count);
    assert_eq!(info.points_count, Some(N_POINTS));
    assert_eq!(info.status, CollectionStatus::Green as i32);
    let optimizer_config = info.config.unwrap().optimizer_config.unwrap();
    assert_eq!(optimizer_config.indexing_threshold, Some(1));
    assert_eq!(counts(client, "memories").await, counts_before);
    check_top_hits(client, "memories", (0..N_POINTS).step_by(97)).await;

    let hnsw = built_hnsw_configs(&app.storage.path().join("memories"));
    assert!(!hnsw.is_empty(), "no segment has an HNSW index");
    for options in hnsw {
        assert_eq!((options["m"].as_u64(), options["ef_construct"].as_u64()), (Some(8), Some(64)), "{options}");
        assert_eq!(options["full_scan_threshold"].as_u64(), Some(10), "{options}");
    }
}

#[tokio::test]
async fn a_collection_past_its_threshold_is_indexed_in_the_background() {
    let app = spawn_server().await;
    create_small_threshold_collection(&app.client, "memories").await;
    load_points(&app.client, "memories", 0..N_POINTS).await;

    // Passes run every 5 seconds; the bound only keeps a broken server from hanging the test.
    let mut indexed = 0;
    for _ in 0..240 {
        let info = app.client.collection_info("memories").await.unwrap().result.unwrap();
        indexed = info.indexed_vectors_count.unwrap();
        if indexed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(indexed > 0, "not indexed in the background");
    check_top_hits(&app.client, "memories", (0..N_POINTS).step_by(101)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_queries_during_an_optimization_are_all_kept() {
    let app = spawn_server().await;
    let client = &app.client;
    create_small_threshold_collection(client, "memories").await;
    load_points(client, "memories", 0..N_POINTS).await;

    let requests = async {
        for batch_start in (N_POINTS..N_POINTS + 200).step_by(50) {
            load_points(client, "memories", batch_start..batch_start + 50).await;
            let deleted: Vec<PointId> =
                (batch_start - N_POINTS..batch_start - N_POINTS + 25).map(PointId::from).collect();
            client
                .delete_points(DeletePointsBuilder::new("memories").points(PointsIdsList { ids: deleted }).wait(true))
                .await
                .unwrap();
            check_top_hits(client, "memories", [batch_start, 1_999]).await;
        }
    };
    tokio::join!(app.server.optimize_now(), requests);

    let expected = N_POINTS + 200 - 100;
    assert_eq!(counts(client, "memories").await[0], expected);
    let deleted = client.get_points(GetPointsBuilder::new("memories", vec![PointId::from(50)])).await.unwrap();
    assert!(deleted.result.is_empty());
    app.server.optimize_now().await;
    let info = client.collection_info("memories").await.unwrap().result.unwrap();
    assert_eq!(info.points_count, Some(expected));
    assert!(info.indexed_vectors_count.unwrap() > 0);
    // Ids 0..25, 50..75, 100..125 and 150..175 were deleted.
    check_top_hits(client, "memories", (175..N_POINTS + 200).step_by(89)).await;
}

#[tokio::test]
async fn an_indexed_collection_is_loaded_again_with_its_index_and_config() {
    let app = spawn_server().await;
    create_small_threshold_collection(&app.client, "memories").await;
    load_points(&app.client, "memories", 0..N_POINTS).await;
    app.server.optimize_now().await;
    let indexed = app.client.collection_info("memories").await.unwrap().result.unwrap().indexed_vectors_count;
    app.server.shutdown().await;

    let server = start(app.storage.path(), None).await;
    let client = client(&server.url(), None);
    let info = client.collection_info("memories").await.unwrap().result.unwrap();
    assert_eq!(info.indexed_vectors_count, indexed);
    assert_eq!(info.config.unwrap().optimizer_config.unwrap().indexing_threshold, Some(1));
    assert_eq!(counts(&client, "memories").await[0], N_POINTS);
    check_top_hits(&client, "memories", (0..N_POINTS).step_by(211)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn below_qdrants_default_threshold_nothing_is_indexed() {
    let app = spawn_server().await;
    create_collection(&app.client, "memories", DIM as u64, Distance::Cosine).await;
    load_points(&app.client, "memories", 0..N_POINTS).await;
    app.server.optimize_now().await;

    let info = app.client.collection_info("memories").await.unwrap().result.unwrap();
    assert_eq!(info.indexed_vectors_count, Some(0));
    assert_eq!(info.config.unwrap().optimizer_config.unwrap().indexing_threshold, Some(10_000));
    check_top_hits(&app.client, "memories", (0..N_POINTS).step_by(397)).await;
}

/// 2,000 points of 32 dimensions take 250 KB, past an indexing threshold of 1 KB. A full scan
/// threshold of 10 KB makes searches go through the HNSW graph rather than scan the segment.
async fn create_small_threshold_collection(client: &Qdrant, name: &str) {
    client
        .create_collection(
            CreateCollectionBuilder::new(name)
                .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Cosine))
                .hnsw_config(HnswConfigDiffBuilder::default().m(8).ef_construct(64).full_scan_threshold(10))
                .optimizers_config(OptimizersConfigDiffBuilder::default().indexing_threshold(1)),
        )
        .await
        .unwrap();
    for field in ["org", "scope"] {
        client
            .create_field_index(CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword).wait(true))
            .await
            .unwrap();
    }
}

async fn load_points(client: &Qdrant, name: &str, ids: std::ops::Range<u64>) {
    let points: Vec<PointStruct> =
        ids.map(|id| point(id, vector_of(id), json!({"org": org_of(id), "scope": scope_of(id)}))).collect();
    for batch in points.chunks(500) {
        upsert(client, name, batch.to_vec()).await;
    }
}

/// The total, one org, and one org and scope.
async fn counts(client: &Qdrant, name: &str) -> [u64; 3] {
    let filters = [
        Filter::default(),
        Filter::must([Condition::matches("org", org_of(1))]),
        Filter::must([Condition::matches("org", org_of(1)), Condition::matches("scope", scope_of(2))]),
    ];
    let mut counts = [0; 3];
    for (count, filter) in counts.iter_mut().zip(filters) {
        let response = client.count(CountPointsBuilder::new(name).filter(filter).exact(true)).await.unwrap();
        *count = response.result.unwrap().count;
    }
    counts
}

/// A query equal to a stored vector finds that point first within its org, through the HNSW
/// graph once indexed (the filter keeps a quarter of the points, past the full scan threshold);
/// within its org and scope every hit matches both, and an exact search finds the point first.
/// Under another org's filter it finds only that org's points.
///
/// Only the exact search is held to the top hit and the limit under the narrower filter: HNSW is
/// approximate, and with 1 point in 12 left by the filter about 1 graph in 8 built here misses
/// the top hit or returns fewer hits for some queries (as Qdrant would with these settings).
async fn check_top_hits(client: &Qdrant, name: &str, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        let org = Filter::must([Condition::matches("org", org_of(id))]);
        let hits =
            client.query(QueryPointsBuilder::new(name).query(vector_of(id)).filter(org).limit(3)).await.unwrap().result;
        assert_eq!(hits.first().map(|hit| num_of(&hit.id)), Some(id), "top hit of point {id} in its org");

        let own = Filter::must([Condition::matches("org", org_of(id)), Condition::matches("scope", scope_of(id))]);
        for exact in [false, true] {
            let hits = client
                .query(
                    QueryPointsBuilder::new(name)
                        .query(vector_of(id))
                        .filter(own.clone())
                        .limit(5)
                        .with_payload(true)
                        .params(SearchParamsBuilder::default().exact(exact)),
                )
                .await
                .unwrap()
                .result;
            if exact {
                assert_eq!(hits.len(), 5);
                assert_eq!(num_of(&hits[0].id), id, "exact top hit of point {id} in its org and scope");
            }
            for hit in hits {
                assert_eq!(hit.payload["org"].as_str().map(String::as_str), Some(org_of(id).as_str()));
                assert_eq!(hit.payload["scope"].as_str().map(String::as_str), Some(scope_of(id).as_str()));
            }
        }

        let other_org = org_of(id + 1);
        let other = Filter::must([Condition::matches("org", other_org.clone())]);
        let hits = client
            .query(QueryPointsBuilder::new(name).query(vector_of(id)).filter(other).limit(5).with_payload(true))
            .await
            .unwrap()
            .result;
        assert_eq!(hits.len(), 5);
        for hit in hits {
            assert_ne!(num_of(&hit.id), id);
            assert_eq!(hit.payload["org"].as_str().map(String::as_str), Some(other_org.as_str()));
        }
    }
}

fn org_of(id: u64) -> String {
    format!("org-{}", id % N_ORGS)
}

fn scope_of(id: u64) -> String {
    format!("scope-{}", id % N_SCOPES)
}

/// A pseudo-random vector in [-1, 1) per id (splitmix64), the same on every call.
fn vector_of(id: u64) -> Vec<f32> {
    let mut state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..DIM)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn num_of(point_id: &Option<PointId>) -> u64 {
    match point_id.as_ref().and_then(|id| id.point_id_options.clone()) {
        Some(PointIdOptions::Num(num)) => num,
        other => panic!("expected a numeric id, got {other:?}"),
    }
}

/// The HNSW options of every segment of the collection that has an HNSW index, read from the
/// engine's `segment.json` files.
fn built_hnsw_configs(collection_dir: &Path) -> Vec<serde_json::Value> {
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(collection_dir.join("segments")).unwrap() {
        let state_path = entry.unwrap().path().join("segment.json");
        let Ok(bytes) = std::fs::read(&state_path) else {
            continue;
        };
        let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let index = &state["config"]["vector_data"][""]["index"];
        if index["type"] == "hnsw" {
            configs.push(index["options"].clone());
        }
    }
    configs
}
