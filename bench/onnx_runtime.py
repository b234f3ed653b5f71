"""One query's all-MiniLM-L6-v2 embedding on ONNX Runtime against torch, on this machine.

ContextIQ embeds on candle (crates/models); this measures what ONNX Runtime's CPU kernels would
give instead: the local model exported to ONNX with torch, run fp32 and int8 (dynamic
quantization) with one and two threads, 280 single-sentence queries each, and whether the
vectors agree with the fp32 model's (the reference similarity of the model card's pair is
0.6119). Needs the venv bench/mem0.sh installs:

    bash bench/mem0.sh --help >/dev/null; target/venv-mem0/bin/python bench/onnx_runtime.py
"""

import os
import pathlib
import tempfile
import time

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent / "models/all-MiniLM-L6-v2"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


class LastHidden(torch.nn.Module):
    """The encoder with positional inputs and one output, as the exporter wants it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


def pooled(hidden, mask):
    """Mean over real tokens, unit length: the sentence vector."""
    weights = mask[..., None].astype(np.float32)
    vectors = (hidden * weights).sum(1) / weights.sum(1)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def timed(label, tokenizer, run):
    times = []
    for n in range(300):
        encoded = tokenizer([f"Who collects vintage cameras in Lisbon (question {n})?"], return_tensors="np")
        begun = time.perf_counter()
        run(encoded)
        times.append((time.perf_counter() - begun) * 1000)
    times = sorted(times[20:])
    print(f"{label}: p50 {times[len(times) // 2]:.2f} ms, p95 {times[int(len(times) * 0.95)]:.2f} ms, "
          f"min {times[0]:.2f} ms")


def main():
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModel.from_pretrained(MODEL_DIR).eval()
    work = pathlib.Path(tempfile.mkdtemp(prefix="onnx-runtime-"))
    fp32, int8 = work / "model.onnx", work / "model-int8.onnx"
    example = tokenizer(["Who collects vintage cameras in Lisbon?"], return_tensors="pt")
    torch.onnx.export(LastHidden(model), tuple(example[name] for name in INPUTS), str(fp32), input_names=INPUTS,
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                      dynamic_axes={name: {0: "batch", 1: "seq"} for name in INPUTS + ["last_hidden_state"]})
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)

    pair = tokenizer(["I love hiking in the Alps", "My favourite sport is mountaineering"], return_tensors="np",
                     padding=True)
    reference = None
    for path in [fp32, int8]:
        for threads in [1, 2]:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def run(encoded, session=session):
                return session.run(None, {name: encoded[name] for name in INPUTS})[0]

            timed(f"onnxruntime {ort.__version__} {path.stem}, {threads} thread(s)", tokenizer, run)
        vectors = pooled(run(pair), pair["attention_mask"])
        reference = vectors if reference is None else reference
        print(f"  similarity of the pair {float(vectors[0] @ vectors[1]):.4f}; "
              f"least cosine to the fp32 vectors {float((vectors * reference).sum(1).min()):.6f}")
    torch.set_num_threads(2)
    with torch.inference_mode():
        timed(f"torch {torch.__version__}, 2 threads", tokenizer,
              lambda encoded: model(**{name: torch.from_numpy(encoded[name]) for name in INPUTS}))


if __name__ == "__main__":
    main()
