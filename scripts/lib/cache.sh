# Shared by every script that builds a cached test artefact (the Debian root of the booted
# tests, the Kafka-protocol broker, the OpenWhisk client's node_modules). Source it; it defines:
#
#   HEARTH_CACHE              the cache root: $HEARTH_CACHE, else /var/cache/hearth-test. Every
#                             cache the tests use lives under it, so `HEARTH_CACHE=$(mktemp -d)
#                             make test` proves the fresh-machine path on a used machine.
#   cache_build NAME CHECK BUILD
#                             makes sure the artefact NAME exists: when `CHECK` fails, takes
#                             $HEARTH_CACHE/NAME.lock (flock, exclusive), checks again (another
#                             process may have built it while this one waited) and only then
#                             runs `BUILD`. One builder, the others wait for it; the lock is
#                             held for the build and its final rename, and released when the
#                             subshell holding it exits (no fd leaks into later processes).
#   step LOG WHAT CMD...      runs CMD with its output in LOG; on failure prints which step
#                             failed with the tail of LOG and returns the command's status.
#
# Builders must build under a temporary name and rename at the end, so that an interrupted
# build never leaves something CHECK accepts.

HEARTH_CACHE=${HEARTH_CACHE:-/var/cache/hearth-test}
# How long a waiter waits for another process's build (debootstrap over a slow mirror, or the
# broker's ten-minute cargo install, must fit).
HEARTH_CACHE_LOCK_TIMEOUT=${HEARTH_CACHE_LOCK_TIMEOUT:-1800}

cache_build() {
    local name=$1 check=$2 build=$3
    if $check; then return 0; fi
    mkdir -p "$HEARTH_CACHE"
    (
        if ! flock -w "$HEARTH_CACHE_LOCK_TIMEOUT" 9; then
            printf 'cache: waited %ss for %s to be built by another process; giving up\n' \
                "$HEARTH_CACHE_LOCK_TIMEOUT" "$HEARTH_CACHE/$name.lock" >&2
            exit 1
        fi
        if $check; then exit 0; fi
        $build
    ) 9>"$HEARTH_CACHE/$name.lock"
}

step() {
    local log=$1 what=$2 rc=0
    shift 2
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'step failed: %s (exit %s): %s\n--- last lines of %s ---\n' "$what" "$rc" "$*" "$log" >&2
        tail -n 25 "$log" >&2
        printf -- '---\n' >&2
    fi
    return "$rc"
}
