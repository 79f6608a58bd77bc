#!/usr/bin/env bash
# A booted Debian bookworm with a real systemd as PID 1, inside systemd-nspawn, for hearth's
# system tests (systemd is not PID 1 on the build machines; see DESIGN.md "Facts verified").
#
#   nspawn.sh boot            build (or reuse) the cached rootfs, boot it, wait for systemd
#   nspawn.sh exec CMD...     run CMD inside (all namespaces of the container's systemd)
#   nspawn.sh cp SRC DST      copy a host file into the container's root at DST
#   nspawn.sh rootfs          build (or reuse) the cached rootfs only, print its path
#   nspawn.sh root            print the container's root directory as seen from the host
#   nspawn.sh pid             print the host pid of the container's systemd
#   nspawn.sh stop            power off and remove everything boot made (by pid and path)
#   nspawn.sh status          say whether it is booted
#
# Idempotent: `boot` on a booted machine does nothing; `stop` on a stopped one does nothing.
# Everything is named after HEARTH_NSPAWN_NAME (default hearth-test), so two harnesses with
# different names can coexist. Cleanup goes by the recorded pid, cgroup paths and mount path,
# never by a process name.
set -euo pipefail

NAME=${HEARTH_NSPAWN_NAME:-hearth-test}
# shellcheck source=../../scripts/lib/cache.sh
. "$(dirname "$0")/../../scripts/lib/cache.sh"
CACHE=$HEARTH_CACHE
RUN=/run/hearth-test/$NAME
BOOT_TIMEOUT=${HEARTH_NSPAWN_BOOT_TIMEOUT:-120}
# Everything the system tests need inside: systemd + D-Bus + machined, runc for containers,
# the action kinds' interpreters (python3, nodejs are both in bookworm main), curl for HTTP.
PACKAGES=systemd,systemd-sysv,dbus,systemd-container,runc,iproute2,curl,ca-certificates,python3,nodejs,procps
BASE=$CACHE/bookworm-rootfs
STAMP_WANT="bookworm $PACKAGES v1"

log() { printf 'nspawn.sh[%s]: %s\n' "$NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, nspawn, cgroups, mounts)"

mirror() {
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -v security | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '{print $2}' | grep -v security | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

ensure_host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v nsenter >/dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The base rootfs is built once and cached; a stamp records what it was built with so a change
# of the package list rebuilds it. Built under a temporary name and renamed, so an interrupted
# debootstrap never leaves a half rootfs that looks finished; built by one process at a time
# (cache_build's lock), so tests booting machines in parallel on an empty cache wait for one
# build instead of removing each other's.
rootfs_ready() { [ -f "$BASE/.hearth-stamp" ] && [ "$(cat "$BASE/.hearth-stamp")" = "$STAMP_WANT" ]; }

build_rootfs() {
    ensure_host_tools
    local tmp=$CACHE/bookworm-rootfs.building
    rm -rf --one-file-system "$tmp"
    log "debootstrap bookworm into $tmp (one time, about a minute or two)"
    step "$CACHE/debootstrap.log" "debootstrap of the test root" \
        debootstrap --variant=minbase --include="$PACKAGES" bookworm "$tmp" "$(mirror)" \
        || die "debootstrap failed, see $CACHE/debootstrap.log"
    # A machine id makes journald keep a persistent-looking journal and D-Bus happy; the
    # console getty would only fight over the (absent) tty.
    systemd-machine-id-setup --root="$tmp" >/dev/null 2>&1 || true
    rm -f "$tmp/etc/systemd/system/getty.target.wants/"* || true
    echo "$STAMP_WANT" >"$tmp/.hearth-stamp"
    rm -rf --one-file-system "$BASE"
    mv "$tmp" "$BASE"
    log "test root built at $BASE"
}

ensure_rootfs() { cache_build bookworm-rootfs rootfs_ready build_rootfs; }

nspawn_pid() { [ -f "$RUN/nspawn.pid" ] && cat "$RUN/nspawn.pid"; }

alive() { local p; p=$(nspawn_pid) || return 1; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# The container's init: the child of systemd-nspawn that is pid 1 in its own pid namespace
# (the last NSpid field). Not "any child in another namespace": nspawn's short-lived helper
# children come and go while it starts, and a child that exits between the listing and the
# check must not be taken for init (a dead pid here made every later `inside` fail, and the
# boot wait run out with an empty state).
find_init() {
    local np child nspid
    np=$(nspawn_pid) || return 1
    for child in $(cat /proc/"$np"/task/*/children 2>/dev/null); do
        nspid=$(awk '/^NSpid:/ { if (NF > 2) print $NF }' /proc/"$child"/status 2>/dev/null) \
            || continue
        if [ "$nspid" = 1 ]; then
            echo "$child"
            return 0
        fi
    done
    return 1
}

init_pid() {
    [ -f "$RUN/init.pid" ] || die "not booted (no $RUN/init.pid); run: $0 boot"
    cat "$RUN/init.pid"
}

inside() {
    local pid
    pid=$(init_pid)
    # A clean environment: nothing of the caller's (NOTIFY_SOCKET, JOURNAL_STREAM, ...) leaks in.
    nsenter -t "$pid" -a -- /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"
}

cgroup_controllers() {
    local d
    for d in /sys/fs/cgroup/*; do
        [ -d "$d" ] && [ ! -L "$d" ] && mountpoint -q "$d" && echo "$d"
    done
}

boot() {
    if alive && [ -f "$RUN/init.pid" ]; then
        log "already booted (nspawn pid $(nspawn_pid))"
        return
    fi
    # A stale run dir (crashed earlier run) is cleaned before booting afresh.
    [ -d "$RUN" ] && stop
    ensure_rootfs
    mkdir -p "$RUN/upper" "$RUN/work" "$RUN/root"
    # Each boot gets a throwaway overlay over the cached rootfs, so tests never dirty the cache
    # and a boot costs no copy.
    mount -t overlay "hearth-test-$NAME" \
        -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/root"
    echo "$RUN/root" >"$RUN/mounts"
    local t0 t1
    t0=$(date +%s.%N)
    # The booting shell moves into fresh child cgroups of its own (systemd inside wants a
    # delegated subtree; --keep-unit makes nspawn use the one it was started in).
    local cg
    : >"$RUN/cgroups"
    for cg in $(cgroup_controllers); do
        mkdir -p "$cg/$NAME"
        if [ -f "$cg/cpuset.cpus" ]; then
            cat "$cg/cpuset.cpus" >"$cg/$NAME/cpuset.cpus"
            cat "$cg/cpuset.mems" >"$cg/$NAME/cpuset.mems"
        fi
        echo "$cg/$NAME" >>"$RUN/cgroups"
    done
    (
        for cg in $(cat "$RUN/cgroups"); do echo "$BASHPID" >"$cg/cgroup.procs"; done
        exec systemd-nspawn -D "$RUN/root" -M "$NAME" --register=no --keep-unit \
            --private-network --capability=all \
            --system-call-filter='@mount @keyring @privileged' -b \
            </dev/null >"$RUN/console.log" 2>&1
    ) &
    echo $! >"$RUN/nspawn.pid"
    disown || true
    local deadline=$((SECONDS + BOOT_TIMEOUT)) init=""
    while [ -z "$init" ]; do
        alive || die "systemd-nspawn exited; see $RUN/console.log: $(tail -n 5 "$RUN/console.log")"
        [ $SECONDS -lt $deadline ] || die "no init process after ${BOOT_TIMEOUT}s"
        init=$(find_init || true)
        [ -n "$init" ] || sleep 0.05
    done
    echo "$init" >"$RUN/init.pid"
    local state=""
    while :; do
        # Belt and braces: an init that is gone (it cannot be, once it is pid 1 of the
        # container, unless the container died) is looked up again rather than waited on.
        if ! kill -0 "$init" 2>/dev/null; then
            init=$(find_init || true)
            [ -n "$init" ] && echo "$init" >"$RUN/init.pid"
        fi
        state=$(inside systemctl is-system-running 2>/dev/null || true)
        case "$state" in running | degraded) break ;; esac
        alive || die "container died while booting; see $RUN/console.log"
        [ $SECONDS -lt $deadline ] || die "systemd not up after ${BOOT_TIMEOUT}s (state: $state)"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    # nspawn mounts the cgroup v1 controllers read-only inside; runc needs them writable.
    local c
    for c in $(inside sh -c 'for d in /sys/fs/cgroup/*; do [ -d "$d" ] && [ ! -L "$d" ] && mountpoint -q "$d" && echo "$d"; done'); do
        inside mount -o remount,bind,rw "$c" || log "warning: could not remount $c rw"
    done
    local secs
    secs=$(echo "$t1 - $t0" | bc 2>/dev/null || awk "BEGIN{print $t1 - $t0}")
    echo "$secs" >"$RUN/boot-seconds"
    log "booted: nspawn pid $(nspawn_pid), init pid $init, state $state, boot ${secs}s"
}

remove_cgroup_tree() {
    # Depth first: the container's systemd made sub-cgroups under ours.
    local top=$1
    [ -d "$top" ] || return 0
    find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ ! -d "$top" ] || log "warning: cgroup $top still present"
}

stop() {
    [ -d "$RUN" ] || return 0
    local np deadline
    np=$(nspawn_pid || true)
    if [ -n "$np" ] && kill -0 "$np" 2>/dev/null; then
        # Ask systemd to power off; nspawn exits when the container's init does.
        if [ -f "$RUN/init.pid" ]; then inside systemctl poweroff --no-block >/dev/null 2>&1 || true; fi
        deadline=$((SECONDS + 30))
        while kill -0 "$np" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if kill -0 "$np" 2>/dev/null; then
            log "nspawn $np did not exit; SIGTERM, then SIGKILL"
            kill -TERM "$np" 2>/dev/null || true
            sleep 3
            kill -KILL "$np" 2>/dev/null || true
            # The container's init and its descendants live in our cgroups: kill them by pid.
            local cg p
            for cg in $(cat "$RUN/cgroups" 2>/dev/null); do
                for p in $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
                    kill -KILL "$p" 2>/dev/null || true
                done
            done
            sleep 0.5
        fi
    fi
    local m cg
    for m in $(cat "$RUN/mounts" 2>/dev/null); do
        if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
    done
    for cg in $(cat "$RUN/cgroups" 2>/dev/null); do remove_cgroup_tree "$cg"; done
    rm -rf --one-file-system "$RUN"
    # The parent holds every machine's dir: gone with the last one, so nothing stays in /run.
    rmdir "$(dirname "$RUN")" 2>/dev/null || true
    log "stopped and cleaned"
}

cmd=${1:-}
shift || true
case "$cmd" in
boot) boot ;;
exec) inside "$@" ;;
cp)
    [ $# -eq 2 ] || die "usage: $0 cp SRC DST"
    root=$RUN/root
    [ -d "$root" ] || die "not booted"
    mkdir -p "$(dirname "$root/$2")"
    cp -f "$1" "$root/$2"
    ;;
root) echo "$RUN/root" ;;
rootfs)
    ensure_rootfs
    echo "$BASE"
    ;;
pid) init_pid ;;
boot-seconds) cat "$RUN/boot-seconds" ;;
status) if alive; then echo "booted $(nspawn_pid)"; else echo stopped; exit 3; fi ;;
stop) stop ;;
*) die "usage: $0 boot|rootfs|exec CMD...|cp SRC DST|root|pid|boot-seconds|status|stop" ;;
esac
