//! The BERT encoder (all-MiniLM-L6-v2 and its kin) as an ONNX graph, written in memory from the
//! model's `model.safetensors` and `config.json` when the embedder loads, so ONNX Runtime runs it
//! and the model directory needs no converted file. The computation is Hugging Face's
//! `BertModel` forward pass (checked against reference similarities in the crate's tests), so
//! the vectors are the model's own.
//!
//! Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, batch × seq); output
//! `last_hidden_state` (float32, batch × seq × hidden). Pooling stays with the caller.
//!
//! The ONNX file format is protobuf; the few messages a graph needs are written by hand below
//! (field numbers from onnx.proto) rather than through a protobuf code generator.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

/// The keys of a model's `config.json` the encoder reads; the others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub hidden_act: HiddenAct,
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
enum PositionEmbeddingType {
    #[default]
    Absolute,
}

/// LayerNormalization entered the standard operator set in 17; ONNX Runtime 1.17 and later run it.
const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// The encoder of `config` with the weights of `safetensors` (the file's bytes), as the bytes of
/// an ONNX model.
pub fn encoder_graph(config: &Config, safetensors: &[u8]) -> Result<Vec<u8>, String> {
    let weights = Weights::parse(safetensors)?;
    let prefix = if weights.has("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    let hidden = config.hidden_size;
    let heads = config.num_attention_heads;
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}"));
    }
    let head_size = hidden / heads;
    let mut graph = Graph {
        weights,
        prefix,
        eps: config.layer_norm_eps as f32,
        nodes: Vec::new(),
        initializers: Vec::new(),
        initializer_names: HashSet::new(),
    };

    // Embeddings: words + token types + positions 0..seq, then layer norm.
    let one = graph.int64s("one", &[], &[1]);
    let zero = graph.int64s("zero", &[], &[0]);
    let shape = graph.node("Shape", &["input_ids"], "shape", vec![]);
    let seq_len = graph.node("Gather", &[&shape, &one], "seq_len", vec![]);
    let positions = graph.node("Range", &[&zero, &seq_len, &one], "positions", vec![]);
    let word_table = graph.weight("embeddings.word_embeddings.weight", false)?;
    let type_table = graph.weight("embeddings.token_type_embeddings.weight", false)?;
    let position_table = graph.weight("embeddings.position_embeddings.weight", false)?;
    let words = graph.node("Gather", &[&word_table, "input_ids"], "words", vec![]);
    let types = graph.node("Gather", &[&type_table, "token_type_ids"], "types", vec![]);
    let places = graph.node("Gather", &[&position_table, &positions], "places", vec![]);
    let words_types = graph.node("Add", &[&words, &types], "words_types", vec![]);
    let embedded = graph.node("Add", &[&words_types, &places], "embedded", vec![]);
    let mut x = graph.layer_norm(&embedded, "embeddings.LayerNorm", "embeddings")?;

    // (batch, seq) of 1/0 → (batch, 1, 1, seq) of 0 for tokens and float32's minimum for padding.
    let mask_axes = graph.int64s("mask_axes", &[2], &[1, 2]);
    let mask_4d = graph.node("Unsqueeze", &["attention_mask", &mask_axes], "mask_4d", vec![]);
    let mask = graph.node("Cast", &[&mask_4d], "mask_float", vec![attribute_int("to", FLOAT)]);
    let f_one = graph.float32s("f_one", &[], &[1.0]);
    let padding = graph.node("Sub", &[&f_one, &mask], "padding", vec![]);
    let f_min = graph.float32s("f_min", &[], &[f32::MIN]);
    let additive = graph.node("Mul", &[&padding, &f_min], "additive", vec![]);

    let split_shape = graph.int64s("split_shape", &[4], &[0, 0, heads as i64, head_size as i64]);
    let merge_shape = graph.int64s("merge_shape", &[3], &[0, 0, hidden as i64]);
    let scale = graph.float32s("scale", &[], &[1.0 / (head_size as f32).sqrt()]);
    for n in 0..config.num_hidden_layers {
        let layer = format!("encoder.layer.{n}");
        let heads_of = |graph: &mut Graph, part: &str| -> Result<String, String> {
            let projected = graph.dense(&x, &format!("{layer}.attention.self.{part}"), &format!("l{n}/{part}"))?;
            let split = graph.node("Reshape", &[&projected, &split_shape], &format!("l{n}/{part}/split"), vec![]);
            Ok(graph.node(
                "Transpose",
                &[&split],
                &format!("l{n}/{part}/heads"),
                vec![attribute_ints("perm", &[0, 2, 1, 3])],
            ))
        };
        let query = heads_of(&mut graph, "query")?;
        let key = heads_of(&mut graph, "key")?;
        let value = heads_of(&mut graph, "value")?;
        let key_t =
            graph.node("Transpose", &[&key], &format!("l{n}/key_t"), vec![attribute_ints("perm", &[0, 1, 3, 2])]);
        let qk = graph.node("MatMul", &[&query, &key_t], &format!("l{n}/qk"), vec![]);
        let scaled = graph.node("Mul", &[&qk, &scale], &format!("l{n}/scaled"), vec![]);
        let masked = graph.node("Add", &[&scaled, &additive], &format!("l{n}/masked"), vec![]);
        let probabilities = graph.node("Softmax", &[&masked], &format!("l{n}/probs"), vec![attribute_int("axis", -1)]);
        let context = graph.node("MatMul", &[&probabilities, &value], &format!("l{n}/context"), vec![]);
        let context_t = graph.node(
            "Transpose",
            &[&context],
            &format!("l{n}/context_t"),
            vec![attribute_ints("perm", &[0, 2, 1, 3])],
        );
        let merged = graph.node("Reshape", &[&context_t, &merge_shape], &format!("l{n}/merged"), vec![]);
        let attended = graph.dense(&merged, &format!("{layer}.attention.output.dense"), &format!("l{n}/attn_out"))?;
        let residual = graph.node("Add", &[&attended, &x], &format!("l{n}/attn_res"), vec![]);
        x = graph.layer_norm(&residual, &format!("{layer}.attention.output.LayerNorm"), &format!("l{n}/attended"))?;
        let inner = graph.dense(&x, &format!("{layer}.intermediate.dense"), &format!("l{n}/inner"))?;
        let activated = graph.activation(config.hidden_act, &inner, &format!("l{n}/act"));
        let output = graph.dense(&activated, &format!("{layer}.output.dense"), &format!("l{n}/out"))?;
        let residual = graph.node("Add", &[&output, &x], &format!("l{n}/out_res"), vec![]);
        x = graph.layer_norm(&residual, &format!("{layer}.output.LayerNorm"), &format!("l{n}/output"))?;
    }
    graph.node("Identity", &[&x], "last_hidden_state", vec![]);
    Ok(graph.into_model(hidden))
}

/// TensorProto.DataType values.
const FLOAT: i64 = 1;
const INT64: i64 = 7;

struct Graph<'w> {
    weights: Weights<'w>,
    prefix: &'static str,
    eps: f32,
    nodes: Vec<Proto>,
    initializers: Vec<Proto>,
    /// Constants shared by the layers (½, 1/√2) are asked for once per layer and written once.
    initializer_names: HashSet<String>,
}

impl Graph<'_> {
    /// Adds a node whose one output is named `name`, and returns that name.
    fn node(&mut self, op_type: &str, inputs: &[&str], name: &str, attributes: Vec<Proto>) -> String {
        let mut node = Proto::default();
        for input in inputs {
            node = node.string(1, input);
        }
        node = node.string(2, name).string(3, name).string(4, op_type);
        for attribute in attributes {
            node = node.message(5, attribute);
        }
        self.nodes.push(node);
        name.to_owned()
    }

    fn initializer(&mut self, name: &str, data_type: i64, dims: &[i64], raw: &[u8]) -> String {
        if !self.initializer_names.insert(name.to_owned()) {
            return name.to_owned();
        }
        let mut tensor = Proto::default();
        for dim in dims {
            tensor = tensor.int(1, *dim);
        }
        self.initializers.push(tensor.int(2, data_type).string(8, name).bytes(9, raw));
        name.to_owned()
    }

    fn int64s(&mut self, name: &str, dims: &[i64], values: &[i64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        self.initializer(name, INT64, dims, &raw)
    }

    fn float32s(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        self.initializer(name, FLOAT, dims, &raw)
    }

    /// A weight of the model, transposed when ONNX's MatMul wants it the other way round.
    /// Safetensors and ONNX both hold float32 little-endian, so the bytes are copied, not decoded.
    fn weight(&mut self, name: &str, transpose: bool) -> Result<String, String> {
        let (shape, raw) = self.weights.raw_f32(&format!("{}{name}", self.prefix))?;
        match (transpose, shape.as_slice()) {
            (false, _) => {
                let dims: Vec<i64> = shape.iter().map(|dim| *dim as i64).collect();
                Ok(self.initializer(name, FLOAT, &dims, raw))
            }
            (true, &[rows, columns]) => {
                const SIZE: usize = size_of::<f32>();
                let mut transposed = Vec::with_capacity(raw.len());
                for column in 0..columns {
                    for row in 0..rows {
                        let at = (row * columns + column) * SIZE;
                        transposed.extend_from_slice(&raw[at..at + SIZE]);
                    }
                }
                Ok(self.initializer(name, FLOAT, &[columns as i64, rows as i64], &transposed))
            }
            (true, other) => Err(format!("{name} has shape {other:?}, not a matrix")),
        }
    }

    /// x · Wᵀ + b.
    fn dense(&mut self, x: &str, name: &str, out: &str) -> Result<String, String> {
        let weight = self.weight(&format!("{name}.weight"), true)?;
        let bias = self.weight(&format!("{name}.bias"), false)?;
        let product = self.node("MatMul", &[x, &weight], &format!("{out}/matmul"), vec![]);
        Ok(self.node("Add", &[&product, &bias], out, vec![]))
    }

    fn layer_norm(&mut self, x: &str, name: &str, out: &str) -> Result<String, String> {
        let scale = self.weight(&format!("{name}.weight"), false)?;
        let bias = self.weight(&format!("{name}.bias"), false)?;
        let attributes = vec![attribute_int("axis", -1), attribute_float("epsilon", self.eps)];
        Ok(self.node("LayerNormalization", &[x, &scale, &bias], out, attributes))
    }

    fn activation(&mut self, act: HiddenAct, x: &str, out: &str) -> String {
        let one = self.float32s("f_one", &[], &[1.0]);
        match act {
            HiddenAct::Relu => self.node("Relu", &[x], out, vec![]),
            // x · ½ · (1 + erf(x / √2))
            HiddenAct::Gelu => {
                let sqrt_half = self.float32s("sqrt_half", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
                let half = self.float32s("f_half", &[], &[0.5]);
                let scaled = self.node("Mul", &[x, &sqrt_half], &format!("{out}/scaled"), vec![]);
                let erf = self.node("Erf", &[&scaled], &format!("{out}/erf"), vec![]);
                let plus_one = self.node("Add", &[&erf, &one], &format!("{out}/plus1"), vec![]);
                let halved = self.node("Mul", &[&plus_one, &half], &format!("{out}/half"), vec![]);
                self.node("Mul", &[x, &halved], out, vec![])
            }
            // x · ½ · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
            HiddenAct::GeluApproximate => {
                let cubic = self.float32s("gelu_cubic", &[], &[0.044715]);
                let sqrt_two_over_pi = self.float32s("sqrt_two_over_pi", &[], &[(2.0 / std::f32::consts::PI).sqrt()]);
                let half = self.float32s("f_half", &[], &[0.5]);
                let squared = self.node("Mul", &[x, x], &format!("{out}/x2"), vec![]);
                let cubed = self.node("Mul", &[&squared, x], &format!("{out}/x3"), vec![]);
                let weighted = self.node("Mul", &[&cubed, &cubic], &format!("{out}/x3w"), vec![]);
                let inner = self.node("Add", &[x, &weighted], &format!("{out}/inner"), vec![]);
                let scaled = self.node("Mul", &[&inner, &sqrt_two_over_pi], &format!("{out}/scaled"), vec![]);
                let tanh = self.node("Tanh", &[&scaled], &format!("{out}/tanh"), vec![]);
                let plus_one = self.node("Add", &[&tanh, &one], &format!("{out}/plus1"), vec![]);
                let halved = self.node("Mul", &[&plus_one, &half], &format!("{out}/half"), vec![]);
                self.node("Mul", &[x, &halved], out, vec![])
            }
        }
    }

    fn into_model(self, hidden: usize) -> Vec<u8> {
        let ids = |name: &str| value_info(name, INT64, &[Dim::Named("batch"), Dim::Named("seq")]);
        let mut graph = Proto::default();
        for node in self.nodes {
            graph = graph.message(1, node);
        }
        graph = graph.string(2, "bert");
        for initializer in self.initializers {
            graph = graph.message(5, initializer);
        }
        graph = graph
            .message(11, ids("input_ids"))
            .message(11, ids("attention_mask"))
            .message(11, ids("token_type_ids"))
            .message(
                12,
                value_info(
                    "last_hidden_state",
                    FLOAT,
                    &[Dim::Named("batch"), Dim::Named("seq"), Dim::Fixed(hidden as i64)],
                ),
            );
        let opset = Proto::default().string(1, "").int(2, OPSET);
        Proto::default().int(1, IR_VERSION).string(2, "contextiq").message(7, graph).message(8, opset).bytes
    }
}

enum Dim {
    Named(&'static str),
    Fixed(i64),
}

/// ValueInfoProto of a tensor input or output.
fn value_info(name: &str, elem_type: i64, dims: &[Dim]) -> Proto {
    let mut shape = Proto::default();
    for dim in dims {
        let dimension = match dim {
            Dim::Named(param) => Proto::default().string(2, param),
            Dim::Fixed(value) => Proto::default().int(1, *value),
        };
        shape = shape.message(1, dimension);
    }
    let tensor_type = Proto::default().int(1, elem_type).message(2, shape);
    Proto::default().string(1, name).message(2, Proto::default().message(1, tensor_type))
}

/// AttributeProto.AttributeType values.
const ATTRIBUTE_FLOAT: i64 = 1;
const ATTRIBUTE_INT: i64 = 2;
const ATTRIBUTE_INTS: i64 = 7;

fn attribute_int(name: &str, value: i64) -> Proto {
    Proto::default().string(1, name).int(3, value).int(20, ATTRIBUTE_INT)
}

fn attribute_float(name: &str, value: f32) -> Proto {
    Proto::default().string(1, name).float(2, value).int(20, ATTRIBUTE_FLOAT)
}

fn attribute_ints(name: &str, values: &[i64]) -> Proto {
    let mut attribute = Proto::default().string(1, name);
    for value in values {
        attribute = attribute.int(8, *value);
    }
    attribute.int(20, ATTRIBUTE_INTS)
}

/// One protobuf message being written, fields in the order given.
#[derive(Default)]
struct Proto {
    bytes: Vec<u8>,
}

impl Proto {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    fn tag(&mut self, field: u64, wire_type: u64) {
        self.varint((field << 3) | wire_type);
    }

    /// int32, int64 and enum fields: negative values as ten-byte two's complement, as protobuf does.
    fn int(mut self, field: u64, value: i64) -> Proto {
        self.tag(field, 0);
        self.varint(value as u64);
        self
    }

    fn float(mut self, field: u64, value: f32) -> Proto {
        self.tag(field, 5);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    fn bytes(mut self, field: u64, value: &[u8]) -> Proto {
        self.tag(field, 2);
        self.varint(value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    fn string(self, field: u64, value: &str) -> Proto {
        self.bytes(field, value.as_bytes())
    }

    fn message(self, field: u64, message: Proto) -> Proto {
        self.bytes(field, &message.bytes)
    }
}

/// The tensors of a safetensors file: an 8-byte little-endian header length, a JSON header of
/// `name: {dtype, shape, data_offsets}`, then the data.
struct Weights<'a> {
    tensors: HashMap<String, TensorEntry>,
    data: &'a [u8],
}

#[derive(Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl<'a> Weights<'a> {
    fn parse(file: &'a [u8]) -> Result<Weights<'a>, String> {
        let malformed = || "model.safetensors is not a safetensors file".to_owned();
        let length_bytes: [u8; 8] = file.get(..8).and_then(|bytes| bytes.try_into().ok()).ok_or_else(malformed)?;
        let header_end = usize::try_from(u64::from_le_bytes(length_bytes))
            .ok()
            .and_then(|length| length.checked_add(8))
            .filter(|end| *end <= file.len())
            .ok_or_else(malformed)?;
        let mut header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&file[8..header_end]).map_err(|err| format!("{}: {err}", malformed()))?;
        // The one key of the header that is not a tensor.
        header.remove("__metadata__");
        let tensors = header
            .into_iter()
            .map(|(name, entry)| match serde_json::from_value(entry) {
                Ok(entry) => Ok((name, entry)),
                Err(err) => Err(format!("tensor {name} is malformed: {err}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Weights { tensors, data: &file[header_end..] })
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A float32 tensor's shape and its bytes (little-endian), checked against the shape.
    fn raw_f32(&self, name: &str) -> Result<(Vec<usize>, &'a [u8]), String> {
        let entry = self.tensors.get(name).ok_or_else(|| format!("model.safetensors has no tensor {name}"))?;
        if entry.dtype != "F32" {
            return Err(format!("tensor {name} is {}, only F32 weights are supported", entry.dtype));
        }
        let [start, end] = entry.data_offsets;
        let expected = entry.shape.iter().try_fold(size_of::<f32>(), |size, dim| size.checked_mul(*dim));
        let bytes = self
            .data
            .get(start..end)
            .filter(|bytes| Some(bytes.len()) == expected)
            .ok_or_else(|| format!("tensor {name} lies outside the file or disagrees with its shape"))?;
        Ok((entry.shape.clone(), bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_fields_are_encoded_as_protobuf_does() {
        // Examples from protobuf's encoding guide: 150 in field 1 is 08 96 01; "testing" in
        // field 2 is 12 07 74 65 73 74 69 6e 67; -1 as int64 takes ten bytes.
        assert_eq!(Proto::default().int(1, 150).bytes, [0x08, 0x96, 0x01]);
        assert_eq!(Proto::default().string(2, "testing").bytes, b"\x12\x07testing");
        assert_eq!(
            Proto::default().int(3, -1).bytes,
            [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(Proto::default().float(2, 1.0).bytes, [0x15, 0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(Proto::default().message(7, Proto::default().int(1, 1)).bytes, [0x3a, 0x02, 0x08, 0x01]);
        // Field 20 needs a two-byte tag.
        assert_eq!(Proto::default().int(20, 2).bytes, [0xa0, 0x01, 0x02]);
    }

    fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(data);
        file
    }

    #[test]
    fn weights_are_read_and_checked() {
        let data: Vec<u8> = [1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|value| value.to_le_bytes()).collect();
        let file = safetensors(
            r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},
                "short":{"dtype":"F32","shape":[4,3],"data_offsets":[0,24]},
                "half":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#,
            &data,
        );
        let weights = Weights::parse(&file).unwrap();
        assert_eq!(weights.raw_f32("w").unwrap(), (vec![2, 3], &data[..]));
        assert!(weights.raw_f32("short").unwrap_err().contains("disagrees with its shape"));
        assert!(weights.raw_f32("half").unwrap_err().contains("only F32"));
        assert!(weights.raw_f32("missing").unwrap_err().contains("no tensor missing"));

        let mut graph = Graph {
            weights,
            prefix: "",
            eps: 1e-12,
            nodes: Vec::new(),
            initializers: Vec::new(),
            initializer_names: HashSet::new(),
        };
        graph.weight("w", true).unwrap();
        let transposed: Vec<u8> =
            [1.0_f32, 4.0, 2.0, 5.0, 3.0, 6.0].iter().flat_map(|value| value.to_le_bytes()).collect();
        let expected = Proto::default().int(1, 3).int(1, 2).int(2, FLOAT).string(8, "w").bytes(9, &transposed);
        assert_eq!(graph.initializers[0].bytes, expected.bytes, "a 2×3 weight is written 3×2");
    }

    #[test]
    fn a_file_that_is_not_safetensors_is_an_error_not_a_panic() {
        for file in [&b""[..], &b"\xff\xff\xff\xff\xff\xff\xff\xff{}"[..], &safetensors("{not json", &[])[..]] {
            assert!(Weights::parse(file).is_err());
        }
    }
}
