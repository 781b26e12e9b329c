#!/usr/bin/env bash
# Build a Python handler module into an alerthost component with
# componentize-py.
#
#   build.sh [--module NAME] [--wit DIR] [--stub-wasi] HANDLER_DIR OUT.wasm
#
# HANDLER_DIR holds the handler module (NAME.py, default handler.py), which
# has a class `Handler` or a function `handle` (see alerthost/__init__.py).
# componentize-py is $COMPONENTIZE_PY, else the one that
# scripts/guest-toolchains.sh installs next to this file (.venv), else
# `componentize-py` on PATH. The WIT is --wit, $ALERTHOST_WIT, wit/ next to
# the `alerthost` package (a vendored SDK), or the repository's wit/.
#
# The same sources give the same component: componentize-py snapshots an
# initialised CPython whose heap depends on random numbers drawn at build
# time, so two builds of one source differ in bytes. A build whose inputs
# (the handler directory's .py files, the SDK, the WIT, componentize-py's
# version and the options) match those recorded in OUT.wasm.inputs, and whose
# OUT.wasm is the one recorded, leaves it as it is: the host then sees the
# same version and reuses its compiled code.
#
# The component imports the host's `state` interface only when the handler
# uses it: when no .py file in HANDLER_DIR mentions `alerthost.state`,
# imports `state` from `alerthost` or calls `state.get(`, `state.set(` or
# `state.delete(`, it is built against the world without
# its `import state;` line (componentize-py imports every function of the
# world it is given, used or not), so it also loads where no state is
# offered.
#
# --stub-wasi replaces every WASI import with a trap (componentize-py's
# option): for hosts that refuse the wasi:sockets imports CPython brings;
# print(), time and the filesystem then trap instead of working or failing.
set -euo pipefail

# The SDK directory holds the `alerthost` package: this script's directory in
# the repository, its parent where a project vendors the SDK (alerthost/build.sh).
sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -f "$sdk/alerthost/__init__.py" ] || sdk="$(dirname "$sdk")"
module=handler
wit="${ALERTHOST_WIT:-}"
stub=()
usage() {
    echo "$1" >&2
    echo "usage: build.sh [--module NAME] [--wit DIR] [--stub-wasi] HANDLER_DIR OUT.wasm" >&2
    exit 2
}
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --module) module="$2"; shift 2 ;;
        --wit) wit="$2"; shift 2 ;;
        --stub-wasi) stub=(--stub-wasi); shift ;;
        -*) usage "unknown option $1" ;;
        *) args+=("$1"); shift ;;
    esac
done
[ ${#args[@]} -eq 2 ] || usage "expected a handler directory and an output file"
dir="$(cd "${args[0]}" && pwd)"
mkdir -p "$(dirname "${args[1]}")"
out="$(cd "$(dirname "${args[1]}")" && pwd)/$(basename "${args[1]}")"
[ -f "$dir/$module.py" ] || usage "no $module.py in $dir"
if [ -z "$wit" ]; then
    for candidate in "$sdk/wit" "$sdk/../../wit"; do
        if [ -f "$candidate/handler.wit" ]; then wit="$candidate"; break; fi
    done
fi
[ -n "$wit" ] || usage "no WIT found: pass --wit DIR or set ALERTHOST_WIT"

componentize="${COMPONENTIZE_PY:-}"
if [ -z "$componentize" ]; then
    if [ -x "$sdk/.venv/bin/componentize-py" ]; then
        componentize="$sdk/.venv/bin/componentize-py"
    elif command -v componentize-py >/dev/null; then
        componentize="componentize-py"
    else
        echo "componentize-py is not installed: pip install componentize-py==0.25.1" \
            "(or run scripts/guest-toolchains.sh in the alerthost repository)" >&2
        exit 1
    fi
fi

# What the component is built from, hashed (paths relative, so a moved
# project keeps its record).
inputs() {
    "$componentize" --version
    echo "module=$module ${stub[*]:-}"
    (cd "$dir" && find . \( -name .venv -o -name dist -o -name __pycache__ -o -name node_modules -o -name '.?*' \) -prune \
        -o -type f -name '*.py' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    (cd "$sdk" && sha256sum alerthost/*.py)
    (cd "$wit" && find . -type f -name '*.wit' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
fingerprint="$(inputs | sha256sum | cut -d' ' -f1)"
record="$out.inputs"
if [ -f "$out" ] && [ -f "$record" ] &&
    [ "$(cat "$record")" = "$fingerprint $(sha256sum < "$out" | cut -d' ' -f1)" ]; then
    echo "unchanged $out (same inputs as its build)" >&2
    exit 0
fi

# componentize-py wants a module whose `WitWorld` class is the export: write
# one that hands the handler module to the SDK's glue.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! (cd "$dir" && find . \( -name .venv -o -name dist -o -name __pycache__ -o -name node_modules -o -name '.?*' \) -prune \
        -o -type f -name '*.py' -print0 | xargs -0 -r grep -qE \
        'alerthost\.state|from[[:space:]]+alerthost[[:space:]]+import[^#]*\bstate\b|\bstate\.(get|set|delete)\('); then
    # A handler without state: the same world less its state import.
    cp -R "$wit" "$work/wit"
    sed -i -E '/^[[:space:]]*import[[:space:]]+state[[:space:]]*;/d' "$work"/wit/*.wit
    wit="$work/wit"
fi
cat > "$work/alerthost_entry.py" <<EOF
import alerthost._component
import $module

WitWorld = alerthost._component.export($module)
EOF
# The entry, the handler and the SDK make the Python path (VIRTUAL_ENV unset:
# an active virtualenv's packages are not added; the SDK is stdlib only).
(cd "$work" && env -u VIRTUAL_ENV "$componentize" -q -d "$wit" -w handler componentize "${stub[@]}" \
    -p "$work" -p "$dir" -p "$sdk" alerthost_entry -o "$out.tmp")
mv "$out.tmp" "$out"
echo "$fingerprint $(sha256sum < "$out" | cut -d' ' -f1)" > "$record"
echo "built $out ($(wc -c < "$out") bytes)" >&2
