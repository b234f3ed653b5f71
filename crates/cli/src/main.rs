//! `contextiq`: the one binary. `serve` runs the server, `migrate` applies the store's
//! migrations, `bench` measures the HTTP API.

mod bench;
mod keys;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use contextiq_core::vector_index::{copy_all_vectors, sync_pending};
use contextiq_server::backends::{Stores, build_embedder};
use contextiq_server::config::Role;
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
    /// Serve MCP (Model Context Protocol) over stdio, for Claude Desktop, Claude Code, Cursor and
    /// other assistants that start their MCP servers: the memory tools of `/mcp`, on the store
    /// the settings name (opened by this process, with its own workers). Stdout carries the
    /// protocol; logs go to stderr.
    #[command(after_help = Settings::environment_help())]
    Mcp(McpArgs),
    /// Apply the store's pending migrations and exit (serve applies them too, at start).
    #[command(after_help = Settings::environment_help())]
    Migrate(ConfigArgs),
    /// Re-embed every memory with the configured embedding model (after changing it), and
    /// rebuild the Qdrant collection from the primary store when QDRANT_URL is set.
    /// Stop the server first: it caches vectors.
    #[command(after_help = Settings::environment_help())]
    Reindex(ReindexArgs),
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
struct ReindexArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Keep the stored embeddings and only rebuild the Qdrant collection from them.
    #[arg(long)]
    keep_embeddings: bool,
}

#[derive(Debug, Args)]
struct McpArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Act as this API key (its org, permissions and scope); without one, as the default org's
    /// administrator, as anyone who can open the store may.
    #[arg(long, env = "CONTEXTIQ_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The scope every tool acts within, as JSON, e.g. '{"user_id": "u1"}': the tools' default
    /// scope, which a call may narrow and never widen.
    #[arg(long, env = "CONTEXTIQ_MCP_SCOPE", value_parser = parse_scope)]
    scope: Option<contextiq_core::Scope>,
    /// The reasoning engine (partition of the org) to act in [default: default].
    #[arg(long, env = "CONTEXTIQ_ENGINE")]
    engine: Option<String>,
}

fn parse_scope(text: &str) -> Result<contextiq_core::Scope, String> {
    let scope = serde_json::from_str(text).map_err(|err| format!("expected a JSON object of strings: {err}"))?;
    contextiq_core::session::check_scope(&scope).map_err(|err| err.to_string())?;
    Ok(scope)
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
    #[arg(long, value_enum)]
    role: Option<Role>,
}

impl ConfigArgs {
    pub fn overrides(&self, bind: Option<String>) -> Overrides {
        Overrides { config_file: self.config.clone(), bind, data_dir: self.data_dir.clone(), role: None }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    contextiq_models::use_ring_for_tls();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Mcp(args) => mcp(args).await,
            Command::Migrate(args) => migrate(args).await,
            Command::Keys(command) => keys::run(command).await,
            Command::Reindex(args) => reindex(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides { role: args.role, ..args.config.overrides(args.bind.clone()) };
    let settings = Settings::load(&overrides)?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let app = Application::build(settings).await?;
    let served = app.run_until_stopped(shutdown_signal()).await;
    telemetry::shutdown_tracing();
    served
}

/// The whole application (store, model, workers) with MCP on stdio; HTTP on a free loopback
/// port only, since the assistant talks through the pipe.
async fn mcp(args: McpArgs) -> anyhow::Result<()> {
    let overrides = Overrides { role: Some(Role::All), ..args.config.overrides(Some("127.0.0.1:0".to_owned())) };
    let settings = Settings::load(&overrides)?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let app = Application::builder(settings).stdout_reserved().build().await?;
    let state = app.state().clone();
    let memory = state.memory.clone().context("the all role builds the memory services")?;
    let principal =
        contextiq_server::mcp::stdio_principal(&state, args.api_key.as_deref(), args.scope, args.engine.as_deref())
            .await?;
    let server =
        contextiq_server::mcp::McpServer::new(state, memory, contextiq_server::mcp::Binding::Fixed(principal.into()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // Until the assistant closes stdin (or a signal).
    let outcome = tokio::select! {
        served = contextiq_server::mcp::serve_stdio(server) => served,
        () = shutdown_signal() => Ok(()),
    };
    let _ = stop.send(());
    running.await.context("the application task")??;
    telemetry::shutdown_tracing();
    outcome
}

async fn migrate(args: ConfigArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.overrides(None))?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let stores = open_stores(&settings).await?;
    stores.sessions.close().await;
    println!("migrations applied");
    Ok(())
}

async fn reindex(args: ReindexArgs) -> anyhow::Result<()> {
    const BATCH: u32 = 256;
    let settings = Settings::load(&args.config.overrides(None))?;
    telemetry::init_logging(&settings.log, &settings.service_name);
    let stores = open_stores(&settings).await?;
    let embedder = build_embedder(&settings).await?;
    if args.keep_embeddings {
        let Some(vectors) = &stores.vectors else {
            anyhow::bail!("--keep-embeddings rebuilds the Qdrant collection, and QDRANT_URL is not set");
        };
        if let Some((model, dimension)) = stores.memories.embedding_model().await?
            && (model != embedder.model_id() || dimension != embedder.dimension())
        {
            anyhow::bail!(
                "the stored embeddings come from {model} ({dimension} dimensions), not the configured {}: \
                 re-embed them (run without --keep-embeddings)",
                embedder.model_id()
            );
        }
        vectors.index.recreate(embedder.dimension()).await?;
        let progress = progress_bar(stores.memories.count_memories().await?, "vectors copied to Qdrant")?;
        let copied =
            copy_all_vectors(vectors.outbox.as_ref(), vectors.index.as_ref(), BATCH, &|n| progress.inc(n)).await?;
        progress.finish();
        catch_up_vectors(&stores).await?;
        stores.sessions.close().await;
        eprintln!("copied {copied} vectors into the Qdrant collection {}", settings.qdrant.collection);
        return Ok(());
    }
    // With Qdrant, the collection is made anew for the model's dimension first, so that each
    // re-embedded batch is mirrored into it as it is stored.
    if let Some(vectors) = &stores.vectors {
        vectors.index.recreate(embedder.dimension()).await?;
    }
    let progress = progress_bar(stores.memories.count_memories().await?, "memories re-embedded")?;
    let mut after = None;
    loop {
        let page = stores.memories.memory_facts_after(after, BATCH).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let (ids, facts): (Vec<_>, Vec<_>) = page.into_iter().unzip();
        let vectors = contextiq_core::embed::embed_memories(embedder.as_ref(), &facts).await?;
        let n_embedded = vectors.len() as u64;
        stores.memories.set_embeddings(ids.into_iter().zip(vectors).collect()).await?;
        progress.inc(n_embedded);
    }
    stores.memories.set_embedding_model(embedder.model_id(), embedder.dimension()).await?;
    progress.finish();
    catch_up_vectors(&stores).await?;
    stores.sessions.close().await;
    eprintln!("re-embedded {} memories with {}", progress.position(), embedder.model_id());
    Ok(())
}

fn progress_bar(total: u64, what: &str) -> anyhow::Result<indicatif::ProgressBar> {
    let progress = indicatif::ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} ({{rate}}, eta {{eta}})");
    let style = indicatif::ProgressStyle::with_template(&template).context("progress bar template")?;
    progress.set_style(style.with_key("rate", bench::measure::progress_rate));
    Ok(progress)
}

/// Mirrors whatever the outbox still holds (batches Qdrant refused along the way), so the
/// collection is complete when the command returns.
async fn catch_up_vectors(stores: &Stores) -> anyhow::Result<()> {
    const BATCH: u32 = 256;
    let Some(vectors) = &stores.vectors else { return Ok(()) };
    // Bounded, in case a server still running keeps writing.
    for _ in 0..100_000 {
        let n_synced = sync_pending(
            vectors.outbox.as_ref(),
            vectors.index.as_ref(),
            chrono::Utc::now(),
            chrono::Duration::zero(),
            BATCH,
        )
        .await?;
        if n_synced < BATCH as usize {
            return Ok(());
        }
    }
    Ok(())
}
