#!/usr/bin/env bash
# The sessions and memories benchmarks on three deployments, one after the other on this
# machine, for BENCHMARKS.md:
#   1. embedded default (SQLite, in-process vectors), server in the benchmark's process;
#   2. PostgreSQL + pgvector, Redis and RabbitMQ, one `all` process (in the benchmark's process);
#   3. the same servers behind the gateway: gateway, sessions and memory roles as processes.
# Starts PostgreSQL, Redis and RabbitMQ with scripts/services.sh (and leaves them running).
#
#   bench/distributed.sh [SECONDS] [MEMORIES] [SCOPES]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
memories="${2:-5000}"
scopes="${3:-50}"
bin=target/release/contextiq
cargo build --release --locked --quiet
./scripts/fetch-model.sh

services="$(./scripts/services.sh start)"
postgres_url="$(sed -n 's/^CONTEXTIQ_TEST_DATABASE_URL=//p' <<<"$services")"
export REDIS_URL_BENCH="$(sed -n 's/^CONTEXTIQ_TEST_REDIS_URL=//p' <<<"$services")"
export RABBITMQ_URL_BENCH="$(sed -n 's/^CONTEXTIQ_TEST_RABBITMQ_URL=//p' <<<"$services")"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export EMBEDDING_MODEL_PATH="$PWD/models/all-MiniLM-L6-v2"
export RATE_LIMIT_PER_SECOND=0 LOG_LEVEL=warn

# A new database per deployment, so each starts empty.
database() {
    local name="bench_$1_$$"
    psql "$postgres_url" -q -c "CREATE DATABASE $name" >/dev/null
    echo "${postgres_url%/*}/$name"
}

# The in-process server reads its key from a new data directory: it must create it, so each
# benchmark gets an empty database (PostgreSQL runs) or data directory.
bench() {
    local target="$1"
    shift
    echo "=== $target"
    case "$target" in
        sessions) "$bin" bench sessions --clients 32 --seconds "$seconds" "$@" ;;
        memories) "$bin" bench memories --clients 32 --seconds "$seconds" --memories "$memories" --scopes "$scopes" "$@" ;;
    esac
}

echo "### embedded default"
bench sessions
bench memories

echo "### PostgreSQL + Redis + RabbitMQ, one process"
for target in sessions memories; do
    DATABASE_URL="$(database "single_$target")" REDIS_URL="$REDIS_URL_BENCH" RABBITMQ_URL="$RABBITMQ_URL_BENCH" \
        REDIS_KEY_PREFIX="bench-single-$target-$$" RABBITMQ_QUEUE_PREFIX="bench-single-$target-$$." \
        bench "$target"
done

echo "### PostgreSQL + Redis + RabbitMQ, behind the gateway"
export DATABASE_URL="$(database gateway)" REDIS_URL="$REDIS_URL_BENCH" RABBITMQ_URL="$RABBITMQ_URL_BENCH"
export REDIS_KEY_PREFIX="bench-gateway-$$" RABBITMQ_QUEUE_PREFIX="bench-gateway-$$." CONTEXTIQ_DATA_DIR="$work"
start() {
    local role="$1" port="$2"
    shift 2
    env "$@" "$bin" serve --role "$role" --bind "127.0.0.1:$port" >"$work/$role.out" 2>"$work/$role.log" &
    pids+=("$!")
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "the $role role did not start:" >&2
    cat "$work/$role.log" >&2
    exit 1
}
start sessions 18101
start memory 18102
start worker 18103
start gateway 18100 SESSIONS_URL=http://127.0.0.1:18101 MEMORY_URL=http://127.0.0.1:18102
for target in sessions memories; do
    bench "$target" --url http://127.0.0.1:18100 --api-key "$(cat "$work/admin-key.txt")"
done
