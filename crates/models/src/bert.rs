//! The BERT encoder, forward pass only: what sentence-embedding models of the BERT family
//! (all-MiniLM-L6-v2 and its kin) need, and nothing else. The same computation as
//! candle-transformers' `models::bert` (Apache-2.0/MIT, from Hugging Face's `modeling_bert.py`),
//! so vectors are unchanged, with two fusions for speed: query, key and value as one matrix
//! product, and softmax as candle's one-pass kernel. Written here because that crate compiles a
//! hundred other models and was the largest single cost of a clean build.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use serde::Deserialize;

/// The keys of a model's `config.json` the encoder reads; the others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Read only to refuse a model with relative positions (the enum has no such variant).
    #[serde(default)]
    #[expect(dead_code, reason = "parsed to validate, never branched on")]
    position_embedding_type: PositionEmbeddingType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HiddenAct {
    Gelu,
    #[serde(rename = "gelu_new", alias = "geluapproximate")]
    GeluApproximate,
    Relu,
}

/// Only absolute positions exist in the models we load; anything else is refused at load time
/// rather than silently computed wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PositionEmbeddingType {
    #[default]
    Absolute,
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(vars: VarBuilder, config: &Config) -> Result<Embeddings> {
        Ok(Embeddings {
            word: embedding(config.vocab_size, config.hidden_size, vars.pp("word_embeddings"))?,
            position: embedding(config.max_position_embeddings, config.hidden_size, vars.pp("position_embeddings"))?,
            token_type: embedding(config.type_vocab_size, config.hidden_size, vars.pp("token_type_embeddings"))?,
            layer_norm: layer_norm(config.hidden_size, config.layer_norm_eps, vars.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let (_batch, seq_len) = input_ids.dims2()?;
        let embeddings = (self.word.forward(input_ids)? + self.token_type.forward(token_type_ids)?)?;
        let position_ids: Vec<u32> = (0..seq_len as u32).collect();
        let position_ids = Tensor::new(&position_ids[..], input_ids.device())?;
        let embeddings = embeddings.broadcast_add(&self.position.forward(&position_ids)?)?;
        self.layer_norm.forward(&embeddings)
    }
}

struct SelfAttention {
    /// Query, key and value in one layer (their weights stacked): one matrix product instead
    /// of three, which for a short query's few rows costs less than three small ones.
    query_key_value: Linear,
    n_heads: usize,
    head_size: usize,
}

impl SelfAttention {
    fn load(vars: VarBuilder, config: &Config) -> Result<SelfAttention> {
        let head_size = config.hidden_size / config.num_attention_heads;
        let all_heads = config.num_attention_heads * head_size;
        let parts = ["query", "key", "value"]
            .map(|part| linear(config.hidden_size, all_heads, vars.pp(part)))
            .into_iter()
            .collect::<Result<Vec<Linear>>>()?;
        let weights: Vec<&Tensor> = parts.iter().map(Linear::weight).collect();
        let biases = parts.iter().map(|part| part.bias().cloned()).collect::<Option<Vec<Tensor>>>();
        let bias = biases.map(|biases| Tensor::cat(&biases, 0)).transpose()?;
        Ok(SelfAttention {
            query_key_value: Linear::new(Tensor::cat(&weights, 0)?, bias),
            n_heads: config.num_attention_heads,
            head_size,
        })
    }

    /// (batch, seq, hidden) → (batch, heads, seq, head_size).
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let mut shape = xs.dims().to_vec();
        shape.pop();
        shape.push(self.n_heads);
        shape.push(self.head_size);
        xs.reshape(shape.as_slice())?.transpose(1, 2)?.contiguous()
    }

    fn forward(&self, hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let query_key_value = self.query_key_value.forward(hidden)?;
        let all_heads = self.n_heads * self.head_size;
        let part = |index: usize| self.split_heads(&query_key_value.narrow(D::Minus1, index * all_heads, all_heads)?);
        let (query, key, value) = (part(0)?, part(1)?, part(2)?);
        let scores = (query.matmul(&key.t()?)? / (self.head_size as f64).sqrt())?;
        let scores = scores.broadcast_add(attention_mask)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probabilities.matmul(&value)?.transpose(1, 2)?.contiguous()?;
        context.flatten_from(D::Minus2)
    }
}

/// A dense layer, then layer norm over it plus the residual: BERT's "output" blocks.
struct DenseResidual {
    dense: Linear,
    layer_norm: LayerNorm,
}

impl DenseResidual {
    fn load(vars: VarBuilder, in_size: usize, config: &Config) -> Result<DenseResidual> {
        Ok(DenseResidual {
            dense: linear(in_size, config.hidden_size, vars.pp("dense"))?,
            layer_norm: layer_norm(config.hidden_size, config.layer_norm_eps, vars.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, hidden: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.layer_norm.forward(&(self.dense.forward(hidden)? + residual)?)
    }
}

struct Layer {
    attention: SelfAttention,
    attention_output: DenseResidual,
    intermediate: Linear,
    activation: HiddenAct,
    output: DenseResidual,
}

impl Layer {
    fn load(vars: VarBuilder, config: &Config) -> Result<Layer> {
        Ok(Layer {
            attention: SelfAttention::load(vars.pp("attention.self"), config)?,
            attention_output: DenseResidual::load(vars.pp("attention.output"), config.hidden_size, config)?,
            intermediate: linear(config.hidden_size, config.intermediate_size, vars.pp("intermediate.dense"))?,
            activation: config.hidden_act,
            output: DenseResidual::load(vars.pp("output"), config.intermediate_size, config)?,
        })
    }

    fn forward(&self, hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let attended = self.attention_output.forward(&self.attention.forward(hidden, attention_mask)?, hidden)?;
        let intermediate = self.intermediate.forward(&attended)?;
        let intermediate = match self.activation {
            // Hugging Face's "gelu" is the exact, erf-based one.
            HiddenAct::Gelu => intermediate.gelu_erf()?,
            HiddenAct::GeluApproximate => intermediate.gelu()?,
            HiddenAct::Relu => intermediate.relu()?,
        };
        self.output.forward(&intermediate, &attended)
    }
}

pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertModel {
    /// Loads from weights named as Hugging Face saves a bare `BertModel` (`embeddings.…`,
    /// `encoder.layer.N.…`) or inside a task model (`bert.embeddings.…`).
    pub fn load(vars: VarBuilder, config: &Config) -> Result<BertModel> {
        let vars = if vars.contains_tensor("bert.embeddings.word_embeddings.weight") { vars.pp("bert") } else { vars };
        let layers = (0..config.num_hidden_layers)
            .map(|index| Layer::load(vars.pp(format!("encoder.layer.{index}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(BertModel { embeddings: Embeddings::load(vars.pp("embeddings"), config)?, layers })
    }

    /// The last hidden state, (batch, seq, hidden), for token ids, their segment ids and a mask
    /// of 1 for tokens and 0 for padding.
    pub fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let mut hidden = self.embeddings.forward(input_ids, token_type_ids)?;
        let attention_mask = additive_mask(attention_mask, hidden.dtype())?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &attention_mask)?;
        }
        Ok(hidden)
    }
}

/// (batch, seq) of 1/0 → (batch, 1, 1, seq) of 0 for tokens and the dtype's minimum for padding,
/// added to attention scores so padding gets no weight.
fn additive_mask(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let mask = attention_mask.unsqueeze(1)?.unsqueeze(1)?.to_dtype(dtype)?;
    (mask.ones_like()? - &mask)?.broadcast_mul(&Tensor::try_from(f32::MIN)?.to_device(mask.device())?.to_dtype(dtype)?)
}
