#!/usr/bin/env bash
# Starts or stops a Kafka-protocol broker (tansu, memory storage) on a loopback port, for
# trying the Kafka bus by hand and for process-level tests. The Rust tests start their own.
#   scripts/kafka-broker.sh start PORT DATADIR   prints the broker address; log and pid in DATADIR
#   scripts/kafka-broker.sh stop DATADIR         stops the broker started with that DATADIR
# The broker binary comes from scripts/build-broker.sh (cached after the first build), or
# from $TANSU. Memory storage: a restart loses every topic (hearth re-creates them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  start)
    port="${2:?usage: $0 start PORT DATADIR}"
    dir="${3:?usage: $0 start PORT DATADIR}"
    bin="${TANSU:-$("$here/build-broker.sh")}"
    mkdir -p "$dir"
    if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      echo "kafka-broker: already running with pid $(cat "$dir/broker.pid")" >&2
      exit 1
    fi
    # An IPv4 advertised listener: clients connect to exactly what the broker advertises.
    "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ >"$dir/broker.log" 2>&1 &
    echo $! >"$dir/broker.pid"
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "127.0.0.1:$port"
        exit 0
      fi
      kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null || { cat "$dir/broker.log" >&2; exit 1; }
      sleep 0.1
    done
    echo "kafka-broker: not listening on 127.0.0.1:$port after 10 s; log: $dir/broker.log" >&2
    exit 1
    ;;
  stop)
    dir="${2:?usage: $0 stop DATADIR}"
    [ -f "$dir/broker.pid" ] || { echo "kafka-broker: no pid file in $dir" >&2; exit 1; }
    pid="$(cat "$dir/broker.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/broker.pid"
    ;;
  *)
    echo "usage: $0 start PORT DATADIR | stop DATADIR" >&2
    exit 2
    ;;
esac
