//! Chat models for the LLM extractor, over `genai`: OpenAI, Anthropic, Gemini, Azure OpenAI and
//! any server speaking OpenAI chat completions (Ollama, vLLM, LiteLLM, ...).
//!
//! Every call goes to one fully resolved target (adapter, URL, credential) built from
//! [`LlmSettings`] once, so genai never guesses the provider from the model name and never reads
//! the environment.

use std::time::Duration;

use async_trait::async_trait;
use contextiq_core::Role;
use contextiq_core::generation::{ChatModel, ChatReply, ChatRequest, ExtractError};
use genai::adapter::AdapterKind;
use genai::chat::{ChatMessage as GenaiMessage, ChatOptions, ChatRequest as GenaiRequest, ChatResponseFormat};
use genai::resolver::{AuthData, Endpoint};
use genai::{Client, Headers, ModelIden, ServiceTarget, WebConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The Azure OpenAI API version used when the settings name none (the latest GA release).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// How much of an error response's body goes into an error message.
const MAX_ERROR_BODY_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LlmProvider {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[serde(rename = "gemini")]
    Gemini,
    /// Azure OpenAI: `model` is the deployment name, `base_url` the resource endpoint.
    #[serde(rename = "azure")]
    Azure,
    /// Any server speaking OpenAI chat completions at `base_url`; the key is optional.
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
}

impl LlmProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmProvider::OpenAi => "openai",
            LlmProvider::Anthropic => "anthropic",
            LlmProvider::Gemini => "gemini",
            LlmProvider::Azure => "azure",
            LlmProvider::OpenAiCompatible => "openai_compatible",
        }
    }

    /// The API root the provider's paths are joined to, when the settings give none.
    fn default_base_url(self) -> Option<&'static str> {
        match self {
            LlmProvider::OpenAi => Some("https://api.openai.com/v1/"),
            LlmProvider::Anthropic => Some("https://api.anthropic.com/v1/"),
            LlmProvider::Gemini => Some("https://generativelanguage.googleapis.com/v1beta/"),
            LlmProvider::Azure | LlmProvider::OpenAiCompatible => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub provider: LlmProvider,
    /// The model name (the deployment name on Azure).
    pub model: String,
    /// The API root, e.g. `https://api.openai.com/v1`, `http://localhost:11434/v1` (Ollama),
    /// `https://api.anthropic.com/v1`, `https://generativelanguage.googleapis.com/v1beta`, or for
    /// Azure the resource endpoint `https://{resource}.openai.azure.com`. Required for Azure and
    /// OpenAI-compatible servers; the others default to the public API.
    pub base_url: Option<String>,
    /// Required except for OpenAI-compatible servers.
    pub api_key: Option<SecretString>,
    /// Azure only; defaults to [`DEFAULT_AZURE_API_VERSION`].
    pub azure_api_version: Option<String>,
    /// For the whole request, reply included.
    pub timeout: Duration,
}

/// A [`ChatModel`] on one provider and model.
pub struct LlmChatModel {
    client: Client,
    target: ServiceTarget,
    provider: LlmProvider,
    text_options: ChatOptions,
    json_options: ChatOptions,
    /// Kept to scrub the key from error messages, whatever a server or library echoes back.
    api_key: Option<SecretString>,
}

impl LlmChatModel {
    pub fn new(settings: LlmSettings) -> Result<LlmChatModel, ModelError> {
        crate::use_ring_for_tls();
        let LlmSettings { provider, model, base_url, api_key, azure_api_version, timeout } = settings;
        let invalid = |reason: String| ModelError::InvalidSettings(format!("{}: {reason}", provider.as_str()));
        if model.trim().is_empty() {
            return Err(invalid("the model name is empty".to_owned()));
        }
        let api_key = api_key.filter(|key| !key.expose_secret().trim().is_empty());
        if api_key.is_none() && provider != LlmProvider::OpenAiCompatible {
            return Err(invalid("an API key is required".to_owned()));
        }
        let base_url = match base_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
            Some(url) => url.to_owned(),
            None => provider.default_base_url().ok_or_else(|| invalid("base_url is required".to_owned()))?.to_owned(),
        };
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(invalid(format!("base_url {base_url:?} is not an http(s) URL")));
        }
        // genai joins its paths ("chat/completions", "messages") onto the root, which must end in a
        // slash or its last segment is replaced.
        let root = format!("{}/", base_url.trim_end_matches('/'));
        let key = api_key.as_ref().map(|key| key.expose_secret().to_owned());

        let target = match provider {
            LlmProvider::OpenAi | LlmProvider::Anthropic | LlmProvider::Gemini => {
                let adapter = match provider {
                    LlmProvider::Anthropic => AdapterKind::Anthropic,
                    LlmProvider::Gemini => AdapterKind::Gemini,
                    _ => AdapterKind::OpenAI,
                };
                ServiceTarget {
                    endpoint: Endpoint::from_owned(root),
                    auth: key.map(AuthData::Key).unwrap_or(AuthData::None),
                    model: ModelIden::new(adapter, model),
                }
            }
            // genai's OpenAI adapter always sends `Authorization: Bearer`, and Azure wants its key in
            // `api-key` and the deployment in the path, so the request URL and headers are overridden
            // whole; the body stays OpenAI's.
            LlmProvider::Azure => {
                let api_version = azure_api_version.as_deref().unwrap_or(DEFAULT_AZURE_API_VERSION);
                let url = format!("{root}openai/deployments/{model}/chat/completions?api-version={api_version}");
                let headers = key.map(|key| Headers::from(("api-key".to_owned(), key))).unwrap_or_default();
                ServiceTarget {
                    endpoint: Endpoint::from_owned(root),
                    auth: AuthData::RequestOverride { url, headers },
                    model: ModelIden::new(AdapterKind::OpenAI, model),
                }
            }
            LlmProvider::OpenAiCompatible => {
                // Without a key, the OpenAI adapter refuses to build a request; the override sends
                // none, as local servers expect.
                let auth = match key {
                    Some(key) => AuthData::Key(key),
                    None => AuthData::RequestOverride {
                        url: format!("{root}chat/completions"),
                        headers: Headers::default(),
                    },
                };
                ServiceTarget {
                    endpoint: Endpoint::from_owned(root),
                    auth,
                    model: ModelIden::new(AdapterKind::OpenAI, model),
                }
            }
        };

        let client = Client::builder()
            .with_web_config(WebConfig::default().with_timeout(timeout))
            .build()
            .map_err(|err| ModelError::Api(format!("cannot build the HTTP client: {err}")))?;
        let text_options = ChatOptions::default();
        let json_options = match provider {
            // genai maps JSON mode to `response_format: {"type": "json_object"}`.
            LlmProvider::OpenAi | LlmProvider::Azure | LlmProvider::OpenAiCompatible => {
                ChatOptions::default().with_response_format(ChatResponseFormat::JsonMode)
            }
            // genai sends Gemini's JSON mime type only with a schema; without one it is set in the
            // body. The merge is shallow, so no other generation option may be set alongside.
            LlmProvider::Gemini => ChatOptions::default()
                .with_extra_body(serde_json::json!({"generationConfig": {"responseMimeType": "application/json"}})),
            // Anthropic has no JSON mode; the prompt asks for JSON and the extractor validates it.
            LlmProvider::Anthropic => ChatOptions::default(),
        };
        Ok(LlmChatModel { client, target, provider, text_options, json_options, api_key })
    }

    fn to_genai_request(&self, request: ChatRequest) -> GenaiRequest {
        let messages = request.messages.into_iter().map(|message| match message.role {
            Role::Assistant => GenaiMessage::assistant(message.content),
            Role::System => GenaiMessage::system(message.content),
            // Tool results need call ids the request does not carry; they read as user text.
            Role::User | Role::Tool => GenaiMessage::user(message.content),
        });
        let genai_request = GenaiRequest::from_messages(messages.collect());
        if request.system.is_empty() { genai_request } else { genai_request.with_system(request.system) }
    }

    /// Sorts a failure into retryable or not, in words that never include the API key.
    fn classify(&self, err: genai::Error) -> ExtractError {
        let provider = self.provider.as_str();
        let error = match err {
            genai::Error::WebModelCall { webc_error, .. } | genai::Error::WebAdapterCall { webc_error, .. } => {
                match webc_error {
                    genai::webc::Error::ResponseFailedStatus { status, body, .. } => {
                        by_status(status.as_u16(), format!("{provider} answered {status}: {}", excerpt(&body)))
                    }
                    genai::webc::Error::Reqwest(reqwest_error) => describe_reqwest_error(provider, reqwest_error),
                    other => ExtractError::Transient(format!("{provider} sent an unreadable response: {other}")),
                }
            }
            genai::Error::HttpError { status, body, .. } => {
                by_status(status.as_u16(), format!("{provider} answered {status}: {}", excerpt(&body)))
            }
            // The payload in this error is the whole prompt: only the cause is worth keeping.
            genai::Error::ChatResponseGeneration { cause, .. } => {
                ExtractError::Transient(format!("{provider} sent an unexpected response: {cause}"))
            }
            err @ (genai::Error::NoChatResponse { .. }
            | genai::Error::InvalidJsonResponseElement { .. }
            | genai::Error::ChatResponse { .. }
            | genai::Error::StreamParse { .. }
            | genai::Error::WebStream { .. }
            | genai::Error::JsonValueExt(_)
            | genai::Error::SerdeJson(_)) => {
                ExtractError::Transient(format!("{provider} sent an unexpected response: {err}"))
            }
            // What remains is a request genai cannot build (settings, credentials, unsupported
            // content): retrying will not change it.
            err => ExtractError::Permanent(format!("{provider} request failed: {err}")),
        };
        self.redact(error)
    }

    fn redact(&self, error: ExtractError) -> ExtractError {
        let Some(key) = self.api_key.as_ref().map(|key| key.expose_secret()) else {
            return error;
        };
        match error {
            ExtractError::Transient(message) => ExtractError::Transient(message.replace(key, "[redacted]")),
            ExtractError::Permanent(message) => ExtractError::Permanent(message.replace(key, "[redacted]")),
        }
    }
}

#[async_trait]
impl ChatModel for LlmChatModel {
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply, ExtractError> {
        let options = if request.json { &self.json_options } else { &self.text_options };
        let genai_request = self.to_genai_request(request);
        let response = self
            .client
            .exec_chat(self.target.clone(), genai_request, Some(options))
            .await
            .map_err(|err| self.classify(err))?;
        let tokens = |count: Option<i32>| count.map_or(0, |count| u64::try_from(count).unwrap_or(0));
        let input_tokens = tokens(response.usage.prompt_tokens);
        let output_tokens = tokens(response.usage.completion_tokens);
        let Some(text) = response.content.joined_texts() else {
            // A refusal or a filtered reply: another attempt may well get an answer.
            let stop_reason = response.stop_reason.as_ref().map_or("unknown", |reason| reason.raw());
            return Err(ExtractError::Transient(format!(
                "{} returned no text (stop reason {stop_reason})",
                self.provider.as_str()
            )));
        };
        Ok(ChatReply { text, input_tokens, output_tokens })
    }
}

/// Client errors are the request's fault and fail the job; throttling and server errors pass.
fn by_status(status: u16, message: String) -> ExtractError {
    match status {
        408 | 429 | 500..=599 => ExtractError::Transient(message),
        _ => ExtractError::Permanent(message),
    }
}

fn describe_reqwest_error(provider: &str, reqwest_error: reqwest::Error) -> ExtractError {
    if let Some(status) = reqwest_error.status() {
        return by_status(status.as_u16(), format!("{provider} answered {status}"));
    }
    let what = if reqwest_error.is_timeout() {
        "timed out"
    } else if reqwest_error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // The URL stays out: Gemini and others have carried keys in query strings. The causes say
    // what went wrong (refused, DNS, TLS).
    let reqwest_error = reqwest_error.without_url();
    let mut message = format!("{provider} request {what}: {reqwest_error}");
    let mut source = std::error::Error::source(&reqwest_error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    ExtractError::Transient(message)
}

fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(MAX_ERROR_BODY_CHARS) {
        Some((end, _)) => format!("{}...", &body[..end]),
        None => body.to_owned(),
    }
}
