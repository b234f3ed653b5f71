#!/usr/bin/env bash
# Schemathesis, an OpenAPI client we did not write, against the built debug binary: every
# check (statuses, content types, schemas, positive and negative data, auth, methods, ...)
# on requests it derives from /openapi.json, bounded in examples and time. Installs
# Schemathesis from PyPI into its own venv (target/venv-schemathesis), starts
# `target/debug/contextiq serve` on a free port with a temporary data directory and
# authentication on, and uses the admin key the server writes on first start.
# Settings and the documented exceptions: scripts/schemathesis.toml; the one accepted failure
# (a revoked key stays readable) in scripts/schemathesis-baseline.json.
# Usage: scripts/schemathesis.sh [extra schemathesis args]
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv=target/venv-schemathesis
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null || true)" != "schemathesis, version $version" ]; then
    echo "installing schemathesis $version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

# Built with the workspace's test feature set, as scripts/test.sh's test run builds it, so after
# that run nothing is recompiled (`-p contextiq --bin contextiq` would resolve features anew).
cargo build --locked --workspace --tests
./scripts/fetch-model.sh

data_dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CONTEXTIQ_BIND="127.0.0.1:$port" CONTEXTIQ_DATA_DIR="$data_dir" AUTH_REQUIRE_AUTH=true \
    RATE_LIMIT_PER_SECOND=0 \
    target/debug/contextiq serve >"$data_dir/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data_dir"' EXIT
for _ in $(seq 1 120); do
    if [ -s "$data_dir/admin-key.txt" ] && curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$data_dir/server.log" >&2; echo "the server did not start" >&2; exit 1; }
    sleep 0.5
done
CONTEXTIQ_SCHEMATHESIS_KEY=$(tr -d '\n' <"$data_dir/admin-key.txt")
export CONTEXTIQ_SCHEMATHESIS_KEY

status=0
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
    --checks all --baseline scripts/schemathesis-baseline.json "$@" || status=$?
if grep -q '"level":"ERROR"' "$data_dir/server.log"; then
    echo "the server logged errors:" >&2
    grep '"level":"ERROR"' "$data_dir/server.log" | head -20 >&2
    status=1
fi
exit "$status"
