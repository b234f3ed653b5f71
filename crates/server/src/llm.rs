//! The LLM extractor from settings: a chat model of the configured provider behind the
//! extraction and judging prompts of `contextiq_core::generation::llm`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use contextiq_core::generation::Extractor;
use contextiq_core::generation::llm::LlmExtractor;
use contextiq_models::chat::{LlmChatModel, LlmProvider as ChatProvider, LlmSettings};

use crate::config::{LlmProvider, Settings};

/// `None` when no provider is configured (`LLM_PROVIDER=none`): jobs asking for the llm
/// extractor are then refused with a 422.
pub fn build_llm_extractor(settings: &Settings) -> anyhow::Result<Option<Arc<dyn Extractor>>> {
    let llm = &settings.llm;
    let (provider, fallback_key) = match llm.provider {
        LlmProvider::Openai => (ChatProvider::OpenAi, settings.embedding.openai_api_key.clone()),
        LlmProvider::Anthropic => (ChatProvider::Anthropic, llm.anthropic_api_key.clone()),
        LlmProvider::Gemini => (ChatProvider::Gemini, llm.gemini_api_key.clone()),
        LlmProvider::Azure => (ChatProvider::Azure, llm.azure_api_key.clone()),
        LlmProvider::OpenaiCompatible => (ChatProvider::OpenAiCompatible, None),
        LlmProvider::None => return Ok(None),
    };
    let model = LlmChatModel::new(LlmSettings {
        provider,
        model: llm.model.clone().unwrap_or_default(),
        base_url: llm.base_url.clone(),
        api_key: llm.api_key.clone().or(fallback_key),
        azure_api_version: Some(llm.api_version.clone()),
        timeout: Duration::from_secs(llm.timeout_seconds.max(1)),
    })
    .context("invalid LLM settings")?;
    Ok(Some(Arc::new(LlmExtractor::new(Arc::new(model)))))
}
