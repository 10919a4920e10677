#!/usr/bin/env bash
# One command from a fresh machine to `redis-cli -p 6380`:
#   deploy/quickstart.sh up     local cluster (3 masters, 3 replicas on 7001-7006) + slotgate on 6380
#   deploy/quickstart.sh down   stop slotgate and the cluster it started
#   deploy/quickstart.sh status
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
data="${SLOTGATE_CLUSTER_DIR:-$PWD/data/local-cluster}"
listen="${SLOTGATE_LISTEN:-127.0.0.1:6380}"
pidfile="$data/slotgate.pid"
logfile="$data/slotgate.log"

usage() {
  echo "usage: $0 up|down|status" >&2
  exit 2
}

proxy_running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

up() {
  seeds="$("$here/local-cluster.sh" up | tail -n 1)"
  case "$seeds" in
    *:*) ;;
    *) echo "quickstart: could not read the seeds from local-cluster.sh" >&2; exit 1 ;;
  esac
  if proxy_running; then
    echo "quickstart: slotgate already running (pid $(cat "$pidfile")) on $listen"
    return 0
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "quickstart: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
  fi
  (cd "$root" && cargo build --release --quiet)
  mkdir -p "$data"
  "$root/target/release/slotgate" --listen "$listen" --seeds "$seeds" >"$data/slotgate.out" 2>"$logfile" &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if grep -q "slotgate listening on" "$data/slotgate.out" 2>/dev/null; then
      echo "slotgate is up on $listen (pid $(cat "$pidfile"), log $logfile)"
      echo "try: redis-cli -p ${listen##*:} set hello world"
      return 0
    fi
    if ! proxy_running; then break; fi
    sleep 0.1
  done
  echo "quickstart: slotgate did not start; its log:" >&2
  cat "$logfile" >&2
  exit 1
}

down() {
  if proxy_running; then
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "slotgate stopped"
  fi
  rm -f "$pidfile"
  "$here/local-cluster.sh" down
}

status() {
  if proxy_running; then
    echo "slotgate: up (pid $(cat "$pidfile")) on $listen"
  else
    echo "slotgate: down"
  fi
  "$here/local-cluster.sh" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
