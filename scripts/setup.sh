#!/usr/bin/env bash
# Install what building and testing alerthost needs on a fresh Debian-like
# machine: the C libraries librdkafka builds against, kcat (an independent
# Kafka client the tests use as a witness), strace (the tests check which
# directories the host fsyncs), promtool (from `prometheus`, the witness that
# /metrics is valid exposition format), systemd-analyze (checks
# deploy/alerthost.service), and the pinned Rust toolchain (rust-toolchain.toml)
# with its wasm32-wasip2 target.
# Idempotent and quick when everything is there.
set -euo pipefail

packages=(cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev kcat util-linux strace)
# Only their tools are used: no recommended extras (prometheus would bring a
# node exporter).
tools=(prometheus systemd)
missing=()
missing_tools=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
for package in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing_tools+=("$package")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_tools[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} ${missing_tools[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ${#missing_tools[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_tools[@]}" >/dev/null
  fi
fi

# The Rust toolchain of rust-toolchain.toml, with its components (rustfmt,
# clippy) and the wasm32-wasip2 target (quick when it is there already).
rustup -q toolchain install
