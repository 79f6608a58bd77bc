#!/usr/bin/env bash
# Builds the Kafka-protocol broker the multi-host tests run against (tansu, from crates.io),
# once, into $HEARTH_CACHE (scripts/lib/cache.sh) that later runs reuse. Prints the broker
# binary's path. About 10 minutes on a 2-core machine the first time; instant afterwards.
# Safe to run from several processes at once: one builds, the others wait for it.
set -euo pipefail
. "$(dirname "$0")/lib/cache.sh"
version="${TANSU_VERSION:-}"
bin="$HEARTH_CACHE/tansu/bin/tansu"

broker_ready() { [ -x "$bin" ]; }

build_broker() {
  local p
  for p in cmake pkg-config; do
    if ! command -v "$p" >/dev/null 2>&1; then
      step "$HEARTH_CACHE/tansu-apt.log" "installing the broker's build tools" \
        sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake pkg-config libssl-dev'
      break
    fi
  done
  # Installed into a temporary root and renamed, so an interrupted build leaves nothing that
  # broker_ready accepts.
  rm -rf "$HEARTH_CACHE/tansu.building" "$HEARTH_CACHE/tansu-target"
  CARGO_TARGET_DIR="$HEARTH_CACHE/tansu-target" step "$HEARTH_CACHE/tansu-build.log" \
    "cargo install tansu" nice -n 10 cargo install --locked \
    ${version:+--version "$version"} --features dynostore --root "$HEARTH_CACHE/tansu.building" tansu
  rm -rf "$HEARTH_CACHE/tansu-target" "$HEARTH_CACHE/tansu"
  mv "$HEARTH_CACHE/tansu.building" "$HEARTH_CACHE/tansu"
}

cache_build tansu broker_ready build_broker
echo "$bin"
