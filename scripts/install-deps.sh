#!/usr/bin/env bash
# Installs the system packages hearth needs to build, run and test, on Debian/Ubuntu.
# Idempotent: installs only what is missing. Run as root (or with sudo available).
#   HEARTH_DEPS=run   (default) what `make run` needs
#   HEARTH_DEPS=test  also what the system tests need (debootstrap, systemd-nspawn, npm, pip)
set -euo pipefail

need=()
# command:package pairs; a command already on PATH (from any source) is enough.
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }

want runc runc            # the container runtime
want python3 python3      # the python:3 kind
want node nodejs          # the nodejs kind
want cc gcc               # LMDB is compiled from source by heed
want make make
want pkg-config pkg-config
if [ "${HEARTH_DEPS:-run}" = "test" ]; then
  want debootstrap debootstrap           # a Debian root for the booted-systemd tests
  want systemd-nspawn systemd-container
  want ip iproute2
  want curl curl
  want npm npm                           # the OpenWhisk JavaScript client, as an existing client
  want chromium chromium                 # tests/web.rs: a real browser loads a web action's page
  # tests/images.rs: the test image is assembled with umoci, copied between formats and into
  # a local registry with skopeo, and served by Debian's registry (distribution).
  want umoci umoci
  want skopeo skopeo
  want docker-registry docker-registry
  # tests/runtimes.rs builds an action's virtualenv with the host's Python (venv, pip) and a
  # native action with gcc (already wanted above); checked by module, as they add no command.
  /usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  # The kafka feature builds a bundled librdkafka with cmake. Its curl, ssl and zlib parts are
  # off, but librdkafka 2.12 includes curl.h anyway (`#ifdef` on a macro defined to 0), so the
  # header must exist; nothing links libcurl. Checked by header, as it has no command.
  want cmake cmake
  [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || need+=(libcurl4-openssl-dev)
fi

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is missing: install a Rust toolchain (rustup) and re-run" >&2
  exit 1
fi
