#!/usr/bin/env bash
# Pub/sub message delivery latency through slotgate against direct to a node, same run:
# the time from writing PUBLISH (or SPUBLISH) until the subscriber reads the message,
# one message at a time, p50/p99/p99.9/max per case.
#
#   benches/pubsub_latency.sh
#
# Starts a 3-master cluster and slotgate on loopback, then runs the measuring client
# (benches/pubsub_latency.rs, `cargo bench --bench pubsub_latency`, release build).
# Cases, interleaved round after round: plain channel at one node; published at one node
# and subscribed at another (over the cluster bus); both through slotgate; shard channel
# at its slot's master, directly and through slotgate.
#
# Environment: PUBSUB_MESSAGES (per case and round, default 5000), PUBSUB_ROUNDS
# (default 3), PUBSUB_SECONDS (the client stops after this, default 300), SLOTGATE_BIN,
# SLOTGATE_ARGS, BENCH_KEEP as in e2e.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need redis-server redis-cli timeout
ensure_binary
install_cleanup
make_work_dir pubsub

base="$(free_port_block "${PUBSUB_BASE_PORT:-7651}" 4)"
start_cluster "$base"
start_slotgate $((base + 3)) 30

note "building the measuring client (cargo bench --no-run --bench pubsub_latency)"
(cd "$repo" && cargo bench --no-run --bench pubsub_latency) >&2 ||
  die "building benches/pubsub_latency.rs failed"
cd "$repo"
PUBSUB_SLOTGATE="127.0.0.1:$((base + 3))" \
  PUBSUB_NODES="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))" \
  timeout $((${PUBSUB_SECONDS:-300} + 60)) cargo bench --bench pubsub_latency -q
echo "($(nproc) cores; slotgate $("$SLOTGATE_BIN" --version 2>/dev/null | awk '{print $NF}'), $(redis-server --version | awk '{print $3}'))"
