#!/usr/bin/env bash
# Install the pinned Python consumer that `cargo bench --bench gcn_recipe`
# measures alerthost against (confluent-kafka, the library under NASA's
# gcn-kafka client), into a venv of its own, and print the venv's python.
#
# Idempotent: a venv that already has the pinned version is left alone.
# Needs python3 (3.9+, with venv); nothing is installed globally.
#
#   scripts/bench-python.sh [VENV_DIR]   (default: target/bench-python)
set -euo pipefail

CONFLUENT_KAFKA_VERSION=2.16.1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/target/bench-python}"

have=""
if [ -x "$venv/bin/python" ]; then
    have="$("$venv/bin/python" -c 'import confluent_kafka; print(confluent_kafka.__version__)' 2>/dev/null || true)"
fi
if [ "$have" != "$CONFLUENT_KAFKA_VERSION" ]; then
    echo "installing confluent-kafka $CONFLUENT_KAFKA_VERSION into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >&2
fi
echo "$venv/bin/python"
