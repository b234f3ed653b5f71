//! A test-only Qdrant server: the real Qdrant gRPC protocol (the service traits generated in
//! `qdrant-client`) served on loopback, backed by Qdrant's own engine (`qdrant-edge`), so the
//! Qdrant backend can be tested against real search, filtering and persistence where no Qdrant
//! server can be installed.
//!
//! It implements the RPCs a `qdrant-client` user needs for one unnamed dense vector per point
//! (collections: create, get, exists, list, delete; points: upsert, delete, get, query, search,
//! count, scroll, payload updates, field indexes); every other RPC answers `Unimplemented`.
//! Like a Qdrant server it optimizes in the background: every 5 seconds changed collections are
//! flushed and then optimized, which builds the HNSW index of segments past the collection's
//! indexing threshold.
//! It is a dev-dependency of the tests only, never of the ContextIQ binary.

mod convert;
mod error;
mod service;
mod storage;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use qdrant_client::qdrant::collections_server::CollectionsServer;
use qdrant_client::qdrant::points_server::PointsServer;
use qdrant_client::qdrant::qdrant_server::QdrantServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::service::{ApiKeyCheck, CollectionsService, HealthService, PointsService};
use crate::storage::{Catalog, Optimize};

/// The largest request accepted, as Qdrant's default `max_request_size_mb` (32 MiB).
const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;
/// How long `shutdown` waits for open requests before it cuts the connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often changed collections are flushed to disk and then optimized, as Qdrant's default
/// `flush_interval_sec`.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// A running server. Every 5 seconds changed collections are flushed, then optimized; call
/// [`EdgeServer::shutdown`] to stop serving, flush everything and release the storage.
/// Dropping it does the same without waiting for open requests, flushing on the dropping thread:
/// drop it before its storage directory is removed. Either waits for a running optimization.
pub struct EdgeServer {
    port: u16,
    catalog: Arc<Catalog>,
    stop: Option<oneshot::Sender<()>>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    maintainer: JoinHandle<()>,
}

impl EdgeServer {
    /// Serves on `bind` (port 0 picks one) with collections kept under `storage`; collections
    /// already there are loaded again.
    /// `api_key`: when Some, every request must carry it in the `api-key` metadata header,
    /// else Unauthenticated.
    pub async fn start(bind: SocketAddr, storage: &Path, api_key: Option<String>) -> anyhow::Result<EdgeServer> {
        let root = storage.to_owned();
        let catalog = tokio::task::spawn_blocking(move || Catalog::open(&root))
            .await
            .context("loading the collections panicked")??;
        let catalog = Arc::new(catalog);

        let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
        let port = listener.local_addr().context("reading the bound address")?.port();

        let (stop, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .layer(InterceptorLayer::new(ApiKeyCheck::new(api_key)))
            .add_service(QdrantServer::new(HealthService))
            .add_service(
                CollectionsServer::new(CollectionsService::new(Arc::clone(&catalog)))
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                PointsServer::new(PointsService::new(Arc::clone(&catalog)))
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            );
        // A dropped sender also stops the server, so a forgotten EdgeServer does not linger.
        // Without TCP_NODELAY a reply written in two segments waits for the client's delayed ACK
        // (40 ms on Linux), as Qdrant's own server does not.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let serve = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.await;
        }));
        let maintainer = tokio::spawn(maintain_periodically(Arc::downgrade(&catalog)));
        Ok(EdgeServer { port, catalog, stop: Some(stop), serve, maintainer })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Flushes and optimizes every collection now and returns once no optimizer has anything
    /// left to do, say, after a bulk load, so that what is measured next matches a Qdrant that
    /// has finished indexing. Waits for a background pass already running. Requests are served
    /// meanwhile; updates that arrive during the pass may leave work for the next one.
    ///
    /// # Cancel safety
    ///
    /// The optimization runs on the blocking pool: dropping the future leaves it running.
    pub async fn optimize_now(&self) {
        self.catalog.maintain(Optimize::All).await;
    }

    /// Stops serving (connections refused afterwards), flushes every collection to `storage`
    /// and releases it, so a new EdgeServer on the same storage sees the same points.
    pub async fn shutdown(mut self) {
        self.maintainer.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => eprintln!("qdrant-edge-server: serving failed: {err}"),
            Ok(Err(err)) => eprintln!("qdrant-edge-server: the serving task failed: {err}"),
            Err(_) => {
                self.serve.abort();
                let _ = (&mut self.serve).await;
            }
        }
        self.catalog.close_all().await;
    }
}

impl Drop for EdgeServer {
    /// Stops serving and releases the collections now: the serving task may outlive this value
    /// until the runtime drops it, and by then the storage may be gone. After `shutdown` there
    /// is nothing left to do.
    fn drop(&mut self) {
        self.maintainer.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.catalog.close_all_now();
    }
}

/// Flushes, then optimizes, changed collections every `MAINTENANCE_INTERVAL` while the catalog
/// lives; a pass that takes longer delays the next one.
async fn maintain_periodically(catalog: Weak<Catalog>) {
    let mut interval = tokio::time::interval(MAINTENANCE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(catalog) = catalog.upgrade() else {
            return;
        };
        catalog.maintain(Optimize::Changed).await;
    }
}
