//! Bad input of every kind: a clear problem+json 4xx, and nothing changes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::without_model::spawn_app;
use crate::helpers::{TestApp, id_of, json_of, problem_of};

async fn send_raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn malformed_bodies_are_400_or_415() {
    let app = spawn_app().await;
    let json = Some("application/json");
    let post = reqwest::Method::POST;
    for body in [&b"{"[..], b"", b"{\"user_id\": \"u1\",}", b"{\"user_id\": \"u1\"} trailing", b"\xff\xfe{}", b"nul"] {
        problem_of(
            send_raw(&app, post.clone(), "/api/v1/sessions", json, body.to_vec()).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        )
        .await;
    }
    let invalid_utf8_in_string = b"{\"user_id\": \"\xc3\x28\"}".to_vec();
    problem_of(
        send_raw(&app, post.clone(), "/api/v1/sessions", json, invalid_utf8_in_string).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    let deep = format!("{{\"user_id\": \"u\", \"metadata\": {}{}}}", "{\"a\":".repeat(200), "}".repeat(200));
    problem_of(
        send_raw(&app, post.clone(), "/api/v1/sessions", json, deep.into_bytes()).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;

    let body = br#"{"user_id": "u1"}"#.to_vec();
    for content_type in
        [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")]
    {
        problem_of(
            send_raw(&app, post.clone(), "/api/v1/sessions", content_type, body.clone()).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    assert_no_sessions(&app).await;
}

#[tokio::test]
async fn validation_failures_are_422_naming_the_field() {
    let app = spawn_app().await;
    let far_future = "9999-01-01T00:00:00Z";
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "user_id"),
        (json!({"user_id": ""}), "user_id"),
        (json!({"user_id": "   "}), "user_id"),
        (json!({"user_id": 5}), "user_id"),
        (json!({"user_id": "x".repeat(257)}), "user_id"),
        (json!({"user_id": "a\u{0}b"}), "user_id"),
        (json!({"user_id": "u", "agent_id": ""}), "agent_id"),
        (json!({"user_id": "u", "surprise": 1}), "surprise"),
        (json!({"user_id": "u", "scope": {"user_id": 1}}), "scope.user_id"),
        (json!({"user_id": "u", "scope": {}}), "scope"),
        (json!({"user_id": "u", "scope": "u"}), "scope"),
        (json!({"user_id": "u", "state": [1]}), "state"),
        (json!({"user_id": "u", "metadata": "m"}), "metadata"),
        (json!({"user_id": "u", "ttl_seconds": 0}), "ttl_seconds"),
        (json!({"user_id": "u", "ttl_seconds": -5}), "ttl_seconds"),
        (json!({"user_id": "u", "ttl_seconds": 1e30}), "ttl_seconds"),
        (json!({"user_id": "u", "ttl_seconds": 99_999_999_999_i64}), "ttl_seconds"),
        (json!({"user_id": "u", "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"user_id": "u", "expires_at": far_future}), "expires_at"),
        (json!({"user_id": "u", "expires_at": "tomorrow"}), "expires_at"),
        (json!({"user_id": "u", "ttl_seconds": 5, "expires_at": "2100-01-01T00:00:00Z"}), "expires_at"),
        (json!([1, 2]), "body"),
        (json!({"user_id": "u", "state": {"deep": nested(40)}}), "state"),
        (json!({"user_id": "u", "metadata": {"deep": nested(40)}}), "metadata"),
    ];
    for (body, field) in cases {
        let problem = problem_of(
            app.post("/api/v1/sessions", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    assert_no_sessions(&app).await;

    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    let events_path = format!("/api/v1/sessions/{session_id}/events");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"content": "x"}), "author"),
        (json!({"author": "u"}), "content"),
        (json!({"author": "u", "content": null}), "content"),
        (json!({"author": "u", "content": "x", "role": "robot"}), "role"),
        (json!({"author": "u", "content": "x", "timestamp": "yesterday"}), "timestamp"),
        (json!({"author": "u", "content": "x", "timestamp": "+262142-12-31T23:59:60Z"}), "timestamp"),
        (json!({"author": "u", "content": "x", "timestamp": "0000-01-01T00:00:00Z"}), "timestamp"),
        (
            json!({"events": [{"author": "u", "content": "x", "timestamp": "0000-06-01T00:00:00Z"}]}),
            "events[0].timestamp",
        ),
        (json!({"author": "u", "content": "x", "extra": true}), "extra"),
        (json!({"author": "", "content": "x"}), "author"),
        (json!({"events": [{"author": "u", "content": "x"}, {"author": "u"}]}), "events[1].content"),
        (json!({"events": [{"author": "u", "content": "x"}, {"author": "", "content": "x"}]}), "events[1].author"),
        (json!({"events": "x"}), "events"),
        (json!({"author": "u", "content": nested(40)}), "content"),
        (json!({"author": "u", "content": "x", "metadata": {"deep": nested(40)}}), "metadata"),
    ];
    for (body, field) in cases {
        let problem =
            problem_of(app.post(&events_path, &body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .await;
        assert_eq!(problem["field"], field, "{body} -> {problem}");
    }
    let session = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(session["event_count"], 0, "no rejected append wrote anything");
}

#[tokio::test]
async fn bad_ids_routes_methods_and_queries() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "u1"})).await);
    for path in [
        "/api/v1/sessions/not-a-uuid",
        "/api/v1/sessions/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/sessions/0190b8a4-0000-7000-8000-000000000000",
        "/api/v1/sessions/0190b8a4-0000-7000-8000-000000000000/events",
        "/api/v1/sessions/%00/events",
    ] {
        problem_of(app.get(path).await, StatusCode::NOT_FOUND, "session_not_found").await;
    }
    for path in ["/api/v1/nothing", "/api/v2/sessions", "/", "/api/v1/sessions/a/b/c"] {
        problem_of(app.get(path).await, StatusCode::NOT_FOUND, "route_not_found").await;
    }
    let response = app.client.put(app.url("/api/v1/sessions")).send().await.unwrap();
    assert!(response.headers().get("allow").is_some(), "a 405 names the allowed methods");
    problem_of(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let response = app.client.post(app.url(&format!("/api/v1/sessions/{session_id}/state"))).send().await.unwrap();
    problem_of(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=", "cursor"),
    ] {
        let problem = problem_of(
            app.get(&format!("/api/v1/sessions?{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
    problem_of(
        app.get(&format!("/api/v1/sessions/{session_id}/events?limit=1001")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem_of(
        app.get(&format!("/api/v1/sessions/{session_id}/events?cursor=czE6MQ")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem_of(
        app.get(&format!("/api/v1/sessions/{session_id}?include_events=maybe")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

/// An array nested `depth` levels deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

async fn assert_no_sessions(app: &TestApp) {
    let listed = json_of(app.get("/api/v1/sessions").await, StatusCode::OK).await;
    assert_eq!(listed["sessions"], json!([]), "a rejected request created a session");
}
