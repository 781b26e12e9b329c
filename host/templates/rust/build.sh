#!/usr/bin/env bash
# Build the handler into dist/{{name}}.wasm: a release build for
# wasm32-wasip2 (the target is added with rustup if it is missing).
# Extra arguments go to `cargo build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2 "$@"
mkdir -p dist
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate_name}}.wasm" dist/{{name}}.wasm
echo "built dist/{{name}}.wasm ($(wc -c < dist/{{name}}.wasm) bytes)" >&2
