//! Redis behind the shared, best-effort state of the distributed deployment: [`RedisCache`]
//! implements `contextiq_core::Cache` (values invalidated by a generation per family) and
//! [`RedisRateLimiter`] implements `contextiq_core::RateLimiter` (token buckets shared by every
//! process). Both talk through one auto-reconnecting [`ConnectionManager`], and every command is
//! bounded by [`RedisOptions::timeout`]: a hung or unreachable Redis costs a request at most that
//! long, never hangs it.
//!
//! Failures are the caller's to handle for the cache (a failed read is a miss), and this crate's
//! for the rate limiter, which falls back to per-process buckets while Redis is unavailable.
//!
//! Key layout, under a configurable prefix (`ciq` by default); the braces are Redis Cluster hash
//! tags, so a family's keys share one slot and one script can read them together:
//!
//! ```text
//! ciq:gen:{<family>}                       the family's generation (missing = 0)
//! ciq:val:{<family>}:<generation>:<key>    a value cached under that generation
//! ciq:rate:{<key>}                         a token bucket: hash of tokens, updated_us
//! ```
//!
//! **Architecture Invariant:** no module here knows what is cached or rate limited; callers name
//! families, keys and rates.

mod cache;
mod rate_limit;

use std::time::Duration;

use contextiq_core::CacheError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use cache::RedisCache;
pub use rate_limit::RedisRateLimiter;

/// How the cache and the rate limiter use Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every key, so deployments can share one Redis. Must not contain `{` or `}`,
    /// which would break the hash tags.
    pub key_prefix: String,
    /// Bound on each operation, connecting included (the seed's `REDIS_SOCKET_TIMEOUT`).
    pub timeout: Duration,
    /// Values larger than this many bytes are not cached.
    pub max_value_bytes: usize,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions { key_prefix: "ciq".to_owned(), timeout: Duration::from_secs(5), max_value_bytes: 512 * 1024 }
    }
}

/// One connection, shared by clones, with the options every command needs.
#[derive(Clone)]
struct Connection {
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl Connection {
    /// Checks the URL and options; connects on first use, so an unreachable Redis is not an
    /// error here (a process started during an outage serves, degraded, and catches up).
    fn open(url: &str, options: &RedisOptions) -> Result<Connection, CacheError> {
        if options.key_prefix.contains(['{', '}']) {
            return Err(CacheError(format!("Redis key prefix {:?} contains a brace", options.key_prefix)));
        }
        if options.timeout.is_zero() {
            return Err(CacheError("Redis timeout must be positive".to_owned()));
        }
        let client = redis::Client::open(url).map_err(|error| CacheError(format!("invalid Redis URL: {error}")))?;
        // One connection attempt per request, no retries with backoff: the state is best-effort,
        // so while Redis is down a request fails fast (a miss, a fallback bucket) and the next one
        // tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| CacheError(format!("Redis connection: {error}")))?;
        Ok(Connection { manager, prefix: options.key_prefix.clone(), timeout: options.timeout })
    }

    /// Runs `command` on the connection, within the timeout. A refused connection is tried once
    /// more: the command never reached Redis, and the refusal may be an old one, of a reconnection
    /// attempted while Redis was down; the manager has started a new attempt, which may succeed.
    async fn bounded<T, C, F>(&self, operation: &str, command: C) -> Result<T, CacheError>
    where
        C: Fn(ConnectionManager) -> F,
        F: Future<Output = redis::RedisResult<T>>,
    {
        let attempts = async {
            match command(self.manager.clone()).await {
                Err(error) if error.is_connection_refusal() => command(self.manager.clone()).await,
                result => result,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError(format!("Redis {operation}: {error}"))),
            Err(_) => Err(CacheError(format!("Redis {operation}: no reply within {:?}", self.timeout))),
        }
    }

    async fn ping(&self) -> Result<(), CacheError> {
        self.bounded("ping", |mut manager| async move { redis::cmd("PING").exec_async(&mut manager).await }).await
    }
}
