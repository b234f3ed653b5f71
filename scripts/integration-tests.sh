#!/usr/bin/env bash
# The suite of the MCP server and the framework adapters (integrations/*/tests, but ADK's, which
# has its own venv: scripts/adk-tests.sh): clients we did not write, pinned — the official MCP
# Python SDK, openai-agents, langgraph, llama-index-core — with our adapters and the Python SDK,
# in their own venv (target/venv-integrations), against the built debug binary (or
# $CONTEXTIQ_BIN). Does not build: run `cargo build` first (scripts/test.sh does).
# Usage: scripts/integration-tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CONTEXTIQ_BIN:-target/debug/contextiq}
if [ ! -x "$bin" ]; then
    echo "no server binary at $bin: build it first (cargo build), or set CONTEXTIQ_BIN" >&2
    exit 1
fi

venv=target/venv-integrations
packages=(clients/python integrations/openai-agents integrations/langgraph integrations/llamaindex)
pins=(mcp==2.3.0 openai-agents==0.24.0 langgraph==1.2.22 llama-index-core==0.14.25 pytest==9.2.0 pytest-asyncio==1.5.0)
# Reinstalled when Python, a pin, or a package's metadata or code changes.
stamp="$(python3 --version) ${pins[*]} $(cat $(for p in "${packages[@]}"; do find "$p" -name pyproject.toml -o -path "$p/src/*" -name '*.py'; done | sort) | sha256sum | cut -c1-16)"
if [ "$(cat "$venv/.installed" 2>/dev/null || true)" != "$stamp" ] || [ ! -x "$venv/bin/pytest" ]; then
    echo "installing ${pins[*]} and the adapters into $venv" >&2
    python3 -m venv "$venv"
    for p in "${packages[@]}"; do rm -rf "$p/build"; done
    "$venv/bin/pip" install --quiet "${pins[@]}" "${packages[@]/#/./}"
    echo "$stamp" >"$venv/.installed"
fi

./scripts/fetch-model.sh

tests=()
for dir in integrations/*/tests; do
    [ "$dir" = integrations/adk/tests ] || tests+=("$dir")
done
exec "$venv/bin/pytest" -c integrations/pytest.ini --rootdir integrations "${tests[@]}" -q "$@"
