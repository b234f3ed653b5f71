//! `contextiq bench generation`: memory generation on the rules path, from `generate` to
//! `completed`: one long session at a time (latency), then many sessions at once (throughput).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::measure::{expect_status, format_rate, send};

const PLACES: &[&str] = &["Lisbon", "Kyoto", "Oslo", "Austin", "Nairobi", "Lima", "Hanoi", "Tallinn", "Porto"];
const THINGS: &[&str] = &[
    "vintage cameras",
    "sourdough bread",
    "mountain bikes",
    "jazz records",
    "orchids",
    "chess",
    "board games",
    "hot sauces",
    "watercolours",
    "sea kayaking",
];
const RELATIVES: &[&str] = &["sister", "brother", "manager", "neighbour", "daughter", "best friend"];
const JOBS: &[&str] = &["nurse", "teacher", "carpenter", "data analyst", "pilot", "chef"];
const CATEGORIES: &[(&str, &[&str])] = &[
    ("colour", &["blue", "green", "red", "yellow"]),
    ("food", &["ramen", "paella", "tacos", "dumplings"]),
    ("book", &["Dune", "Middlemarch", "Beloved", "Solaris"]),
    ("band", &["Radiohead", "ABBA", "Queen", "Portishead"]),
];
const MONTHS: &[&str] = &["March", "June", "September", "December"];

/// The `turn`th event of session `session`: user statements of every kind the rules
/// extractor knows, questions and chatter, and assistant replies.
pub(super) fn event(session: usize, turn: usize) -> Value {
    let mut state = ((session as u64) << 32 | turn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut pick = |len: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % len as u64) as usize
    };
    if turn % 2 == 1 {
        let reply = ["Good to know! Tell me more.", "I see. How does that make you feel?", "Noted, thanks."];
        return json!({"author": "assistant", "role": "assistant", "content": reply[pick(reply.len())]});
    }
    let (category, values) = CATEGORIES[pick(CATEGORIES.len())];
    let content = match pick(10) {
        0 => format!("I live in {}.", PLACES[pick(PLACES.len())]),
        1 => format!("My favourite {category} is {}.", values[pick(values.len())]),
        2 => format!("I love {}.", THINGS[pick(THINGS.len())]),
        3 => format!("I'm planning to visit {} in {}.", PLACES[pick(PLACES.len())], MONTHS[pick(MONTHS.len())]),
        4 => format!("My {} collects {}.", RELATIVES[pick(RELATIVES.len())], THINGS[pick(THINGS.len())]),
        5 => format!("I work as a {}.", JOBS[pick(JOBS.len())]),
        6 => format!(
            "Please remember that my {}'s birthday is on {} {}.",
            RELATIVES[pick(RELATIVES.len())],
            MONTHS[pick(MONTHS.len())],
            1 + pick(28)
        ),
        7 => format!("I don't like {}.", THINGS[pick(THINGS.len())]),
        8 => format!("What do you think about {}?", THINGS[pick(THINGS.len())]),
        _ => "That sounds great, thanks!".to_owned(),
    };
    json!({"author": "user", "role": "user", "content": content})
}

/// Creates a session of `n_events` events; returns its id.
async fn session_with_events(
    client: &reqwest::Client,
    base_url: &str,
    session: usize,
    n_events: usize,
) -> anyhow::Result<String> {
    let response = send(
        client
            .post(format!("{base_url}/api/v1/sessions"))
            .json(&json!({"user_id": format!("bench-generation-{session}")})),
    )
    .await?;
    let created: Value = expect_status(response, 201).await?;
    let id = created["id"].as_str().context("a session id")?.to_owned();
    let events: Vec<Value> = (0..n_events).map(|turn| event(session, turn)).collect();
    for chunk in events.chunks(100) {
        let response =
            send(client.post(format!("{base_url}/api/v1/sessions/{id}/events")).json(&json!({"events": chunk})))
                .await?;
        expect_status(response, 201).await?;
    }
    Ok(id)
}

async fn submit(client: &reqwest::Client, base_url: &str, session_id: &str) -> anyhow::Result<String> {
    let body = json!({"source_type": "session", "source_reference": session_id});
    let response = send(client.post(format!("{base_url}/api/v1/memories/generate")).json(&body)).await?;
    let job: Value = expect_status(response, 202).await?;
    Ok(job["id"].as_str().context("a job id")?.to_owned())
}

/// Polls until the job finishes; returns its final body.
async fn wait(client: &reqwest::Client, base_url: &str, job_id: &str) -> anyhow::Result<Value> {
    loop {
        let response = send(client.get(format!("{base_url}/api/v1/jobs/{job_id}"))).await?;
        let job: Value = expect_status(response, 200).await?;
        match job["status"].as_str() {
            Some("completed") => return Ok(job),
            Some("failed") => bail!("job {job_id} failed: {}", job["error"]),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

pub async fn run(client: &reqwest::Client, base_url: &str, n_events: usize, n_sessions: usize) -> anyhow::Result<()> {
    println!("latency: one session of {n_events} events at a time, generate to completed (rules extractor)");
    for round in 0..3 {
        let session_id = session_with_events(client, base_url, 1_000_000 + round, n_events).await?;
        let started = Instant::now();
        let job_id = submit(client, base_url, &session_id).await?;
        let job = wait(client, base_url, &job_id).await?;
        println!(
            "  run {}: {:>7.1} ms; {} facts extracted, {} memories added, {} updated",
            round + 1,
            started.elapsed().as_secs_f64() * 1000.0,
            job["facts_extracted"],
            job["counts"]["added"],
            job["counts"]["updated"]
        );
    }

    let per_session = 100;
    println!("throughput: {n_sessions} sessions of {per_session} events, submitted at once");
    let mut sessions = Vec::with_capacity(n_sessions);
    for session in 0..n_sessions {
        sessions.push(session_with_events(client, base_url, session, per_session).await?);
    }
    let started = Instant::now();
    let mut jobs = Vec::with_capacity(n_sessions);
    for session_id in &sessions {
        jobs.push(submit(client, base_url, session_id).await?);
    }
    let mut latencies = Vec::with_capacity(n_sessions);
    for job_id in &jobs {
        let job = wait(client, base_url, job_id).await?;
        let created = chrono::DateTime::parse_from_rfc3339(job["created_at"].as_str().unwrap_or_default())?;
        let finished = chrono::DateTime::parse_from_rfc3339(job["finished_at"].as_str().unwrap_or_default())?;
        latencies.push((finished - created).num_milliseconds() as f64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "  {n_sessions} jobs in {elapsed:.2} s: {} sessions, {} events; queued-to-completed p50 {:.0} ms, p95 {:.0} ms",
        format_rate(n_sessions as f64 / elapsed),
        format_rate((n_sessions * per_session) as f64 / elapsed),
        percentile(0.5),
        percentile(0.95)
    );
    Ok(())
}
