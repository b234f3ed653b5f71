//! MCP over Streamable HTTP at `/mcp`, on every backend of the conformance runs: behind the
//! server's authentication, each tool call bound to its request's credential, and what the
//! tools do seen through `/api/v1`. The official MCP Python SDK drives both transports in
//! `integrations/mcp/tests` (scripts/integration-tests.sh).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, client_with_key, json_of, problem_of, without_model};

/// One JSON-RPC request to `/mcp` with `client`; the answer's JSON body.
async fn rpc(app: &TestApp, client: &reqwest::Client, method: &str, params: Value) -> Value {
    let response = client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("request sent");
    let body = json_of(response, StatusCode::OK).await;
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    body
}

/// A tool's result: its structured content, and whether it is an error.
async fn call(app: &TestApp, client: &reqwest::Client, tool: &str, arguments: Value) -> (Value, bool) {
    let body = rpc(app, client, "tools/call", json!({"name": tool, "arguments": arguments})).await;
    let result = &body["result"];
    assert!(result.is_object(), "{body}");
    (result["structuredContent"].clone(), result["isError"] == true)
}

#[tokio::test]
async fn tools_act_through_the_same_services_and_credentials_as_the_api() {
    let app = without_model::spawn_app().await;
    let initialized = rpc(
        &app,
        &app.client,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
    )
    .await;
    assert_eq!(initialized["result"]["serverInfo"]["name"], "contextiq", "{initialized}");
    let listed = rpc(&app, &app.client, "tools/list", json!({})).await;
    let mut names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "forget",
            "generate_memories",
            "get_job",
            "list_memories",
            "memory_history",
            "recall",
            "record_turns",
            "remember"
        ]
    );

    // Remember goes through consolidation: the second time, nothing changes.
    let scope = json!({"user_id": "mcp-u1"});
    let (first, failed) =
        call(&app, &app.client, "remember", json!({"fact": "User lives in Lisbon", "scope": scope})).await;
    assert!(!failed, "{first}");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["counts"]["added"], 1, "{first}");
    let memory_id = first["memories"][0]["id"].as_str().unwrap().to_owned();
    let (again, _) = call(&app, &app.client, "remember", json!({"fact": "User lives in Lisbon", "scope": scope})).await;
    assert_eq!(again["counts"], json!({"added": 0, "updated": 0, "deleted": 0, "unchanged": 1}), "{again}");
    let native =
        json_of(app.get("/api/v1/memories?scope=%7B%22user_id%22%3A%22mcp-u1%22%7D").await, StatusCode::OK).await;
    assert_eq!(native["memories"][0]["id"], memory_id.as_str(), "{native}");

    // An unscoped credential must name the scope.
    let (refused, failed) = call(&app, &app.client, "recall", json!({"query": "where"})).await;
    assert!(failed);
    assert_eq!(refused["error"]["code"], "validation_failed", "{refused}");
    assert_eq!(refused["error"]["field"], "scope", "{refused}");

    // A key limited to another user reaches its own scope by default and nothing else.
    let created = app
        .post(
            "/api/v1/keys",
            &json!({"name": "mcp-u2", "permissions": ["MEMORY_READ", "MEMORY_WRITE", "SESSION_READ", "SESSION_WRITE"],
                    "scope": {"user_id": "mcp-u2"}}),
        )
        .await;
    let key = json_of(created, StatusCode::CREATED).await["key"].as_str().unwrap().to_owned();
    let scoped = client_with_key(&key);
    let (forbidden, failed) = call(&app, &scoped, "recall", json!({"query": "where", "scope": scope})).await;
    assert!(failed);
    assert_eq!(forbidden["error"]["status"], 403, "{forbidden}");
    let (hidden, failed) = call(&app, &scoped, "forget", json!({"memory_id": memory_id})).await;
    assert!(failed);
    assert_eq!(hidden["error"]["status"], 404, "{hidden}");
    let (own, failed) = call(&app, &scoped, "remember", json!({"fact": "User is vegetarian"})).await;
    assert!(!failed, "{own}");
    assert_eq!(own["memories"][0]["scope"], json!({"user_id": "mcp-u2"}), "{own}");

    // A write-only key learns ids, not the text of memories it did not send.
    let created = app
        .post(
            "/api/v1/keys",
            &json!({"name": "mcp-w", "permissions": ["MEMORY_WRITE"], "scope": {"user_id": "mcp-u2"}}),
        )
        .await;
    let write_only = client_with_key(json_of(created, StatusCode::CREATED).await["key"].as_str().unwrap());
    let (updated, failed) = call(&app, &write_only, "remember", json!({"fact": "User is vegan"})).await;
    assert!(!failed, "{updated}");
    assert_eq!(updated["memories"], json!([]), "{updated}");
    assert_eq!(updated["memory_ids"].as_array().map(Vec::len), Some(1), "{updated}");
    let (forgotten, failed) = call(&app, &write_only, "forget", json!({"memory_id": updated["memory_ids"][0]})).await;
    assert!(!failed, "{forgotten}");
    assert_eq!(forgotten, json!({"forgotten": {"id": updated["memory_ids"][0]}}));

    // Turns recorded in a new session, then generation from it.
    let turns = json!([{"role": "user", "content": "I work as a nurse"}, {"role": "assistant", "content": "Noted."}]);
    let (recorded, failed) = call(&app, &scoped, "record_turns", json!({"turns": turns})).await;
    assert!(!failed, "{recorded}");
    let session_id = recorded["session_id"].as_str().unwrap().to_owned();
    let session = json_of(app.get(&format!("/api/v1/sessions/{session_id}")).await, StatusCode::OK).await;
    assert_eq!(session["event_count"], 2, "{session}");
    assert_eq!(session["user_id"], "mcp-u2", "{session}");
    let (generated, failed) = call(&app, &scoped, "generate_memories", json!({"session_id": session_id})).await;
    assert!(!failed, "{generated}");
    assert_eq!(generated["status"], "completed", "{generated}");
    assert_eq!(generated["events_processed"], 2, "{generated}");

    // Forget, then the history shows it.
    let (forgotten, failed) = call(&app, &app.client, "forget", json!({"memory_id": memory_id})).await;
    assert!(!failed, "{forgotten}");
    let (history, _) = call(&app, &app.client, "memory_history", json!({"memory_id": memory_id})).await;
    let actions: Vec<&str> =
        history["revisions"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "deleted"], "{history}");
    app.stop().await;
}

#[tokio::test]
async fn mcp_needs_credentials_and_an_allowed_host() {
    let app = without_model::spawn_app().await;
    let anonymous = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let response = anonymous
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem_of(response, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    // DNS rebinding: a page of another site must not reach the local server under its name.
    let response = app
        .client
        .post(app.url("/mcp"))
        .header("host", "attacker.example")
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}
