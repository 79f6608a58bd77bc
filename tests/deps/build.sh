#!/usr/bin/env bash
# Builds the dependency trees the runtime tests (tests/runtimes.rs) pack into action zips,
# from real packages of PyPI and npm, once per version list into $HEARTH_CACHE
# (scripts/lib/cache.sh: one process builds, the others wait; a second run downloads nothing).
# Prints two lines: the Python virtualenv folder and the node_modules folder.
#
# The virtualenv is made by the HOST's Python (/usr/bin/python3, which the containers run):
# `-m venv --without-pip`, then `pip install --target` into its site-packages, so that the
# wheel with a C extension matches the interpreter that loads it.
#   six          a pure-Python module
#   markupsafe   a manylinux wheel with a shared library (markupsafe/_speedups.*.so)
#   ms           an npm package with no dependencies
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/cache.sh"

PY=/usr/bin/python3
PY_PACKAGES="six==1.16.0 markupsafe==2.1.5"
NPM_PACKAGES="ms@2.1.3"

[ -x "$PY" ] || { echo "$PY is missing: scripts/install-deps.sh installs it" >&2; exit 1; }
"$PY" -m pip --version >/dev/null 2>&1 ||
    { echo "pip for $PY is missing: scripts/install-deps.sh (HEARTH_DEPS=test) installs python3-pip" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is missing: scripts/install-deps.sh (HEARTH_DEPS=test) installs it" >&2; exit 1; }

py_version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
py_sum=$(echo "$py_version $PY_PACKAGES" | sha256sum | cut -c1-16)
npm_sum=$(echo "$NPM_PACKAGES" | sha256sum | cut -c1-16)
venv_dir=$HEARTH_CACHE/runtime-deps/python-$py_sum/virtualenv
npm_dir=$HEARTH_CACHE/runtime-deps/node-$npm_sum/node_modules

venv_ready() { [ -d "$venv_dir/lib/python$py_version/site-packages/markupsafe" ]; }
npm_ready() { [ -f "$npm_dir/ms/package.json" ]; }

build_venv() {
    local top=${venv_dir%/virtualenv} tmp
    tmp=$top.building
    rm -rf "$tmp"
    mkdir -p "$tmp"
    step "$HEARTH_CACHE/runtime-deps-venv.log" "python -m venv" \
        "$PY" -m venv --without-pip "$tmp/virtualenv"
    # Wheels only (--only-binary): nothing is compiled here; pip's cache stays in the cache.
    step "$HEARTH_CACHE/runtime-deps-pip.log" "pip install of $PY_PACKAGES" \
        "$PY" -m pip install --no-deps --only-binary=:all: --no-compile --disable-pip-version-check \
        --cache-dir "$HEARTH_CACHE/pip" \
        --target "$tmp/virtualenv/lib/python$py_version/site-packages" $PY_PACKAGES
    rm -rf "$top"
    mv "$tmp" "$top"
}

build_npm() {
    local top=${npm_dir%/node_modules} tmp
    tmp=$top.building
    rm -rf "$tmp"
    mkdir -p "$tmp"
    echo '{"name": "hearth-runtime-deps", "version": "1.0.0", "private": true}' >"$tmp/package.json"
    (cd "$tmp" && step "$HEARTH_CACHE/runtime-deps-npm.log" "npm install of $NPM_PACKAGES" \
        npm install --no-audit --no-fund --no-package-lock --cache "$HEARTH_CACHE/npm" $NPM_PACKAGES)
    rm -rf "$top"
    mv "$tmp" "$top"
}

cache_build "runtime-deps-python-$py_sum" venv_ready build_venv
cache_build "runtime-deps-node-$npm_sum" npm_ready build_npm
echo "$venv_dir"
echo "$npm_dir"
