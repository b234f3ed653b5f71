//! Upsert, get, query, search, count, delete, scroll and payload updates with Qdrant's semantics.

use qdrant_client::Payload;
use qdrant_client::qdrant::vector_output::Vector as VectorOut;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, DeletePointsBuilder, Distance, Filter, GetPointsBuilder, PointId, PointStruct,
    PointsIdsList, QueryPointsBuilder, RetrievedPoint, ScrollPointsBuilder, SearchPointsBuilder,
    SetPayloadPointsBuilder, UpdateStatus, UpsertPointsBuilder, Vector, Vectors,
};
use serde_json::json;
use tonic::Code;

use crate::helpers::{cosine, create_collection, point, spawn_server, status, upsert};

const ALICE: &str = "3f0d1c7e-0f43-4c7a-9f5e-0d3b2f7c1a01";
const BOB: &str = "7a1b6c2d-5e4f-4a3b-8c9d-0e1f2a3b4c5d";
const CAROL: &str = "c4d5e6f7-0819-4a2b-9c3d-4e5f60718293";
const DAVE: &str = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6";

/// Four memories in two orgs and two scopes.
async fn seed(client: &qdrant_client::Qdrant) {
    create_collection(client, "memories", 4, Distance::Cosine).await;
    upsert(
        client,
        "memories",
        vec![
            point(ALICE, vec![1.0, 0.0, 0.0, 0.0], json!({"org": "acme", "scope": "user:1", "n": 1})),
            point(BOB, vec![0.8, 0.6, 0.0, 0.0], json!({"org": "acme", "scope": "user:1", "n": 2})),
            point(CAROL, vec![0.9, 0.1, 0.1, 0.0], json!({"org": "acme", "scope": "user:2", "n": 3})),
            point(DAVE, vec![1.0, 0.0, 0.0, 0.0], json!({"org": "other", "scope": "user:1", "n": 4})),
        ],
    )
    .await;
}

fn org_scope(org: &str, scope: &str) -> Filter {
    Filter::must([Condition::matches("org", org.to_owned()), Condition::matches("scope", scope.to_owned())])
}

fn uuid_of(point_id: &Option<PointId>) -> String {
    use qdrant_client::qdrant::point_id::PointIdOptions;
    match point_id.as_ref().and_then(|id| id.point_id_options.clone()) {
        Some(PointIdOptions::Uuid(uuid)) => uuid,
        Some(PointIdOptions::Num(num)) => num.to_string(),
        None => panic!("point without id"),
    }
}

fn json_payload(payload: std::collections::HashMap<String, qdrant_client::qdrant::Value>) -> serde_json::Value {
    serde_json::Value::from(Payload::from(payload))
}

fn dense(point: &RetrievedPoint) -> Vec<f32> {
    match point.vectors.as_ref().and_then(|vectors| vectors.get_vector()) {
        Some(VectorOut::Dense(dense)) => dense.data,
        other => panic!("expected a dense vector, got {other:?}"),
    }
}

#[tokio::test]
async fn a_filtered_query_returns_only_matching_points_best_first_with_cosine_scores() {
    let app = spawn_server().await;
    seed(&app.client).await;
    let query = vec![0.6, 0.8, 0.0, 0.0];

    let result = app
        .client
        .query(
            QueryPointsBuilder::new("memories")
                .query(query.clone())
                .filter(org_scope("acme", "user:1"))
                .with_payload(true)
                .limit(10),
        )
        .await
        .unwrap()
        .result;

    let ids: Vec<String> = result.iter().map(|point| uuid_of(&point.id)).collect();
    assert_eq!(ids, [BOB, ALICE]);
    let expected_scores = [cosine(&query, &[0.8, 0.6, 0.0, 0.0]), cosine(&query, &[1.0, 0.0, 0.0, 0.0])];
    for (point, expected) in result.iter().zip(expected_scores) {
        assert!((point.score - expected).abs() < 1e-5, "{} vs {expected}", point.score);
        assert_eq!(json_payload(point.payload.clone())["org"], "acme");
    }
}

#[tokio::test]
async fn cosine_scores_match_for_vectors_that_are_not_unit_length() {
    let app = spawn_server().await;
    create_collection(&app.client, "c", 3, Distance::Cosine).await;
    let stored = vec![3.0, -1.0, 2.0];
    let query = vec![0.5, 2.0, 4.0];
    upsert(&app.client, "c", vec![point(7, stored.clone(), json!({}))]).await;

    let result = app.client.query(QueryPointsBuilder::new("c").query(query.clone())).await.unwrap().result;

    assert_eq!(result.len(), 1);
    assert!((result[0].score - cosine(&stored, &query)).abs() < 1e-5);
    // Qdrant normalises cosine vectors at insert, so the stored vector is the unit vector.
    let got = app
        .client
        .get_points(GetPointsBuilder::new("c", vec![PointId::from(7)]).with_vectors(true))
        .await
        .unwrap()
        .result;
    let norm = stored.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (got, want) in dense(&got[0]).iter().zip(&stored) {
        assert!((got - want / norm).abs() < 1e-6);
    }
}

#[tokio::test]
async fn dot_and_euclid_score_like_qdrant() {
    let app = spawn_server().await;
    create_collection(&app.client, "dot", 2, Distance::Dot).await;
    create_collection(&app.client, "euclid", 2, Distance::Euclid).await;
    for name in ["dot", "euclid"] {
        upsert(&app.client, name, vec![point(1, vec![3.0, 4.0], json!({})), point(2, vec![1.0, 0.0], json!({}))]).await;
    }

    let dot = app.client.query(QueryPointsBuilder::new("dot").query(vec![2.0, 1.0])).await.unwrap().result;
    assert_eq!(uuid_of(&dot[0].id), "1");
    assert!((dot[0].score - 10.0).abs() < 1e-5);

    // Euclid: the closest first, scored by the distance itself.
    let euclid = app.client.query(QueryPointsBuilder::new("euclid").query(vec![2.0, 1.0])).await.unwrap().result;
    assert_eq!(uuid_of(&euclid[0].id), "2");
    assert!((euclid[0].score - 2f32.sqrt()).abs() < 1e-5);
}

#[tokio::test]
async fn search_points_has_the_same_semantics_with_offset_and_score_threshold() {
    let app = spawn_server().await;
    seed(&app.client).await;
    let query = vec![1.0, 0.0, 0.0, 0.0];

    let all = app
        .client
        .search_points(
            SearchPointsBuilder::new("memories", query.clone(), 10)
                .filter(Filter::must([Condition::matches("org", "acme".to_owned())])),
        )
        .await
        .unwrap()
        .result;
    let ids: Vec<String> = all.iter().map(|point| uuid_of(&point.id)).collect();
    assert_eq!(ids, [ALICE, CAROL, BOB]);
    assert!(all.windows(2).all(|pair| pair[0].score >= pair[1].score));
    assert!(all[0].payload.is_empty(), "search returns no payload unless asked");

    let page = app
        .client
        .search_points(
            SearchPointsBuilder::new("memories", query.clone(), 1)
                .filter(Filter::must([Condition::matches("org", "acme".to_owned())]))
                .offset(1),
        )
        .await
        .unwrap()
        .result;
    assert_eq!(uuid_of(&page[0].id), CAROL);

    let above = app
        .client
        .search_points(SearchPointsBuilder::new("memories", query, 10).score_threshold(0.9))
        .await
        .unwrap()
        .result;
    assert!(above.iter().all(|point| point.score >= 0.9));
    assert_eq!(above.len(), 3, "alice, dave and carol are within 0.9");
}

#[tokio::test]
async fn a_wrong_dimension_is_invalid_argument_and_the_server_keeps_working() {
    let app = spawn_server().await;
    create_collection(&app.client, "m", 4, Distance::Cosine).await;

    let upserted = app
        .client
        .upsert_points(UpsertPointsBuilder::new("m", vec![point(1, vec![0.5; 8], json!({}))]).wait(true))
        .await;
    let status = status(upserted);
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "Wrong input: Vector dimension error: expected dim: 4, got 8");

    let queried = app.client.query(QueryPointsBuilder::new("m").query(vec![1.0, 0.0])).await;
    assert_eq!(crate::helpers::status(queried).code(), Code::InvalidArgument);

    upsert(&app.client, "m", vec![point(1, vec![1.0, 0.0, 0.0, 0.0], json!({}))]).await;
    let count = app.client.count(CountPointsBuilder::new("m")).await.unwrap();
    assert_eq!(count.result.unwrap().count, 1);
}

#[tokio::test]
async fn an_update_reports_completed_when_waited_for_and_acknowledged_otherwise() {
    let app = spawn_server().await;
    create_collection(&app.client, "w", 2, Distance::Cosine).await;
    let waited = app
        .client
        .upsert_points(UpsertPointsBuilder::new("w", vec![point(1, vec![1.0, 0.0], json!({}))]).wait(true))
        .await
        .unwrap();
    assert_eq!(waited.result.unwrap().status, UpdateStatus::Completed as i32);
    let not_waited = app
        .client
        .upsert_points(UpsertPointsBuilder::new("w", vec![point(2, vec![0.0, 1.0], json!({}))]))
        .await
        .unwrap();
    assert_eq!(not_waited.result.unwrap().status, UpdateStatus::Acknowledged as i32);
    // Applied before the reply all the same.
    let count = app.client.count(CountPointsBuilder::new("w")).await.unwrap();
    assert_eq!(count.result.unwrap().count, 2);
}

#[tokio::test]
async fn an_upsert_replaces_the_point_with_the_same_id() {
    let app = spawn_server().await;
    seed(&app.client).await;
    upsert(
        &app.client,
        "memories",
        vec![point(ALICE, vec![0.0, 0.0, 0.0, 1.0], json!({"org": "acme", "scope": "user:9"}))],
    )
    .await;

    let got = app
        .client
        .get_points(GetPointsBuilder::new("memories", vec![PointId::from(ALICE)]).with_payload(true).with_vectors(true))
        .await
        .unwrap()
        .result;
    assert_eq!(got.len(), 1);
    assert_eq!(json_payload(got[0].payload.clone()), json!({"org": "acme", "scope": "user:9"}));
    assert_eq!(dense(&got[0]), [0.0, 0.0, 0.0, 1.0]);
    let count = app.client.count(CountPointsBuilder::new("memories")).await.unwrap();
    assert_eq!(count.result.unwrap().count, 4);
}

#[tokio::test]
async fn payload_values_of_every_kind_are_stored_and_returned() {
    let app = spawn_server().await;
    create_collection(&app.client, "p", 2, Distance::Cosine).await;
    let payload = json!({
        "text": "hello", "int": -42, "big": 9_007_199_254_740_993_i64, "double": 0.25,
        "flag": true, "tags": ["a", "b"], "nested": {"k": [1, {"deep": false}]}, "none": null
    });
    upsert(&app.client, "p", vec![point(1, vec![1.0, 0.0], payload.clone())]).await;

    let got = app
        .client
        .get_points(GetPointsBuilder::new("p", vec![PointId::from(1), PointId::from(2)]))
        .await
        .unwrap()
        .result;
    assert_eq!(got.len(), 1, "a missing id is left out");
    assert_eq!(json_payload(got[0].payload.clone()), payload);
    assert!(got[0].vectors.is_none(), "vectors only when asked");
}

#[tokio::test]
#[allow(deprecated)]
async fn the_deprecated_vector_data_field_is_accepted() {
    let app = spawn_server().await;
    create_collection(&app.client, "old", 2, Distance::Dot).await;
    let old_style = PointStruct {
        id: Some(PointId::from(5)),
        payload: Default::default(),
        vectors: Some(Vectors::from(Vector { data: vec![2.0, 3.0], ..Vector::default() })),
    };
    upsert(&app.client, "old", vec![old_style]).await;
    let result = app.client.query(QueryPointsBuilder::new("old").query(vec![1.0, 1.0])).await.unwrap().result;
    assert!((result[0].score - 5.0).abs() < 1e-6);
}

#[tokio::test]
async fn points_are_deleted_by_ids_and_by_filter() {
    let app = spawn_server().await;
    seed(&app.client).await;
    let count = |filter: Option<Filter>| {
        let client = &app.client;
        async move {
            let mut request = CountPointsBuilder::new("memories").exact(true);
            if let Some(filter) = filter {
                request = request.filter(filter);
            }
            client.count(request).await.unwrap().result.unwrap().count
        }
    };
    assert_eq!(count(None).await, 4);
    assert_eq!(count(Some(org_scope("acme", "user:1"))).await, 2);
    assert_eq!(count(Some(Filter::must([Condition::matches("org", "acme".to_owned())]))).await, 3);

    app.client
        .delete_points(
            DeletePointsBuilder::new("memories").points(PointsIdsList::from(vec![PointId::from(ALICE)])).wait(true),
        )
        .await
        .unwrap();
    assert_eq!(count(None).await, 3);
    assert_eq!(count(Some(org_scope("acme", "user:1"))).await, 1);

    app.client
        .delete_points(
            DeletePointsBuilder::new("memories")
                .points(Filter::must([Condition::matches("org", "acme".to_owned())]))
                .wait(true),
        )
        .await
        .unwrap();
    let left = app
        .client
        .get_points(GetPointsBuilder::new(
            "memories",
            vec![PointId::from(BOB), PointId::from(CAROL), PointId::from(DAVE)],
        ))
        .await
        .unwrap()
        .result;
    let ids: Vec<String> = left.iter().map(|point| uuid_of(&point.id)).collect();
    assert_eq!(ids, [DAVE]);
}

#[tokio::test]
async fn filter_conditions_map_onto_the_engine() {
    let app = spawn_server().await;
    seed(&app.client).await;
    let check = |filter: Filter, expected: &'static [&'static str]| {
        let client = &app.client;
        async move {
            let result = client
                .scroll(ScrollPointsBuilder::new("memories").filter(filter.clone()).limit(10))
                .await
                .unwrap()
                .result;
            let mut ids: Vec<String> = result.iter().map(|point| uuid_of(&point.id)).collect();
            ids.sort();
            let mut expected: Vec<String> = expected.iter().map(|id| id.to_string()).collect();
            expected.sort();
            assert_eq!(ids, expected, "filter {filter:?}");
        }
    };
    check(Filter::must([Condition::matches("scope", vec!["user:2".to_owned(), "user:3".to_owned()])]), &[CAROL]).await;
    check(Filter::must([Condition::matches("n", 4)]), &[DAVE]).await;
    check(Filter::must_not([Condition::matches("org", "acme".to_owned())]), &[DAVE]).await;
    check(Filter::should([Condition::matches("n", 1), Condition::matches("n", 3)]), &[ALICE, CAROL]).await;
    check(Filter::must([Condition::has_id([PointId::from(BOB), PointId::from(DAVE)])]), &[BOB, DAVE]).await;
    check(
        Filter::must([Condition::range(
            "n",
            qdrant_client::qdrant::Range { gte: Some(2.0), lt: Some(4.0), ..Default::default() },
        )]),
        &[BOB, CAROL],
    )
    .await;
    check(
        Filter::must([Condition {
            condition_one_of: Some(qdrant_client::qdrant::condition::ConditionOneOf::Field(
                qdrant_client::qdrant::FieldCondition {
                    key: "scope".to_owned(),
                    r#match: Some(qdrant_client::qdrant::Match {
                        match_value: Some(qdrant_client::qdrant::r#match::MatchValue::ExceptKeywords(
                            qdrant_client::qdrant::RepeatedStrings { strings: vec!["user:1".to_owned()] },
                        )),
                    }),
                    ..Default::default()
                },
            )),
        }]),
        &[CAROL],
    )
    .await;
    check(Filter::must([Condition::matches("missing", true)]), &[]).await;
}

#[tokio::test]
async fn an_empty_or_unsupported_condition_is_invalid_argument() {
    let app = spawn_server().await;
    seed(&app.client).await;
    for condition in [
        Condition { condition_one_of: None },
        Condition::geo_radius(
            "loc",
            qdrant_client::qdrant::GeoRadius {
                center: Some(qdrant_client::qdrant::GeoPoint { lat: 0.0, lon: 0.0 }),
                radius: 1.0,
            },
        ),
        Condition {
            condition_one_of: Some(qdrant_client::qdrant::condition::ConditionOneOf::Field(
                qdrant_client::qdrant::FieldCondition { key: "org".to_owned(), ..Default::default() },
            )),
        },
    ] {
        let result = app
            .client
            .query(
                QueryPointsBuilder::new("memories").query(vec![1.0, 0.0, 0.0, 0.0]).filter(Filter::must([condition])),
            )
            .await;
        assert_eq!(status(result).code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn scroll_pages_through_ids_in_ascending_order() {
    let app = spawn_server().await;
    create_collection(&app.client, "s", 2, Distance::Cosine).await;
    let points = (1..=5u64).rev().map(|id| point(id, vec![1.0, id as f32], json!({"even": id % 2 == 0}))).collect();
    upsert(&app.client, "s", points).await;

    let first = app.client.scroll(ScrollPointsBuilder::new("s").limit(2)).await.unwrap();
    let ids: Vec<String> = first.result.iter().map(|point| uuid_of(&point.id)).collect();
    assert_eq!(ids, ["1", "2"]);
    assert!(!first.result[0].payload.is_empty(), "scroll returns payload by default");
    let next = first.next_page_offset.unwrap();
    let second = app.client.scroll(ScrollPointsBuilder::new("s").limit(10).offset(next)).await.unwrap();
    let ids: Vec<String> = second.result.iter().map(|point| uuid_of(&point.id)).collect();
    assert_eq!(ids, ["3", "4", "5"]);
    assert!(second.next_page_offset.is_none());

    let even = app
        .client
        .scroll(ScrollPointsBuilder::new("s").filter(Filter::must([Condition::matches("even", true)])))
        .await
        .unwrap();
    let ids: Vec<String> = even.result.iter().map(|point| uuid_of(&point.id)).collect();
    assert_eq!(ids, ["2", "4"]);
}

#[tokio::test]
async fn set_payload_merges_into_the_points_payload() {
    let app = spawn_server().await;
    seed(&app.client).await;
    app.client
        .set_payload(
            SetPayloadPointsBuilder::new("memories", Payload::try_from(json!({"archived": true})).unwrap())
                .points_selector(PointsIdsList::from(vec![PointId::from(ALICE)]))
                .wait(true),
        )
        .await
        .unwrap();
    let got =
        app.client.get_points(GetPointsBuilder::new("memories", vec![PointId::from(ALICE)])).await.unwrap().result;
    assert_eq!(
        json_payload(got[0].payload.clone()),
        json!({"org": "acme", "scope": "user:1", "n": 1, "archived": true})
    );
}
