#!/usr/bin/env bash
# Build the handler into dist/{{name}}.wasm with componentize-py
# (pip install componentize-py=={{componentize_py_version}}; or set COMPONENTIZE_PY).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec alerthost/build.sh "$@" . dist/{{name}}.wasm
