#!/usr/bin/env bash
# Install the pinned toolchains that build Python and JavaScript handlers:
#
# - componentize-py (pip) into guest-sdk/python/.venv
# - componentize-js and jco (npm, from guest-sdk/js/package-lock.json) into
#   guest-sdk/js/node_modules
#
# Idempotent: a toolchain already at its pinned version is left alone, so a
# second run takes well under a second. Needs python3 (3.10+, with venv) and
# node (18+) with npm. Nothing is installed globally.
#
#   scripts/guest-toolchains.sh [python|js]...   (default: both)
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

python_toolchain() {
    local venv="$root/guest-sdk/python/.venv"
    local have=""
    if [ -x "$venv/bin/componentize-py" ]; then
        have="$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')"
    fi
    if [ "$have" = "$COMPONENTIZE_PY_VERSION" ]; then
        echo "componentize-py $have: installed ($venv)"
        return
    fi
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION"
    "$venv/bin/componentize-py" --version
}

js_toolchain() {
    local dir="$root/guest-sdk/js"
    local installed="$dir/node_modules/@bytecodealliance/componentize-js/package.json"
    local have=""
    if [ -f "$installed" ]; then
        have="$(node -p "require('$installed').version" 2>/dev/null || true)"
    fi
    if [ "$have" = "$COMPONENTIZE_JS_VERSION" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        echo "componentize-js $have: installed ($dir/node_modules)"
        return
    fi
    echo "installing componentize-js $COMPONENTIZE_JS_VERSION and jco into $dir/node_modules"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(python js)
for target in "${targets[@]}"; do
    case "$target" in
        python) python_toolchain ;;
        js) js_toolchain ;;
        *) echo "unknown toolchain $target (python or js)" >&2; exit 2 ;;
    esac
done
