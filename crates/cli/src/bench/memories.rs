//! `contextiq bench memories`: ingestion throughput (embedding included) and search latency
//! over HTTP, across many scopes and in one large scope.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::measure::{expect_status, format_rate, measure, print_header, send};

const SUBJECTS: &[&str] =
    &["sister", "manager", "dentist", "neighbour", "best friend", "daughter", "coach", "landlord"];
const VERBS: &[&str] =
    &["loves", "hates", "collects", "is learning", "writes about", "teaches", "sells", "photographs"];
const THINGS: &[&str] = &[
    "vintage cameras",
    "sourdough bread",
    "mountain bikes",
    "jazz records",
    "orchids",
    "chess openings",
    "Portuguese tiles",
    "sea kayaks",
    "old maps",
    "board games",
    "hot sauces",
    "watercolours",
];
const PLACES: &[&str] =
    &["Lisbon", "Kyoto", "Oslo", "Austin", "Nairobi", "Lima", "Hanoi", "Tallinn", "Porto", "Quebec"];

/// A fact made from small vocabularies, varied enough for ranking to matter.
pub(crate) fn fact(n: usize) -> String {
    let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut pick = |len: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % len as u64) as usize
    };
    format!(
        "My {} {} {} in {} since {}",
        SUBJECTS[pick(SUBJECTS.len())],
        VERBS[pick(VERBS.len())],
        THINGS[pick(THINGS.len())],
        PLACES[pick(PLACES.len())],
        1990 + pick(35)
    )
}

fn resident_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub async fn run(
    client: &reqwest::Client,
    base_url: &str,
    n_memories: usize,
    n_scopes: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let n_scopes = n_scopes.max(1);
    println!("ingest: {n_memories} memories over {n_scopes} scopes, {clients} clients");
    let ingested = ingest(client, base_url, n_memories, |n| format!("bench-{}", n % n_scopes), clients).await?;
    println!(
        "ingest: {n_memories} memories in {:.1} s: {} memories",
        ingested.as_secs_f64(),
        format_rate(n_memories as f64 / ingested.as_secs_f64())
    );
    if let Some(mib) = resident_memory_mib() {
        println!("resident memory of this process (server and client) after ingest: {mib:.0} MiB");
    }
    print_header();
    // Latency alone (1 client) and under load (all clients): a search embeds its query, and
    // concurrent queries share the two cores with everything else. The queries come from a
    // small vocabulary, so most are asked again (their vectors cached); a run of queries never
    // asked before measures the search with its embedding.
    // Counted across every phase, so no query of a "new queries" phase was ever asked before.
    let asked = Arc::new(AtomicUsize::new(0));
    let search = |scope_of: Arc<dyn Fn(usize) -> String + Send + Sync>, clients: usize, unique: bool| {
        let client = client.clone();
        let url = format!("{base_url}/api/v1/memories/search");
        let asked = asked.clone();
        measure(clients, duration, move |client_idx, n| {
            let scope = scope_of(client_idx * 7919 + n * 31);
            let question = format!("Who {} {}", VERBS[n % VERBS.len()], THINGS[(n + client_idx) % THINGS.len()]);
            let query = match unique {
                true => format!("{question} (question {})?", asked.fetch_add(1, Ordering::Relaxed)),
                false => format!("{question}?"),
            };
            let body = json!({"scope": {"user_id": scope}, "search_query": query, "top_k": 10});
            let client = client.clone();
            let url = url.clone();
            async move { expect_status(send(client.post(&url).json(&body)).await?, 200).await.map(|_| ()) }
        })
    };
    let phases = |label: String, scope_of: Arc<dyn Fn(usize) -> String + Send + Sync>| {
        let search = &search;
        async move {
            for (n_clients, unique) in [(1, false), (1, true), (clients, false), (clients, true)] {
                let before = StageTotals::read(client, base_url).await;
                let queries = if unique { "new queries" } else { "repeated" };
                search(scope_of.clone(), n_clients, unique)
                    .await?
                    .print(&format!("search {n_clients}c {label}, {queries}"));
                if let (Ok(before), Ok(after)) = (before, StageTotals::read(client, base_url).await) {
                    println!("    {}", after.since(&before));
                }
            }
            anyhow::Ok(())
        }
    };
    let many_scopes: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(move |n| format!("bench-{}", n % n_scopes));
    phases(format!("({}/scope)", n_memories / n_scopes), many_scopes).await?;

    let big = 10_000.min(n_memories.max(1));
    println!("\ningest: {big} memories into one scope");
    let ingested = ingest(client, base_url, big, |_| "bench-one-big-scope".to_owned(), clients).await?;
    println!(
        "ingest: {big} memories in {:.1} s: {} memories",
        ingested.as_secs_f64(),
        format_rate(big as f64 / ingested.as_secs_f64())
    );
    print_header();
    let one_scope: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(|_| "bench-one-big-scope".to_owned());
    phases(format!("(1 scope of {big})"), one_scope).await?;
    if let Some(mib) = resident_memory_mib() {
        println!("resident memory of this process (server and client) at the end: {mib:.0} MiB");
    }
    Ok(())
}

async fn ingest(
    client: &reqwest::Client,
    base_url: &str,
    n_memories: usize,
    scope_of: impl Fn(usize) -> String + Sync,
    clients: usize,
) -> anyhow::Result<Duration> {
    let progress = indicatif::ProgressBar::new(n_memories as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} memories ({rate}, eta {eta})")
            .context("progress bar template")?
            .with_key("rate", super::measure::progress_rate),
    );
    let next = AtomicUsize::new(0);
    let url = format!("{base_url}/api/v1/memories");
    let started = Instant::now();
    let workers = (0..clients).map(|_| async {
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            if n >= n_memories {
                return anyhow::Ok(());
            }
            let body = json!({"scope": {"user_id": scope_of(n)}, "fact": fact(n), "metadata": {"n": n}});
            expect_status(send(client.post(&url).json(&body)).await?, 201).await?;
            progress.inc(1);
        }
    });
    futures::future::try_join_all(workers).await?;
    progress.finish_and_clear();
    Ok(started.elapsed())
}

/// The server's `search_stage_seconds` totals (sum and count per stage) and its query vector
/// cache counts, read from `/metrics`: the difference of two readings is the split per stage of
/// the searches between them.
#[derive(Debug, Default)]
struct StageTotals {
    stages: BTreeMap<String, (f64, f64)>,
    hits: f64,
    misses: f64,
}

impl StageTotals {
    async fn read(client: &reqwest::Client, base_url: &str) -> anyhow::Result<StageTotals> {
        let text = client.get(format!("{base_url}/metrics")).send().await?.error_for_status()?.text().await?;
        let mut totals = StageTotals::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let label = |name: &str| {
                let start = series.find(&format!("{name}=\""))? + name.len() + 2;
                series[start..].split('"').next().map(str::to_owned)
            };
            if series.starts_with("search_stage_seconds_sum{") {
                totals.stages.entry(label("stage").unwrap_or_default()).or_default().0 += value;
            } else if series.starts_with("search_stage_seconds_count{") {
                totals.stages.entry(label("stage").unwrap_or_default()).or_default().1 += value;
            } else if series.starts_with("search_query_vectors_total{") {
                match label("result").as_deref() {
                    Some("hit") => totals.hits += value,
                    Some("miss") => totals.misses += value,
                    _ => {}
                }
            }
        }
        Ok(totals)
    }

    /// "mean per search: embed 7.90 ms (hits 95 %), lexical 1.20 ms, ..." since `before`.
    fn since(&self, before: &StageTotals) -> String {
        let mut parts = Vec::new();
        for stage in ["embed", "lexical", "semantic", "read"] {
            let (sum, count) = self.stages.get(stage).copied().unwrap_or_default();
            let (sum_before, count_before) = before.stages.get(stage).copied().unwrap_or_default();
            let count = count - count_before;
            if count <= 0.0 {
                continue;
            }
            let mean_ms = (sum - sum_before) / count * 1000.0;
            let mut part = format!("{stage} {mean_ms:.2} ms");
            if stage == "embed" {
                let (hits, misses) = (self.hits - before.hits, self.misses - before.misses);
                if hits + misses > 0.0 {
                    part.push_str(&format!(" (cached {:.0} %)", 100.0 * hits / (hits + misses)));
                }
            }
            parts.push(part);
        }
        match parts.is_empty() {
            true => "stages: none recorded (a ranking cache answered, or /metrics is not served)".to_owned(),
            false => format!("mean per search: {}", parts.join(", ")),
        }
    }
}
