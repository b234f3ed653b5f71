use std::path::PathBuf;
use std::sync::Arc;

use contextiq_core::Embedder;
use contextiq_server::clock::TestClock;
use contextiq_server::{Application, Settings, telemetry};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running application with its own data directory.
pub struct TestApp {
    pub address: String,
    /// Sends the first admin key with every request.
    pub client: reqwest::Client,
    /// The first admin key (org "default", every permission).
    pub admin_key: String,
    pub data_dir: Arc<TempDir>,
    /// The application's clock: `advance` it to let time pass at once.
    pub clock: Arc<TestClock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The embedding model of a test application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The configured one: the real model, for tests of search and generation.
    Configured,
    /// [`WordHashEmbedder`], for tests that store memories but do not test what search finds
    /// first; it costs no model load.
    WordHash,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(Arc::new(tempfile::tempdir().expect("temp dir")), configure).await
}

/// Starts the application on an existing data directory (to test restarts).
pub async fn spawn_app_in(data_dir: Arc<TempDir>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_of(Model::Configured, data_dir, configure).await
}

/// The same helpers for tests that do not test search: the application embeds with
/// [`WordHashEmbedder`] instead of loading the model.
pub mod without_model {
    use super::*;

    pub async fn spawn_app() -> TestApp {
        spawn_app_with(|_| {}).await
    }

    pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_app_in(Arc::new(tempfile::tempdir().expect("temp dir")), configure).await
    }

    pub async fn spawn_app_in(data_dir: Arc<TempDir>, configure: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_app_of(Model::WordHash, data_dir, configure).await
    }
}

/// Starts the application on `data_dir` with `model`, a [`TestClock`] and the backends of the
/// conformance run, if any.
pub async fn spawn_app_of(model: Model, data_dir: Arc<TempDir>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.data_dir = data_dir.path().to_owned();
    // No default rate limit (the default); the rate-limit tests set their own.
    settings.auth.rate_limit_per_second = 0;
    settings.embedding.model_path = model_dir();
    if let Some(url) = test_database_url(data_dir.path()).await {
        settings.database.url = Some(url.into());
        settings.database.pool_size = 2;
        settings.database.max_overflow = 4;
    }
    if let Some((url, key_prefix)) = test_redis(data_dir.path()) {
        settings.redis.url = Some(url.into());
        settings.redis.key_prefix = key_prefix;
    }
    if let Some((url, queue_prefix)) = test_rabbitmq(data_dir.path()) {
        settings.rabbitmq.url = Some(url.into());
        settings.rabbitmq.queue_prefix = queue_prefix;
    }
    if let Some(qdrant) = test_qdrant(data_dir.path()) {
        settings.qdrant.url = Some(qdrant.url);
        settings.qdrant.grpc_port = qdrant.port;
        settings.qdrant.collection = qdrant.collection;
    }
    configure(&mut settings);
    if std::env::var_os("TEST_LOG").is_some() {
        telemetry::init_logging(&settings.log, &settings.service_name);
    }
    let clock = Arc::new(TestClock::default());
    let mut builder = Application::builder(settings).clock(clock.clone());
    if model == Model::WordHash {
        builder = builder.embedder(Arc::new(WordHashEmbedder));
    }
    let app = builder.build().await.expect("the application builds");
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // With authentication off there is no admin key, and the client sends none.
    let key_file = data_dir.path().join(contextiq_server::startup::ADMIN_KEY_FILE);
    let (client, admin_key) = match key_file.exists() {
        true => {
            let key = admin_key(data_dir.path());
            (client_with_key(&key), key)
        }
        false => (reqwest::Client::new(), String::new()),
    };
    TestApp { address, client, admin_key, data_dir, clock, stop: Some(stop), task: Some(task) }
}

/// A deterministic stand-in for the embedding model: each word (lowercased, split at anything
/// not alphanumeric) adds ±1 to one of 384 dimensions chosen by its hash; the sum is
/// normalised. Texts sharing words are similar, nothing more: no test of search quality may
/// use it.
pub struct WordHashEmbedder;

#[async_trait::async_trait]
impl Embedder for WordHashEmbedder {
    fn model_id(&self) -> &str {
        "test/word-hash-384"
    }

    fn dimension(&self) -> usize {
        384
    }

    async fn embed(&self, texts: Vec<String>) -> contextiq_core::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|text| word_hash_vector(text, self.dimension())).collect())
    }
}

fn word_hash_vector(text: &str, dimension: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimension];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
        // FNV-1a: stable across runs and platforms.
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[(hash % dimension as u64) as usize] += sign;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    match norm > 0.0 {
        true => vector.iter_mut().for_each(|x| *x /= norm),
        false => vector[0] = 1.0,
    }
    vector
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stops the application gracefully and waits until its store is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task").expect("the server stops cleanly");
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    pub async fn patch_state(&self, session_id: &str, patch: &Value) -> Response {
        self.client
            .patch(self.url(&format!("/api/v1/sessions/{session_id}/state")))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().await.expect("request sent")
    }

    /// Creates a session and returns its body.
    pub async fn create_session(&self, body: &Value) -> Value {
        json_of(self.post("/api/v1/sessions", body).await, StatusCode::CREATED).await
    }

    pub async fn append(&self, session_id: &str, body: &Value) -> Value {
        json_of(self.post(&format!("/api/v1/sessions/{session_id}/events"), body).await, StatusCode::CREATED).await
    }

    /// The job once it has completed or failed.
    pub async fn finished(&self, job_id: &str) -> Value {
        for _ in 0..600 {
            let job = json_of(self.get(&format!("/api/v1/jobs/{job_id}")).await, StatusCode::OK).await;
            if job["status"] == "completed" || job["status"] == "failed" {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("job {job_id} did not finish");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Skips a test whose service is not installed or configured, with a message; fails it instead
/// under `CONTEXTIQ_REQUIRE_SERVICES=1`, which `scripts/test.sh` sets, so the suite cannot pass
/// without testing what it is meant to.
pub fn skip_unless_required(test: &str, why: &str) {
    if std::env::var_os("CONTEXTIQ_REQUIRE_SERVICES").is_some_and(|value| value == "1") {
        panic!("{test}: {why}, and CONTEXTIQ_REQUIRE_SERVICES=1 forbids skipping");
    }
    eprintln!("{test} skipped: {why}");
}

/// With `CONTEXTIQ_CONFORMANCE_DATABASE_URL` set (the conformance run against PostgreSQL), the URL of
/// a scratch database for the application on `data_dir`: created on first use and kept in the
/// data directory, so a restart on the same directory finds the same data. `None`: SQLite.
pub async fn test_database_url(data_dir: &std::path::Path) -> Option<String> {
    let server = std::env::var("CONTEXTIQ_CONFORMANCE_DATABASE_URL").ok().filter(|url| !url.is_empty())?;
    let marker = data_dir.join(POSTGRES_URL_FILE);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let url = contextiq_store_postgres::create_scratch_database(&server).await.expect("a scratch database");
    std::fs::write(&marker, &url).expect("the scratch database's URL is kept");
    Some(url)
}

const POSTGRES_URL_FILE: &str = "postgres-url.txt";

/// With `CONTEXTIQ_CONFORMANCE_REDIS_URL` set, the Redis server of the conformance run and a
/// key prefix of the application on `data_dir`, so applications sharing the server never see
/// each other's cache.
pub fn test_redis(data_dir: &std::path::Path) -> Option<(String, String)> {
    let url = std::env::var("CONTEXTIQ_CONFORMANCE_REDIS_URL").ok().filter(|url| !url.is_empty())?;
    let name = data_dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    Some((url, format!("test-{name}")))
}

/// With `CONTEXTIQ_CONFORMANCE_RABBITMQ_URL` set, the RabbitMQ server of the conformance run and
/// a queue prefix of the application on `data_dir`, so applications sharing the server never
/// take each other's jobs.
pub fn test_rabbitmq(data_dir: &std::path::Path) -> Option<(String, String)> {
    let url = std::env::var("CONTEXTIQ_CONFORMANCE_RABBITMQ_URL").ok().filter(|url| !url.is_empty())?;
    let name = data_dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    Some((url, format!("test-{name}.")))
}

/// With `CONTEXTIQ_CONFORMANCE_QDRANT` set, the Qdrant server of the conformance run (Qdrant's
/// engine behind its gRPC protocol, started once per test process) and a collection of the
/// application on `data_dir`.
pub fn test_qdrant(data_dir: &std::path::Path) -> Option<TestQdrant> {
    std::env::var_os("CONTEXTIQ_CONFORMANCE_QDRANT").filter(|value| !value.is_empty())?;
    let name = data_dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let (url, port) = shared_qdrant();
    Some(TestQdrant { url, port, collection: format!("test-{name}") })
}

pub struct TestQdrant {
    pub url: String,
    pub port: u16,
    pub collection: String,
}

/// One Qdrant test server per test process, on a thread and runtime of its own so that it
/// outlives each test's runtime.
fn shared_qdrant() -> (String, u16) {
    static SERVER: std::sync::OnceLock<(String, u16)> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| start_qdrant_thread(None)).clone()
}

/// Starts a Qdrant test server on its own thread; it lives as long as the test process.
pub fn start_qdrant_thread(api_key: Option<String>) -> (String, u16) {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for Qdrant");
        runtime.block_on(async move {
            // Under target/tmp, which the test script empties: a test process exits without
            // running destructors, so a temporary directory would stay behind.
            let storage = tempfile::Builder::new()
                .prefix("qdrant-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .expect("a directory for Qdrant");
            let address = "127.0.0.1:0".parse().expect("an address");
            let server = contextiq_qdrant_edge_server::EdgeServer::start(address, storage.path(), api_key)
                .await
                .expect("the Qdrant test server starts");
            sender.send((server.url(), server.port())).expect("the test waits");
            std::future::pending::<()>().await;
        });
    });
    receiver.recv().expect("the Qdrant test server's address")
}

/// The environment that points a `contextiq` process at the backends of `data_dir` (see
/// [`test_database_url`], which must have run for it): nothing on the embedded default.
pub fn backend_env(data_dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut environment = Vec::new();
    if let Ok(url) = std::fs::read_to_string(data_dir.join(POSTGRES_URL_FILE)) {
        environment.push(("DATABASE_URL", url));
    }
    if let Some((url, key_prefix)) = test_redis(data_dir) {
        environment.extend([("REDIS_URL", url), ("REDIS_KEY_PREFIX", key_prefix)]);
    }
    if let Some((url, queue_prefix)) = test_rabbitmq(data_dir) {
        environment.extend([("RABBITMQ_URL", url), ("RABBITMQ_QUEUE_PREFIX", queue_prefix)]);
    }
    if let Some(qdrant) = test_qdrant(data_dir) {
        environment.extend([
            ("QDRANT_URL", qdrant.url),
            ("QDRANT_GRPC_PORT", qdrant.port.to_string()),
            ("QDRANT_COLLECTION", qdrant.collection),
        ]);
    }
    environment
}

/// The local embedding model, fetched by `scripts/fetch-model.sh` (the test script runs it).
pub fn model_dir() -> PathBuf {
    std::env::var_os("EMBEDDING_MODEL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"))
}

/// The first admin key, which the server saved in its data directory at first start.
pub fn admin_key(data_dir: &std::path::Path) -> String {
    let path = data_dir.join(contextiq_server::startup::ADMIN_KEY_FILE);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("no admin key at {}: {err}", path.display()))
        .trim()
        .to_owned()
}

/// A client that sends `key` as `X-API-Key` with every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    contextiq_models::use_ring_for_tls();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("a key is a valid header value"));
    reqwest::Client::builder().default_headers(headers).build().expect("a client")
}

/// A client that sends `Authorization: Bearer <token>`.
pub fn client_with_token(token: &str) -> reqwest::Client {
    contextiq_models::use_ring_for_tls();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().expect("a valid header value"));
    reqwest::Client::builder().default_headers(headers).build().expect("a client")
}

/// Every event of a session, paged through `GET /sessions/{id}/events`.
pub async fn all_events(client: &reqwest::Client, address: &str, session_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("{address}/api/v1/sessions/{session_id}/events?limit=1000{cursor}");
        let page = json_of(client.get(url).send().await.expect("request sent"), StatusCode::OK).await;
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return events,
        }
    }
}

/// The JSON body of a response that must have `status`.
pub async fn json_of(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// Checks a response is a problem+json error with `status` and `code`; returns the problem.
pub async fn problem_of(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type =
        response.headers().get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let problem = json_of(response, status).await;
    assert_eq!(content_type, "application/problem+json", "{problem}");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert_eq!(problem["type"], format!("urn:contextiq:problem:{code}"), "{problem}");
    assert!(problem["title"].as_str().is_some_and(|title| !title.is_empty()), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|detail| !detail.is_empty()), "{problem}");
    problem
}

pub fn id_of(body: &Value) -> String {
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_owned()
}

/// The path of the built `contextiq` binary.
pub fn binary() -> PathBuf {
    // The test process talks to the spawned server with reqwest, which needs a TLS provider.
    contextiq_models::use_ring_for_tls();
    PathBuf::from(env!("CARGO_BIN_EXE_contextiq"))
}

/// Reads a Server-Sent Events response one event at a time.
pub struct SseReader {
    response: Response,
    buffer: String,
}

/// One Server-Sent Event: its `event`, `id` and `data` (as JSON).
#[derive(Debug)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl SseReader {
    pub fn new(response: Response) -> SseReader {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        SseReader { response, buffer: String::new() }
    }

    /// The next event (keep-alive comments skipped); `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_owned(), None, String::new());
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", value)) => event = value.trim().to_owned(),
                        Some(("id", value)) => id = Some(value.trim().to_owned()),
                        Some(("data", value)) => data.push_str(value.strip_prefix(' ').unwrap_or(value)),
                        _ => {}
                    }
                }
                if !data.is_empty() {
                    return Some(Sse { event, id, data: serde_json::from_str(&data).expect("JSON data") });
                }
            }
            // Against a stream that never sends what the test waits for, not a measurement.
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }
}

/// `text` percent-encoded for a query string (RFC 3986's unreserved characters kept).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The path of a scope's memories, with further query parameters (`&limit=5`).
pub fn memories_path(scope: &Value, extra: &str) -> String {
    format!("/api/v1/memories?scope={}{extra}", url_encode(&scope.to_string()))
}
