//! Embeddings from a server speaking the OpenAI embeddings protocol (`POST {base}/embeddings`).

use async_trait::async_trait;
use contextiq_core::Embedder;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::ModelError;

#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// E.g. `https://api.openai.com/v1`, `http://localhost:11434/v1` (Ollama).
    pub base_url: String,
    pub model: String,
    pub api_key: Option<SecretString>,
    /// The model's output size; requests ask for exactly this (`dimensions`) when the model
    /// supports shortening, and responses of another size are refused.
    pub dimension: usize,
    /// Send `dimensions` in requests (OpenAI text-embedding-3 models accept it; many servers don't).
    pub send_dimensions: bool,
    pub batch_size: usize,
}

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    options: OpenAiOptions,
    model_id: String,
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    pub fn new(options: OpenAiOptions) -> Result<OpenAiEmbedder, ModelError> {
        crate::use_ring_for_tls();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|err| ModelError::Api(err.to_string()))?;
        let model_id = format!("openai:{}:{}", options.model, options.dimension);
        Ok(OpenAiEmbedder { client, options, model_id })
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let url = format!("{}/embeddings", self.options.base_url.trim_end_matches('/'));
        let body = EmbeddingsRequest {
            model: &self.options.model,
            input: texts,
            dimensions: self.options.send_dimensions.then_some(self.options.dimension),
        };
        let mut request = self.client.post(&url).json(&body);
        if let Some(key) = &self.options.api_key {
            // Azure OpenAI reads `api-key`; everyone else `Authorization: Bearer`.
            request = request.bearer_auth(key.expose_secret()).header("api-key", key.expose_secret());
        }
        let response = request.send().await.map_err(|err| ModelError::Api(format!("{url}: {err}")))?;
        let status = response.status();
        if !status.is_success() {
            let detail = response.text().await.unwrap_or_default();
            return Err(ModelError::Api(format!(
                "{url} answered {status}: {}",
                detail.chars().take(300).collect::<String>()
            )));
        }
        let mut parsed: EmbeddingsResponse =
            response.json().await.map_err(|err| ModelError::Api(format!("{url}: unexpected response: {err}")))?;
        if parsed.data.len() != texts.len() {
            return Err(ModelError::Api(format!("asked for {} embeddings, got {}", texts.len(), parsed.data.len())));
        }
        parsed.data.sort_by_key(|item| item.index);
        parsed
            .data
            .into_iter()
            .map(|item| {
                if item.embedding.len() != self.options.dimension {
                    return Err(ModelError::Api(format!(
                        "the model returned {} dimensions, configured for {}",
                        item.embedding.len(),
                        self.options.dimension
                    )));
                }
                Ok(normalise(item.embedding))
            })
            .collect()
    }
}

fn normalise(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.options.dimension
    }

    async fn embed(&self, texts: Vec<String>) -> contextiq_core::Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.options.batch_size.max(1)) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }
}
