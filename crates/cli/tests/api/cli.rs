//! `contextiq keys` works on the store directly, beside a running server.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{binary, client_with_key, json_of, problem_of, spawn_app_with};

fn contextiq(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(binary())
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
