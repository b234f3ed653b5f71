#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, then every test.
# Installs what the tests need: cargo-nextest if missing, the local embedding model, and the
# servers of the distributed deployment, PostgreSQL with pgvector, Redis and RabbitMQ
# (scripts/services.sh; needs root or sudo for apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required: install Rust from https://rustup.rs" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

echo "== embedding model"
./scripts/fetch-model.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== PostgreSQL with pgvector, Redis and RabbitMQ on 127.0.0.1 (installed from Debian packages if missing)"
services="$(./scripts/services.sh start)"
# Qdrant test servers keep their collections under target/tmp/qdrant-*.
trap './scripts/services.sh stop; rm -rf target/tmp/qdrant-*' EXIT
postgres_url="$(sed -n 's/^CONTEXTIQ_TEST_DATABASE_URL=//p' <<<"$services")"
redis_url="$(sed -n 's/^CONTEXTIQ_TEST_REDIS_URL=//p' <<<"$services")"
rabbitmq_url="$(sed -n 's/^CONTEXTIQ_TEST_RABBITMQ_URL=//p' <<<"$services")"

# A test whose service is missing fails instead of skipping.
export CONTEXTIQ_REQUIRE_SERVICES=1

echo "== tests (embedded default; store tests of PostgreSQL, Redis and RabbitMQ)"
CONTEXTIQ_TEST_DATABASE_URL="$postgres_url" CONTEXTIQ_TEST_REDIS_URL="$redis_url" \
    CONTEXTIQ_TEST_RABBITMQ_URL="$rabbitmq_url" \
    cargo nextest run --workspace --locked --no-fail-fast

# The conformance runs select the API suite from the whole workspace, so they reuse the test
# run's build: `-p contextiq` would resolve features anew and recompile.
echo "== conformance: the API suite against PostgreSQL + pgvector + Redis + RabbitMQ"
CONTEXTIQ_CONFORMANCE_DATABASE_URL="$postgres_url" CONTEXTIQ_CONFORMANCE_REDIS_URL="$redis_url" \
    CONTEXTIQ_CONFORMANCE_RABBITMQ_URL="$rabbitmq_url" \
    cargo nextest run --workspace --locked --no-fail-fast -E 'binary_id(contextiq::api)'

# No Qdrant server can be installed from the package registries: the suite runs against
# Qdrant's own engine (the qdrant-edge crate) behind Qdrant's gRPC protocol, in the test process.
echo "== conformance: the API suite against PostgreSQL + Qdrant + Redis + RabbitMQ"
CONTEXTIQ_CONFORMANCE_DATABASE_URL="$postgres_url" CONTEXTIQ_CONFORMANCE_REDIS_URL="$redis_url" \
    CONTEXTIQ_CONFORMANCE_RABBITMQ_URL="$rabbitmq_url" CONTEXTIQ_CONFORMANCE_QDRANT=edge \
    cargo nextest run --workspace --locked --no-fail-fast -E 'binary_id(contextiq::api)'

# Schemathesis, an OpenAPI client we did not write, against the debug binary (its own venv).
echo "== schemathesis: every check on requests derived from /openapi.json"
./scripts/schemathesis.sh

# Google's own clients (ADK's session and memory services, the agentplatform SDK), pinned, in
# their own venv, against the same debug binary: the Agent Engine surface as they use it.
echo "== Agent Engine compatibility: google-adk and google-cloud-aiplatform against the server"
./scripts/adk-tests.sh

# Our own SDKs, each against the same debug binary: Python (its own venv) and TypeScript (npm ci).
echo "== the Python SDK (clients/python) against the server"
./scripts/python-sdk-tests.sh
echo "== the TypeScript SDK (clients/typescript) against the server"
./scripts/typescript-sdk-tests.sh

# MCP through the official MCP Python SDK (both transports), and the adapters of OpenAI Agents,
# LangGraph and LlamaIndex through those frameworks, pinned, in their own venv.
echo "== MCP and the framework adapters (integrations/) against the server"
./scripts/integration-tests.sh
