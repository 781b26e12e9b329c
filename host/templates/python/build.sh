#!/usr/bin/env bash
# Build the handler into dist/{{name}}.wasm with componentize-py
# {{componentize_py_version}}. The first run installs it into .venv here (pip;
# needs python3 with venv); $COMPONENTIZE_PY names another one to use.
# Extra options go to alerthost/build.sh (such as --stub-wasi).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
version={{componentize_py_version}}
if [ -z "${COMPONENTIZE_PY:-}" ]; then
    COMPONENTIZE_PY="$PWD/.venv/bin/componentize-py"
    have=""
    [ -x "$COMPONENTIZE_PY" ] && have="$("$COMPONENTIZE_PY" --version 2>/dev/null | awk '{print $2}')"
    if [ "$have" != "$version" ]; then
        echo "installing componentize-py $version into .venv" >&2
        python3 -m venv .venv
        .venv/bin/python -m pip install --quiet --disable-pip-version-check "componentize-py==$version"
    fi
fi
export COMPONENTIZE_PY
exec alerthost/build.sh "$@" . dist/{{name}}.wasm
