//! `contextiq bench sessions`: create, append and get over the sessions API.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::measure::{expect_status, measure, print_header, send};

pub async fn run(clients: usize, client: &reqwest::Client, base_url: &str, duration: Duration) -> anyhow::Result<()> {
    print_header();
    let sessions_url = format!("{base_url}/api/v1/sessions");
    let create = measure(clients, duration, |client_idx, n| {
        let client = client.clone();
        let url = sessions_url.clone();
        async move {
            let body = json!({"user_id": format!("bench-user-{client_idx}"), "metadata": {"n": n}});
            expect_status(send(client.post(&url).json(&body)).await?, 201).await.map(|_| ())
        }
    })
    .await?;
    create.print("create session");

    // One session per client for appends without contention, then one shared by all.
    let mut session_ids = Vec::with_capacity(clients);
    for client_idx in 0..clients {
        let response =
            send(client.post(&sessions_url).json(&json!({"user_id": format!("bench-user-{client_idx}")}))).await?;
        let session: Value = expect_status(response, 201).await?;
        session_ids.push(session["id"].as_str().context("session without id")?.to_owned());
    }
    let append = |shared: bool| {
        let session_ids = session_ids.clone();
        let client = client.clone();
        let base_url = base_url.to_owned();
        measure(clients, duration, move |client_idx, n| {
            let session_id = if shared { session_ids[0].clone() } else { session_ids[client_idx].clone() };
            let url = format!("{base_url}/api/v1/sessions/{session_id}/events");
            let client = client.clone();
            async move {
                let body = json!({"author": "user", "role": "user", "content": format!("message {n} from client {client_idx}")});
                expect_status(send(client.post(&url).json(&body)).await?, 201).await.map(|_| ())
            }
        })
    };
    append(false).await?.print("append event");
    append(true).await?.print("append (one session)");

    let get = measure(clients, duration, |client_idx, _| {
        let url = format!("{sessions_url}/{}?include_events=false", session_ids[client_idx]);
        let client = client.clone();
        async move { expect_status(send(client.get(&url)).await?, 200).await.map(|_| ()) }
    })
    .await?;
    get.print("get session");
    Ok(())
}
