//! The `contextiq-qdrant-edge-server` binary: prints its URL, stops on SIGTERM, and keeps what
//! was flushed even when killed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use qdrant_client::qdrant::{CountPointsBuilder, Distance};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{client, create_collection, point, upsert};

/// Starts the binary on port 0 and returns it with the URL it printed.
async fn spawn_binary(storage: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextiq-qdrant-edge-server"))
        .args(["--bind", "127.0.0.1:0", "--storage"])
        .arg(storage)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the binary prints its URL")
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("QDRANT_URL=").expect("a QDRANT_URL line").to_owned();
    (child, url)
}

async fn count(url: &str) -> u64 {
    let client = client(url, None);
    client.count(CountPointsBuilder::new("notes")).await.unwrap().result.unwrap().count
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly_and_a_restart_sees_the_points() {
    let storage = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_binary(storage.path()).await;
    assert!(url.starts_with("http://127.0.0.1:"));
    let client = client(&url, None);
    create_collection(&client, "notes", 2, Distance::Cosine).await;
    upsert(&client, "notes", vec![point(1, vec![1.0, 0.0], json!({"org": "a"}))]).await;

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit}");

    let (_child, url) = spawn_binary(storage.path()).await;
    assert_eq!(count(&url).await, 1);
}

/// qdrant-edge does not replay its WAL on load, so only flushed points survive a crash; the
/// server flushes changed collections every 5 seconds.
#[tokio::test]
async fn points_written_before_the_periodic_flush_survive_a_kill() {
    let storage = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_binary(storage.path()).await;
    let client = client(&url, None);
    create_collection(&client, "notes", 2, Distance::Cosine).await;
    upsert(&client, "notes", vec![point(1, vec![1.0, 0.0], json!({})), point(2, vec![0.0, 1.0], json!({}))]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.kill().await.unwrap();

    let (_child, url) = spawn_binary(storage.path()).await;
    assert_eq!(count(&url).await, 2);
}
