#!/usr/bin/env bash
# The Agent Engine compatibility suite: Google's own clients (ADK's VertexAiSessionService and
# VertexAiMemoryBankService, through integrations/adk, and the agentplatform SDK) against the
# built debug binary. Installs pinned google-adk and google-cloud-aiplatform into their own venv
# (target/venv-adk) with the integrations/adk package, then runs integrations/adk/tests, which
# start `target/debug/contextiq serve` (or $CONTEXTIQ_BIN) on a free port with a temporary data
# directory and authentication on. Does not build: run `cargo build` first (scripts/test.sh does).
# Usage: scripts/adk-tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

adk_version=2.13.0
aiplatform_version=2.7.0
venv=target/venv-adk
package=integrations/adk
# Reinstalled when a pin or the package's metadata changes.
stamp="google-adk==$adk_version google-cloud-aiplatform==$aiplatform_version $(sha256sum "$package/pyproject.toml" | cut -c1-16)"
if [ "$(cat "$venv/.installed" 2>/dev/null || true)" != "$stamp" ]; then
    echo "installing google-adk $adk_version and google-cloud-aiplatform $aiplatform_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "google-adk==$adk_version" "google-cloud-aiplatform==$aiplatform_version" \
        pytest pytest-asyncio httpx
    "$venv/bin/pip" install --quiet --no-deps -e "$package"
    echo "$stamp" >"$venv/.installed"
fi

bin=${CONTEXTIQ_BIN:-target/debug/contextiq}
if [ ! -x "$bin" ]; then
    echo "no server binary at $bin: build it first (cargo build)" >&2
    exit 1
fi
./scripts/fetch-model.sh

exec "$venv/bin/pytest" "$package/tests" -q "$@"
