#!/usr/bin/env bash
# Build the handler into dist/{{name}}.wasm with componentize-js, installing
# it (npm, pinned in package.json) on the first run unless
# $ALERTHOST_JS_NODE_MODULES names a node_modules that has it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -d node_modules/@bytecodealliance/componentize-js ] && [ -z "${ALERTHOST_JS_NODE_MODULES:-}" ]; then
    npm install --no-audit --no-fund --loglevel=error
fi
exec node alerthost/build.mjs "$@" handler.js dist/{{name}}.wasm
