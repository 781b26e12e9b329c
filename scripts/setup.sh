#!/usr/bin/env bash
# Install what building and testing alerthost needs on a fresh Debian-like
# machine: the C libraries librdkafka builds against, kcat (an independent
# Kafka client the tests use as a witness), strace (the tests check which
# directories the host fsyncs), and Rust's wasm32-wasip2 target.
# Idempotent and quick when everything is there.
set -euo pipefail

packages=(cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev kcat util-linux strace)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
