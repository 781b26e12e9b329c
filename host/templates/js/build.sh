#!/usr/bin/env bash
# Build the handler into dist/{{name}}.wasm with componentize-js
# {{componentize_js_version}}. The toolchain lives in one directory all
# projects share, $ALERTHOST_JS_TOOLCHAIN (default
# ~/.cache/alerthost/componentize-js-{{componentize_js_version}}); the first
# build installs it there with `npm ci` from the lock file in alerthost/toolchain/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
version={{componentize_js_version}}
toolchain="${ALERTHOST_JS_TOOLCHAIN:-${XDG_CACHE_HOME:-$HOME/.cache}/alerthost/componentize-js-$version}"
installed="$toolchain/node_modules/@bytecodealliance/componentize-js/package.json"
have=""
[ -f "$installed" ] && have="$(node -p "require(process.argv[1]).version" "$installed" 2>/dev/null || true)"
if [ "$have" != "$version" ]; then
    echo "installing componentize-js $version into $toolchain (npm, once per machine)" >&2
    mkdir -p "$toolchain"
    cp alerthost/toolchain/package.json alerthost/toolchain/package-lock.json "$toolchain/"
    (cd "$toolchain" && npm ci --no-audit --no-fund --loglevel=error)
fi
ALERTHOST_JS_NODE_MODULES="$toolchain/node_modules" exec node alerthost/build.mjs "$@" handler.js dist/{{name}}.wasm
