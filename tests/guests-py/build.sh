#!/usr/bin/env bash
# Build the hostile Python test guests into tests/guests-py/dist/<name>.wasm.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for guest in hostile; do
    "$here/../../guest-sdk/python/build.sh" "$@" "$here/$guest" "$here/dist/$guest.wasm"
done
