#!/usr/bin/env bash
# Build the Python example handlers into components:
#   examples/python/dist/{gbm_subthreshold,sky_region,first_notice}.wasm
# with the SDK in guest-sdk/python (componentize-py from
# scripts/guest-toolchains.sh, or $COMPONENTIZE_PY). Extra options go to
# guest-sdk/python/build.sh (e.g. --stub-wasi).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for example in gbm-subthreshold sky-region first-notice; do
    "$here/../../guest-sdk/python/build.sh" "$@" "$here/$example" "$here/dist/${example//-/_}.wasm"
done
