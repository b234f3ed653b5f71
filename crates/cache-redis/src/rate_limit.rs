//! Token buckets shared by every process: one Lua script refills and takes a token atomically,
//! on Redis's clock. While Redis is unavailable, each process falls back to buckets of its own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use contextiq_core::cache::rate_decision;
use contextiq_core::{CacheError, InProcessRateLimiter, Rate, RateDecision, RateLimiter};
use redis::Script;

use crate::{Connection, RedisOptions};

/// `contextiq_core::RateLimiter` on Redis: a bucket per key, `burst` tokens when new, refilled
/// at `per_second`, one token per request.
///
/// When Redis fails (an error or the timeout), the check falls back to an in-memory bucket of
/// this process: limits still hold per process, only looser across processes (each process
/// grants its own burst). Each fallback counts in `rate_limiter_fallbacks_total`; a warning is
/// logged at most every 30 s.
pub struct RedisRateLimiter {
    connection: Connection,
    script: Script,
    fallback: InProcessRateLimiter,
    last_warning: Mutex<Option<Instant>>,
}

impl RedisRateLimiter {
    /// A rate limiter on the Redis at `url`, with a connection of its own (see
    /// `RedisCache::rate_limiter` to share the cache's). Fails only on an invalid URL or options.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisRateLimiter, CacheError> {
        Ok(RedisRateLimiter::on(Connection::open(url, &options)?))
    }

    pub(crate) fn on(connection: Connection) -> RedisRateLimiter {
        RedisRateLimiter {
            connection,
            script: Script::new(TOKEN_BUCKET_SCRIPT),
            fallback: InProcessRateLimiter::default(),
            last_warning: Mutex::new(None),
        }
    }

    /// The bucket's tokens after this request, and whether it was allowed.
    async fn take_shared(&self, key: &str, rate: Rate) -> Result<(bool, f64), CacheError> {
        let mut invocation = self.script.key(format!("{}:rate:{{{key}}}", self.connection.prefix));
        invocation.arg(rate.burst.max(1)).arg(rate.per_second.max(1)).arg(EXPIRY_MARGIN_MS);
        let invocation = &invocation;
        let (allowed, tokens): (i64, String) = self
            .connection
            .bounded("rate limit", |mut manager| async move { invocation.invoke_async(&mut manager).await })
            .await?;
        let tokens = tokens
            .parse::<f64>()
            .ok()
            .filter(|tokens| tokens.is_finite())
            .ok_or_else(|| CacheError(format!("Redis rate limit: bucket holds {tokens:?} tokens")))?;
        Ok((allowed == 1, tokens))
    }

    fn warn_fallback(&self, error: &CacheError) {
        let now = Instant::now();
        let mut last_warning = self.last_warning.lock().expect("warning lock poisoned");
        if last_warning.is_none_or(|at| now.duration_since(at) >= WARNING_INTERVAL) {
            *last_warning = Some(now);
            drop(last_warning);
            tracing::warn!(%error, "rate limits fall back to per-process buckets while Redis is unavailable");
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, rate: Rate) -> RateDecision {
        match self.take_shared(key, rate).await {
            Ok((allowed, tokens)) => rate_decision(rate, allowed, tokens),
            Err(error) => {
                metrics::counter!("rate_limiter_fallbacks_total").increment(1);
                self.warn_fallback(&error);
                self.fallback.check_at(key, rate, Instant::now())
            }
        }
    }
}

/// At most one fallback warning per this long.
const WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// A bucket expires this long after it would be full again (a missing bucket is a full one).
const EXPIRY_MARGIN_MS: u64 = 1000;

/// KEYS[1]: the bucket, a hash of `tokens` and `updated_us` (Redis's clock, in microseconds).
/// ARGV: burst, tokens per second, expiry margin in milliseconds. Returns 1 if allowed (else 0)
/// and the tokens left, as text.
///
/// Numbers go to Redis as formatted text: Lua would print a microsecond clock in scientific
/// notation, losing digits.
const TOKEN_BUCKET_SCRIPT: &str = r"
local burst = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated_us')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
    tokens = burst
    updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) / 1000000 * per_second)
local allowed = 0
if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
end
local tokens_text = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', tokens_text, 'updated_us', string.format('%.0f', now))
local refill_ms = math.ceil((burst - tokens) / per_second * 1000)
redis.call('PEXPIRE', KEYS[1], string.format('%d', refill_ms + tonumber(ARGV[3])))
return {allowed, tokens_text}
";
