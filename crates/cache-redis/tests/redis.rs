//! The cache and the rate limiter against a real Redis, each test under a key prefix of its own
//! so tests run in parallel on one server. Set `CONTEXTIQ_TEST_REDIS_URL` (see
//! `scripts/services.sh`) to run them; without it they are skipped with a message (or fail, under
//! `CONTEXTIQ_REQUIRE_SERVICES=1`). The tests of an unreachable Redis need no server and always run.

use std::time::Duration;

use contextiq_cache_redis::{RedisCache, RedisOptions, RedisRateLimiter};
use contextiq_core::{Cache, CacheLookup, Rate, RateLimiter};
use uuid::Uuid;

const REDIS_URL: &str = "CONTEXTIQ_TEST_REDIS_URL";

/// The test server's URL; `None` when no server is configured.
fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var(REDIS_URL).ok();
    if url.is_none() {
        skip_unless_required(test, &format!("{REDIS_URL} is not set"));
    }
    url
}

/// Skips a test whose service is not configured, with a message; fails it instead under
/// `CONTEXTIQ_REQUIRE_SERVICES=1`, which `scripts/test.sh` sets, so the suite cannot pass
/// without testing what it is meant to.
fn skip_unless_required(test: &str, why: &str) {
    if std::env::var_os("CONTEXTIQ_REQUIRE_SERVICES").is_some_and(|value| value == "1") {
        panic!("{test}: {why}, and CONTEXTIQ_REQUIRE_SERVICES=1 forbids skipping");
    }
    eprintln!("{test} skipped: {why}");
}

fn options() -> RedisOptions {
    RedisOptions { key_prefix: format!("ciq-test-{}", Uuid::new_v4()), ..RedisOptions::default() }
}

async fn check_lookup(cache: &RedisCache, family: &str, key: &str, generation: u64, value: Option<&[u8]>) {
    let lookup = cache.get(family, key).await.expect("get");
    assert_eq!(lookup, CacheLookup { generation, value: value.map(<[u8]>::to_vec) }, "{family} {key}");
}

/// A plain connection, to look at keys the way Redis stores them.
async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.expect("connect to Redis")
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn values_live_under_the_generation_they_were_read_at() {
    let Some(url) = redis_url("values_live_under_the_generation_they_were_read_at") else { return };
    let cache = RedisCache::connect(&url, options()).unwrap();
    cache.ping().await.expect("ping");
    check_lookup(&cache, "session:1", "full", 0, None).await;

    cache.put("session:1", 0, "full", b"v0", HOUR).await.unwrap();
    check_lookup(&cache, "session:1", "full", 0, Some(b"v0")).await;

    cache.invalidate(&["session:1".to_owned()]).await.unwrap();
    check_lookup(&cache, "session:1", "full", 1, None).await;

    // A reader that read the store before the write stores its stale value under the old
    // generation: nobody sees it.
    cache.put("session:1", 0, "full", b"stale", HOUR).await.unwrap();
    check_lookup(&cache, "session:1", "full", 1, None).await;

    cache.put("session:1", 1, "full", b"v1", HOUR).await.unwrap();
    check_lookup(&cache, "session:1", "full", 1, Some(b"v1")).await;
    cache.invalidate(&["session:1".to_owned(), "session:1".to_owned()]).await.unwrap();
    check_lookup(&cache, "session:1", "full", 3, None).await;
    cache.invalidate(&[]).await.unwrap();
}

#[tokio::test]
async fn families_and_keys_are_independent() {
    let Some(url) = redis_url("families_and_keys_are_independent") else { return };
    let cache = RedisCache::connect(&url, options()).unwrap();
    for (family, key, value) in [("a", "k", "a-k"), ("a", "l", "a-l"), ("b", "k", "b-k"), ("c", "k", "c-k")] {
        cache.put(family, 0, key, value.as_bytes(), HOUR).await.unwrap();
    }
    check_lookup(&cache, "a", "k", 0, Some(b"a-k")).await;
    check_lookup(&cache, "a", "l", 0, Some(b"a-l")).await;
    check_lookup(&cache, "b", "k", 0, Some(b"b-k")).await;

    cache.invalidate(&["a".to_owned(), "c".to_owned()]).await.unwrap();
    check_lookup(&cache, "a", "k", 1, None).await;
    check_lookup(&cache, "a", "l", 1, None).await;
    check_lookup(&cache, "b", "k", 0, Some(b"b-k")).await;
    check_lookup(&cache, "c", "k", 1, None).await;

    // Another prefix is another cache on the same server.
    let other = RedisCache::connect(&url, options()).unwrap();
    check_lookup(&other, "b", "k", 0, None).await;
}

#[tokio::test]
async fn values_expire_after_their_ttl() {
    let Some(url) = redis_url("values_expire_after_their_ttl") else { return };
    let cache = RedisCache::connect(&url, options()).unwrap();
    cache.put("memory:1", 0, "one", b"short", Duration::from_millis(200)).await.unwrap();
    cache.put("memory:1", 0, "two", b"long", HOUR).await.unwrap();
    check_lookup(&cache, "memory:1", "one", 0, Some(b"short")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    check_lookup(&cache, "memory:1", "one", 0, None).await;
    check_lookup(&cache, "memory:1", "two", 0, Some(b"long")).await;
}

#[tokio::test]
async fn oversize_values_are_not_stored() {
    let Some(url) = redis_url("oversize_values_are_not_stored") else { return };
    let cache = RedisCache::connect(&url, RedisOptions { max_value_bytes: 16, ..options() }).unwrap();
    cache.put("search:1", 0, "big", &[7; 17], HOUR).await.expect("skipping is not an error");
    check_lookup(&cache, "search:1", "big", 0, None).await;
    cache.put("search:1", 0, "fits", &[7; 16], HOUR).await.unwrap();
    check_lookup(&cache, "search:1", "fits", 0, Some(&[7; 16])).await;
}

#[tokio::test]
async fn keys_share_their_family_slot_and_generations_outlive_values() {
    let Some(url) = redis_url("keys_share_their_family_slot_and_generations_outlive_values") else { return };
    let options = options();
    let prefix = options.key_prefix.clone();
    let cache = RedisCache::connect(&url, options).unwrap();
    cache.invalidate(&["job:9".to_owned()]).await.unwrap();
    cache.put("job:9", 1, "status", b"done", Duration::from_secs(7 * 24 * 3600)).await.unwrap();

    let mut conn = raw_connection(&url).await;
    let generation_key = format!("{prefix}:gen:{{job:9}}");
    let value_key = format!("{prefix}:val:{{job:9}}:1:status");
    let generation: String = redis::cmd("GET").arg(&generation_key).query_async(&mut conn).await.unwrap();
    assert_eq!(generation, "1");
    let value: Vec<u8> = redis::cmd("GET").arg(&value_key).query_async(&mut conn).await.unwrap();
    assert_eq!(value, b"done");

    let day_ms = 24 * 3600 * 1000;
    // Values live at most a day whatever they ask; generations two days after their last use.
    assert!(pttl(&mut conn, &value_key).await <= day_ms);
    assert!(pttl(&mut conn, &generation_key).await > 47 * 3600 * 1000);
    redis::cmd("PEXPIRE").arg(&generation_key).arg(1000 * 1000).exec_async(&mut conn).await.unwrap();
    cache.get("job:9", "status").await.unwrap();
    assert!(pttl(&mut conn, &generation_key).await > 47 * 3600 * 1000, "a read refreshes the generation's expiry");
}

#[tokio::test]
async fn rate_limits_allow_the_burst_then_deny() {
    let Some(url) = redis_url("rate_limits_allow_the_burst_then_deny") else { return };
    let limiter = RedisRateLimiter::connect(&url, options()).unwrap();
    let rate = Rate { per_second: 1, burst: 5 };
    for remaining in (0..5).rev() {
        let decision = limiter.check("key-a", rate).await;
        assert!(decision.allowed);
        assert_eq!((decision.limit, decision.remaining, decision.retry_after_seconds), (5, remaining, 0));
        assert!(decision.reset_seconds >= u64::from(5 - remaining));
    }
    let denied = limiter.check("key-a", rate).await;
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert!(denied.retry_after_seconds >= 1);
    assert_eq!(denied.reset_seconds, 5);
    assert!(limiter.check("key-b", rate).await.allowed, "buckets are per key");

    // Refills at its rate: a tenth of a second gives a token back at 10 per second.
    let fast = Rate { per_second: 10, burst: 2 };
    assert!(limiter.check("key-c", fast).await.allowed);
    assert!(limiter.check("key-c", fast).await.allowed);
    assert!(!limiter.check("key-c", fast).await.allowed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(limiter.check("key-c", fast).await.allowed);
}

#[tokio::test]
async fn concurrent_checks_take_exactly_the_burst() {
    let Some(url) = redis_url("concurrent_checks_take_exactly_the_burst") else { return };
    let limiter = std::sync::Arc::new(RedisRateLimiter::connect(&url, options()).unwrap());
    let rate = Rate { per_second: 1, burst: 10 };
    let checks: Vec<_> = (0..30)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.check("key", rate).await.allowed })
        })
        .collect();
    let mut n_allowed = 0;
    for check in checks {
        n_allowed += usize::from(check.await.unwrap());
    }
    assert_eq!(n_allowed, 10);
}

#[tokio::test]
async fn processes_share_one_bucket() {
    let Some(url) = redis_url("processes_share_one_bucket") else { return };
    let options = options();
    let cache = RedisCache::connect(&url, options.clone()).unwrap();
    let limiters = [
        RedisRateLimiter::connect(&url, options.clone()).unwrap(),
        RedisRateLimiter::connect(&url, options).unwrap(),
        cache.rate_limiter(),
    ];
    let rate = Rate { per_second: 1, burst: 4 };
    for limiter in limiters.iter().chain(&limiters[..1]) {
        assert!(limiter.check("shared", rate).await.allowed);
    }
    for limiter in &limiters {
        let denied = limiter.check("shared", rate).await;
        assert!(!denied.allowed);
        assert!(denied.retry_after_seconds >= 1);
    }
}

/// A throwaway `redis-server` on `port`, killed on drop; `None` if it cannot start.
async fn spawn_redis_server(port: u16) -> Option<tokio::process::Child> {
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let url = format!("redis://127.0.0.1:{port}/0");
    for _ in 0..50 {
        if let Ok(client) = redis::Client::open(url.as_str())
            && client.get_multiplexed_async_connection().await.is_ok()
        {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn clients_reconnect_after_a_redis_restart() {
    if redis_url("clients_reconnect_after_a_redis_restart").is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Some(mut server) = spawn_redis_server(port).await else {
        skip_unless_required("clients_reconnect_after_a_redis_restart", "cannot run redis-server");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let options = RedisOptions { timeout: Duration::from_millis(500), ..options() };
    let cache = RedisCache::connect(&url, options.clone()).unwrap();
    let limiter = RedisRateLimiter::connect(&url, options).unwrap();
    let rate = Rate { per_second: 1, burst: 2 };
    cache.put("session:1", 0, "full", b"v0", HOUR).await.unwrap();
    check_lookup(&cache, "session:1", "full", 0, Some(b"v0")).await;
    assert!(limiter.check("key", rate).await.allowed);

    server.kill().await.unwrap();
    assert!(cache.get("session:1", "full").await.is_err());
    // The fallback bucket starts full: two more requests pass, in this process only.
    assert!(limiter.check("key", rate).await.allowed);
    assert!(limiter.check("key", rate).await.allowed);
    assert!(!limiter.check("key", rate).await.allowed);

    let Some(_server) = spawn_redis_server(port).await else { panic!("restart redis-server on {port}") };
    // Nothing persisted: generations and values are gone together.
    check_lookup(&cache, "session:1", "full", 0, None).await;
    cache.put("session:1", 0, "full", b"again", HOUR).await.unwrap();
    check_lookup(&cache, "session:1", "full", 0, Some(b"again")).await;
    assert!(limiter.check("key", rate).await.allowed, "back on the (new, full) shared bucket");
}

/// A port nothing listens on.
const UNREACHABLE_URL: &str = "redis://127.0.0.1:1/0";

#[tokio::test]
async fn an_unreachable_redis_fails_within_the_timeout() {
    let options = RedisOptions { timeout: Duration::from_millis(500), ..options() };
    let cache = RedisCache::connect(UNREACHABLE_URL, options).unwrap();
    for _ in 0..2 {
        assert!(cache.get("session:1", "full").await.is_err());
        assert!(cache.put("session:1", 0, "full", b"v", HOUR).await.is_err());
        assert!(cache.invalidate(&["session:1".to_owned()]).await.is_err());
        assert!(cache.ping().await.is_err());
    }
}

#[tokio::test]
async fn rate_limits_fall_back_to_the_process_while_redis_is_unreachable() {
    let options = RedisOptions { timeout: Duration::from_millis(500), ..options() };
    let limiter = RedisRateLimiter::connect(UNREACHABLE_URL, options).unwrap();
    let rate = Rate { per_second: 1, burst: 3 };
    for remaining in (0..3).rev() {
        let decision = limiter.check("key", rate).await;
        assert!(decision.allowed);
        assert_eq!(decision.remaining, remaining);
    }
    let denied = limiter.check("key", rate).await;
    assert!(!denied.allowed);
    assert!(denied.retry_after_seconds >= 1);
    assert!(limiter.check("other", rate).await.allowed);
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", listener.local_addr().unwrap());
    let _server = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let options = RedisOptions { timeout: Duration::from_millis(300), ..options() };
    let cache = RedisCache::connect(&url, options.clone()).unwrap();
    let limiter = RedisRateLimiter::connect(&url, options).unwrap();
    // Without the command timeout these would wait forever; the outer bound only catches that
    // (no timing is asserted: the machine is shared).
    for _ in 0..2 {
        let got = tokio::time::timeout(Duration::from_secs(60), cache.get("session:1", "full")).await;
        assert!(got.expect("get waited on a Redis that never answers").is_err());
    }
    // The limiter falls back to this process's bucket (burst 1): one allowed, the next denied.
    let rate = Rate { per_second: 1, burst: 1 };
    for expected in [true, false] {
        let decision = tokio::time::timeout(Duration::from_secs(60), limiter.check("key", rate)).await;
        assert_eq!(decision.expect("check waited on a Redis that never answers").allowed, expected);
    }
}

#[test]
fn invalid_settings_are_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let check = |url: &str, options: RedisOptions| assert!(RedisCache::connect(url, options).is_err(), "{url}");
    check("http://127.0.0.1:6379", RedisOptions::default());
    check("redis://127.0.0.1:6379", RedisOptions { key_prefix: "a{b".to_owned(), ..RedisOptions::default() });
    check("redis://127.0.0.1:6379", RedisOptions { timeout: Duration::ZERO, ..RedisOptions::default() });
}
