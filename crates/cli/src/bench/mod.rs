//! `contextiq bench`: drives the API over HTTP with concurrent clients (an embedded server in
//! this process, or a running one) and reports throughput and latency percentiles per
//! operation; `bench vectors` measures vector search alone, without HTTP.
//!
//! This module parses the arguments, starts the server and dispatches; each target is a child
//! module, and what they share is in `measure`. Dependencies point one way: here → targets →
//! `measure`.

mod agent_engine;
mod context;
mod generation;
pub(crate) mod measure;
mod memories;
mod sessions;
mod vectors;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use contextiq_core::{KeyService, NewApiKey, OrgId, Permission};
use contextiq_server::{Application, Overrides, Settings, open_stores};

use self::measure::{THROTTLED, machine_description, throttling_hint};

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
    clients: usize,
    /// Seconds each operation is measured for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Data directory of the embedded server [default: a temporary directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The API key to send; for the embedded server, its first admin key is used.
    #[arg(long, env = "CONTEXTIQ_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Log the embedded server's requests to stderr (LOG_LEVEL, LOG_FORMAT); off by default,
    /// as logging every request costs CPU the measurement would include.
    #[arg(long)]
    log: bool,
    /// memories: how many to ingest, spread evenly over --scopes.
    #[arg(long, default_value_t = 100_000)]
    memories: usize,
    /// memories: how many scopes (users) hold them.
    #[arg(long, default_value_t = 1_000)]
    scopes: usize,
    /// generation: events of the session whose generation latency is measured [default: 500];
    /// context: events of the session contexts are assembled from [default: 10000].
    #[arg(long)]
    events: Option<usize>,
    /// generation: sessions (of 100 events) generated at once for throughput.
    #[arg(long, default_value_t = 40)]
    sessions: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchTarget {
    /// Create, append and get over the sessions API.
    Sessions,
    /// An ADK agent's turn on the Agent Engine API (get the session and its events, append
    /// an event, retrieve memories) against the same turn on the native API.
    AgentEngine,
    /// Ingest memories (embedding included), then search them.
    Memories,
    /// Generate memories from sessions (rules extractor): latency and throughput.
    Generation,
    /// Token counting per event, compaction job latency, and context assembly on a session
    /// of --events events (default here 10,000).
    Context,
    /// Vector search alone on the configured backend (embedded, pgvector or Qdrant), with
    /// recall against an exact scan; in this process, no HTTP.
    Vectors,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if let BenchTarget::Vectors = args.target {
        let options = vectors::Options {
            memories: args.memories,
            scopes: args.scopes,
            clients: args.clients,
            seconds: args.seconds,
            data_dir: args.data_dir.clone(),
        };
        return vectors::run(&options).await;
    }
    let temp_dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut api_key = args.api_key.clone();
    let (base_url, server) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let server = EmbeddedServer::start(&args, temp_dir.path(), &mut api_key).await?;
            (server.url.clone(), Some((server.stop, server.task)))
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
        BenchTarget::Sessions => sessions::run(args.clients, &client, &base_url, duration).await,
        BenchTarget::AgentEngine => agent_engine::run(args.clients, &client, &base_url, duration).await,
        BenchTarget::Memories => {
            memories::run(&client, &base_url, args.memories, args.scopes, args.clients, duration).await
        }
        BenchTarget::Generation => generation::run(&client, &base_url, args.events.unwrap_or(500), args.sessions).await,
        BenchTarget::Context => {
            context::run(args.clients, &client, &base_url, args.events.unwrap_or(10_000), duration).await
        }
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

/// The server a benchmark starts in this process when it is given no `--url`.
struct EmbeddedServer {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl EmbeddedServer {
    /// Starts the server on `--data-dir` or `temp_dir`, with its first admin key as `api_key`
    /// unless one was given.
    async fn start(args: &BenchArgs, temp_dir: &Path, api_key: &mut Option<String>) -> anyhow::Result<EmbeddedServer> {
        // The environment applies (e.g. DATABASE_SQLITE_DURABILITY); bind and data dir are ours.
        let mut settings = Settings::load(&Overrides::default())?;
        settings.server.bind = "127.0.0.1:0".to_owned();
        // The benchmark measures the server, not its rate limiter: one key sends everything.
        settings.auth.rate_limit_per_second = 0;
        settings.data_dir = args.data_dir.clone().unwrap_or_else(|| temp_dir.to_owned());
        if args.log {
            contextiq_server::telemetry::init_logging(&settings.log, &settings.service_name);
        }
        let key_file = settings.data_dir.join(contextiq_server::startup::ADMIN_KEY_FILE);
        if api_key.is_none() && settings.auth.require_auth {
            create_bench_key(&settings, &key_file).await?;
        }
        let app = Application::build(settings).await?;
        if api_key.is_none() {
            *api_key = std::fs::read_to_string(&key_file).ok().map(|key| key.trim().to_owned());
        }
        let url = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(EmbeddedServer { url, stop, task })
    }
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
