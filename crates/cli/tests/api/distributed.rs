//! The distributed deployment as separate processes: a gateway, the sessions and memory roles
//! and two workers, on PostgreSQL, Redis and RabbitMQ. A worker killed mid-job, RabbitMQ
//! restarted, Redis stopped: every job still completes once, requests still succeed, and one
//! trace follows a generate request through the processes.
//!
//! Needs the conformance run's PostgreSQL; Redis and RabbitMQ are private instances of this
//! test, since it stops them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{SseReader, id_of, json_of, skip_unless_required, test_database_url};
use crate::otlp::OtlpReceiver;
use crate::process::ServerProcess;

const FACTS: &str = r#"{"facts": [
    {"fact": "User plays the cello", "topic": "USER_PERSONAL_INFO", "confidence": 0.9,
     "source_turns": [0], "action": "remember"},
    {"fact": "User prefers tea over coffee", "topic": "USER_PREFERENCES", "confidence": 0.9,
     "source_turns": [1], "action": "remember"}
]}"#;

const SUMMARY: &str = r#"{"summary": "User plays the cello and prefers tea. [#1] [#2]"}"#;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_as_processes_survive_a_killed_worker_a_rabbitmq_restart_and_redis_down() {
    let data_dir = tempfile::tempdir().unwrap();
    // The embedded run has no PostgreSQL: the test belongs to the conformance runs.
    if test_database_url(data_dir.path()).await.is_none() {
        eprintln!("skipped: needs the conformance run's PostgreSQL");
        return;
    }
    if which("rabbitmq-server").is_none() || which("redis-server").is_none() {
        skip_unless_required("the roles as processes", "RabbitMQ and Redis are not installed");
        return;
    }
    let rabbitmq = tokio::task::spawn_blocking(PrivateRabbitMq::start).await.unwrap();
    let mut redis = PrivateRedis::start();
    let otlp = OtlpReceiver::start();
    // The first extraction hangs: its worker is killed in the middle of it.
    let fake = FakeLlm::start(|call, prompt| match call {
        0 => Reply::Hang,
        _ if prompt.contains("You compact the history") => Reply::Text(SUMMARY.to_owned()),
        _ => Reply::Text(FACTS.to_owned()),
    })
    .await;

    let rabbitmq_url = rabbitmq.url();
    let redis_url = redis.url();
    let otlp_endpoint = otlp.endpoint();
    let common: Vec<(&str, &str)> = vec![
        ("RABBITMQ_URL", &rabbitmq_url),
        ("RABBITMQ_QUEUE_PREFIX", "distributed."),
        ("REDIS_URL", &redis_url),
        ("REDIS_SOCKET_TIMEOUT", "0.5"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_endpoint),
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "test-model"),
        ("LLM_BASE_URL", &fake.base_url),
        ("LLM_API_KEY", "sk-test"),
        ("WORKER_LEASE_SECONDS", "3"),
        ("WORKER_POLL_INTERVAL_MS", "100"),
        ("WORKER_CONCURRENCY", "1"),
    ];
    let start = |role: &str, extra: &[(&str, &str)]| {
        let service = format!("contextiq-{role}");
        let mut environment = common.clone();
        environment.extend([("CONTEXTIQ_ROLE", role), ("SERVICE_NAME", service.as_str())]);
        environment.extend(extra.iter().copied());
        ServerProcess::start_with(data_dir.path(), &environment)
    };
    // The sessions role first: it creates the admin key the others read.
    let sessions = start("sessions", &[]);
    let memory = start("memory", &[]);
    let mut workers = vec![start("worker", &[]), start("worker", &[])];
    let gateway = start("gateway", &[("SESSIONS_URL", &sessions.address), ("MEMORY_URL", &memory.address)]);
    let client = gateway.client.clone();
    let api = |path: &str| format!("{}/api/v1{path}", gateway.address);

    let health = json_of(client.get(format!("{}/health", gateway.address)).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(health["services"], json!({"sessions": "ok", "memory": "ok"}));

    // A session through the gateway; its events become memories by the llm extractor.
    let session = client.post(api("/sessions")).json(&json!({"user_id": "cellist"})).send().await.unwrap();
    let session_id = id_of(&json_of(session, StatusCode::CREATED).await);
    let events = json!({"events": [
        {"author": "user", "role": "user", "content": "I play the cello."},
        {"author": "user", "role": "user", "content": "I prefer tea over coffee."}
    ]});
    let appended = client.post(api(&format!("/sessions/{session_id}/events"))).json(&events).send().await.unwrap();
    assert_eq!(appended.status(), StatusCode::CREATED);
    let generate = json!({"source_type": "session", "source_reference": session_id, "config": {"extractor": "llm"}});
    let response = client
        .post(api("/memories/generate"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&generate)
        .send()
        .await
        .unwrap();
    let job_id = id_of(&json_of(response, StatusCode::ACCEPTED).await);

    // Kill the worker that holds the job, in the middle of its extraction.
    wait_until("the first extraction starts", Duration::from_secs(30), || !fake.requests().is_empty()).await;
    let running = workers
        .iter()
        .position(|worker| worker.log_lines().iter().any(|line| line["message"] == "job started"))
        .expect("a worker started the job");
    let mut killed = workers.remove(running);
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().unwrap();

    // The other worker takes the job over once the lease lapses, and finishes it once.
    let job = finished(&client, &api(&format!("/jobs/{job_id}"))).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "the killed attempt counts: {job}");
    assert_eq!(job["counts"]["added"], 2, "{job}");
    assert_eq!(fake.requests().len(), 2, "one extraction per attempt");
    let scope = "%7B%22user_id%22%3A%22cellist%22%7D";
    let listed =
        json_of(client.get(api(&format!("/memories?scope={scope}"))).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed["memories"].as_array().map(Vec::len), Some(2), "no duplicates: {listed}");
    // The Agent Engine surface through the gateway: sessions from the sessions role, memories
    // from the memory role.
    let engine = format!("{}/v1beta1/reasoningEngines/default", gateway.address);
    let read = client.get(format!("{engine}/sessions/{session_id}")).send().await.unwrap();
    assert_eq!(json_of(read, StatusCode::OK).await["userId"], "cellist");
    let retrieve = json!({"scope": {"user_id": "cellist"}, "simpleRetrievalParams": {"pageSize": 10}});
    let retrieved = client.post(format!("{engine}/memories:retrieve")).json(&retrieve).send().await.unwrap();
    let retrieved = json_of(retrieved, StatusCode::OK).await;
    assert_eq!(retrieved["retrievedMemories"].as_array().map(Vec::len), Some(2), "{retrieved}");

    // Live streams across processes: a second sessions process streams the events appended
    // through the first (behind the gateway), and the gateway relays a stream as it goes.
    let other_sessions = start("sessions", &[]);
    let stream_path = format!("/api/v1/sessions/{session_id}/events/stream");
    let elsewhere = other_sessions.client.get(format!("{}{stream_path}", other_sessions.address)).send();
    let mut elsewhere = SseReader::new(elsewhere.await.unwrap());
    let mut relayed = SseReader::new(client.get(format!("{}{stream_path}", gateway.address)).send().await.unwrap());
    let event = json!({"author": "user", "role": "user", "content": "Is my cello lesson on Friday?"});
    let appended = client.post(api(&format!("/sessions/{session_id}/events"))).json(&event).send().await.unwrap();
    assert_eq!(appended.status(), StatusCode::CREATED);
    for reader in [&mut elsewhere, &mut relayed] {
        let sent = reader.next().await.unwrap();
        assert_eq!((sent.id.as_deref(), &sent.data["content"]), (Some("3"), &json!("Is my cello lesson on Friday?")));
    }
    drop(other_sessions);
    // Compaction and context are the memory role's, through the gateway.
    let compact = client.post(api(&format!("/sessions/{session_id}/compact"))).json(&json!({})).send().await.unwrap();
    let compaction =
        finished(&client, &api(&format!("/jobs/{}", id_of(&json_of(compact, StatusCode::ACCEPTED).await)))).await;
    assert_eq!(compaction["compaction"]["end_seq"], 3, "{compaction}");
    assert_eq!(compaction["compaction"]["method"], "llm", "{compaction}");
    let context =
        client.post(api(&format!("/sessions/{session_id}/context"))).json(&json!({"budget_tokens": 500})).send();
    let context = json_of(context.await.unwrap(), StatusCode::OK).await;
    assert_eq!(context["summaries"][0]["end_seq"], 3, "{context}");
    assert_eq!(context["memories"].as_array().map(Vec::len), Some(2), "the cellist's memories: {context}");
    // A session's history through the gateway (the sessions role): fork, rewind, state at an event.
    let fork = client.post(api(&format!("/sessions/{session_id}/fork"))).json(&json!({"at_seq": 2})).send();
    let fork = json_of(fork.await.unwrap(), StatusCode::CREATED).await;
    assert_eq!((fork["event_count"].clone(), fork["forked_from"]["seq"].clone()), (json!(2), json!(2)), "{fork}");
    let rewind = client.post(api(&format!("/sessions/{}/rewind", id_of(&fork)))).json(&json!({"to_seq": 1})).send();
    assert_eq!(json_of(rewind.await.unwrap(), StatusCode::CREATED).await["event_count"], 3);
    let state = client.get(api(&format!("/sessions/{session_id}/state?at_seq=1"))).send().await.unwrap();
    assert_eq!(json_of(state, StatusCode::OK).await["at_seq"], 1);

    // RabbitMQ down: a job is still accepted (the job table is its outbox), and runs once
    // RabbitMQ is back.
    let rabbitmq = tokio::task::spawn_blocking(move || {
        rabbitmq.services("stop-rabbitmq");
        rabbitmq
    })
    .await
    .unwrap();
    let inline = json!({"source_type": "events", "scope": {"user_id": "cellist"},
        "events": [{"role": "user", "content": "I live in Lisbon."}]});
    let response = client.post(api("/memories/generate")).json(&inline).send().await.unwrap();
    let queued_while_down = id_of(&json_of(response, StatusCode::ACCEPTED).await);
    let rabbitmq = tokio::task::spawn_blocking(move || {
        rabbitmq.services("start-rabbitmq");
        rabbitmq
    })
    .await
    .unwrap();
    let job = finished(&client, &api(&format!("/jobs/{queued_while_down}"))).await;
    assert_eq!((job["status"].as_str(), job["counts"]["added"].as_u64()), (Some("completed"), Some(1)), "{job}");

    // Redis down: every request is served from PostgreSQL.
    redis.stop();
    let session = client.post(api("/sessions")).json(&json!({"user_id": "no-cache"})).send().await.unwrap();
    let other_id = id_of(&json_of(session, StatusCode::CREATED).await);
    for _ in 0..2 {
        let read = client.get(api(&format!("/sessions/{other_id}"))).send().await.unwrap();
        json_of(read, StatusCode::OK).await;
    }
    let read = client.get(api(&format!("/memories/{}", listed["memories"][0]["id"].as_str().unwrap()))).send();
    json_of(read.await.unwrap(), StatusCode::OK).await;

    // One trace: the gateway's request, the memory role's request it forwarded, and the
    // worker's job, across RabbitMQ.
    let spans = otlp
        .wait_for(
            |spans| {
                let services: Vec<&str> =
                    spans.iter().filter(|span| span.trace_id == TRACE_ID).map(|span| span.service.as_str()).collect();
                ["contextiq-gateway", "contextiq-memory", "contextiq-worker"].iter().all(|name| services.contains(name))
            },
            Duration::from_secs(30),
        )
        .await;
    let traced: Vec<_> = spans.iter().filter(|span| span.trace_id == TRACE_ID).collect();
    let gateway_span = traced.iter().find(|span| span.service == "contextiq-gateway").unwrap();
    assert_eq!(
        gateway_span.parent_span_id.as_deref(),
        Some("00f067aa0ba902b7"),
        "the client's span is the gateway's parent"
    );
    let memory_span = traced.iter().find(|span| span.service == "contextiq-memory").unwrap();
    assert_eq!(memory_span.parent_span_id.as_ref(), Some(&gateway_span.span_id), "the gateway forwards its context");
    assert!(
        traced.iter().any(|span| span.service == "contextiq-worker" && span.name == "job"),
        "the worker's job joins the trace: {traced:?}"
    );

    // A service down: the gateway says so, in its health and as a 502 problem.
    let mut sessions = sessions;
    sessions.child.kill().expect("SIGKILL");
    sessions.child.wait().unwrap();
    let health = client.get(format!("{}/health", gateway.address)).send().await.unwrap();
    let health = json_of(health, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(health["services"], json!({"sessions": "unavailable", "memory": "ok"}));
    let refused = client.post(api("/sessions")).json(&json!({"user_id": "u"})).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], "upstream_unavailable");
    drop(rabbitmq);
}

async fn finished(client: &reqwest::Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let job = json_of(client.get(url).send().await.unwrap(), StatusCode::OK).await;
        if job["status"] == "completed" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until(what: &str, timeout: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn which(program: &str) -> Option<()> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(program).exists());
    found.then_some(())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A RabbitMQ node of this test, started and stopped with `scripts/services.sh`.
struct PrivateRabbitMq {
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRabbitMq {
    fn start() -> PrivateRabbitMq {
        // AMQP on `port`, Erlang distribution on `port + 1`: both must be free.
        let port = loop {
            let port = free_port();
            if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let node = PrivateRabbitMq { port, dir: tempfile::tempdir().unwrap() };
        node.services("start-rabbitmq");
        node
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn services(&self, command: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services.sh");
        let status = Command::new(script)
            .arg(command)
            .env("CONTEXTIQ_TEST_RABBITMQ_PORT", self.port.to_string())
            .env("CONTEXTIQ_TEST_RABBITMQ_DIST_PORT", (self.port + 1).to_string())
            .env("CONTEXTIQ_TEST_RABBITMQ_NODE", format!("ciq-distributed-{}@localhost", self.port))
            .env("CONTEXTIQ_TEST_RABBITMQ_DIR", self.dir.path())
            .status()
            .expect("run scripts/services.sh");
        assert!(status.success(), "scripts/services.sh {command}: {status}");
    }
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        self.services("stop-rabbitmq");
    }
}

/// A redis-server of this test, in the foreground so killing it stops it.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { port, child: Some(child) }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
