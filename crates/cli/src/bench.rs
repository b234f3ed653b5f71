//! `contextiq bench sessions`: drives the sessions API over HTTP with concurrent clients and
//! reports throughput and latency percentiles per operation.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use contextiq_server::{Application, Overrides, Settings};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    target: BenchTarget,
    /// A running server to measure; by default an embedded server is started in this process
    /// on a temporary data directory.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: usize,
    /// Seconds each operation is measured for.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Data directory of the embedded server [default: a temporary directory].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The API key to send; for the embedded server, its first admin key is used.
    #[arg(long, env = "CONTEXTIQ_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Log the embedded server's requests to stderr (LOG_LEVEL, LOG_FORMAT); off by default,
    /// as logging every request costs CPU the measurement would include.
    #[arg(long)]
    log: bool,
    /// memories: how many to ingest, spread evenly over --scopes.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) memories: usize,
    /// memories: how many scopes (users) hold them.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) scopes: usize,
    /// generation: events of the session whose generation latency is measured.
    #[arg(long, default_value_t = 500)]
    events: usize,
    /// generation: sessions (of 100 events) generated at once for throughput.
    #[arg(long, default_value_t = 40)]
    sessions: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchTarget {
    /// Create, append and get over the sessions API.
    Sessions,
    /// Ingest memories (embedding included), then search them.
    Memories,
    /// Generate memories from sessions (rules extractor): latency and throughput.
    Generation,
    /// Vector search alone on the configured backend (embedded, pgvector or Qdrant), with
    /// recall against an exact scan; in this process, no HTTP.
    Vectors,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if let BenchTarget::Vectors = args.target {
        return crate::bench_vectors::run(&args).await;
    }
    let temp_dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut api_key = args.api_key.clone();
    let (base_url, server) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            // The environment applies (e.g. DATABASE_SQLITE_DURABILITY); bind and data dir are ours.
            let mut settings = Settings::load(&Overrides::default())?;
            settings.server.bind = "127.0.0.1:0".to_owned();
            // The benchmark measures the server, not its rate limiter: one key sends everything.
            settings.auth.rate_limit_per_second = 0;
            settings.data_dir = args.data_dir.clone().unwrap_or_else(|| temp_dir.path().to_owned());
            if args.log {
                contextiq_server::telemetry::init_logging(&settings.log, &settings.service_name);
            }
            let key_file = settings.data_dir.join(contextiq_server::startup::ADMIN_KEY_FILE);
            let app = Application::build(settings).await?;
            if api_key.is_none() {
                api_key = std::fs::read_to_string(&key_file).ok().map(|key| key.trim().to_owned());
            }
            let url = format!("http://{}", app.local_addr());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(app.run_until_stopped(async move {
                let _ = stopped.await;
            }));
            (url, Some((stop, task)))
        }
    };

    println!("{}", machine_description());
    println!(
        "target: {} ({}), {} clients, {} s per operation\n",
        base_url,
        if server.is_some() { "embedded, in this process" } else { "external" },
        args.clients,
        args.seconds
    );
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &api_key {
        headers.insert("x-api-key", key.parse().context("the API key is not a valid header value")?);
    }
    println!("authentication: {}", if api_key.is_some() { "API key" } else { "none" });
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).default_headers(headers).build()?;
    let duration = Duration::from_secs(args.seconds);
    match args.target {
        BenchTarget::Sessions => bench_sessions(&args, &client, &base_url, duration).await?,
        BenchTarget::Memories => {
            crate::bench_memories::run(&client, &base_url, args.memories, args.scopes, args.clients, duration).await?
        }
        BenchTarget::Generation => crate::bench_generation::run(&client, &base_url, args.events, args.sessions).await?,
        BenchTarget::Vectors => unreachable!("measured without a server, above"),
    }
    if let Some((stop, task)) = server {
        let _ = stop.send(());
        task.await??;
    }
    Ok(())
}

async fn bench_sessions(
    args: &BenchArgs,
    client: &reqwest::Client,
    base_url: &str,
    duration: Duration,
) -> anyhow::Result<()> {
    print_header();
    let sessions_url = format!("{base_url}/api/v1/sessions");
    let create = measure(args.clients, duration, |client_idx, n| {
        let client = client.clone();
        let url = sessions_url.clone();
        async move {
            let body = json!({"user_id": format!("bench-user-{client_idx}"), "metadata": {"n": n}});
            expect_status(client.post(&url).json(&body).send().await?, 201).await.map(|_| ())
        }
    })
    .await?;
    create.print("create session");

    // One session per client for appends without contention, then one shared by all.
    let mut session_ids = Vec::with_capacity(args.clients);
    for client_idx in 0..args.clients {
        let response =
            client.post(&sessions_url).json(&json!({"user_id": format!("bench-user-{client_idx}")})).send().await?;
        let session: Value = expect_status(response, 201).await?;
        session_ids.push(session["id"].as_str().context("session without id")?.to_owned());
    }
    let append = |shared: bool| {
        let session_ids = session_ids.clone();
        let client = client.clone();
        let base_url = base_url.to_owned();
        measure(args.clients, duration, move |client_idx, n| {
            let session_id = if shared { session_ids[0].clone() } else { session_ids[client_idx].clone() };
            let url = format!("{base_url}/api/v1/sessions/{session_id}/events");
            let client = client.clone();
            async move {
                let body = json!({"author": "user", "role": "user", "content": format!("message {n} from client {client_idx}")});
                expect_status(client.post(&url).json(&body).send().await?, 201).await.map(|_| ())
            }
        })
    };
    append(false).await?.print("append event");
    append(true).await?.print("append (one session)");

    let get = measure(args.clients, duration, |client_idx, _| {
        let url = format!("{sessions_url}/{}?include_events=false", session_ids[client_idx]);
        let client = client.clone();
        async move { expect_status(client.get(&url).send().await?, 200).await.map(|_| ()) }
    })
    .await?;
    get.print("get session");
    Ok(())
}

pub(crate) struct Measurement {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Measurement {
    pub(crate) fn print(mut self, operation: &str) {
        self.latencies.sort_unstable();
        let percentile = |p: f64| {
            let idx = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies.get(idx).map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
        };
        println!(
            "{:<22} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.2}",
            operation,
            self.latencies.len(),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            percentile(0.50),
            percentile(0.95),
            percentile(0.99)
        );
    }
}

/// Runs `clients` loops of `request(client_idx, n)` back to back for `duration`.
pub(crate) async fn measure<F, Fut>(clients: usize, duration: Duration, request: F) -> anyhow::Result<Measurement>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..clients).map(|client_idx| {
        let request = &request;
        async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                request(client_idx, n).await?;
                latencies.push(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        }
    });
    let per_client = futures::future::try_join_all(loops).await?;
    Ok(Measurement { latencies: per_client.into_iter().flatten().collect(), elapsed: started.elapsed() })
}

pub(crate) async fn expect_status(response: reqwest::Response, expected: u16) -> anyhow::Result<Value> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != expected {
        bail!("expected {expected}, got {status}: {body}");
    }
    Ok(body)
}

pub(crate) fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("machine: {cpu}, {cores} cores, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

pub(crate) fn print_header() {
    println!("{:<22} {:>10} {:>12} {:>9} {:>9} {:>9}", "operation", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms");
}
