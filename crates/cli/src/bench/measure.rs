//! What every benchmark shares: running concurrent request loops and timing them, sending
//! through the server's rate limit, and printing rates and latency percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub(crate) struct Measurement {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// 429 answers waited out during the measurement.
    n_throttled: u64,
}

impl Measurement {
    pub(crate) fn print(mut self, operation: &str) {
        self.latencies.sort_unstable();
        let percentile = |p: f64| {
            let idx = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies.get(idx).map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
        };
        let throttled = match self.n_throttled {
            0 => String::new(),
            n => format!("  ({n} throttled)"),
        };
        println!(
            "{:<22} {:>10} {:>12} {:>9.2} {:>9.2} {:>9.2}{throttled}",
            operation,
            self.latencies.len(),
            format_rate(self.latencies.len() as f64 / self.elapsed.as_secs_f64()),
            percentile(0.50),
            percentile(0.95),
            percentile(0.99)
        );
    }
}

/// Runs `clients` loops of `request(client_idx, n)` back to back for `duration`.
pub(crate) async fn measure<F, Fut>(clients: usize, duration: Duration, request: F) -> anyhow::Result<Measurement>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let n_throttled_before = THROTTLED.load(Ordering::Relaxed);
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..clients).map(|client_idx| {
        let request = &request;
        async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                request(client_idx, n).await?;
                latencies.push(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        }
    });
    let per_client = futures::future::try_join_all(loops).await?;
    Ok(Measurement {
        latencies: per_client.into_iter().flatten().collect(),
        elapsed: started.elapsed(),
        n_throttled: THROTTLED.load(Ordering::Relaxed) - n_throttled_before,
    })
}

/// 429 answers the benchmark waited out and sent again, over the whole run.
pub(crate) static THROTTLED: AtomicU64 = AtomicU64::new(0);

/// Sends `request`; while the server answers 429 (its rate limit), waits as long as its
/// `Retry-After` says (1 s without one) and sends the request again, counting each 429. The
/// latency of such a request includes the waits.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
    loop {
        let attempt = request.try_clone().context("a request with a streamed body cannot be sent again")?;
        let response = attempt.send().await?;
        if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        THROTTLED.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(retry_after(response.headers())).await;
    }
}

/// The wait a 429 asks for: `Retry-After` in seconds (at least 100 ms), else 1 s.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), |seconds| Duration::from_secs(seconds).max(Duration::from_millis(100)))
}

/// What to tell the user when the server's rate limit slowed the benchmark down.
pub(crate) fn throttling_hint(n_throttled: u64) -> String {
    format!(
        "throttled: the server's rate limit answered 429 to {n_throttled} requests, which were sent again \
         after its Retry-After; the numbers above measure that limit, not the server. To lift it, start the \
         server with higher RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST (the limits of credentials without \
         their own), or bench with a key created with a higher limit of its own \
         (`contextiq keys create --rate-limit N`, or \"rate_limit_per_second\" in POST /api/v1/keys)."
    )
}

/// A rate for people: `11,512/s`, `98.4/s`, `4.26/s`; figures past the third are noise.
pub(crate) fn format_rate(per_second: f64) -> String {
    let number = if !per_second.is_finite() || per_second < 0.0 {
        "-".to_owned()
    } else if per_second >= 100.0 {
        let digits = format!("{:.0}", per_second);
        let mut grouped = String::new();
        for (idx, digit) in digits.chars().enumerate() {
            if idx > 0 && (digits.len() - idx) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else if per_second >= 10.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.2}")
    };
    format!("{number}/s")
}

/// The `{rate}` of a progress bar, as [`format_rate`] writes it.
pub(crate) fn progress_rate(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = out.write_str(&format_rate(state.per_sec()));
}

pub(crate) async fn expect_status(response: reqwest::Response, expected: u16) -> anyhow::Result<Value> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != expected {
        bail!("expected {expected}, got {status}: {body}");
    }
    Ok(body)
}

pub(crate) fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("machine: {cpu}, {cores} cores, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

pub(crate) fn print_header() {
    println!("{:<22} {:>10} {:>12} {:>9} {:>9} {:>9}", "operation", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_for_people() {
        for (per_second, expected) in [
            (98.4336, "98.4/s"),
            (11_512.3, "11,512/s"),
            (1_234_567.8, "1,234,568/s"),
            (999.6, "1,000/s"),
            (100.0, "100/s"),
            (4.256, "4.26/s"),
            (0.0, "0.00/s"),
            (f64::INFINITY, "-/s"),
        ] {
            assert_eq!(format_rate(per_second), expected, "{per_second}");
        }
    }

    #[test]
    fn waits_as_retry_after_says() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), Duration::from_secs(1));
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(3));
        headers.insert(reqwest::header::RETRY_AFTER, "0".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_millis(100));
        headers.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(1));
    }
}
