#!/usr/bin/env bash
# Build the JavaScript example handlers into components:
#   examples/js/dist/{gbm_subthreshold,sky_region,first_notice}.wasm
# with the SDK in guest-sdk/js (componentize-js from
# scripts/guest-toolchains.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for example in gbm-subthreshold sky-region first-notice; do
    node "$here/../../guest-sdk/js/build.mjs" "$here/$example/handler.js" "$here/dist/${example//-/_}.wasm"
done
