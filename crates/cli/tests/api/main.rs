//! The API test suite: every test starts the real application on port 0 (in this process,
//! or as the real binary where a process must die) and talks HTTP to it.

mod agent_engine;
mod auth;
mod cache;
mod cli;
mod context;
mod contract;
mod distributed;
mod errors;
mod fake_llm;
mod fuzz;
mod generation;
mod hardening;
mod helpers;
mod lineage;
mod mcp;
mod memories;
mod otlp;
mod private_postgres;
mod process;
mod qdrant;
mod readme;
mod service;
mod sessions;
