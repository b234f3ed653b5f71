#!/usr/bin/env bash
# Vector search alone at 100,000 memories on three backends, one after the other on this
# machine, for BENCHMARKS.md (`contextiq bench vectors`):
#   1. the embedded index (SQLite; an exact scan of the scope's vectors in memory);
#   2. pgvector (PostgreSQL; exact up to 2,000 memories per scope, HNSW beyond);
#   3. Qdrant: Qdrant's own engine (qdrant-edge 0.7.2) behind Qdrant's gRPC protocol, served by
#      crates/qdrant-edge-server in a process of its own on this machine (SQLite keeps the
#      records). No Qdrant server can be installed here: this is not a Qdrant deployment.
# Starts PostgreSQL with scripts/services.sh (and leaves it running).
#
#   bench/vectors.sh [MEMORIES] [SCOPES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
memories="${1:-100000}"
scopes="${2:-10}"
seconds="${3:-10}"
cargo build --release --locked --quiet -p contextiq -p contextiq-qdrant-edge-server
./scripts/fetch-model.sh
services="$(./scripts/services.sh start)"
postgres_url="$(sed -n 's/^CONTEXTIQ_TEST_DATABASE_URL=//p' <<<"$services")"
work="$(mktemp -d)"
qdrant_pid=""
cleanup() {
    if [ -n "$qdrant_pid" ]; then
        kill "$qdrant_pid" 2>/dev/null
        wait "$qdrant_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
export EMBEDDING_MODEL_PATH="$PWD/models/all-MiniLM-L6-v2" LOG_LEVEL=warn
bench() {
    target/release/contextiq bench vectors --memories "$memories" --scopes "$scopes" --seconds "$seconds" --clients 8
}

echo "### embedded index (SQLite)"
bench

echo "### PostgreSQL + pgvector"
database="bench_vectors_$$"
psql "$postgres_url" -q -c "CREATE DATABASE $database" >/dev/null
DATABASE_URL="${postgres_url%/*}/$database" bench

echo "### Qdrant (qdrant-edge behind the gRPC protocol)"
target/release/contextiq-qdrant-edge-server --bind 127.0.0.1:0 --storage "$work/qdrant" >"$work/qdrant.out" &
qdrant_pid="$!"
for _ in $(seq 100); do
    grep -q '^QDRANT_URL=' "$work/qdrant.out" && break
    sleep 0.1
done
qdrant_url="$(sed -n 's/^QDRANT_URL=//p' "$work/qdrant.out")"
QDRANT_URL="$qdrant_url" QDRANT_GRPC_PORT="${qdrant_url##*:}" bench
