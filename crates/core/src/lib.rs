//! The domain of ContextIQ: sessions and their events, the store traits every backend
//! implements, and the services that hold the rules (validation, TTLs, limits, merge patch).
//!
//! This crate does no IO and knows nothing of HTTP or SQL: backends implement its traits,
//! the server maps its errors to status codes.

pub mod auth;
pub mod cache;
pub mod cached;
pub mod embed;
mod error;
pub mod generation;
mod grammar;
pub mod memory;
mod memory_service;
pub mod merge_patch;
pub mod session;
pub use session::to_micros;
mod store;
pub mod vector_index;

pub use auth::{Access, ApiKey, KeyService, KeyStore, NewApiKey, Permission};
pub use cache::{Cache, CacheError, CacheLookup, InProcessRateLimiter, Rate, RateDecision, RateLimiter};
pub use embed::Embedder;
pub use error::{Error, Resource, Result};
pub use memory::{Memory, MemoryFilter, MemoryStore, Revision, RevisionAction, ScoredMemory};
pub use memory_service::{MemoryService, SearchSettings};
pub use session::{
    Event, EventPage, NewEvent, NewSession, OrgId, PageCursor, Role, Scope, Session, SessionFilter, SessionLimits,
    SessionPage, SessionService,
};
pub use store::{Layered, SessionStore, StoreLayer, Touched, Write, WriteOutcome, Written};
pub use vector_index::{IndexedMemoryStore, VectorIndex, VectorOutbox, VectorRecord, VectorState};
