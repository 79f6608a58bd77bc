#!/usr/bin/env bash
# Installs OpenWhisk's JavaScript client (package.json / package-lock.json here) once per lock
# file into $HEARTH_CACHE (scripts/lib/cache.sh), npm's own download cache included, and prints
# the node_modules directory to put on NODE_PATH. Safe to run from several tests at once: one
# installs, the others wait for it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/cache.sh"
command -v npm >/dev/null || { echo "npm is missing: scripts/install-deps.sh (HEARTH_DEPS=test) installs it" >&2; exit 1; }
lock_sum=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)
dir=$HEARTH_CACHE/openwhisk-client/$lock_sum

client_ready() { [ -f "$dir/node_modules/openwhisk/package.json" ]; }

install_client() {
    local tmp=$dir.building
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp "$here/package.json" "$here/package-lock.json" "$tmp/"
    (cd "$tmp" && step "$HEARTH_CACHE/openwhisk-client-npm.log" "npm ci of the OpenWhisk client" \
        npm ci --no-audit --no-fund --cache "$HEARTH_CACHE/npm")
    rm -rf "$dir"
    mv "$tmp" "$dir"
}

cache_build "openwhisk-client-$lock_sum" client_ready install_client
echo "$dir/node_modules"
