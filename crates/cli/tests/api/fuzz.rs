//! Generated hostile input: thousands of random and malformed requests across every route;
//! none may get a 5xx or bring the server down.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::without_model::spawn_app;
use crate::helpers::{id_of, json_of};

#[derive(Debug, Clone)]
struct FuzzRequest {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(300))),
        Just(Value::from(u64::MAX)),
        Just(Value::from(-1e300)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Bodies near the real shapes (the likeliest to reach deep code), arbitrary JSON, and bytes.
fn body(field_names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let near_shape =
        prop::collection::btree_map(prop::sample::select(field_names), json_value(), 0..6).prop_map(|fields| {
            let object: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            Value::Object(object).to_string().into_bytes()
        });
    let batch =
        prop::collection::vec(json_value(), 0..4).prop_map(|events| json!({"events": events}).to_string().into_bytes());
    let generate = (
        prop::sample::select(&["session", "events", "memories", "x"][..]),
        json_value(),
        json_value(),
        prop::collection::vec(json_value(), 0..3),
        json_value(),
    )
        .prop_map(|(source_type, scope, config, items, range)| {
            json!({"source_type": source_type, "scope": scope, "config": config, "events": items.clone(),
                "memories": items, "event_range": range})
            .to_string()
            .into_bytes()
        });
    prop_oneof![
        4 => near_shape,
        1 => batch,
        1 => generate,
        1 => json_value().prop_map(|value| value.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"{\"user_id\": \"u\", \"state\": ".to_vec()),
    ]
}

const FIELDS: &[&str] = &[
    "user_id",
    "agent_id",
    "scope",
    "state",
    "metadata",
    "ttl_seconds",
    "expires_at",
    "author",
    "role",
    "content",
    "timestamp",
    "invocation_id",
    "events",
    "name",
    "permissions",
    "expires_in_seconds",
    "rate_limit_per_second",
    "source_type",
    "source_reference",
    "event_range",
    "memories",
    "config",
    "consolidate",
    "fact",
    "topic",
    "confidence",
    "search_query",
    "top_k",
    "filter",
    "revision_id",
];

fn request(session_id: String, memory_id: String, job_id: String) -> impl Strategy<Value = FuzzRequest> {
    let id = prop_oneof![
        2 => Just(session_id),
        2 => Just(memory_id),
        1 => Just(job_id),
        1 => Just("0190b8a4-0000-7000-8000-000000000000".to_owned()),
        1 => "[a-zA-Z0-9%._~-]{0,40}",
        1 => Just("..%2F..%2Fetc%2Fpasswd".to_owned()),
        1 => Just("%00%ff%fe".to_owned()),
    ];
    let query = prop_oneof![
        Just(String::new()),
        "limit=-?[0-9]{0,22}",
        "cursor=[A-Za-z0-9_%=-]{0,40}",
        "include_events=[a-z]{0,6}",
        "scope=%7B%22user_id%22%3A%22u1%22%7D&topic=[a-z]{0,4}&created_after=[0-9TZ:-]{0,20}",
        "scope=[%A-Za-z0-9]{0,30}&purge=[a-z]{0,5}",
        "user_id=.{0,10}&agent_id=[a-z]{0,4}&limit=[0-9]{1,3}",
    ];
    let template = prop::sample::select(
        &[
            "/api/v1/sessions",
            "/api/v1/sessions/{id}",
            "/api/v1/sessions/{id}/events",
            "/api/v1/sessions/{id}/state",
            "/api/v1/keys",
            "/api/v1/keys/{id}",
            "/api/v1/memories",
            "/api/v1/memories/{id}",
            "/api/v1/memories/search",
            "/api/v1/memories/{id}/revisions",
            "/api/v1/memories/{id}/restore",
            "/api/v1/memories/generate",
            "/api/v1/jobs/{id}",
            "/api/v1/{id}",
            "/{id}",
        ][..],
    );
    let method = prop::sample::select(
        &[Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::PUT, Method::HEAD][..],
    );
    let content_type = prop::sample::select(
        &[
            Some("application/json"),
            Some("application/json"),
            Some("application/merge-patch+json"),
            Some("text/plain"),
            Some("application/json; charset=latin1"),
            None,
        ][..],
    );
    (method, template, id, query, content_type, body(FIELDS)).prop_map(
        |(method, template, id, query, content_type, body)| {
            let mut path = template.replace("{id}", &id);
            if !query.is_empty() {
                path = format!("{path}?{query}");
            }
            FuzzRequest { method, path, content_type, body }
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hostile_requests_get_no_5xx() {
    const N_REQUESTS: usize = 1_500;
    let app = spawn_app().await;
    let session_id =
        id_of(&json_of(app.post("/api/v1/sessions", &json!({"user_id": "u1"})).await, StatusCode::CREATED).await);
    let memory =
        app.post("/api/v1/memories", &json!({"scope": {"user_id": "u1"}, "fact": "The user likes kites"})).await;
    let memory_id = id_of(&json_of(memory, StatusCode::CREATED).await);
    let job = app
        .post(
            "/api/v1/memories/generate",
            &json!({"source_type": "session", "source_reference": session_id, "config": {"extractor": "rules"}}),
        )
        .await;
    let job_id = id_of(&json_of(job, StatusCode::ACCEPTED).await);
    let strategy = request(session_id, memory_id, job_id);
    let mut runner =
        TestRunner::new(Config { rng_seed: proptest::test_runner::RngSeed::Fixed(0x0c1c_0f22), ..Config::default() });
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..N_REQUESTS {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let mut request = app.client.request(case.method.clone(), app.url(&case.path)).body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap_or_else(|err| panic!("{case:?}: the server did not answer: {err}"));
        let status = response.status();
        assert!(!status.is_server_error(), "{case:?} got {status}: {}", response.text().await.unwrap_or_default());
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    // The generator must reach past the validators, or the test proves little.
    assert!(statuses.keys().any(|status| (200..300).contains(status)), "{statuses:?}");
    assert!(statuses.contains_key(&422) && statuses.contains_key(&404), "{statuses:?}");
    json_of(app.get("/health/ready").await, StatusCode::OK).await;
}
