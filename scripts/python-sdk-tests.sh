#!/usr/bin/env bash
# The Python SDK's suite (clients/python/tests): the `contextiq` package, installed from
# clients/python with pytest and pytest-asyncio into its own venv (target/venv-python-sdk),
# against the built debug binary. The tests start `target/debug/contextiq serve` (or
# $CONTEXTIQ_BIN) on free ports with temporary data directories and authentication on: one
# server for the suite, and one rate limited to 1 request per second for the retry tests.
# Does not build: run `cargo build` first (scripts/test.sh does).
# Usage: scripts/python-sdk-tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CONTEXTIQ_BIN:-target/debug/contextiq}
if [ ! -x "$bin" ]; then
    echo "no server binary at $bin: build it first (cargo build), or set CONTEXTIQ_BIN" >&2
    exit 1
fi

venv=target/venv-python-sdk
package=clients/python
# Reinstalled when Python, the package's metadata or its code changes (pyproject.toml, src/).
stamp="$(python3 --version) $(cat "$package/pyproject.toml" $(find "$package/src" -name '*.py' -o -name 'py.typed' | sort) | sha256sum | cut -c1-16)"
if [ "$(cat "$venv/.installed" 2>/dev/null || true)" != "$stamp" ] || [ ! -x "$venv/bin/pytest" ]; then
    echo "installing the Python SDK (contextiq-client) with pytest and pytest-asyncio into $venv" >&2
    python3 -m venv "$venv"
    # setuptools builds in the tree: a stale build/ could put removed modules in the wheel.
    rm -rf "$package/build"
    "$venv/bin/pip" install --quiet "./$package" pytest pytest-asyncio
    echo "$stamp" >"$venv/.installed"
fi

./scripts/fetch-model.sh

exec "$venv/bin/pytest" "$package/tests" -q "$@"
