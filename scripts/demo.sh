#!/usr/bin/env bash
# Build everything and run the demo: the example handlers on the sample GCN
# alerts, through the whole pipeline on an in-process Kafka. No broker, no
# credentials.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml
cargo build -p alerthost
exec target/debug/alerthost demo "$@"
