//! The domain of ContextIQ: sessions and their events, memories and their revisions, API keys
//! and access, memory generation jobs (extractors, consolidation); the traits every backend
//! implements (stores, cache, vector index, broker, embedder), the decorators over them (cache,
//! external vector index), and the services that hold the rules (validation, TTLs, `limits`,
//! key privileges, merge patch, hybrid search).
//!
//! This crate does no IO and knows nothing of HTTP or SQL: backends implement its traits, the
//! server maps its errors to status codes. Time comes in as an argument.

pub mod auth;
pub mod cache;
pub mod cached;
pub mod context;
pub mod embed;
pub mod engine;
mod error;
pub mod generation;
mod grammar;
pub mod limits;
pub mod memory;
mod memory_service;
pub mod merge_patch;
pub mod session;
pub use session::to_micros;
mod store;
pub mod tokens;
pub mod vector_index;

pub use auth::{Access, ApiKey, Creator, KeyRequest, KeyService, KeyStore, NewApiKey, Permission};
pub use cache::{Cache, CacheError, CacheLookup, InProcessRateLimiter, Rate, RateDecision, RateLimiter};
pub use context::{ContextRequest, ContextService};
pub use embed::{Embedder, MemoryVectors};
pub use engine::EngineId;
pub use error::{Error, Resource, Result};
pub use memory::{
    Memory, MemoryFilter, MemoryQuery, MemoryStore, ProfileAttribute, Recency, Revision, RevisionAction, ScoredMemory,
};
pub use memory_service::{MemoryService, SearchSettings};
pub use session::{
    Compaction, CompactionPolicy, CompactionStatus, Event, EventKind, EventPage, ForkOrigin, ForkPoint, ForkRequest,
    NewEvent, NewSession, OrgId, PageCursor, Rewind, RewindTarget, Rewound, Role, Scope, Session, SessionFilter,
    SessionLimits, SessionPage, SessionService, StateHistory, StatePatch, SummaryMethod,
};
pub use store::{Appended, Layered, SessionStore, StoreLayer, Touched, Write, WriteOutcome, Written};
pub use tokens::Tokenizer;
pub use vector_index::{IndexedMemoryStore, VectorIndex, VectorOutbox, VectorRecord, VectorState};
