#!/usr/bin/env bash
# A screenshot of slotgate's status page (GET / on the admin port) in front of a live
# cluster: 3 masters with one replica each, slotgate (release build) under a light
# redis-benchmark load, one slot being migrated (so the strip shows its marker), taken
# with headless Chromium at 1280x1000.
#
#   benches/status_screenshot.sh [OUT.png]     (default benches/results/status-page.png)
#
# Environment: SLOTGATE_BIN, BENCH_KEEP=1. Loopback only; every process it starts is
# its own and is stopped on exit (bounded: the load runs at most 40 s).
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

shot="${1:-$repo/benches/results/status-page.png}"
need redis-server redis-cli redis-benchmark curl timeout
chromium="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$chromium" ]; then
  need chromium
  chromium="$(command -v chromium)"
fi
ensure_binary
install_cleanup
make_work_dir status-shot

base="$(free_port_block 7450 6)"
cluster_port="$base"
cluster_dir="$work_dir/cluster"
out="$("$repo/deploy/local-cluster.sh" -m 3 -r 1 -p "$base" -d "$cluster_dir" up)" ||
  die "deploy/local-cluster.sh up failed"
cluster_seeds="$(tail -n 1 <<<"$out")"

port=6395
while listening "$port"; do port=$((port + 1)); done
admin=9395
while listening "$admin" || [ "$admin" = "$port" ]; do admin=$((admin + 1)); done
start_slotgate "$port" 30 --admin "127.0.0.1:$admin"

# Slot 100 migrating from its master to the master of slot 16000 (keys stay put: the
# page marks the slot, clients see nothing).
owner_of() {
  local p
  for ((p = base; p < base + 6; p++)); do
    if timeout 5 redis-cli -p "$p" CLUSTER NODES | grep 'myself,master' |
      awk -v s="$1" '{ for (i = 9; i <= NF; i++) { split($i, r, "-"); if (r[2] == "") r[2] = r[1]; if (s >= r[1] && s <= r[2]) found = 1 } } END { exit !found }'; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
from="$(owner_of 100)" || die "no owner for slot 100"
to="$(owner_of 16000)" || die "no owner for slot 16000"
timeout 5 redis-cli -p "$to" CLUSTER SETSLOT 100 IMPORTING "$(timeout 5 redis-cli -p "$from" CLUSTER MYID)" >/dev/null
timeout 5 redis-cli -p "$from" CLUSTER SETSLOT 100 MIGRATING "$(timeout 5 redis-cli -p "$to" CLUSTER MYID)" >/dev/null

timeout 40 redis-benchmark -p "$port" -c 10 -d 64 -r 100000 -t set,get -l -q >/dev/null 2>&1 &
track $!
sleep 3

mkdir -p "$(dirname "$shot")"
timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size=1280,1000 --virtual-time-budget=6000 \
  --user-data-dir="$work_dir/chromium" --screenshot="$shot" \
  "http://127.0.0.1:$admin/?every=1000" >"$work_dir/chromium.out" 2>&1 ||
  { tail -n 20 "$work_dir/chromium.out" >&2; die "chromium failed"; }
note "screenshot: $shot ($(curl -fsS "http://127.0.0.1:$admin/readyz"))"
