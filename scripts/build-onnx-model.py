"""Writes a BERT sentence encoder (all-MiniLM-L6-v2 and its kin) as an ONNX graph, from the
model directory's `model.safetensors` and `config.json`, without torch: the same computation as
crates/models/src/bert.rs (and Hugging Face's BertModel), so ONNX Runtime gives the same vectors.

Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64, batch x seq); output
`last_hidden_state` (float32, batch x seq x hidden). Pooling stays with the caller.

    python scripts/build-onnx-model.py models/all-MiniLM-L6-v2 [OUT.onnx]

Needs numpy, onnx and safetensors.
"""

import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

OPSET = 17  # LayerNormalization is in 17; ONNX Runtime 1.17 and later load it.


def build(model_dir: pathlib.Path) -> onnx.ModelProto:
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("position_embedding_type", "absolute") != "absolute":
        sys.exit("only absolute position embeddings are supported")
    weights = load_file(str(model_dir / "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_size, eps = hidden // heads, float(config["layer_norm_eps"])
    nodes, initializers = [], []

    def constant(name, array):
        initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(name, transpose=False):
        array = weights[prefix + name].astype(np.float32)
        return constant(name, np.ascontiguousarray(array.T) if transpose else array)

    def node(op, inputs, name, **attributes):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def dense(x, name, out):
        """x · Wᵀ + b, W stored transposed as ONNX MatMul wants it."""
        product = node("MatMul", [x, weight(f"{name}.weight", transpose=True)], f"{out}/matmul")
        return node("Add", [product, weight(f"{name}.bias")], out)

    def layer_norm(x, name, out):
        return node("LayerNormalization", [x, weight(f"{name}.weight"), weight(f"{name}.bias")], out,
                    axis=-1, epsilon=eps)

    # Embeddings: words + token types + positions 0..seq, then layer norm.
    seq_len = node("Gather", [node("Shape", ["input_ids"], "shape"), constant("one", np.array(1, np.int64))],
                   "seq_len")
    positions = node("Range", [constant("zero", np.array(0, np.int64)), seq_len, "one"], "positions")
    words = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    types = node("Gather", [weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], "types")
    places = node("Gather", [weight("embeddings.position_embeddings.weight"), positions], "places")
    summed = node("Add", [node("Add", [words, types], "words_types"), places], "embedded")
    x = layer_norm(summed, "embeddings.LayerNorm", "embeddings")

    # (batch, seq) of 1/0 → (batch, 1, 1, seq) of 0 for tokens and float32's minimum for padding.
    mask = node("Cast", [node("Unsqueeze", ["attention_mask", constant("mask_axes", np.array([1, 2], np.int64))],
                              "mask_4d")], "mask_float", to=TensorProto.FLOAT)
    padding = node("Sub", [constant("f_one", np.array(1.0, np.float32)), mask], "padding")
    additive = node("Mul", [padding, constant("f_min", np.array(np.finfo(np.float32).min, np.float32))], "additive")

    split_shape = constant("split_shape", np.array([0, 0, heads, head_size], np.int64))
    merge_shape = constant("merge_shape", np.array([0, 0, hidden], np.int64))
    scale = constant("scale", np.array(1.0 / np.sqrt(head_size), np.float32))
    sqrt_half = constant("sqrt_half", np.array(1.0 / np.sqrt(2.0), np.float32))
    f_half = constant("f_half", np.array(0.5, np.float32))
    for n in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{n}"

        def heads_of(part):
            projected = dense(x, f"{layer}.attention.self.{part}", f"l{n}/{part}")
            split = node("Reshape", [projected, split_shape], f"l{n}/{part}/split")
            return node("Transpose", [split], f"l{n}/{part}/heads", perm=[0, 2, 1, 3])

        query, key, value = heads_of("query"), heads_of("key"), heads_of("value")
        key_t = node("Transpose", [key], f"l{n}/key_t", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [query, key_t], f"l{n}/qk"), scale], f"l{n}/scaled")
        probabilities = node("Softmax", [node("Add", [scores, additive], f"l{n}/masked")], f"l{n}/probs", axis=-1)
        context = node("Transpose", [node("MatMul", [probabilities, value], f"l{n}/context")],
                       f"l{n}/context_t", perm=[0, 2, 1, 3])
        merged = node("Reshape", [context, merge_shape], f"l{n}/merged")
        attended = dense(merged, f"{layer}.attention.output.dense", f"l{n}/attn_out")
        x = layer_norm(node("Add", [attended, x], f"l{n}/attn_res"), f"{layer}.attention.output.LayerNorm",
                       f"l{n}/attended")
        inner = dense(x, f"{layer}.intermediate.dense", f"l{n}/inner")
        if config["hidden_act"] != "gelu":
            sys.exit(f"hidden_act {config['hidden_act']!r}: only the exact gelu is written")
        # Exact gelu: x * 0.5 * (1 + erf(x / sqrt 2)).
        erf = node("Erf", [node("Mul", [inner, sqrt_half], f"l{n}/gelu/scaled")], f"l{n}/gelu/erf")
        half = node("Mul", [node("Add", [erf, "f_one"], f"l{n}/gelu/plus1"), f_half], f"l{n}/gelu/half")
        activated = node("Mul", [inner, half], f"l{n}/gelu")
        output = dense(activated, f"{layer}.output.dense", f"l{n}/out")
        x = layer_norm(node("Add", [output, x], f"l{n}/out_res"), f"{layer}.output.LayerNorm", f"l{n}/output")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))

    int_input = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])  # noqa: E731
    graph = helper.make_graph(
        nodes, "bert", [int_input("input_ids"), int_input("attention_mask"), int_input("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="contextiq")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    model_dir = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else model_dir / "model.onnx"
    onnx.save(build(model_dir), str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
