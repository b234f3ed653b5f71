//! Health, metrics, OpenAPI and docs, correlation ids, and persistence across restarts.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::without_model::{spawn_app, spawn_app_in};
use crate::helpers::{id_of, json_of};

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = json_of(app.get("/health").await, StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = json_of(app.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn metrics_are_labelled_by_route_template() {
    let app = spawn_app().await;
    let session_id = id_of(&app.create_session(&json!({"user_id": "metrics-user"})).await);
    app.get(&format!("/api/v1/sessions/{session_id}")).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for expected in [
        r#"http_requests_total{service="contextiq",method="POST",endpoint="/api/v1/sessions",status_code="201"}"#,
        r#"http_requests_total{service="contextiq",method="GET",endpoint="/api/v1/sessions/{id}",status_code="200"}"#,
        r#"http_request_duration_seconds_bucket{service="contextiq",method="GET",endpoint="/api/v1/sessions/{id}",status_code="200",le="0.005"}"#,
        r#"db_operations_total{service="contextiq",operation="insert",table="sessions",status="success"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains(&session_id), "raw ids must not become labels");
}

#[tokio::test]
async fn openapi_describes_every_endpoint_and_docs_are_served() {
    let app = spawn_app().await;
    let spec = json_of(app.get("/openapi.json").await, StatusCode::OK).await;
    let paths = &spec["paths"];
    for (path, methods) in [
        ("/api/v1/sessions", &["post", "get"][..]),
        ("/api/v1/sessions/{id}", &["get", "delete"]),
        ("/api/v1/sessions/{id}/events", &["post", "get"]),
        ("/api/v1/sessions/{id}/state", &["patch"]),
        ("/health", &["get"]),
        ("/health/ready", &["get"]),
        ("/metrics", &["get"]),
        ("/api/v1/keys", &["post", "get"]),
        ("/api/v1/keys/{id}", &["get", "delete"]),
    ] {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path} missing from the OpenAPI document");
        }
    }
    let schemas = &spec["components"]["schemas"];
    for schema in [
        "CreateSessionRequest",
        "SessionBody",
        "EventBody",
        "AppendEventRequest",
        "AppendEventsRequest",
        "Problem",
        "SessionList",
        "EventList",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    assert!(schemas["SessionBody"]["properties"]["event_count"].is_object());
    for status in ["401", "403", "429"] {
        assert!(paths["/api/v1/sessions"]["post"]["responses"][status].is_object(), "{status} undocumented");
    }
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());

    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    let initializer = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert_eq!(app.get("/docs/swagger-ui-bundle.js").await.status(), StatusCode::OK, "assets are vendored");
}

#[tokio::test]
async fn correlation_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/health")).header("x-correlation-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "abc-123");
    let response = app.client.get(app.url("/nowhere")).send().await.unwrap();
    let generated = response.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "{generated}");
    let response =
        app.client.get(app.url("/health")).header("x-correlation-id", "bad id\twith\"quotes").send().await.unwrap();
    assert_ne!(response.headers()["x-correlation-id"], "bad id\twith\"quotes");
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    let data_dir = app.data_dir.clone();
    let session = app.create_session(&json!({"user_id": "u1", "state": {"k": "v"}, "ttl_seconds": 3600})).await;
    let session_id = id_of(&session);
    let events: Vec<_> = (0..10).map(|n| json!({"author": "u", "content": format!("m{n}")})).collect();
    app.append(&session_id, &json!({"events": events})).await;
    app.patch_state(&session_id, &json!({"added": 1})).await;
    let before = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    app.stop().await;

    let app = spawn_app_in(data_dir, |_| {}).await;
    let after = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(after, before);
    let appended = app.append(&session_id, &json!({"author": "u", "content": "after restart"})).await;
    assert_eq!(appended["seq"], 11, "numbering continues after a restart");
}

/// Only the roles that serve memories or run jobs load the embedding model: a gateway and a
/// sessions process start, and serve, with no model directory at all, where the `all` role
/// refuses to start.
#[tokio::test]
async fn the_gateway_and_sessions_roles_start_without_the_model_directory() {
    use contextiq_server::config::Role;
    let without_model = |role: Role| {
        move |settings: &mut contextiq_server::Settings| {
            settings.server.role = role;
            settings.embedding.model_path = settings.data_dir.join("no-such-model");
            settings.gateway.sessions_url = Some("http://127.0.0.1:9".to_owned());
            settings.gateway.memory_url = Some("http://127.0.0.1:9".to_owned());
        }
    };
    for role in [Role::Gateway, Role::Sessions] {
        let data_dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        let app = crate::helpers::spawn_app_of(crate::helpers::Model::Configured, data_dir, without_model(role)).await;
        assert!(!app.data_dir.path().join("no-such-model").exists());
        let ready = json_of(app.get("/health/ready").await, StatusCode::OK).await;
        assert_eq!(ready["status"], "ready", "{role}");
        assert_eq!(app.get("/metrics").await.status(), StatusCode::OK, "{role}");
        app.stop().await;
    }

    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = contextiq_server::Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.data_dir = data_dir.path().to_owned();
    without_model(Role::All)(&mut settings);
    assert!(contextiq_server::Application::build(settings).await.is_err(), "the all role needs the model");
}
