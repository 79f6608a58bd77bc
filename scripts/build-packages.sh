#!/usr/bin/env bash
# Builds hearth's distro packages from the tree this script sits in, into target/packages/:
#   hearth_<version>_<arch>.deb     (packaging/debian, dpkg-buildpackage, then lintian)
#   hearth-<version>-1.<arch>.rpm   (packaging/rpm/hearth.spec, rpmbuild from Debian's rpm)
#
#   scripts/build-packages.sh [deb|rpm|all]      (default all)
#
# Idempotent: installs only the missing build tools (apt-get, as root), rebuilds from a fresh
# copy of the tracked and untracked-but-not-ignored files (what a clean checkout plus your edits
# has), and reuses cargo's release target dir target/pkg-build so a second run only relinks.
# Environment:
#   HEARTH_PKG_VERSION   package version to stamp (default: Cargo.toml's); lets a test build an
#                        "upgrade" of the same source, e.g. 0.1.0+rebuild1
#   CARGO                the cargo to use (default: cargo on PATH, rustup's ~/.cargo/bin added)
set -euo pipefail

what=${1:-all}
case "$what" in deb | rpm | all) ;; *) echo "usage: $0 [deb|rpm|all]" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/target/packages
work=$out/build
# One build at a time: the staging dir and the release target dir are shared, and tests in
# several binaries (or a developer's `make packages` beside them) may ask at once. The lock is
# released when this script exits.
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
# One release target dir for both formats. They export different CFLAGS, so switching rebuilds
# LMDB and relinks (about a minute), but a cold build (CI's case) compiles the dependencies once.
export CARGO_TARGET_DIR=$root/target/pkg-build
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf 'build-packages: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_tools() {
    local need=()
    command -v cargo >/dev/null || die "cargo is not on PATH: install a Rust toolchain (rustup)"
    if [ "$what" != rpm ]; then
        command -v dpkg-buildpackage >/dev/null || need+=(dpkg-dev)
        command -v dh >/dev/null || need+=(debhelper)
        command -v lintian >/dev/null || need+=(lintian)
        command -v fakeroot >/dev/null || need+=(fakeroot)
    fi
    if [ "$what" != deb ]; then
        command -v rpmbuild >/dev/null || need+=(rpm)
    fi
    command -v cc >/dev/null || need+=(gcc)
    # The packaged hearthd has the Kafka bus: a bundled librdkafka built with cmake and a C++
    # compiler, and curl's header (nothing links libcurl).
    command -v cmake >/dev/null || need+=(cmake)
    command -v c++ >/dev/null || need+=(g++)
    [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] \
        || need+=(libcurl4-openssl-dev)
    if [ ${#need[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root or install them"
        log "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# The packages install what systemd/ and the binaries provide; say plainly what is missing
# rather than failing deep inside dpkg-buildpackage or rpmbuild.
check_inputs() {
    local f missing=()
    for f in hearth-controller.socket hearth-controller.service hearth-invoker.socket \
        hearth-invoker.service hearth.slice sysusers.d/hearth.conf tmpfiles.d/hearth.conf; do
        [ -f "$root/systemd/$f" ] || missing+=("systemd/$f")
    done
    for f in config/controller.toml config/invoker.toml; do
        [ -f "$root/$f" ] || missing+=("$f")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]} (the units come from the systemd work)"
}

# The man pages and completions come from `hearthd generate-assets`; name the cause if the
# daemon binary does not have it.
explain_build_failure() {
    local log=$1
    if grep -q -e "unrecognized subcommand 'generate-assets'" -e "generate-assets wrote no man pages" "$log"; then
        log "hearthd has no generate-assets subcommand: it must call hearth::docgen::{write_man_pages, write_completions}"
    fi
}

cargo_version() {
    sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1
}

# A fresh source tree: the files git knows (tracked, or new and not ignored), so neither target/
# nor an editor's droppings end up in a package. Outside git, everything but target/ and .git.
stage_tree() {
    local dest=$1
    rm -rf "$dest"
    mkdir -p "$dest"
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$root" && git ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
            | tar --null -T - -cf -) | tar -xf - -C "$dest"
    else
        tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -xf - -C "$dest"
    fi
}

build_deb() {
    local version=$1 src=$work/deb/hearth-$1 t0
    t0=$SECONDS
    stage_tree "$src"
    cp -a "$root/packaging/debian" "$src/debian"
    local top
    top=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
    if [ "$top" != "$version" ]; then
        # A rebuild under another version gets its own changelog entry, as a distro rebuild would.
        {
            printf 'hearth (%s) unstable; urgency=medium\n\n  * Rebuild of %s.\n\n' "$version" "$top"
            printf ' -- hearth developers <hearth-devel@example.org>  %s\n\n' "$(date -R)"
            cat "$src/debian/changelog"
        } >"$src/debian/changelog.new"
        mv "$src/debian/changelog.new" "$src/debian/changelog"
    fi
    log "dpkg-buildpackage hearth $version"
    (cd "$src" && dpkg-buildpackage -b -us -uc) >"$out/deb-build.log" 2>&1 \
        || { explain_build_failure "$out/deb-build.log"; false; } \
        || die "dpkg-buildpackage failed; see $out/deb-build.log: $(tail -n 15 "$out/deb-build.log")"
    local arch deb
    arch=$(dpkg --print-architecture)
    deb=hearth_${version}_${arch}.deb
    mv -f "$work/deb/$deb" "$out/$deb"
    mv -f "$work/deb/"hearth-dbgsym_"${version}"_*.deb "$out/" 2>/dev/null || true
    rm -f "$work/deb/"*.buildinfo "$work/deb/"*.changes
    log "lintian $deb"
    if ! lintian --allow-root --fail-on error \
        "$out/$deb" >"$out/lintian.txt" 2>&1; then
        cat "$out/lintian.txt" >&2
        die "lintian reported errors for $deb"
    fi
    log "built $out/$deb in $((SECONDS - t0))s; lintian: $(grep -c '' "$out/lintian.txt") line(s), see $out/lintian.txt"
}

build_rpm() {
    local version=$1 top=$work/rpm t0
    t0=$SECONDS
    rm -rf "$top"
    mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
    stage_tree "$top/hearth-$version"
    tar -C "$top" -czf "$top/SOURCES/hearth-$version.tar.gz" "hearth-$version"
    rm -rf "${top:?}/hearth-$version"
    cp "$root/packaging/rpm/hearth-fallback.macros" "$top/SOURCES/"
    cp "$root/systemd/sysusers.d/hearth.conf" "$top/SOURCES/hearth.sysusers"
    sed "s/^Version: .*/Version:        $version/" "$root/packaging/rpm/hearth.spec" >"$top/SPECS/hearth.spec"
    log "rpmbuild hearth $version"
    # --nodeps: the build host is Debian, whose rpm database knows none of the BuildRequires.
    rpmbuild -bb --define "_topdir $top" --nodeps "$top/SPECS/hearth.spec" >"$out/rpm-build.log" 2>&1 \
        || { explain_build_failure "$out/rpm-build.log"; false; } \
        || die "rpmbuild failed; see $out/rpm-build.log: $(tail -n 15 "$out/rpm-build.log")"
    local rpm
    rpm=$(find "$top/RPMS" -name "hearth-$version-*.rpm" | head -n1)
    [ -n "$rpm" ] || die "rpmbuild made no hearth rpm; see $out/rpm-build.log"
    mv -f "$rpm" "$out/"
    log "built $out/$(basename "$rpm") in $((SECONDS - t0))s"
}

check_inputs
install_tools
mkdir -p "$out" "$work"
version=${HEARTH_PKG_VERSION:-$(cargo_version)}
[ -n "$version" ] || die "no version in Cargo.toml"
case "$what" in
deb) build_deb "$version" ;;
rpm) build_rpm "$version" ;;
all) build_deb "$version"; build_rpm "$version" ;;
esac
