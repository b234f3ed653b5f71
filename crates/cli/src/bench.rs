//! `contextiq bench sessions`: drives the sessions API over HTTP with concurrent clients and
//! reports throughput and latency percentiles per operation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use contextiq_core::{KeyService, NewApiKey, OrgId, Permission};
use contextiq_server::{Application, Overrides, Settings, open_stores};
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
            if api_key.is_none() && settings.auth.require_auth {
                create_bench_key(&settings, &key_file).await?;
            }
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
    let measured = match args.target {
        BenchTarget::Sessions => bench_sessions(&args, &client, &base_url, duration).await,
        BenchTarget::Memories => {
            crate::bench_memories::run(&client, &base_url, args.memories, args.scopes, args.clients, duration).await
        }
        BenchTarget::Generation => crate::bench_generation::run(&client, &base_url, args.events, args.sessions).await,
        BenchTarget::Vectors => unreachable!("measured without a server, above"),
    };
    let n_throttled = THROTTLED.load(Ordering::Relaxed);
    if n_throttled > 0 {
        println!("\n{}", throttling_hint(n_throttled));
    }
    measured?;
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
            expect_status(send(client.post(&url).json(&body)).await?, 201).await.map(|_| ())
        }
    })
    .await?;
    create.print("create session");

    // One session per client for appends without contention, then one shared by all.
    let mut session_ids = Vec::with_capacity(args.clients);
    for client_idx in 0..args.clients {
        let response =
            send(client.post(&sessions_url).json(&json!({"user_id": format!("bench-user-{client_idx}")}))).await?;
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
                expect_status(send(client.post(&url).json(&body)).await?, 201).await.map(|_| ())
            }
        })
    };
    append(false).await?.print("append event");
    append(true).await?.print("append (one session)");

    let get = measure(args.clients, duration, |client_idx, _| {
        let url = format!("{sessions_url}/{}?include_events=false", session_ids[client_idx]);
        let client = client.clone();
        async move { expect_status(send(client.get(&url)).await?, 200).await.map(|_| ()) }
    })
    .await?;
    get.print("get session");
    Ok(())
}

pub(crate) struct Measurement {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// 429 answers waited out during the measurement.
    n_throttled: u64,
}

impl Measurement {
    pub(crate) fn print(mut self, operation: &str) {
        self.latencies.sort_unstable();
        let percentile = |p: f64| {
            let idx = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies.get(idx).map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
        };
        let throttled = match self.n_throttled {
            0 => String::new(),
            n => format!("  ({n} throttled)"),
        };
        println!(
            "{:<22} {:>10} {:>12} {:>9.2} {:>9.2} {:>9.2}{throttled}",
            operation,
            self.latencies.len(),
            format_rate(self.latencies.len() as f64 / self.elapsed.as_secs_f64()),
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
    let n_throttled_before = THROTTLED.load(Ordering::Relaxed);
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
    Ok(Measurement {
        latencies: per_client.into_iter().flatten().collect(),
        elapsed: started.elapsed(),
        n_throttled: THROTTLED.load(Ordering::Relaxed) - n_throttled_before,
    })
}

/// 429 answers the benchmark waited out and sent again, over the whole run.
static THROTTLED: AtomicU64 = AtomicU64::new(0);

/// Sends `request`; while the server answers 429 (its rate limit), waits as long as its
/// `Retry-After` says (1 s without one) and sends the request again, counting each 429. The
/// latency of such a request includes the waits.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
    loop {
        let attempt = request.try_clone().context("a request with a streamed body cannot be sent again")?;
        let response = attempt.send().await?;
        if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        THROTTLED.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(retry_after(response.headers())).await;
    }
}

/// The wait a 429 asks for: `Retry-After` in seconds (at least 100 ms), else 1 s.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), |seconds| Duration::from_secs(seconds).max(Duration::from_millis(100)))
}

/// What to tell the user when the server's rate limit slowed the benchmark down.
fn throttling_hint(n_throttled: u64) -> String {
    format!(
        "throttled: the server's rate limit answered 429 to {n_throttled} requests, which were sent again \
         after its Retry-After; the numbers above measure that limit, not the server. To lift it, start the \
         server with higher RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST (the limits of credentials without \
         their own), or bench with a key created with a higher limit of its own \
         (`contextiq keys create --rate-limit N`, or \"rate_limit_per_second\" in POST /api/v1/keys)."
    )
}

/// A rate for people: `11,512/s`, `98.4/s`, `4.26/s`; figures past the third are noise.
pub(crate) fn format_rate(per_second: f64) -> String {
    let number = if !per_second.is_finite() || per_second < 0.0 {
        "-".to_owned()
    } else if per_second >= 100.0 {
        let digits = format!("{:.0}", per_second);
        let mut grouped = String::new();
        for (idx, digit) in digits.chars().enumerate() {
            if idx > 0 && (digits.len() - idx) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else if per_second >= 10.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.2}")
    };
    format!("{number}/s")
}

/// The `{rate}` of a progress bar, as [`format_rate`] writes it.
pub(crate) fn progress_rate(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = out.write_str(&format_rate(state.per_sec()));
}

/// For the embedded server: when its store has no key yet, creates the admin key the server
/// would create at its first start, without the server's banner (which announces a key for
/// the user to keep, and this one dies with the benchmark's data directory), and saves it
/// where the server would.
async fn create_bench_key(settings: &Settings, key_file: &Path) -> anyhow::Result<()> {
    let stores = open_stores(settings).await?;
    let keys = KeyService::new(stores.keys.clone());
    let created = async {
        if keys.count().await? > 0 {
            return anyhow::Ok(());
        }
        let new = NewApiKey {
            org_id: OrgId::default_org(),
            name: "bench-admin".to_owned(),
            permissions: Permission::ALL.into(),
            scope: None,
            rate_limit_per_second: None,
            expires_at: None,
            parent_id: None,
        };
        let (key, _) = keys.create(new, chrono::Utc::now()).await.context("cannot create the benchmark's key")?;
        std::fs::create_dir_all(&settings.data_dir)?;
        write_private_file(key_file, &format!("{key}\n"))
            .with_context(|| format!("cannot save the benchmark's key to {}", key_file.display()))
    }
    .await;
    stores.sessions.close().await;
    created
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, contents.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_for_people() {
        for (per_second, expected) in [
            (98.4336, "98.4/s"),
            (11_512.3, "11,512/s"),
            (1_234_567.8, "1,234,568/s"),
            (999.6, "1,000/s"),
            (100.0, "100/s"),
            (4.256, "4.26/s"),
            (0.0, "0.00/s"),
            (f64::INFINITY, "-/s"),
        ] {
            assert_eq!(format_rate(per_second), expected, "{per_second}");
        }
    }

    #[test]
    fn waits_as_retry_after_says() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), Duration::from_secs(1));
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(3));
        headers.insert(reqwest::header::RETRY_AFTER, "0".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_millis(100));
        headers.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(1));
    }
}
