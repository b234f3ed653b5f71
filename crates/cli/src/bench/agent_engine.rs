//! `contextiq bench agent-engine`: one turn of an ADK agent, as ADK's Vertex AI services send
//! it (read the session and all its events, append the turn's event, retrieve the user's
//! memories), against the same turn on the native API (`/api/v1`), each on sessions of its own
//! that grow by one event per turn.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::measure::{expect_status, measure, print_header, send};

/// Memories of each agent's user, for the retrieval of each turn.
const MEMORIES_PER_USER: usize = 20;

const ENGINE: &str = "/v1beta1/reasoningEngines/bench";

pub async fn run(clients: usize, client: &reqwest::Client, base_url: &str, duration: Duration) -> anyhow::Result<()> {
    let mut native_sessions = Vec::with_capacity(clients);
    for agent in 0..clients {
        let user = format!("bench-user-{agent}");
        let created = json!({"userId": user, "sessionState": {"turn": 0}});
        let url = format!("{base_url}{ENGINE}/sessions?sessionId=bench-{agent}");
        expect_status(send(client.post(&url).json(&created)).await?, 200).await?;
        let native = json!({"user_id": user, "scope": {"app_name": "bench", "user_id": user}});
        let response =
            send(client.post(format!("{base_url}/api/v1/sessions")).header("x-engine-id", "bench").json(&native));
        let session: Value = expect_status(response.await?, 201).await?;
        native_sessions.push(session["id"].as_str().context("a session without id")?.to_owned());
        for n in 0..MEMORIES_PER_USER {
            let memory = json!({"fact": format!("User fact {n}: likes topic {}", n * 7 % 13), "scope": {"app_name": "bench", "user_id": user}});
            expect_status(send(client.post(format!("{base_url}{ENGINE}/memories")).json(&memory)).await?, 200).await?;
        }
    }
    print_header();
    let agent_engine = measure(clients, duration, |agent, n| {
        let (client, base_url) = (client.clone(), base_url.to_owned());
        async move {
            let session = format!("{base_url}{ENGINE}/sessions/bench-{agent}");
            // ADK's get_session: the session and its events, at once.
            let (read, events) =
                tokio::join!(send(client.get(&session)), send(client.get(format!("{session}/events"))));
            expect_status(read?, 200).await?;
            expect_status(events?, 200).await?;
            let event = json!({
                "author": "user", "invocationId": format!("i-{n}"), "timestamp": "2026-12-05T10:00:00+00:00",
                "content": {"role": "user", "parts": [{"text": format!("turn {n}: what do I like?")}]},
                "actions": {"state_delta": {"turn": n}}, "rawEvent": {"id": format!("e-{n}")},
            });
            expect_status(send(client.post(format!("{session}:appendEvent")).json(&event)).await?, 200).await?;
            let user = format!("bench-user-{agent}");
            let retrieve = json!({"scope": {"app_name": "bench", "user_id": user},
                "similaritySearchParams": {"search_query": format!("what does the user like? {n}")}});
            let url = format!("{base_url}{ENGINE}/memories:retrieve");
            expect_status(send(client.post(url).json(&retrieve)).await?, 200).await.map(|_| ())
        }
    })
    .await?;
    agent_engine.print("ADK turn (/v1beta1)");
    let native = measure(clients, duration, |agent, n| {
        let (client, base_url) = (client.clone(), base_url.to_owned());
        let session = format!("{base_url}/api/v1/sessions/{}", native_sessions[agent]);
        async move {
            let engine = |request: reqwest::RequestBuilder| request.header("x-engine-id", "bench");
            expect_status(send(engine(client.get(&session))).await?, 200).await?;
            let event = json!({"author": "user", "role": "user", "content": format!("turn {n}: what do I like?"),
                "invocation_id": format!("i-{n}")});
            expect_status(send(engine(client.post(format!("{session}/events")).json(&event))).await?, 201).await?;
            let user = format!("bench-user-{agent}");
            let search = json!({"scope": {"app_name": "bench", "user_id": user},
                "search_query": format!("what does the user like? {n}"), "top_k": 3});
            let url = format!("{base_url}/api/v1/memories/search");
            expect_status(send(engine(client.post(url).json(&search))).await?, 200).await.map(|_| ())
        }
    })
    .await?;
    native.print("same turn (/api/v1)");
    Ok(())
}
