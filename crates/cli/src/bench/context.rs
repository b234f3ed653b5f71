//! `contextiq bench context`: what context engineering costs. Token counting per event (in
//! this process, each tokenizer), appends with counting on, the latency of a compaction job,
//! and context assembly on a session of `--events` events (10,000 by default) with a
//! compaction and memories in its scope.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use contextiq_core::Tokenizer;
use serde_json::{Value, json};

use super::generation::event;
use super::measure::{expect_status, measure, print_header, send};

const BATCH: usize = 100;
const MEMORIES: usize = 200;

pub async fn run(
    clients: usize,
    client: &reqwest::Client,
    base_url: &str,
    n_events: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    count_tokens();

    let sessions_url = format!("{base_url}/api/v1/sessions");
    let session = |user: String| {
        let client = client.clone();
        let url = sessions_url.clone();
        async move {
            let created = expect_status(send(client.post(&url).json(&json!({"user_id": user}))).await?, 201).await?;
            created["id"].as_str().map(str::to_owned).context("session without id")
        }
    };
    let fill = |session_id: String, n: usize, seed: usize| {
        let client = client.clone();
        let url = format!("{sessions_url}/{session_id}/events");
        async move {
            for start in (0..n).step_by(BATCH) {
                let events: Vec<Value> = (start..(start + BATCH).min(n)).map(|turn| event(seed, turn)).collect();
                expect_status(send(client.post(&url).json(&json!({"events": events}))).await?, 201).await?;
            }
            anyhow::Ok(())
        }
    };

    println!("\ncompaction jobs (offline summariser; from POST /compact to completed):");
    for n in [100, 1_000, n_events] {
        let session_id = session(format!("bench-compaction-{n}")).await?;
        fill(session_id.clone(), n, n).await?;
        let started = Instant::now();
        let job = compact(client, base_url, &session_id, 20).await?;
        let elapsed = started.elapsed();
        let compaction = &job["compaction"];
        println!(
            "  {n:>6} events: {:>8.1} ms, {} tokens summarised into {}",
            elapsed.as_secs_f64() * 1e3,
            compaction["tokens_before"],
            compaction["tokens_after"]
        );
    }

    println!(
        "\ncontext assembly on a session of {n_events} events (compacted but the newest 50, {MEMORIES} memories):"
    );
    let session_id = session("bench-context".to_owned()).await?;
    fill(session_id.clone(), n_events, 7).await?;
    compact(client, base_url, &session_id, 50).await?;
    for n in 0..MEMORIES {
        let body = json!({"scope": {"user_id": "bench-context"}, "fact": format!("User mentioned item {n}: {}", event(n, 0)["content"])});
        expect_status(send(client.post(format!("{base_url}/api/v1/memories")).json(&body)).await?, 201).await?;
    }
    print_header();
    let context_url = format!("{sessions_url}/{session_id}/context");
    for budget in [1_000, 4_000, 16_000] {
        let assembled = measure(clients, duration, |_, _| {
            let client = client.clone();
            let url = context_url.clone();
            async move {
                let body = json!({"budget_tokens": budget});
                expect_status(send(client.post(&url).json(&body)).await?, 200).await.map(|_| ())
            }
        })
        .await?;
        assembled.print(&format!("context {budget} tokens"));
    }
    let no_memories = measure(clients, duration, |_, _| {
        let client = client.clone();
        let url = context_url.clone();
        async move {
            let body = json!({"budget_tokens": 4_000, "memory_top_k": 0});
            expect_status(send(client.post(&url).json(&body)).await?, 200).await.map(|_| ())
        }
    })
    .await?;
    no_memories.print("context 4000, no memories");

    // A session's history: forks copy events inside the store; the state at an event replays
    // the state log up to it. Every event of this session sets state (the replay's worst case).
    let session_id = session("bench-history".to_owned()).await?;
    let events_url = format!("{sessions_url}/{session_id}/events");
    for start in (0..n_events).step_by(BATCH) {
        let events: Vec<Value> = (start..(start + BATCH).min(n_events))
            .map(|turn| {
                let mut event = event(11, turn);
                event["actions"] = json!({"state_delta": {"turn": turn, format!("topic_{}", turn % 20): turn}});
                event
            })
            .collect();
        expect_status(send(client.post(&events_url).json(&json!({"events": events}))).await?, 201).await?;
    }
    println!("\nhistory of a session of {n_events} events, each setting state (single requests, median of {FORKS}):");
    for at_seq in [n_events / 2, n_events] {
        let mut times = Vec::with_capacity(FORKS);
        for _ in 0..FORKS {
            let started = Instant::now();
            let body = json!({"at_seq": at_seq});
            let fork =
                expect_status(send(client.post(format!("{sessions_url}/{session_id}/fork")).json(&body)).await?, 201)
                    .await?;
            times.push(started.elapsed());
            let fork_id = fork["id"].as_str().context("fork without id")?;
            expect_status(send(client.delete(format!("{sessions_url}/{fork_id}"))).await?, 204).await?;
        }
        times.sort();
        println!("  fork at event {at_seq:>6}: {:>8.1} ms", times[FORKS / 2].as_secs_f64() * 1e3);
    }
    print_header();
    let state_url = format!("{sessions_url}/{session_id}/state?at_seq={}", n_events / 2);
    let state_at = measure(clients, duration, |_, _| {
        let client = client.clone();
        let url = state_url.clone();
        async move { expect_status(send(client.get(&url)).await?, 200).await.map(|_| ()) }
    })
    .await?;
    state_at.print(&format!("state at event {}", n_events / 2));
    Ok(())
}

const FORKS: usize = 5;

/// The cost of counting an event's tokens, per tokenizer: what each append pays.
fn count_tokens() {
    let texts: Vec<String> =
        (0..2_000).map(|turn| event(turn, turn * 2)["content"].as_str().unwrap_or("").to_owned()).collect();
    let long = texts.concat();
    println!(
        "token counting in this process (2,000 short events of ~{} bytes; one text of {} KiB):",
        long.len() / texts.len(),
        long.len() / 1024
    );
    for tokenizer in [Tokenizer::O200kBase, Tokenizer::Cl100kBase, Tokenizer::Approximate] {
        tokenizer.count("warm up");
        let started = Instant::now();
        let tokens: u64 = texts.iter().map(|text| u64::from(tokenizer.count(text))).sum();
        let per_event = started.elapsed().as_secs_f64() * 1e6 / texts.len() as f64;
        let started = Instant::now();
        let long_tokens = tokenizer.count(&long);
        let per_kib = started.elapsed().as_secs_f64() * 1e6 / (long.len() as f64 / 1024.0);
        println!(
            "  {:<12} {per_event:>6.2} µs per event ({tokens} tokens); {per_kib:>6.1} µs per KiB ({long_tokens} tokens)",
            tokenizer.as_str()
        );
    }
}

async fn compact(client: &reqwest::Client, base_url: &str, session_id: &str, keep: u32) -> anyhow::Result<Value> {
    let url = format!("{base_url}/api/v1/sessions/{session_id}/compact");
    let job = expect_status(send(client.post(&url).json(&json!({"keep_recent_events": keep}))).await?, 202).await?;
    let job_url = format!("{base_url}/api/v1/jobs/{}", job["id"].as_str().context("job without id")?);
    loop {
        let job = expect_status(send(client.get(&job_url)).await?, 200).await?;
        match job["status"].as_str() {
            Some("completed") => return Ok(job),
            Some("failed") => bail!("the compaction failed: {}", job["error"]),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
