//! The HTTP face of ContextIQ: configuration, startup, routers, the mapping of domain errors
//! to problem+json, request middleware (correlation ids, logs, metrics).

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
mod llm;
mod middleware;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod trace_context;
pub mod worker;

pub use config::{Overrides, Settings};
pub use startup::{AppState, Application, Stores, open_stores, shutdown_signal};
