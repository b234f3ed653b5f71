#!/usr/bin/env bash
# Side-by-side speed of ContextIQ and mem0 OSS (mem0ai + Chroma), same embedding model
# (all-MiniLM-L6-v2), same workload, one after the other. Creates a Python 3.11 venv at
# target/venv-mem0 on first use (slow: torch), then runs bench/mem0_side_by_side.py.
#
#   bench/mem0.sh --contextiq-bin target/release/contextiq [--memories 10000] [--scopes 100]
#                 [--searches 500] [--system both|contextiq|mem0] [--model-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/venv-mem0
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import mem0, chromadb, sentence_transformers, torch, psutil, requests, onnxruntime' 2>/dev/null; then
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet \
        mem0ai==2.2.1 chromadb==1.5.9 sentence-transformers==6.2.0 torch==2.15.0 psutil requests \
        onnxruntime==1.31.1
fi
./scripts/fetch-model.sh
exec "$venv/bin/python" bench/mem0_side_by_side.py "$@"
