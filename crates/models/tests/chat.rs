//! The chat models against a local server speaking each provider's protocol: what goes on the
//! wire (path, credentials, system prompt, JSON mode), what comes back (text, token usage), and
//! how failures are sorted into transient and permanent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use contextiq_core::Role;
use contextiq_core::generation::{ChatMessage, ChatModel, ChatRequest, ExtractError};
use contextiq_models::chat::DEFAULT_AZURE_API_VERSION;
use contextiq_models::{LlmChatModel, LlmProvider, LlmSettings, ModelError};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789";
const ANSWER: &str = r#"{"facts": []}"#;

/// One request as the fake provider saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Value,
}

/// A server answering OpenAI chat completions, Anthropic messages and Gemini generateContent by
/// path. A model named `status-NNN` gets that status (with the key echoed in the body, as some
/// providers do); one named `slow` waits before answering.
async fn fake_provider() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let recorder = recorder.clone();
        async move {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let path = uri.path().to_owned();
            recorder.lock().unwrap().push(Seen {
                path: path.clone(),
                query: uri.query().map(str::to_owned),
                headers,
                body: body.clone(),
            });
            let model = body["model"].as_str().map(str::to_owned).unwrap_or_else(|| path.clone());
            if let Some(status) = model.split("status-").nth(1).and_then(|rest| rest.get(..3)?.parse::<u16>().ok()) {
                let status = StatusCode::from_u16(status).unwrap();
                let error = json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}});
                return (status, axum::Json(error)).into_response();
            }
            if model.contains("slow") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let reply = if path.ends_with("/chat/completions") {
                json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
                })
            } else if path == "/v1/messages" {
                json!({
                    "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 12, "output_tokens": 5},
                })
            } else if path.ends_with(":generateContent") {
                json!({
                    "candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER}]}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
                })
            } else {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such path"}))).into_response();
            };
            axum::Json(reply).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), seen)
}

fn settings(provider: LlmProvider, base_url: &str, model: &str) -> LlmSettings {
    LlmSettings {
        provider,
        model: model.to_owned(),
        base_url: Some(base_url.to_owned()),
        api_key: Some(KEY.to_owned().into()),
        azure_api_version: None,
        timeout: Duration::from_secs(10),
    }
}

/// A repair turn, as the extractor sends it: prompt, bad reply, correction.
fn request(json: bool) -> ChatRequest {
    let message = |role, content: &str| ChatMessage { role, content: content.to_owned() };
    ChatRequest {
        system: "Extract facts as JSON.".to_owned(),
        messages: vec![
            message(Role::User, "[0] user: I love tea"),
            message(Role::Assistant, "not json"),
            message(Role::User, "Reply again with JSON"),
        ],
        json,
    }
}

async fn chat(settings: LlmSettings, json: bool) -> Result<(String, u64, u64), ExtractError> {
    let model = LlmChatModel::new(settings).unwrap();
    let reply = model.chat(request(json)).await?;
    Ok((reply.text, reply.input_tokens, reply.output_tokens))
}

fn last(seen: &Arc<Mutex<Vec<Seen>>>) -> Seen {
    seen.lock().unwrap().last().cloned().expect("the server was called")
}

#[tokio::test]
async fn openai_chat_completions() {
    let (base_url, seen) = fake_provider().await;
    let openai = settings(LlmProvider::OpenAi, &format!("{base_url}/v1"), "gpt-4o-mini");
    assert_eq!(chat(openai.clone(), true).await.unwrap(), (ANSWER.to_owned(), 12, 5));
    let request = last(&seen);
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(request.body["model"], "gpt-4o-mini");
    assert_eq!(
        request.body["messages"],
        json!([
            {"role": "system", "content": "Extract facts as JSON."},
            {"role": "user", "content": "[0] user: I love tea"},
            {"role": "assistant", "content": "not json"},
            {"role": "user", "content": "Reply again with JSON"},
        ])
    );
    assert_eq!(request.body["response_format"], json!({"type": "json_object"}));

    chat(openai, false).await.unwrap();
    assert_eq!(last(&seen).body.get("response_format"), None, "JSON mode only when asked");
}

#[tokio::test]
async fn anthropic_messages() {
    let (base_url, seen) = fake_provider().await;
    let anthropic = settings(LlmProvider::Anthropic, &format!("{base_url}/v1/"), "claude-3-5-haiku-latest");
    assert_eq!(chat(anthropic, true).await.unwrap(), (ANSWER.to_owned(), 12, 5));
    let request = last(&seen);
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.headers["x-api-key"], KEY);
    assert!(request.headers.contains_key("anthropic-version"));
    assert!(!request.headers.contains_key("authorization"));
    let system = &request.body["system"];
    assert!(
        system == "Extract facts as JSON." || system[0]["text"] == "Extract facts as JSON.",
        "the system prompt is top-level: {system}"
    );
    let messages = request.body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|message| message["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert!(request.body["max_tokens"].as_u64().is_some_and(|max_tokens| max_tokens > 0));
}

#[tokio::test]
async fn gemini_generate_content() {
    let (base_url, seen) = fake_provider().await;
    let gemini = settings(LlmProvider::Gemini, &format!("{base_url}/v1beta"), "gemini-2.0-flash");
    assert_eq!(chat(gemini, true).await.unwrap(), (ANSWER.to_owned(), 12, 5));
    let request = last(&seen);
    assert_eq!(request.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(request.headers["x-goog-api-key"], KEY);
    assert!(!request.query.unwrap_or_default().contains(KEY), "the key stays out of the URL");
    assert_eq!(request.body["systemInstruction"]["parts"][0]["text"], "Extract facts as JSON.");
    assert_eq!(request.body["contents"].as_array().unwrap().len(), 3);
    assert_eq!(request.body["generationConfig"]["responseMimeType"], "application/json");
}

#[tokio::test]
async fn azure_openai_deployments() {
    let (base_url, seen) = fake_provider().await;
    let azure = settings(LlmProvider::Azure, &base_url, "my-deployment");
    assert_eq!(chat(azure.clone(), true).await.unwrap(), (ANSWER.to_owned(), 12, 5));
    let request = last(&seen);
    assert_eq!(request.path, "/openai/deployments/my-deployment/chat/completions");
    assert_eq!(request.query.as_deref(), Some(format!("api-version={DEFAULT_AZURE_API_VERSION}").as_str()));
    assert_eq!(request.headers["api-key"], KEY);
    assert!(!request.headers.contains_key("authorization"), "Azure keys go in api-key only");
    assert_eq!(request.body["messages"][0]["role"], "system");
    assert_eq!(request.body["response_format"], json!({"type": "json_object"}));

    let pinned = LlmSettings { azure_api_version: Some("2025-01-01-preview".to_owned()), ..azure };
    chat(pinned, true).await.unwrap();
    assert_eq!(last(&seen).query.as_deref(), Some("api-version=2025-01-01-preview"));
}

#[tokio::test]
async fn openai_compatible_servers_may_need_no_key() {
    let (base_url, seen) = fake_provider().await;
    let local = LlmSettings {
        api_key: None,
        ..settings(LlmProvider::OpenAiCompatible, &format!("{base_url}/v1"), "llama3.1:8b")
    };
    assert_eq!(chat(local.clone(), true).await.unwrap(), (ANSWER.to_owned(), 12, 5));
    let request = last(&seen);
    assert_eq!(request.path, "/v1/chat/completions");
    assert!(!request.headers.contains_key("authorization"));
    assert_eq!(request.body["model"], "llama3.1:8b");
    assert_eq!(request.body["messages"][0]["role"], "system");

    let with_key = LlmSettings { api_key: Some(KEY.to_owned().into()), ..local };
    chat(with_key, true).await.unwrap();
    assert_eq!(last(&seen).headers["authorization"], format!("Bearer {KEY}"));
}

#[tokio::test]
async fn statuses_sort_failures_and_never_show_the_key() {
    let (base_url, _) = fake_provider().await;
    let check = |provider: LlmProvider, base_url: String, model: &'static str, transient: bool| async move {
        let err = chat(settings(provider, &base_url, model), true).await.unwrap_err();
        let (is_transient, message) = match &err {
            ExtractError::Transient(message) => (true, message),
            ExtractError::Permanent(message) => (false, message),
        };
        assert_eq!(is_transient, transient, "{provider:?} {model}: {err:?}");
        assert!(message.contains(&model["status-".len()..]), "the status is named: {message}");
        assert!(!message.contains(KEY), "the key leaked: {message}");
    };
    let v1 = format!("{base_url}/v1");
    check(LlmProvider::OpenAi, v1.clone(), "status-500", true).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-503", true).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-429", true).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-408", true).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-401", false).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-400", false).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-403", false).await;
    check(LlmProvider::OpenAi, v1.clone(), "status-404", false).await;
    check(LlmProvider::Anthropic, v1.clone(), "status-529", true).await;
    check(LlmProvider::Anthropic, v1, "status-401", false).await;
    check(LlmProvider::Gemini, format!("{base_url}/v1beta"), "status-500", true).await;
    check(LlmProvider::Gemini, format!("{base_url}/v1beta"), "status-403", false).await;
    check(LlmProvider::Azure, base_url.clone(), "status-401", false).await;
    check(LlmProvider::Azure, base_url, "status-502", true).await;
}

#[tokio::test]
async fn network_failures_and_timeouts_are_transient() {
    let unreachable = settings(LlmProvider::OpenAi, "http://127.0.0.1:1/v1", "gpt-4o-mini");
    let err = chat(unreachable, true).await.unwrap_err();
    assert!(matches!(&err, ExtractError::Transient(message) if message.contains("could not connect")), "{err:?}");

    let (base_url, _) = fake_provider().await;
    let slow = LlmSettings {
        timeout: Duration::from_millis(300),
        ..settings(LlmProvider::OpenAi, &format!("{base_url}/v1"), "slow-model")
    };
    let err = chat(slow, true).await.unwrap_err();
    assert!(matches!(&err, ExtractError::Transient(message) if message.contains("timed out")), "{err:?}");
    assert!(!format!("{err:?}").contains("127.0.0.1"), "the URL stays out of the message: {err:?}");
}

#[test]
fn settings_are_checked_up_front() {
    let check = |settings: LlmSettings, expect: &str| {
        let err = LlmChatModel::new(settings).err().expect("refused");
        assert!(matches!(err, ModelError::InvalidSettings(_)), "{err}");
        assert!(err.to_string().contains(expect), "{err} does not say {expect}");
    };
    let base = settings(LlmProvider::OpenAi, "https://api.openai.com/v1", "gpt-4o-mini");
    check(LlmSettings { model: " ".to_owned(), ..base.clone() }, "model name is empty");
    check(LlmSettings { api_key: None, ..base.clone() }, "openai: an API key is required");
    check(LlmSettings { api_key: Some(String::new().into()), ..base.clone() }, "an API key is required");
    check(LlmSettings { base_url: Some("api.openai.com".to_owned()), ..base.clone() }, "not an http(s) URL");
    check(LlmSettings { provider: LlmProvider::Azure, base_url: None, ..base.clone() }, "azure: base_url is required");
    check(
        LlmSettings { provider: LlmProvider::OpenAiCompatible, base_url: None, ..base.clone() },
        "base_url is required",
    );
    // The public APIs are the default roots.
    for provider in [LlmProvider::OpenAi, LlmProvider::Anthropic, LlmProvider::Gemini] {
        assert!(LlmChatModel::new(LlmSettings { provider, base_url: None, ..base.clone() }).is_ok());
    }
}

#[test]
fn providers_read_from_configuration() {
    let providers: Vec<LlmProvider> =
        serde_json::from_value(json!(["openai", "anthropic", "gemini", "azure", "openai_compatible"])).unwrap();
    assert_eq!(
        providers,
        [
            LlmProvider::OpenAi,
            LlmProvider::Anthropic,
            LlmProvider::Gemini,
            LlmProvider::Azure,
            LlmProvider::OpenAiCompatible
        ]
    );
    for provider in providers {
        assert_eq!(serde_json::to_value(provider).unwrap(), provider.as_str());
    }
}
