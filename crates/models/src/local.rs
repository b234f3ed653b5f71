//! all-MiniLM-L6-v2 on ONNX Runtime's CPU kernels, off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use contextiq_core::Embedder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::ModelError;
use crate::encoder::{Config, encoder_graph};

/// ONNX Runtime's shared library, as the model directory holds it (`scripts/fetch-model.sh` takes
/// it from the `onnxruntime` wheel on PyPI): libonnxruntime.so on Linux.
#[cfg(target_os = "macos")]
pub const RUNTIME_LIBRARY: &str = "libonnxruntime.dylib";
#[cfg(target_os = "windows")]
pub const RUNTIME_LIBRARY: &str = "onnxruntime.dll";
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
pub const RUNTIME_LIBRARY: &str = "libonnxruntime.so";

/// The files a model directory must hold: the weights, the tokenizer, and the runtime that
/// runs them.
pub const MODEL_FILES: [&str; 4] = ["model.safetensors", "config.json", "tokenizer.json", RUNTIME_LIBRARY];

/// Sentences per forward pass: larger batches amortise better, up to cache limits.
const BATCH_SIZE: usize = 32;
/// The model's trained maximum (sentence_bert_config.json).
const MAX_SEQUENCE_TOKENS: usize = 256;
/// Threads of one forward pass: a query's few rows gain little beyond this.
const MAX_INFERENCE_THREADS: usize = 4;

/// ONNX Runtime allows one environment per process, and loads its library once: every embedder
/// shares the first that loaded (later model directories' libraries are not loaded again).
static RUNTIME: Mutex<Option<Environment>> = Mutex::new(None);

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
    /// `Session::run` takes `&mut`; the inference thread holds it, `embed_blocking` waits.
    session: Mutex<Session>,
    tokenizer: Tokenizer,
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
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(|err| load_error(err.to_string()))?;
        let graph = encoder_graph(&config, &weights).map_err(load_error)?;
        drop(weights);
        let environment = runtime(&dir.join(RUNTIME_LIBRARY)).map_err(load_error)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_INFERENCE_THREADS);
        // No spinning: ONNX Runtime's pool threads would otherwise busy-wait after each pass
        // and take the CPU from the request's other stages; on 2 cores that tripled a new
        // query's p95 (BENCHMARKS.md, "ONNX Runtime").
        let session = Session::builder(&environment)
            .and_then(|builder| Ok(builder.with_intra_threads(threads)?))
            .and_then(|builder| Ok(builder.with_intra_op_spinning(false)?))
            .and_then(|mut builder| builder.commit_from_memory(&graph))
            .map_err(|err| load_error(err.to_string()))?;
        let model_id = format!("local:all-MiniLM-L6-v2:{}", config.hidden_size);
        let inner = Arc::new(Inner { session: Mutex::new(session), tokenizer, dimension: config.hidden_size });
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

/// The process's ONNX Runtime environment, loading the library at `library` the first time.
fn runtime(library: &Path) -> Result<Environment, String> {
    let mut runtime = RUNTIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(environment) = runtime.as_ref() {
        return Ok(environment.clone());
    }
    // Absolute, so the library is found whatever the working directory (ort would otherwise
    // look beside the executable first).
    let library = std::fs::canonicalize(library).map_err(|err| format!("{}: {err}", library.display()))?;
    let environment = ort::init_from(library)
        .map_err(|err| err.to_string())?
        .with_name("contextiq")
        .build()
        .map_err(|err| err.to_string())?;
    // Its informational messages (each graph optimisation at load) would crowd the server's log.
    environment.set_log_level(ort::logging::LogLevel::Warning);
    *runtime = Some(environment.clone());
    Ok(environment)
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
        let inference = |err: ort::Error| ModelError::Inference(err.to_string());
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|err| ModelError::Inference(err.to_string()))?;
        let n_tokens = encodings.first().map_or(0, |encoding| encoding.get_ids().len());
        let ids: Vec<i64> =
            encodings.iter().flat_map(|encoding| encoding.get_ids().iter().map(|&id| i64::from(id))).collect();
        let mask: Vec<i64> = encodings
            .iter()
            .flat_map(|encoding| encoding.get_attention_mask().iter().map(|&bit| i64::from(bit)))
            .collect();
        let shape = [texts.len(), n_tokens];
        let inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape, ids)).map_err(inference)?,
            "attention_mask" => Tensor::from_array((shape, mask)).map_err(inference)?,
            "token_type_ids" => Tensor::from_array((shape, vec![0_i64; texts.len() * n_tokens])).map_err(inference)?,
        ];
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(inference)?;
        let (_, hidden) = outputs["last_hidden_state"].try_extract_tensor::<f32>().map_err(inference)?;
        // Mean over real tokens only, then unit length.
        let dimension = self.dimension;
        let vectors = encodings
            .iter()
            .zip(hidden.chunks(n_tokens.max(1) * dimension))
            .map(|(encoding, states)| {
                let mut mean = vec![0.0_f32; dimension];
                let mut count = 0.0_f32;
                for (&real, state) in encoding.get_attention_mask().iter().zip(states.chunks(dimension)) {
                    if real == 1 {
                        count += 1.0;
                        mean.iter_mut().zip(state).for_each(|(sum, value)| *sum += value);
                    }
                }
                mean.iter_mut().for_each(|value| *value /= count.max(1e-9));
                let norm = mean.iter().map(|value| value * value).sum::<f32>().sqrt().max(1e-12);
                mean.iter_mut().for_each(|value| *value /= norm);
                mean
            })
            .collect();
        Ok(vectors)
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
