#!/usr/bin/env bash
# Builds the test image of the `images` test (tests/images/) and of the benchmark's image
# rows once per content into $HEARTH_CACHE (scripts/lib/cache.sh: one process builds, the
# others wait). Prints the folder that holds it:
#
#   oci/               the image as an OCI image layout, tag "1"
#   image.oci.tar      the same as an OCI archive (`skopeo copy ... oci-archive:`)
#   image.docker.tar   the same as `docker save` writes it (`docker-archive:`), named
#                      hearth-test/proxy:1
#   NAME               the image's name, hearth-test/proxy:1
#
# The root is a real one: Debian's python3.11 with the shared libraries it loads and its
# standard library, copied from the host's packages (Debian 12 is merged-/usr: /lib, /lib64
# and /bin are symlinks into /usr), and tests/images/proxy.py, OpenWhisk's action-proxy
# contract on port 8080, as the entrypoint. Two layers, so that importing applies a whiteout
# and a hard link: the first holds the root and /etc/hearth-removed, the second removes that
# file (a whiteout) and adds /usr/bin/python3-link, a hard link to the interpreter.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/cache.sh"

PY=/usr/bin/python3.11
NAME=hearth-test/proxy:1
for tool in umoci skopeo; do
    command -v $tool >/dev/null ||
        { echo "$tool is missing: scripts/install-deps.sh (HEARTH_DEPS=test) installs it" >&2; exit 1; }
done
[ -x "$PY" ] || { echo "$PY is missing: scripts/install-deps.sh installs python3" >&2; exit 1; }

sum=$( (cat "$0" "$here/proxy.py"; "$PY" --version; sha256sum "$PY") | sha256sum | cut -c1-16)
out=$HEARTH_CACHE/test-image-$sum

ready() { [ -f "$out/NAME" ]; }

# Copies host paths into the root, keeping their place, links and modes.
copy_in() {
    local root=$1
    shift
    for path in "$@"; do
        mkdir -p "$root$(dirname "$path")"
        cp -a "$path" "$root$path"
    done
}

make_root() {
    local root=$1 lib
    mkdir -p "$root"/usr/bin "$root"/usr/lib "$root"/usr/lib64 "$root"/etc "$root"/tmp "$root"/action
    ln -s usr/bin "$root/bin"
    ln -s usr/lib "$root/lib"
    ln -s usr/lib64 "$root/lib64"
    chmod 1777 "$root/tmp"
    # The loader: /usr/lib64/ld-linux-x86-64.so.2 is an absolute symlink into /lib (kept as
    # such: the importer must take absolute links that resolve inside the root).
    copy_in "$root" "$PY" /usr/lib64/ld-linux-x86-64.so.2 \
        "$(readlink -f /usr/lib64/ld-linux-x86-64.so.2)"
    ln -s python3.11 "$root/usr/bin/python3"
    # The libraries the interpreter and its extension modules load, by their real paths.
    for lib in $( (ldd "$PY"; ldd /usr/lib/python3.11/lib-dynload/*.so 2>/dev/null) |
        awk '/=> \// { print $3 }' | sort -u); do
        lib=$(readlink -f "$lib")
        lib=/usr${lib#/usr}
        [ -e "$lib" ] && copy_in "$root" "$lib"
        # the soname link the loader looks for
        for link in /usr/lib/x86_64-linux-gnu/*.so.*; do
            [ -L "$link" ] && [ "$(readlink -f "$link")" = "$lib" ] && copy_in "$root" "$link"
        done
    done 2>/dev/null
    mkdir -p "$root/usr/lib/python3.11"
    tar -C /usr/lib/python3.11 --exclude=./test --exclude=./idlelib --exclude=./tkinter \
        --exclude=./turtledemo --exclude=./ensurepip --exclude=./lib2to3 \
        --exclude=./config-3.11-x86_64-linux-gnu --exclude=./site-packages \
        --exclude=./dist-packages -cf - . | tar -C "$root/usr/lib/python3.11" -xf -
    cp "$here/proxy.py" "$root/proxy.py"
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
    echo 'this file is removed by the second layer' >"$root/etc/hearth-removed"
}

build() {
    local tmp=$out.building log=$HEARTH_CACHE/test-image.log
    rm -rf "$tmp"
    mkdir -p "$tmp"
    step "$log" "umoci init" umoci init --layout "$tmp/oci"
    step "$log" "umoci new" umoci new --image "$tmp/oci:1"
    step "$log" "umoci unpack" umoci unpack --image "$tmp/oci:1" "$tmp/bundle"
    make_root "$tmp/bundle/rootfs"
    step "$log" "umoci repack (layer 1)" umoci repack --refresh-bundle --image "$tmp/oci:1" "$tmp/bundle"
    rm "$tmp/bundle/rootfs/etc/hearth-removed"
    ln "$tmp/bundle/rootfs/usr/bin/python3.11" "$tmp/bundle/rootfs/usr/bin/python3-link"
    step "$log" "umoci repack (layer 2)" umoci repack --image "$tmp/oci:1" "$tmp/bundle"
    step "$log" "umoci config" umoci config --image "$tmp/oci:1" \
        --config.entrypoint /usr/bin/python3 --config.entrypoint /proxy.py \
        --config.env PATH=/usr/bin:/bin --config.env HEARTH_TEST_IMAGE=proxy \
        --config.workingdir / --author hearth-tests
    umoci gc --layout "$tmp/oci"
    rm -rf "$tmp/bundle"
    step "$log" "skopeo copy to an OCI archive" \
        skopeo copy "oci:$tmp/oci:1" "oci-archive:$tmp/image.oci.tar:$NAME"
    step "$log" "skopeo copy to a docker archive" \
        skopeo copy "oci:$tmp/oci:1" "docker-archive:$tmp/image.docker.tar:$NAME"
    echo "$NAME" >"$tmp/NAME"
    rm -rf "$out"
    mv "$tmp" "$out"
}

cache_build "test-image-$sum" ready build
echo "$out"
