#!/usr/bin/env bash
# Instructions per GET, independent of machine noise: slotgate (release) under
# valgrind --tool=callgrind in front of a 3-master cluster, and a standalone redis-server
# under callgrind, each answering the same GETs from redis-benchmark.
#
#   benches/callgrind.sh
#
# For each process: warm-up (SET + GET), zero the counters (callgrind_control -z),
# 20,000 GETs (redis-benchmark -c 1 -P 1 -t get), dump (callgrind_control -d), then an
# idle period of the same wall time, dump again, and subtract it. Prints Ir per GET
# for both, their ratio, and slotgate's top functions by self and inclusive Ir
# (benches/callgrind_top.py; CALLGRIND_OUT_DIR keeps the dumps for callgrind_annotate).
#
# Environment:
#   CALLGRIND_GETS       GETs measured                       20000
#   CALLGRIND_CLIENTS    redis-benchmark -c                  1
#   CALLGRIND_PIPELINE   redis-benchmark -P                  1
#   CALLGRIND_KEYS       0: every GET reads one key; N: random keys of N (-r N), all
#                        written in the warm-up, so the GETs spread over the 3 nodes
#   With CALLGRIND_CLIENTS=50 CALLGRIND_PIPELINE=16 CALLGRIND_KEYS=100000 GETS=200000:
#   the cost per GET when requests and replies travel in batches.
#   CALLGRIND_PEERS      "twemproxy": also count twemproxy (nutcracker, in front of three
#                        standalone redis-servers, not counted) answering the same GETs
#   CALLGRIND_TOP        functions listed                    15
#   CALLGRIND_BASE_PORT  first port tried (cluster P..P+2, slotgate P+3, redis-server P+4)  7451
#   CALLGRIND_OUT_DIR    where the callgrind dumps are kept (default: a temp dir, removed)
#   SLOTGATE_BIN, SLOTGATE_ARGS, BENCH_KEEP as in e2e.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

gets="${CALLGRIND_GETS:-20000}"
clients="${CALLGRIND_CLIENTS:-1}"
pipeline="${CALLGRIND_PIPELINE:-1}"
keys="${CALLGRIND_KEYS:-0}"
shape="-c $clients -P $pipeline"
random_keys=()
if [ "$keys" -gt 0 ]; then
  random_keys=(-r "$keys")
  shape+=" -r $keys"
fi
top="${CALLGRIND_TOP:-15}"
ready_secs=90
bench_timeout=900

peers="${CALLGRIND_PEERS:-}"
need redis-server redis-cli redis-benchmark valgrind callgrind_control python3 timeout
need_peers "$peers" CALLGRIND_PEERS
ensure_binary

install_cleanup
make_work_dir callgrind
out_dir="${CALLGRIND_OUT_DIR:-$work_dir/dumps}"
mkdir -p "$out_dir"

# Ports: cluster P..P+2, slotgate P+3, redis-server P+4; twemproxy P+5, its servers
# P+6..P+8 and its stats P+9.
base="$(free_port_block "${CALLGRIND_BASE_PORT:-7451}" 10)"
sg_port=$((base + 3))
std_port=$((base + 4))

# total_ir FILE: the Ir total of one callgrind dump (its `summary:` or `totals:` line).
total_ir() {
  local v
  v="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1" | head -n 1)"
  [ -n "$v" ] || v="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$1" | head -n 1)"
  [ -n "$v" ] || die "no summary/totals line in $1"
  echo "$v"
}

# dump PID PREFIX PART: asks callgrind for a dump and prints the dump file's path.
# With --callgrind-out-file=PREFIX.%p, the Nth dump on request is PREFIX.PID.N.
dump() {
  local pid="$1" file="$2.$1.$3" i
  timeout 60 callgrind_control -d "$pid" >>"$work_dir/callgrind_control.log" 2>&1 ||
    { tail -n 5 "$work_dir/callgrind_control.log" >&2; die "callgrind_control -d $pid failed"; }
  for ((i = 0; i < 300; i++)); do
    # Complete once the totals line, written last, is there.
    if grep -q '^totals:' "$file" 2>/dev/null; then
      echo "$file"
      return 0
    fi
    sleep 0.2
  done
  die "callgrind did not write $file within 60 s"
}

# measure NAME PID PORT: warm-up, zero, GETs, dump, idle, dump. Sets ir_per_get and busy_dump.
measure() {
  local name="$1" pid="$2" port="$3" prefix="$out_dir/$1.callgrind"
  note "$name: warm-up"
  timeout "$bench_timeout" redis-benchmark -h 127.0.0.1 -p "$port" -c 1 -n 2000 -d 64 -t set,get -q \
    >/dev/null || die "$name: warm-up failed"
  if [ "$keys" -gt 0 ]; then
    # Random SETs over the key space: 6 per key leave about 0.25% of the keys unwritten.
    timeout "$bench_timeout" redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -P 16 -d 64 \
      -r "$keys" -n $((keys * 6)) -t set -q >/dev/null || die "$name: filling $keys keys failed"
  fi
  timeout 60 callgrind_control -z "$pid" >>"$work_dir/callgrind_control.log" 2>&1 ||
    { tail -n 5 "$work_dir/callgrind_control.log" >&2; die "callgrind_control -z $pid failed"; }
  note "$name: $gets GETs ($shape)"
  local t0 t1 wall rc=0 out="$work_dir/$name.bench"
  t0="$(date +%s.%N)"
  timeout "$bench_timeout" redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -P "$pipeline" -n "$gets" -t get \
    "${random_keys[@]}" --csv \
    >"$out" 2>&1 || rc=$?
  t1="$(date +%s.%N)"
  [ "$rc" -eq 0 ] || { cat "$out" >&2; die "$name: redis-benchmark failed (exit $rc)"; }
  if grep -q 'Error from server' "$out"; then
    grep 'Error from server' "$out" | head -n 3 >&2
    die "$name: the GETs got errors"
  fi
  busy_dump="$(dump "$pid" "$prefix" 1)"
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  note "$name: GETs took ${wall}s; idle for as long"
  local idle_t0 idle_t1 idle_wall idle_dump
  idle_t0="$(date +%s.%N)"
  sleep "$wall"
  idle_dump="$(dump "$pid" "$prefix" 2)"
  idle_t1="$(date +%s.%N)"
  idle_wall="$(awk -v a="$idle_t0" -v b="$idle_t1" 'BEGIN { printf "%.3f", b - a }')"
  local busy idle
  busy="$(total_ir "$busy_dump")"
  idle="$(total_ir "$idle_dump")"
  # The idle dump covers the idle sleep plus the dump request; scale it to the busy wall.
  ir_per_get="$(awk -v b="$busy" -v i="$idle" -v bw="$wall" -v iw="$idle_wall" -v n="$gets" \
    'BEGIN { printf "%.0f", (b - i * bw / iw) / n }')"
  printf '%-12s busy Ir %14s in %7.3fs   idle Ir %12s in %7.3fs   => %s Ir per GET\n' \
    "$name" "$busy" "$wall" "$idle" "$idle_wall" "$ir_per_get"
}

# ---- slotgate ----
start_cluster "$base"
# No periodic topology refresh during the measurement: one landing in either the busy or
# the idle window would move the result by about 1%. The hot path is what is counted.
cat >"$work_dir/slotgate.toml" <<EOF
seeds = ["${cluster_seeds//,/\", \"}"]
[cluster]
refresh_interval_ms = 3600000
EOF
SLOTGATE_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$out_dir/slotgate.callgrind.%p" \
  start_slotgate "$sg_port" "$ready_secs" --config "$work_dir/slotgate.toml"
measure slotgate "$slotgate_pid" "$sg_port"
sg_ir="$ir_per_get"
sg_dump="$busy_dump"
stop_pid "$slotgate_pid"

# ---- redis-server ----
mkdir -p "$work_dir/standalone"
valgrind --tool=callgrind --callgrind-out-file="$out_dir/redis-server.callgrind.%p" \
  redis-server --port "$std_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$work_dir/standalone" --logfile "$work_dir/standalone/redis.log" \
  >"$work_dir/redis-valgrind.log" 2>&1 &
rs_pid=$!
track "$rs_pid"
wait_ping "$std_port" "$ready_secs" || die "redis-server under callgrind did not answer PING in ${ready_secs}s"
measure redis-server "$rs_pid" "$std_port"
rs_ir="$ir_per_get"
stop_pid "$rs_pid"

# ---- a peer proxy ----
tw_ir=""
if has_peer "$peers" twemproxy; then
  TWEMPROXY_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$out_dir/twemproxy.callgrind.%p" \
    start_twemproxy $((base + 5)) $((base + 6)) $((base + 9)) "$ready_secs"
  measure twemproxy "$twemproxy_pid" $((base + 5))
  tw_ir="$ir_per_get"
  stop_pid "$twemproxy_pid"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "instructions per GET (callgrind Ir, $gets GETs, $shape, idle subtracted):"
printf '  slotgate      %8s Ir/GET  (proxy only; the cluster node that answers is not counted)\n' "$sg_ir"
printf '  redis-server  %8s Ir/GET  (standalone, answering the same GETs)\n' "$rs_ir"
if [ -n "$tw_ir" ]; then
  printf '  twemproxy     %8s Ir/GET  (proxy only; its servers are not counted)\n' "$tw_ir"
fi
printf '  ratio slotgate : redis-server = %s\n' "$(ratio "$sg_ir" "$rs_ir")"
if [ -n "$tw_ir" ]; then
  printf '  ratio twemproxy : redis-server = %s\n' "$(ratio "$tw_ir" "$rs_ir")"
fi

echo
echo "slotgate profile of the $gets GETs (busy dump, idle not subtracted; Ir/GET = Ir / $gets):"
python3 "$bench_dir/callgrind_top.py" "$sg_dump" "$top" "$gets"
if [ -n "${CALLGRIND_OUT_DIR:-}" ]; then
  echo
  echo "dumps kept in $out_dir (callgrind_annotate $sg_dump)"
fi
