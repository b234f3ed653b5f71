//! A local LLM provider for tests, speaking the real wire protocols: OpenAI chat completions
//! (`POST /v1/chat/completions`) and Anthropic messages (`POST /v1/messages`). A script decides
//! each reply from the request's text.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completion whose text is this.
    Text(String),
    /// An error status with a provider-shaped error body.
    Status(u16),
    /// Never answers (until the client gives up or the process dies).
    Hang,
}

type Script = dyn Fn(usize, &str) -> Reply + Send + Sync;

#[derive(Clone)]
struct FakeState {
    script: Arc<Script>,
    /// Every request body, in arrival order.
    requests: Arc<Mutex<Vec<Value>>>,
    /// The header carrying the key, per request.
    keys: Arc<Mutex<Vec<String>>>,
}

pub struct FakeLlm {
    /// The API root to configure as `LLM_BASE_URL`.
    pub base_url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    keys: Arc<Mutex<Vec<String>>>,
}

impl FakeLlm {
    /// `script(call_index, text_of_all_messages)` decides each reply.
    pub async fn start(script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> FakeLlm {
        let state = FakeState {
            script: Arc::new(script),
            requests: Arc::new(Mutex::new(Vec::new())),
            keys: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(openai))
            .route("/v1/messages", axum::routing::post(anthropic))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLlm { base_url, requests: state.requests, keys: state.keys }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    pub fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

/// All the text of a request: system prompt and messages, whatever the protocol.
fn request_text(body: &Value) -> String {
    let mut text = String::new();
    if let Some(system) = body["system"].as_str() {
        text.push_str(system);
    }
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(content) => text.push_str(content),
            Value::Array(parts) => parts.iter().filter_map(|part| part["text"].as_str()).for_each(|t| text.push_str(t)),
            _ => {}
        }
        text.push('\n');
    }
    text
}

async fn decide(state: &FakeState, headers: &HeaderMap, key_header: &str, body: Value) -> Reply {
    let text = request_text(&body);
    let index = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(body);
        requests.len() - 1
    };
    let key = headers.get(key_header).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    state.keys.lock().unwrap().push(key);
    let reply = (state.script)(index, &text);
    if let Reply::Hang = reply {
        std::future::pending::<()>().await;
    }
    reply
}

async fn openai(State(state): State<FakeState>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let model = body["model"].clone();
    match decide(&state, &headers, "authorization", body).await {
        Reply::Text(text) => Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }))
        .into_response(),
        Reply::Status(status) => {
            error(status, json!({"error": {"message": "scripted failure", "type": "server_error"}}))
        }
        Reply::Hang => unreachable!("hangs before answering"),
    }
}

async fn anthropic(State(state): State<FakeState>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let model = body["model"].clone();
    match decide(&state, &headers, "x-api-key", body).await {
        Reply::Text(text) => Json(json!({
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 80, "output_tokens": 15}
        }))
        .into_response(),
        Reply::Status(status) => {
            error(status, json!({"type": "error", "error": {"type": "api_error", "message": "scripted failure"}}))
        }
        Reply::Hang => unreachable!("hangs before answering"),
    }
}

fn error(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}
