#!/usr/bin/env bash
# The long chaos run: tests/chaos.rs with SLOTGATE_CHAOS_SECS set. 50 clients with a
# mixed workload (GET, SET, pipelines, split MGET/MSET, MULTI/EXEC, BLPOP with
# producers, pub/sub) run through slotgate while rounds of faults hit a cluster of
# 3 masters + 3 replicas (slot migrations back and forth, coordinated CLUSTER FAILOVER,
# SIGSTOP/SIGCONT of a master, SIGKILL of a master then its restart). Prints the
# figures: operations by kind, acknowledged writes, writes lost after hard kills,
# tolerated errors by kind, faults injected, slotgate's RSS and fds before and after.
#
#   benches/chaos.sh [SECONDS] [> benches/results/chaos-DATE.txt]
#
# SECONDS defaults to 300 (the last round of faults is finished, so the run is a little
# longer). Environment: CHAOS_CLIENTS (default 50), CHAOS_RELEASE=1 (test a release
# build; default the debug build `cargo test` makes). Loopback only; the test starts
# and stops every process it uses (redis-server nodes, slotgate) by pid.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

seconds="${1:-300}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 10 && "$seconds" -le 7200 ]] ||
  die "SECONDS must be 10..7200"
need redis-server redis-cli

profile=()
[ "${CHAOS_RELEASE:-0}" = 1 ] && profile=(--release)
note "chaos for ${seconds}s with ${CHAOS_CLIENTS:-50} clients"
cd "$repo"
SLOTGATE_CHAOS_SECS="$seconds" SLOTGATE_CHAOS_CLIENTS="${CHAOS_CLIENTS:-50}" \
  cargo test "${profile[@]}" --test chaos -- --nocapture --test-threads 1 2>&1 |
  awk '/===== chaos/ { on = 1 } on || /panicked|test result/'
