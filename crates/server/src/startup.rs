//! Building the application from [`Settings`] and running it until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use contextiq_core::{SessionLimits, SessionService, SessionStore};
use contextiq_store_sqlite::{SqliteOptions, SqliteStore};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::{Settings, StoreLocation};
use crate::{middleware, routes, telemetry};

/// What every handler can reach. Cheap to clone: services and stores are behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub sessions: SessionService,
    pub store: Arc<dyn SessionStore>,
    pub metrics: PrometheusHandle,
    pub service_name: Arc<str>,
    pub max_body_bytes: usize,
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    store: Arc<dyn SessionStore>,
    settings: Settings,
}

/// Opens the configured primary store (applying migrations).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn SessionStore>> {
    match settings.store_location()? {
        StoreLocation::Sqlite(path) => {
            let options = SqliteOptions {
                path: path.clone(),
                read_pool_size: settings.database.pool_size,
                durability: settings.sqlite_durability()?,
                max_write_batch: settings.database.max_write_batch,
            };
            let store = SqliteStore::open(&options)
                .await
                .with_context(|| format!("failed to open the SQLite database {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

impl Application {
    /// Opens the store and binds the listener (port 0 picks a free port); serves nothing yet.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let metrics = telemetry::metrics_handle(&settings.service_name);
        let store = open_store(&settings).await?;
        let limits = SessionLimits {
            max_events_per_request: settings.sessions.max_events_per_request,
            max_state_bytes: settings.sessions.max_state_bytes,
            default_ttl_seconds: settings.sessions.default_ttl_seconds,
            ..SessionLimits::default()
        };
        let state = AppState {
            sessions: SessionService::new(store.clone(), limits),
            store: store.clone(),
            metrics,
            service_name: settings.service_name.as_str().into(),
            max_body_bytes: settings.limits.max_body_bytes,
        };
        let router = app_router(state, &settings);
        let listener = TcpListener::bind(&settings.server.bind)
            .await
            .with_context(|| format!("failed to bind {}", settings.server.bind))?;
        let local_addr = listener.local_addr()?;
        Ok(Application { listener, local_addr, router, store, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (up to the configured grace period), stops background tasks and closes the store.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, local_addr, router, store, settings } = self;
        let background = CancellationToken::new();
        let purger = tokio::spawn(purge_expired_sessions(
            store.clone(),
            Duration::from_secs(settings.sessions.purge_interval_seconds),
            background.clone(),
        ));

        let stopping = CancellationToken::new();
        let grace = Duration::from_secs(settings.server.shutdown_timeout_seconds);
        let serve = axum::serve(listener, router).with_graceful_shutdown({
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, finishing in-flight requests");
                stopping.cancel();
            }
        });
        tracing::info!(address = %local_addr, "listening");
        let served = tokio::select! {
            served = serve.into_future() => served.context("the server failed"),
            () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests outlived the grace period");
                Ok(())
            }
        };

        background.cancel();
        if let Err(err) = purger.await {
            tracing::error!(error = %err, "the purge task failed");
        }
        store.close().await;
        tracing::info!("stopped");
        served
    }
}

/// The router with every layer, for `Application` and for in-process handler tests.
pub fn app_router(state: AppState, settings: &Settings) -> Router {
    let mut router =
        routes::router().layer(DefaultBodyLimit::max(settings.limits.max_body_bytes)).layer(CatchPanicLayer::new());
    if settings.server.request_timeout_seconds > 0 {
        router = router.layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(settings.server.request_timeout_seconds),
        ));
    }
    router.layer(axum::middleware::from_fn(middleware::observe)).with_state(state)
}

/// Deletes expired sessions every `interval`. Reads already hide them; this reclaims space.
async fn purge_expired_sessions(store: Arc<dyn SessionStore>, interval: Duration, cancel: CancellationToken) {
    const BATCH: u32 = 500;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            match store.purge_expired_sessions(chrono::Utc::now(), BATCH).await {
                Ok(n_purged) => {
                    if n_purged > 0 {
                        metrics::counter!("sessions_purged_total").increment(n_purged);
                        tracing::info!(n_purged, "purged expired sessions");
                    }
                    if n_purged < u64::from(BATCH) || cancel.is_cancelled() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "purging expired sessions failed; will retry");
                    break;
                }
            }
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
