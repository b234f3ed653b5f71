"""One query's all-MiniLM-L6-v2 embedding on ONNX Runtime against torch, on this machine.

ContextIQ embeds on candle (crates/models); this measures what ONNX Runtime's CPU kernels would
give instead: the local model written as an ONNX graph by scripts/build-onnx-model.py (no
torch), run fp32 and int8 (dynamic quantization) with one and two threads, 280 single-sentence
queries each, and whether the vectors agree with torch's (the reference similarity of the model
card's pair is 0.6119). Needs the venv bench/mem0.sh installs:

    bash bench/mem0.sh --help >/dev/null; target/venv-mem0/bin/python bench/onnx_runtime.py
"""

import importlib.util
import os
import pathlib
import tempfile
import time

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models/all-MiniLM-L6-v2"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
_spec = importlib.util.spec_from_file_location("build_onnx_model", REPO / "scripts/build-onnx-model.py")
build_onnx_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_onnx_model)


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
    onnx.save(build_onnx_model.build(MODEL_DIR), str(fp32))
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)

    pair = tokenizer(["I love hiking in the Alps", "My favourite sport is mountaineering"], return_tensors="np",
                     padding=True)
    with torch.inference_mode():
        hidden = model(**{name: torch.from_numpy(pair[name]) for name in INPUTS}).last_hidden_state.numpy()
    reference = pooled(hidden, pair["attention_mask"])
    for path in [fp32, int8]:
        for threads in [1, 2]:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def run(encoded, session=session):
                return session.run(None, {name: encoded[name] for name in INPUTS})[0]

            timed(f"onnxruntime {ort.__version__} {path.stem}, {threads} thread(s)", tokenizer, run)
        vectors = pooled(run(pair), pair["attention_mask"])
        print(f"  similarity of the pair {float(vectors[0] @ vectors[1]):.4f}; "
              f"least cosine to torch's vectors {float((vectors * reference).sum(1).min()):.6f}")
    torch.set_num_threads(2)
    with torch.inference_mode():
        timed(f"torch {torch.__version__}, 2 threads", tokenizer,
              lambda encoded: model(**{name: torch.from_numpy(encoded[name]) for name in INPUTS}))


if __name__ == "__main__":
    main()
