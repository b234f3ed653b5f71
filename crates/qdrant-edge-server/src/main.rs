//! `contextiq-qdrant-edge-server`: a Qdrant gRPC server on qdrant-edge, for tests. Prints
//! `QDRANT_URL=http://127.0.0.1:PORT` once listening and runs until SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use contextiq_qdrant_edge_server::EdgeServer;

#[derive(Debug, Parser)]
#[command(
    name = "contextiq-qdrant-edge-server",
    about = "A test-only Qdrant gRPC server backed by Qdrant's engine (qdrant-edge)"
)]
struct Cli {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:6334")]
    bind: SocketAddr,
    /// Directory holding the collections; created if missing, reloaded if present.
    #[arg(long)]
    storage: PathBuf,
    /// When set, every request must carry this key in the `api-key` header.
    #[arg(long)]
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let server = EdgeServer::start(cli.bind, &cli.storage, cli.api_key).await.context("starting the server")?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "QDRANT_URL={}", server.url())?;
    stdout.flush()?;
    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
