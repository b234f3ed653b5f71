#!/usr/bin/env bash
# Runs the server on its embedded default: fetches the local embedding model when it is
# missing, then builds and starts `contextiq serve` (SQLite in ./data, 127.0.0.1:8000).
# Arguments go to `contextiq serve`, e.g. `./scripts/serve.sh --bind 0.0.0.0:8000`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-model.sh
exec cargo run --release -- serve "$@"
