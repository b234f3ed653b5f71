//! `contextiq`: the one binary. `serve` runs the server, `migrate` applies the store's
//! migrations, `bench` measures the HTTP API.

mod bench;
mod bench_generation;
mod bench_memories;
mod keys;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use contextiq_server::startup::build_embedder;
use contextiq_server::{Application, Overrides, Settings, open_stores, shutdown_signal, telemetry};

#[derive(Debug, Parser)]
#[command(name = "contextiq", version, about = "ContextIQ: sessions and memory for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. With no configuration: SQLite in ./data, listening on 127.0.0.1:8000.
    #[command(after_help = Settings::environment_help())]
    Serve(ServeArgs),
    /// Apply the store's pending migrations and exit (serve applies them too, at start).
    #[command(after_help = Settings::environment_help())]
    Migrate(ConfigArgs),
    /// Re-embed every memory with the configured embedding model (after changing it).
    /// Stop the server first: it caches vectors.
    #[command(after_help = Settings::environment_help())]
    Reindex(ConfigArgs),
    /// Manage API keys directly in the configured store (no server needed).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Measure the HTTP API: throughput and latency percentiles.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// A TOML configuration file [default: ./contextiq.toml when present].
    #[arg(long, env = "CONTEXTIQ_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded database (CONTEXTIQ_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Listen address, e.g. 127.0.0.1:8000 or 0.0.0.0:0 (CONTEXTIQ_BIND).
    #[arg(long)]
    bind: Option<String>,
    /// What this process serves and runs (CONTEXTIQ_ROLE): all (default), or one part of the
    /// distributed deployment: gateway, sessions, memory, worker.
    #[arg(long, value_parser = ["all", "gateway", "sessions", "memory", "worker"])]
    role: Option<String>,
}

impl ConfigArgs {
    pub fn overrides(&self, bind: Option<String>) -> Overrides {
        Overrides { config_file: self.config.clone(), bind, data_dir: self.data_dir.clone(), role: None }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Migrate(args) => migrate(args).await,
            Command::Keys(command) => keys::run(command).await,
            Command::Reindex(args) => reindex(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides { role: args.role.clone(), ..args.config.overrides(args.bind.clone()) };
    let settings = Settings::load(&overrides)?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let app = Application::build(settings).await?;
    let served = app.run_until_stopped(shutdown_signal()).await;
    telemetry::shutdown_tracing();
    served
}

async fn migrate(args: ConfigArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.overrides(None))?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let stores = open_stores(&settings).await?;
    stores.sessions.close().await;
    println!("migrations applied");
    Ok(())
}

async fn reindex(args: ConfigArgs) -> anyhow::Result<()> {
    const BATCH: u32 = 256;
    let settings = Settings::load(&args.overrides(None))?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let stores = open_stores(&settings).await?;
    let embedder = build_embedder(&settings).await?;
    let total = stores.memories.count_memories().await?;
    let progress = indicatif::ProgressBar::new(total);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} memories re-embedded ({per_sec}, eta {eta})")
            .context("progress bar template")?,
    );
    let mut after = None;
    loop {
        let page = stores.memories.memory_facts_after(after, BATCH).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let (ids, facts): (Vec<_>, Vec<_>) = page.into_iter().unzip();
        let vectors = embedder.embed(facts).await?;
        let n_embedded = vectors.len() as u64;
        stores.memories.set_embeddings(ids.into_iter().zip(vectors).collect()).await?;
        progress.inc(n_embedded);
    }
    stores.memories.set_embedding_model(embedder.model_id(), embedder.dimension()).await?;
    progress.finish();
    stores.sessions.close().await;
    eprintln!("re-embedded {} memories with {}", progress.position(), embedder.model_id());
    Ok(())
}
