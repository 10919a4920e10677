#!/usr/bin/env bash
# The cost of a 100-key MGET split by slotgate, against a cluster-aware client reading
# the same 100 keys from the nodes directly, in one run on one 3-master cluster.
#
#   benches/mget.sh
#
# The 100 keys (k:000000000000 .. k:000000000099) hash to about 100 slots on all three
# masters. Each side reads them MGET_ROUNDS times, interleaved:
#   slotgate:  redis-benchmark -c 10 -n N MGET k:0.. k:99 (one request of 100 keys,
#              which slotgate splits per slot and merges)
#   direct:    redis-benchmark --cluster -t get -c 10 -n 100*N -P 100 -r 100 -d 64
#              (100 single-key GETs per pipeline, each sent to its key's master, as a
#              cluster client does; redis-benchmark's own keys, 100 per master with a
#              hash tag each, prefilled with 64-byte values like the MGET's keys)
# and prints keys read per second, and CPU seconds per million keys of slotgate and of
# the nodes (utime+stime from /proc).
#
# Environment: MGET_N (MGETs per run, default 20000), MGET_ROUNDS (default 3),
# SLOTGATE_BIN, BENCH_KEEP as in e2e.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

n="${MGET_N:-20000}"
rounds="${MGET_ROUNDS:-3}"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "MGET_N must be a positive number, not '$n'"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "MGET_ROUNDS must be a positive number, not '$rounds'"
need redis-server redis-cli redis-benchmark python3 timeout
ensure_binary
install_cleanup
make_work_dir mget

base="$(free_port_block "${MGET_BASE_PORT:-7601}" 4)"
start_cluster "$base"
start_slotgate $((base + 3)) 30
sg_pid="$slotgate_pid"

keys=()
for ((i = 0; i < 100; i++)); do keys+=("$(printf 'k:%012d' "$i")"); done
for k in "${keys[@]}"; do
  redis-cli -c -p "$base" SET "$k" "$(printf 'v%062d' 0)" >/dev/null
done

timeout 120 redis-benchmark --cluster -p "$base" -t set -r 100 -n 100000 -d 64 -q >/dev/null 2>&1 ||
  die "prefilling the direct side's keys failed"

runs="$work_dir/runs.csv"
echo "round,side,keys_per_s,slotgate_cpu_s,nodes_cpu_s" >"$runs"
run_one() {
  local round="$1" side="$2" out="$work_dir/run-$1-$2.out" sg0 sg1 srv0 srv1 row rps keys_per_s
  sg0="$(cpu_ticks "$sg_pid")"
  srv0="$(cpu_ticks "${cluster_pids[@]}")"
  if [ "$side" = slotgate ]; then
    timeout 300 redis-benchmark -p $((base + 3)) -c 10 -n "$n" --csv MGET "${keys[@]}" >"$out" 2>&1
    row="$(tr -d '\r"' <"$out" | grep '^MGET ' | tail -n 1 || true)"
    rps="$(cut -d, -f2 <<<"$row")"
    keys_per_s="$(python3 -c "print(float('$rps') * 100)")"
  else
    timeout 300 redis-benchmark --cluster -p "$base" -t get -c 10 -n $((n * 100)) -P 100 \
      -r 100 -d 64 --csv >"$out" 2>&1
    row="$(tr -d '\r"' <"$out" | grep '^GET,' | tail -n 1 || true)"
    keys_per_s="$(cut -d, -f2 <<<"$row")"
  fi
  sg1="$(cpu_ticks "$sg_pid")"
  srv1="$(cpu_ticks "${cluster_pids[@]}")"
  [ -n "$row" ] && ! grep -q 'Error' "$out" || { tail -n 5 "$out" >&2; die "run $round $side failed"; }
  printf '%s,%s,%s,%s,%s\n' "$round" "$side" "$keys_per_s" "$(ticks_s "$sg0" "$sg1")" \
    "$(ticks_s "$srv0" "$srv1")" >>"$runs"
  note "$(tail -n 1 "$runs")"
}
for ((round = 1; round <= rounds; round++)); do
  run_one "$round" slotgate
  run_one "$round" direct
done

echo
echo "100-key MGET through slotgate vs the same keys read directly: $(nproc) cores, $rounds rounds, medians"
python3 - "$runs" "$n" <<'PY'
import csv, statistics, sys
runs, n = sys.argv[1], int(sys.argv[2])
keys = n * 100
sides = {}
for r in csv.DictReader(open(runs)):
    sides.setdefault(r["side"], []).append(
        (float(r["keys_per_s"]), float(r["slotgate_cpu_s"]) * 1e6 / keys, float(r["nodes_cpu_s"]) * 1e6 / keys))
med = {s: [statistics.median(c) for c in zip(*v)] for s, v in sides.items()}
print(f"{'':10}{'keys/s':>14}{'sg CPU s/Mkeys':>16}{'nodes CPU s/Mkeys':>19}{'total':>10}")
for s in ("slotgate", "direct"):
    k, sg, nodes = med[s]
    print(f"{s:10}{k:>14.0f}{sg:>16.2f}{nodes:>19.2f}{sg + nodes:>10.2f}")
a, b = med["direct"], med["slotgate"]
print(f"{'sg/direct':10}{b[0] / a[0]:>14.3f}{'':>16}{b[2] / a[2]:>19.3f}{(b[1] + b[2]) / (a[1] + a[2]):>10.3f}")
PY
