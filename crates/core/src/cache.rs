//! The seams of shared, best-effort state: a cache of serialized values and per-credential rate
//! limits. The distributed deployment backs both with Redis; the embedded one has no cache (its
//! store is in-process) and in-process token buckets.

use std::time::Duration;

/// A cache of serialized values grouped in families, invalidated by generation.
///
/// A family is what one write invalidates at once (a session, a memory, a job, a scope's search
/// results); a key names one value within it (a session with or without its events, one search).
/// Reading returns the family's current generation along with the value; a value is stored under
/// the generation its reader saw. A write moves the family to a new generation *after* it
/// commits, so a reader that read the store before the commit can only store its old value under
/// a generation nobody reads any more: no stale read survives a write, however reads and writes
/// interleave across processes.
///
/// Errors are reported, never hidden: callers treat a failed read as a miss and count failures.
#[async_trait::async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The current generation of `family` and the value of `key` under it, if cached.
    async fn get(&self, family: &str, key: &str) -> Result<CacheLookup, CacheError>;
    /// Stores `value` for `key` under `generation` of `family`, for `ttl`.
    async fn put(
        &self,
        family: &str,
        generation: u64,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Moves each family to a new generation, making every value cached under them unreachable.
    async fn invalidate(&self, families: &[String]) -> Result<(), CacheError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLookup {
    pub generation: u64,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(pub String);

/// Requests per second and burst of one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_seconds: u64,
    /// Seconds until the next request would be allowed (0 when allowed).
    pub retry_after_seconds: u64,
}

/// A token bucket per key: in-process, or shared by every process through Redis (which decides
/// for itself what to do when Redis is down).
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    async fn check(&self, key: &str, rate: Rate) -> RateDecision;
}

/// How long a value of each kind stays cached (the seed's TTLs).
pub mod ttl {
    use std::time::Duration;

    pub const SESSION: Duration = Duration::from_secs(24 * 3600);
    pub const MEMORY: Duration = Duration::from_secs(2 * 3600);
    pub const JOB: Duration = Duration::from_secs(3600);
    pub const SEARCH: Duration = Duration::from_secs(3600);
}
