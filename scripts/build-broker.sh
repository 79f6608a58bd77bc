#!/usr/bin/env bash
# Builds the Kafka-protocol broker the multi-host tests run against (tansu, from crates.io),
# once, into a cache that later runs reuse. Prints the broker binary's path.
# About 10 minutes on a 2-core machine the first time; seconds afterwards.
set -euo pipefail
cache="${HEARTH_CACHE:-/var/cache/hearth-test}"
version="${TANSU_VERSION:-}"
bin="$cache/tansu/bin/tansu"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  for p in cmake pkg-config; do
    command -v "$p" >/dev/null 2>&1 || { { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake pkg-config libssl-dev; } >&2; break; }
  done
  CARGO_TARGET_DIR="$cache/tansu-target" nice -n 10 cargo install --locked --quiet \
    ${version:+--version "$version"} --features dynostore --root "$cache/tansu" tansu >&2
  rm -rf "$cache/tansu-target"
fi
echo "$bin"
