//! `contextiq keys` works on the store directly, beside a running server.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{binary, client_with_key, json_of, problem_of, spawn_app_with};

fn contextiq(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .envs(crate::helpers::backend_env(data_dir))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cli_creates_lists_and_revokes() {
    // The CLI revokes in another process: with no key cache the server sees it at once.
    let app = spawn_app_with(|settings| settings.auth.key_cache_seconds = 0).await;
    let data_dir = app.data_dir.path();
    let output = contextiq(
        &[
            "keys",
            "create",
            "--name",
            "cli-key",
            "--permissions",
            "SESSION_READ,SESSION_WRITE",
            "--scope",
            "user_id=u1",
            "--expires-in",
            "30d",
        ],
        data_dir,
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "the key alone on stdout: {stdout:?}");
    assert!(key.starts_with("ck_"), "{key}");

    let client = client_with_key(key);
    let response = client.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u1"})).send().await.unwrap();
    json_of(response, StatusCode::CREATED).await;
    let response = client.post(app.url("/api/v1/sessions")).json(&json!({"user_id": "u2"})).send().await.unwrap();
    problem_of(response, StatusCode::FORBIDDEN, "forbidden").await;

    let output = contextiq(
        &["keys", "create", "--name", "other-org", "--permissions", "SESSION_READ", "--org", "acme"],
        data_dir,
    );
    assert!(output.status.success());
    let other = client_with_key(String::from_utf8(output.stdout).unwrap().trim());
    let listed = json_of(other.get(app.url("/api/v1/sessions")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed["sessions"], json!([]), "another org sees none of the default org's sessions");

    let output = contextiq(&["keys", "list"], data_dir);
    assert!(output.status.success());
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(!listing.contains(&key[3..]), "a listing never shows a key");
    let line = listing.lines().find(|line| line.contains("cli-key")).expect("the key is listed");
    assert!(
        line.contains("active") && line.contains("SESSION_READ,SESSION_WRITE") && line.contains(r#"{"user_id":"u1"}"#),
        "{line}"
    );
    let id = line.split_whitespace().next().unwrap();

    let output = contextiq(&["keys", "revoke", id], data_dir);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    problem_of(
        client.get(app.url("/api/v1/sessions")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let listing = String::from_utf8(contextiq(&["keys", "list", "--org", "default"], data_dir).stdout).unwrap();
    assert!(listing.lines().any(|line| line.contains("cli-key") && line.contains("revoked")), "{listing}");
    assert!(!listing.contains("other-org"), "--org filters");

    for bad in [
        &["keys", "create", "--name", "x", "--permissions", "ROOT"][..],
        &["keys", "create", "--name", "x", "--permissions", "ADMIN", "--scope", "nokey"],
        &["keys", "create", "--name", "x", "--permissions", "ADMIN", "--expires-in", "5y"],
        &["keys", "revoke", "0190b8a4-0000-7000-8000-000000000000"],
    ] {
        let output = contextiq(bad, data_dir);
        assert!(!output.status.success(), "{bad:?} should fail");
        assert!(output.stdout.is_empty(), "{bad:?} printed to stdout");
    }
}

/// A server speaking the OpenAI embeddings protocol: 8-dimensional vectors from word lengths.
async fn fake_openai() -> String {
    let app = axum::Router::new().route(
        "/v1/embeddings",
        axum::routing::post(|axum::Json(body): axum::Json<serde_json::Value>| async move {
            let data: Vec<serde_json::Value> = body["input"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(index, text)| {
                    let mut embedding = [0.1f32; 8];
                    for word in text.as_str().unwrap().split_whitespace() {
                        embedding[word.len() % 8] += 1.0;
                    }
                    json!({"object": "embedding", "index": index, "embedding": embedding})
                })
                .collect();
            axum::Json(json!({"object": "list", "data": data, "model": body["model"]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_moves_every_memory_to_a_new_model() {
    let app = spawn_app_with(|_| {}).await;
    for fact in ["I love hiking in the Alps", "My sister lives in Porto", "Allergic to peanuts"] {
        let response = app.post("/api/v1/memories", &json!({"scope": {"user_id": "u1"}, "fact": fact})).await;
        json_of(response, StatusCode::CREATED).await;
    }
    let data_dir = app.data_dir.clone();
    app.stop().await;

    let base_url = fake_openai().await;
    let openai = |settings: &mut contextiq_server::Settings| {
        settings.embedding.provider = contextiq_server::config::EmbeddingProvider::Openai;
        settings.embedding.base_url = base_url.clone();
        settings.embedding.dimension = 8;
    };
    let output = tokio::task::spawn_blocking({
        let (base_url, data_dir) = (base_url.clone(), data_dir.path().to_owned());
        move || {
            Command::new(binary())
                .envs(crate::helpers::backend_env(&data_dir))
                .args(["reindex", "--data-dir"])
                .arg(data_dir)
                .env("EMBEDDING_PROVIDER", "openai")
                .env("EMBEDDING_BASE_URL", base_url)
                .env("EMBEDDING_DIMENSION", "8")
                .env("EMBEDDING_API_KEY", "sk-test")
                .env("LOG_LEVEL", "warn")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("re-embedded 3 memories with openai:text-embedding-3-small:8"), "{stderr}");

    let app = crate::helpers::spawn_app_in(data_dir, openai).await;
    let found = json_of(
        app.post("/api/v1/memories/search", &json!({"scope": {"user_id": "u1"}, "search_query": "peanuts"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["results"][0]["memory"]["fact"], "Allergic to peanuts");
    assert_eq!(found["results"].as_array().unwrap().len(), 3);
}

/// `bench sessions` against a server whose rate limit it exceeds: it waits out each 429 as
/// Retry-After says, finishes, and says how many were throttled and how to lift the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_waits_out_the_rate_limit_and_says_how_to_lift_it() {
    let app = spawn_app_with(|settings| {
        settings.auth.rate_limit_per_second = 1;
        settings.auth.rate_limit_burst = 1;
    })
    .await;
    let (address, key) = (app.address.clone(), app.admin_key.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["bench", "sessions", "--url", &address, "--api-key", &key, "--clients", "2", "--seconds", "1"])
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let hint = stdout.lines().find(|line| line.starts_with("throttled: ")).unwrap_or_else(|| panic!("{stdout}"));
    let n_throttled: u64 = hint
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("a count of throttled requests: {hint}"));
    assert!(n_throttled > 0, "{hint}");
    assert!(hint.contains("RATE_LIMIT_PER_SECOND") && hint.contains("--rate-limit"), "{hint}");
    assert!(stdout.contains("throttled)"), "the operations that were throttled say so:\n{stdout}");
}

/// The embedded benchmark makes its own key on its throwaway server, without the banner that
/// tells a user to keep the first admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bench_announces_no_admin_key() {
    let output = tokio::task::spawn_blocking(|| {
        Command::new(binary())
            .args(["bench", "sessions", "--clients", "1", "--seconds", "1"])
            .env("EMBEDDING_MODEL_PATH", crate::helpers::model_dir())
            .env_remove("CONTEXTIQ_API_KEY")
            .env_remove("DATABASE_URL")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("authentication: API key"), "{stdout}");
    assert!(!stdout.contains("admin API key") && !stdout.contains("ck_"), "{stdout}");
    assert!(stdout.contains("get session"), "{stdout}");
}
