//! The HTTP face of ContextIQ: configuration, the composition of each role (`plan`,
//! `startup`), the backends it opens, routers, the mapping of domain errors to problem+json,
//! request middleware (correlation ids, logs, metrics), workers and background loops.

pub mod auth;
pub mod backends;
pub mod background;
pub mod clock;
pub mod config;
pub mod error;
pub mod extract;
mod llm;
pub mod mcp;
mod middleware;
pub mod plan;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod trace_context;
pub mod worker;

pub use backends::{Stores, open_stores};
pub use config::{Overrides, Settings};
pub use startup::{Application, ApplicationBuilder, shutdown_signal};
pub use state::AppState;
