#!/usr/bin/env bash
# Build the hostile JavaScript test guests into tests/guests-js/dist/<name>.wasm.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for guest in hostile; do
    node "$here/../../guest-sdk/js/build.mjs" "$here/$guest/handler.js" "$here/dist/$guest.wasm"
done
