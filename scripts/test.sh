#!/usr/bin/env bash
# The whole test suite: unit tests, sandbox tests with hostile guests, the
# examples over the sample alerts, and the Kafka integration tests against a
# real Apache Kafka broker started here (and stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# A broker of this run's own, on free loopback ports.
export ALERTHOST_KAFKA_DIR=${ALERTHOST_KAFKA_DIR:-$(mktemp -d /tmp/alerthost-test-kafka.XXXXXX)}
ALERTHOST_KAFKA_BOOTSTRAP=$(scripts/kafka.sh start)
export ALERTHOST_KAFKA_BOOTSTRAP
trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
echo "test: Kafka broker at $ALERTHOST_KAFKA_BOOTSTRAP" >&2

cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml

# Python and JavaScript handlers: pinned componentize-py and componentize-js,
# then the examples and hostile guests in both languages.
scripts/guest-toolchains.sh
examples/python/build.sh
examples/js/build.sh
tests/guests-py/build.sh
tests/guests-js/build.sh

# Each workspace on its own: the examples and guests are wasm workspaces whose
# logic is tested natively.
cargo test --workspace
cargo test --manifest-path examples/Cargo.toml --target "$(rustc -vV | sed -n 's/^host: //p')"
