//! all-MiniLM-L6-v2 on candle, on the CPU, off the async runtime.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use contextiq_core::Embedder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::ModelError;
use crate::bert::{BertModel, Config};

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// Sentences per forward pass: larger batches amortise better, up to cache limits.
const BATCH_SIZE: usize = 32;
/// The model's trained maximum (sentence_bert_config.json).
const MAX_SEQUENCE_TOKENS: usize = 256;

/// Loaded once; cheap to clone. Inference runs on one dedicated thread that gathers the texts
/// of every request waiting at that moment into one batch (concurrent single-sentence
/// requests cost about a third each when batched), so the async runtime never stalls on it.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    model_id: String,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Texts to embed and where their vectors go.
struct Job {
    texts: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, ModelError>>,
}

/// Texts gathered into one forward pass at most; more waiting requests wait for the next.
const MAX_GATHERED_TEXTS: usize = 64;

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimension: usize,
}

impl LocalEmbedder {
    pub fn load(dir: &Path) -> Result<LocalEmbedder, ModelError> {
        let display = dir.display().to_string();
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(ModelError::Missing { dir: display, missing: file.to_owned() });
            }
        }
        let load_error = |reason: String| ModelError::Load { dir: display.clone(), reason };
        let config_text =
            std::fs::read_to_string(dir.join("config.json")).map_err(|err| load_error(err.to_string()))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|err| load_error(err.to_string()))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|err| load_error(err.to_string()))?;
        // tokenizer.json pads and truncates at 128; the model is trained for 256 and pooling
        // must see the real length of each sentence, so pad only to the longest in a batch.
        tokenizer
            .with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..PaddingParams::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_SEQUENCE_TOKENS, ..TruncationParams::default() }))
            .map_err(|err| load_error(err.to_string()))?;
        let device = Device::Cpu;
        // Read into memory rather than mmap: mmap is `unsafe`, and 90 MB load in ~100 ms.
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(|err| load_error(err.to_string()))?;
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|err| load_error(err.to_string()))?;
        let model = BertModel::load(vars, &config).map_err(|err| load_error(err.to_string()))?;
        let model_id = format!("local:all-MiniLM-L6-v2:{}", config.hidden_size);
        let inner = Arc::new(Inner { model, tokenizer, device, dimension: config.hidden_size });
        let (jobs, queue) = std::sync::mpsc::channel();
        let worker = inner.clone();
        std::thread::Builder::new()
            .name("embedder".to_owned())
            .spawn(move || run_batches(&worker, &queue))
            .map_err(|err| load_error(err.to_string()))?;
        Ok(LocalEmbedder { inner, model_id, jobs })
    }

    /// Embeds on the calling thread; use [`Embedder::embed`] from async code.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.inner.embed_all(texts)
    }
}

/// The inference thread: takes the first waiting job, gathers whatever else is waiting, runs
/// them as one batch and hands each job its vectors. Ends when every embedder is dropped.
fn run_batches(inner: &Inner, queue: &std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut gathered = vec![first];
        let mut n_texts = gathered[0].texts.len();
        while n_texts < MAX_GATHERED_TEXTS {
            match queue.try_recv() {
                Ok(job) => {
                    n_texts += job.texts.len();
                    gathered.push(job);
                }
                Err(_) => break,
            }
        }
        let texts: Vec<String> = gathered.iter().flat_map(|job| job.texts.iter().cloned()).collect();
        match inner.embed_all(&texts) {
            Ok(vectors) => {
                let mut vectors = vectors.into_iter();
                for job in gathered {
                    let mine: Vec<Vec<f32>> = vectors.by_ref().take(job.texts.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(err) => {
                for job in gathered {
                    let _ = job.reply.send(Err(ModelError::Inference(err.to_string())));
                }
            }
        }
    }
}

impl Inner {
    fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH_SIZE) {
            vectors.extend(self.embed_batch(batch)?);
        }
        Ok(vectors)
    }

    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let inference = |err: candle_core::Error| ModelError::Inference(err.to_string());
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|err| ModelError::Inference(err.to_string()))?;
        let n_tokens = encodings.first().map_or(0, |encoding| encoding.get_ids().len());
        let ids: Vec<u32> = encodings.iter().flat_map(|encoding| encoding.get_ids().to_vec()).collect();
        let mask: Vec<u32> = encodings.iter().flat_map(|encoding| encoding.get_attention_mask().to_vec()).collect();
        let shape = (texts.len(), n_tokens);
        let input_ids = Tensor::from_vec(ids, shape, &self.device).map_err(inference)?;
        let attention_mask = Tensor::from_vec(mask, shape, &self.device).map_err(inference)?;
        let token_type_ids = input_ids.zeros_like().map_err(inference)?;
        let hidden = self.model.forward(&input_ids, &token_type_ids, &attention_mask).map_err(inference)?;
        // Mean over real tokens only, then unit length.
        let mask = attention_mask.to_dtype(DType::F32).map_err(inference)?.unsqueeze(2).map_err(inference)?;
        let summed = hidden.broadcast_mul(&mask).map_err(inference)?.sum(1).map_err(inference)?;
        let counts = mask.sum(1).map_err(inference)?.clamp(1e-9, f64::MAX).map_err(inference)?;
        let mean = summed.broadcast_div(&counts).map_err(inference)?;
        let norms = mean.sqr().map_err(inference)?.sum_keepdim(1).map_err(inference)?.sqrt().map_err(inference)?;
        let normalised = mean.broadcast_div(&norms.clamp(1e-12, f64::MAX).map_err(inference)?).map_err(inference)?;
        normalised.to_vec2::<f32>().map_err(inference)
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    async fn embed(&self, texts: Vec<String>) -> contextiq_core::Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, vectors) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { texts, reply })
            .map_err(|_| ModelError::Inference("the embedding thread has stopped".to_owned()))?;
        vectors
            .await
            .map_err(|_| ModelError::Inference("the embedding thread has stopped".to_owned()))?
            .map_err(Into::into)
    }
}
