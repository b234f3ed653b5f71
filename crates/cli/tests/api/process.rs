//! The real binary as a process: crash safety under SIGKILL, graceful SIGTERM, JSON logs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{
    admin_key, all_events, backend_env, binary, client_with_key, id_of, json_of, model_dir, test_database_url,
};

/// A `contextiq serve` process and the log lines it wrote to stderr.
pub struct ServerProcess {
    pub child: Child,
    pub address: String,
    /// Sends the first admin key.
    pub client: reqwest::Client,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> ServerProcess {
        ServerProcess::start_with(data_dir, &[])
    }

    /// Starts `contextiq serve` on `data_dir` with the test's backends, then `environment`.
    pub fn start_with(data_dir: &Path, environment: &[(&str, &str)]) -> ServerProcess {
        let mut child = Command::new(binary())
            .envs(backend_env(data_dir))
            .envs(environment.iter().copied())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .env("LOG_FORMAT", "json")
            .env("EMBEDDING_MODEL_PATH", model_dir())
            .env("RATE_LIMIT_PER_SECOND", "0")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let lines = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"] == "listening"
                {
                    let _ = address_sender.send(entry["address"].as_str().unwrap_or_default().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let address = address_receiver.recv_timeout(Duration::from_secs(30)).expect("the server logs its address");
        let client = client_with_key(&admin_key(data_dir));
        ServerProcess { child, address: format!("http://{address}"), client, logs }
    }

    pub fn log_lines(&self) -> Vec<Value> {
        self.logs.lock().unwrap().iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends from many clients, SIGKILL mid-burst, restart on the same data: every event that
/// was acknowledged with a 201 is there, in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let data_dir = tempfile::tempdir().unwrap();
    test_database_url(data_dir.path()).await;
    let mut server = ServerProcess::start(data_dir.path());
    let client = server.client.clone();
    let session = client
        .post(format!("{}/api/v1/sessions", server.address))
        .json(&json!({"user_id": "crash"}))
        .send()
        .await
        .unwrap();
    let session_id = id_of(&json_of(session, StatusCode::CREATED).await);
    let url = format!("{}/api/v1/sessions/{session_id}/events", server.address);

    let acked = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|client_idx| {
            let (client, url, acked, killed) = (client.clone(), url.clone(), acked.clone(), killed.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !killed.load(Ordering::SeqCst) {
                    let body = json!({"author": "u", "content": format!("{client_idx}:{n}")});
                    let Ok(response) = client.post(&url).json(&body).send().await else { break };
                    if response.status() != StatusCode::CREATED {
                        break;
                    }
                    let Ok(event) = response.json::<Value>().await else { break };
                    acked
                        .lock()
                        .unwrap()
                        .push((event["seq"].as_i64().unwrap(), event["content"].as_str().unwrap().to_owned()));
                    n += 1;
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().expect("SIGKILL");
    killed.store(true, Ordering::SeqCst);
    server.child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    drop(server);

    let server = ServerProcess::start(data_dir.path());
    let stored: Vec<(i64, String)> = all_events(&client, &server.address, &session_id)
        .await
        .iter()
        .map(|event| (event["seq"].as_i64().unwrap(), event["content"].as_str().unwrap().to_owned()))
        .collect();
    for event in &acked {
        assert!(
            stored.contains(event),
            "acknowledged event {event:?} was lost ({} acked, {} stored)",
            acked.len(),
            stored.len()
        );
    }
    let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>(), "no gaps or duplicates");
}

/// SIGTERM: the in-flight request completes, the process exits 0, and every log line is
/// JSON with the request's correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_with_json_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    test_database_url(data_dir.path()).await;
    let mut server = ServerProcess::start(data_dir.path());
    let client = server.client.clone();
    let response = client
        .post(format!("{}/api/v1/sessions", server.address))
        .header("x-correlation-id", "corr-42")
        .json(&json!({"user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.child.wait().unwrap();
        (exit, server)
    })
    .await
    .unwrap();
    let (exit, server) = exit;
    assert!(exit.success(), "exit status {exit:?}");
    std::thread::sleep(Duration::from_millis(100));

    let lines = server.log_lines();
    assert_eq!(lines.len(), server.logs.lock().unwrap().len(), "every log line is JSON");
    let request_line = lines
        .iter()
        .find(|line| line["correlation_id"] == "corr-42" && line["message"] == "request completed")
        .unwrap_or_else(|| panic!("no request log line in {lines:?}"));
    for field in ["timestamp", "level", "service", "duration_ms", "status", "route", "method"] {
        assert!(!request_line[field].is_null(), "{field} missing from {request_line}");
    }
    assert!(lines.iter().any(|line| line["message"] == "stopped"), "{lines:?}");
    let key = admin_key(data_dir.path());
    assert!(server.logs.lock().unwrap().iter().all(|line| !line.contains(&key)), "the admin key was logged");
}

/// A worker killed (SIGKILL) in the middle of a generation job: after a restart the job's
/// lease lapses, another attempt runs it, and it completes once, with no duplicate memories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_job_survives_its_worker_being_killed() {
    const FACTS: &str = r#"{"facts": [
        {"fact": "User plays the cello", "topic": "USER_PERSONAL_INFO", "confidence": 0.9,
         "source_turns": [0], "action": "remember"},
        {"fact": "User prefers tea over coffee", "topic": "USER_PREFERENCES", "confidence": 0.9,
         "source_turns": [1], "action": "remember"}
    ]}"#;
    // The first call hangs: the job is mid-extraction when the process dies.
    let fake = FakeLlm::start(|call, _| if call == 0 { Reply::Hang } else { Reply::Text(FACTS.to_owned()) }).await;
    let environment = [
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "test-model"),
        ("LLM_BASE_URL", fake.base_url.as_str()),
        ("LLM_API_KEY", "sk-test"),
        ("WORKER_LEASE_SECONDS", "3"),
        ("WORKER_POLL_INTERVAL_MS", "100"),
    ];
    let data_dir = tempfile::tempdir().unwrap();
    test_database_url(data_dir.path()).await;
    let mut server = ServerProcess::start_with(data_dir.path(), &environment);
    let client = server.client.clone();
    let scope = json!({"user_id": "crash"});
    let body = json!({"source_type": "events", "scope": scope, "config": {"extractor": "llm"}, "events": [
        {"content": "I play the cello."}, {"content": "I prefer tea over coffee."}
    ]});
    let response =
        client.post(format!("{}/api/v1/memories/generate", server.address)).json(&body).send().await.unwrap();
    let job_id = id_of(&json_of(response, StatusCode::ACCEPTED).await);
    while fake.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job_url = format!("{}/api/v1/jobs/{job_id}", server.address);
    let job = json_of(client.get(&job_url).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(job["status"], "running");
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    drop(server);

    let server = ServerProcess::start_with(data_dir.path(), &environment);
    let job_url = format!("{}/api/v1/jobs/{job_id}", server.address);
    let job = loop {
        let job = json_of(client.get(&job_url).send().await.unwrap(), StatusCode::OK).await;
        if job["status"] == "completed" || job["status"] == "failed" {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "the lost attempt counts: {job}");
    assert_eq!(job["counts"]["added"], 2);
    assert_eq!(fake.requests().len(), 2, "one call per attempt");
    let scope = "%7B%22user_id%22%3A%22crash%22%7D";
    let listed = client.get(format!("{}/api/v1/memories?scope={scope}", server.address)).send().await.unwrap();
    let listed = json_of(listed, StatusCode::OK).await;
    assert_eq!(listed["memories"].as_array().unwrap().len(), 2, "no duplicates: {listed}");
}
