//! The seams of shared, best-effort state: a cache of serialized values and per-credential rate
//! limits. The distributed deployment backs both with Redis; the embedded one has no cache (its
//! store is in-process) and in-process token buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

impl Rate {
    /// A rate with a burst of twice the rate.
    pub fn per_second(per_second: u32) -> Rate {
        Rate { per_second, burst: per_second.saturating_mul(2) }
    }
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

/// The decision for a bucket left with `tokens` after a request (`allowed` took one).
pub fn rate_decision(rate: Rate, allowed: bool, tokens: f64) -> RateDecision {
    let per_second = f64::from(rate.per_second.max(1));
    let burst = f64::from(rate.burst.max(1));
    RateDecision {
        allowed,
        limit: rate.burst,
        remaining: tokens.floor() as u32,
        reset_seconds: ((burst - tokens) / per_second).ceil() as u64,
        retry_after_seconds: if allowed { 0 } else { ((1.0 - tokens) / per_second).ceil().max(1.0) as u64 },
    }
}

/// Token buckets of this process: the embedded deployment's limits, and the Redis limiter's
/// fallback while Redis is down.
#[derive(Default)]
pub struct InProcessRateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Past this many buckets, full ones (idle credentials) are dropped.
const MAX_IDLE_BUCKETS: usize = 10_000;

#[async_trait::async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn check(&self, key: &str, rate: Rate) -> RateDecision {
        self.check_at(key, rate, Instant::now())
    }
}

impl InProcessRateLimiter {
    /// Refills `key`'s bucket up to `now` and takes a token if there is one.
    pub fn check_at(&self, key: &str, rate: Rate, now: Instant) -> RateDecision {
        let per_second = f64::from(rate.per_second.max(1));
        let burst = f64::from(rate.burst.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if buckets.len() > MAX_IDLE_BUCKETS {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.saturating_duration_since(bucket.updated).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        rate_decision(rate, allowed, bucket.tokens)
    }
}

/// How long a value of each kind stays cached (the seed's TTLs).
pub mod ttl {
    use std::time::Duration;

    pub const SESSION: Duration = Duration::from_secs(24 * 3600);
    pub const MEMORY: Duration = Duration::from_secs(2 * 3600);
    pub const JOB: Duration = Duration::from_secs(3600);
    pub const SEARCH: Duration = Duration::from_secs(3600);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_the_rate() {
        let limiter = InProcessRateLimiter::default();
        let rate = Rate { per_second: 10, burst: 5 };
        let start = Instant::now();
        let allowed = (0..8).filter(|_| limiter.check_at("k", rate, start).allowed).count();
        assert_eq!(allowed, 5);
        let denied = limiter.check_at("k", rate, start);
        assert!(!denied.allowed);
        assert_eq!((denied.remaining, denied.reset_seconds, denied.retry_after_seconds), (0, 1, 1));
        assert!(limiter.check_at("other", rate, start).allowed, "buckets are per key");
        // 0.25 s refills 2.5 tokens: two requests pass, the third does not.
        let later = start + Duration::from_millis(250);
        assert_eq!((0..3).filter(|_| limiter.check_at("k", rate, later).allowed).count(), 2);
    }

    #[test]
    fn decisions_say_what_is_left_and_when_to_retry() {
        let rate = Rate { per_second: 2, burst: 10 };
        let check = |allowed, tokens, expected: (u32, u64, u64)| {
            let decision = rate_decision(rate, allowed, tokens);
            assert_eq!((decision.remaining, decision.reset_seconds, decision.retry_after_seconds), expected);
            assert_eq!(decision.limit, 10);
        };
        check(true, 9.0, (9, 1, 0));
        check(true, 4.5, (4, 3, 0));
        check(false, 0.0, (0, 5, 1));
        check(false, 0.25, (0, 5, 1));
        assert_eq!(rate_decision(Rate { per_second: 1, burst: 1 }, false, 0.0).retry_after_seconds, 1);
    }
}
