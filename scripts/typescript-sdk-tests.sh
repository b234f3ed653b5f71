#!/usr/bin/env bash
# The TypeScript SDK's suite (clients/typescript, npm package @contextiq/client): installs its
# pinned dev dependencies with `npm ci` when node_modules is missing or older than
# package-lock.json, builds it (tsc, to dist/), then runs `npm test`: a type check of a
# consumer's code against the built declarations, and node's test runner on test/*.test.mjs,
# whose tests start `target/debug/contextiq serve` (or $CONTEXTIQ_BIN) on free ports with
# temporary data directories and authentication on. Does not build the server: run
# `cargo build` first (scripts/test.sh does). Needs Node 20+ and npm.
# Usage: scripts/typescript-sdk-tests.sh [extra node --test args, e.g. --test-name-pattern=engine]
set -euo pipefail
cd "$(dirname "$0")/.."
sdk=clients/typescript

bin=${CONTEXTIQ_BIN:-target/debug/contextiq}
if [ ! -x "$bin" ]; then
    echo "no server binary at $bin: build it first (cargo build), or set CONTEXTIQ_BIN" >&2
    exit 1
fi
export CONTEXTIQ_BIN
CONTEXTIQ_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "the TypeScript SDK's tests need node (20 or later) and npm on the PATH" >&2
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "the TypeScript SDK needs Node 20 or later; this is $(node --version)" >&2
    exit 1
fi
./scripts/fetch-model.sh

cd "$sdk"
# npm ci when the installed tree is not the lockfile's: npm records the tree it installed in
# node_modules/.package-lock.json, and we record the lockfile it came from beside it.
stamp=node_modules/.contextiq-lock.sha256
lock_sum=$(sha256sum package-lock.json package.json | sha256sum | cut -c1-64)
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_sum" ]; then
    echo "installing the SDK's dev dependencies (npm ci) in $sdk" >&2
    # `prepare` builds too; the build below runs anyway.
    npm ci --no-audit --no-fund --ignore-scripts
    echo "$lock_sum" >"$stamp"
fi

npm run build
if [ "$#" -gt 0 ]; then
    npm run typecheck
    exec node --test --test-concurrency=1 "$@" test/*.test.mjs
fi
exec npm test
