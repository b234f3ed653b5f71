//! The cache: one Lua script reads a family's generation and the value under it in one round trip.

use std::time::Duration;

use contextiq_core::cache::ttl;
use contextiq_core::{Cache, CacheError, CacheLookup};
use redis::Script;

use crate::{Connection, RedisOptions, RedisRateLimiter};

/// `contextiq_core::Cache` on Redis. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisCache {
    connection: Connection,
    max_value_bytes: usize,
    get_script: Script,
}

impl RedisCache {
    /// A cache on the Redis at `url` (`redis://[:password@]host:port/db`). Fails only on an
    /// invalid URL or options: the connection opens on first use, and reopens after failures.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisCache, CacheError> {
        let connection = Connection::open(url, &options)?;
        Ok(RedisCache { connection, max_value_bytes: options.max_value_bytes, get_script: Script::new(GET_SCRIPT) })
    }

    /// A rate limiter sharing this cache's connection and key prefix.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::on(self.connection.clone())
    }

    /// Whether Redis answers within the timeout, for readiness checks and startup logs.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.connection.ping().await
    }

    fn generation_key(&self, family: &str) -> String {
        format!("{}:gen:{{{family}}}", self.connection.prefix)
    }

    /// The value keys of `family` all start with this, followed by `<generation>:<key>`.
    fn value_key_prefix(&self, family: &str) -> String {
        format!("{}:val:{{{family}}}:", self.connection.prefix)
    }
}

/// How long a generation key lives after its last read or bump. It must outlive every value: were
/// it to expire while a value under generation 0 lived, that value would come back.
const GENERATION_TTL: Duration = Duration::from_secs(48 * 3600);

/// Values never live longer than this, whatever the caller asks, so they expire before their
/// generation key can.
const MAX_VALUE_TTL: Duration = Duration::from_secs(24 * 3600);

const _: () = assert!(MAX_VALUE_TTL.as_secs() < GENERATION_TTL.as_secs());
const _: () = assert!(ttl::SESSION.as_secs() <= MAX_VALUE_TTL.as_secs());

/// KEYS[1]: the generation key. ARGV: the family's value key prefix, the key, the generation
/// key's TTL in milliseconds. Returns the generation (as text) and the value, or nil.
///
/// The value key is built inside the script from the generation it reads; it shares the
/// generation key's hash tag, so it is on the same cluster slot.
const GET_SCRIPT: &str = r"
local generation = redis.call('GET', KEYS[1])
if generation then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
    generation = '0'
end
return {generation, redis.call('GET', ARGV[1] .. generation .. ':' .. ARGV[2])}
";

#[async_trait::async_trait]
impl Cache for RedisCache {
    async fn get(&self, family: &str, key: &str) -> Result<CacheLookup, CacheError> {
        let mut invocation = self.get_script.key(self.generation_key(family));
        invocation.arg(self.value_key_prefix(family)).arg(key).arg(millis(GENERATION_TTL));
        let invocation = &invocation;
        let reply: Result<(String, Option<Vec<u8>>), _> = self
            .connection
            .bounded("get", |mut manager| async move { invocation.invoke_async(&mut manager).await })
            .await;
        let lookup = reply.and_then(|(generation, value)| {
            let generation = generation
                .parse()
                .map_err(|_| CacheError(format!("Redis get: generation {generation:?} is not a number")))?;
            Ok(CacheLookup { generation, value })
        });
        counted("get", lookup)
    }

    async fn put(
        &self,
        family: &str,
        generation: u64,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        if value.len() > self.max_value_bytes {
            tracing::debug!(family, key, n_bytes = value.len(), "value too large to cache");
            return Ok(());
        }
        let value_key = format!("{}{generation}:{key}", self.value_key_prefix(family));
        let mut command = redis::cmd("SET");
        command.arg(value_key).arg(value).arg("PX").arg(millis(ttl.min(MAX_VALUE_TTL)).max(1));
        let command = &command;
        let stored =
            self.connection.bounded("put", |mut manager| async move { command.exec_async(&mut manager).await });
        counted("put", stored.await)
    }

    async fn invalidate(&self, families: &[String]) -> Result<(), CacheError> {
        if families.is_empty() {
            return Ok(());
        }
        // Not atomic, and need not be: families may live on different slots, and each bump is
        // enough on its own to hide its family's values.
        let mut pipeline = redis::pipe();
        for family in families {
            let generation_key = self.generation_key(family);
            pipeline.incr(&generation_key, 1).ignore().pexpire(&generation_key, millis(GENERATION_TTL)).ignore();
        }
        let pipeline = &pipeline;
        let bumped =
            self.connection.bounded("invalidate", |mut manager| async move { pipeline.exec_async(&mut manager).await });
        counted("invalidate", bumped.await)
    }
}

fn counted<T>(operation: &'static str, result: Result<T, CacheError>) -> Result<T, CacheError> {
    if result.is_err() {
        metrics::counter!("cache_errors_total", "operation" => operation).increment(1);
    }
    result
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
