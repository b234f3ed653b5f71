//! The shared cache (Redis): no stale read survives a write, across applications sharing one
//! database and one Redis; and a Redis that is down costs nothing but speed.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{id_of, json_of, spawn_app_in, spawn_app_with, test_redis};

/// Two applications on one database and one Redis (the conformance run): each write through
/// one is seen by the next read through the other, though that other cached the value before.
#[tokio::test]
async fn writes_through_one_process_are_seen_by_another_at_once() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let shared = std::env::var_os("CONTEXTIQ_CONFORMANCE_DATABASE_URL").is_some();
    if !shared || test_redis(data_dir.path()).is_none() {
        eprintln!("skipped: needs the conformance run's PostgreSQL and Redis, which two applications can share");
        return;
    }
    let writer = spawn_app_in(data_dir.clone(), |_| {}).await;
    let reader = spawn_app_in(data_dir.clone(), |_| {}).await;

    let session_id = id_of(&writer.create_session(&json!({"user_id": "u1", "state": {"step": 1}})).await);
    let session_path = format!("/api/v1/sessions/{session_id}");
    for round in 1..=3 {
        // The reader caches the session as it is now ...
        let before = json_of(reader.get(&session_path).await, StatusCode::OK).await;
        assert_eq!(before["events"].as_array().unwrap().len(), round - 1);
        // ... the writer changes it ...
        writer.append(&session_id, &json!({"author": "user", "content": format!("turn {round}")})).await;
        let patched = writer.patch_state(&session_id, &json!({"step": round + 1})).await;
        assert_eq!(patched.status(), StatusCode::OK);
        // ... and the reader's next read shows the change.
        let after = json_of(reader.get(&session_path).await, StatusCode::OK).await;
        assert_eq!(after["events"].as_array().unwrap().len(), round, "{after}");
        assert_eq!(after["state"]["step"], round + 1);
    }

    let scope = json!({"user_id": "u1"});
    let memory = json_of(
        writer.post("/api/v1/memories", &json!({"scope": scope, "fact": "Likes green tea"})).await,
        StatusCode::CREATED,
    )
    .await;
    let memory_path = format!("/api/v1/memories/{}", id_of(&memory));
    let search = json!({"scope": scope, "search_query": "what tea do they like", "top_k": 5});
    let found = json_of(reader.post("/api/v1/memories/search", &search).await, StatusCode::OK).await;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(1), "{found}");
    json_of(reader.get(&memory_path).await, StatusCode::OK).await;

    let changed =
        writer.client.patch(writer.url(&memory_path)).json(&json!({"fact": "Likes jasmine tea"})).send().await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let read = json_of(reader.get(&memory_path).await, StatusCode::OK).await;
    assert_eq!(read["fact"], "Likes jasmine tea");

    // A new memory of the scope joins the cached search ranking at once.
    writer.post("/api/v1/memories", &json!({"scope": scope, "fact": "Drinks tea every morning"})).await;
    let found = json_of(reader.post("/api/v1/memories/search", &search).await, StatusCode::OK).await;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(2), "{found}");

    assert_eq!(writer.delete(&memory_path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(reader.get(&memory_path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(writer.delete(&session_path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(reader.get(&session_path).await.status(), StatusCode::NOT_FOUND);
    reader.stop().await;
    writer.stop().await;
}

/// Redis unreachable from the start: every request is served from the store, rate limits
/// still hold (per process), and the metrics say what happened.
#[tokio::test]
async fn a_redis_that_is_down_costs_nothing_but_speed() {
    let app = spawn_app_with(|settings| {
        settings.redis.url = Some("redis://127.0.0.1:1/0".to_owned().into());
        settings.redis.socket_timeout = 0.5;
        // Limits are off unless configured; configured, they hold per process.
        settings.auth.rate_limit_per_second = 100_000;
    })
    .await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    app.append(&session_id, &json!({"author": "user", "content": "hello"})).await;
    for _ in 0..2 {
        let session = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
        assert_eq!(session["events"].as_array().map(Vec::len), Some(1));
    }
    let scope = json!({"user_id": "u1"});
    let memory = json_of(
        app.post("/api/v1/memories", &json!({"scope": scope, "fact": "Allergic to peanuts"})).await,
        StatusCode::CREATED,
    )
    .await;
    json_of(app.get(&format!("/api/v1/memories/{}", id_of(&memory))).await, StatusCode::OK).await;
    let search = json!({"scope": scope, "search_query": "peanuts", "top_k": 3});
    let found = json_of(app.post("/api/v1/memories/search", &search).await, StatusCode::OK).await;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(1));

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for name in ["cache_errors_total", "cache_misses_total", "rate_limiter_fallbacks_total"] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    assert!(!metrics.contains("cache_hits_total"), "nothing can hit a cache that is down");
    app.stop().await;
}
