#!/usr/bin/env bash
# GETs through slotgate with read_from = master against read_from = replica, in one run
# on one cluster of 3 masters and 3 replicas (one each).
#
#   benches/read_from.sh
#
# Two slotgates run side by side in front of the same cluster, one per mode (same
# binary, same flags otherwise). The keys are prefilled (400,000 SETs over 100,000 keys,
# 64-byte values), then each round runs, for each mode in turn,
#   redis-benchmark -c READ_FROM_CLIENTS -P READ_FROM_PIPELINE -t get -r 100000 -n N
# and prints GETs per second and CPU seconds per million GETs of slotgate, of the three
# masters and of the three replicas (utime+stime from /proc), as medians over the rounds.
# Before the first round it checks, from the replicas' own `INFO commandstats`, that the
# replica-mode slotgate's GETs reach the replicas.
#
# Environment: READ_FROM_N (GETs per run, default 500000), READ_FROM_ROUNDS (3),
# READ_FROM_CLIENTS (50), READ_FROM_PIPELINE (16), SLOTGATE_BIN, SLOTGATE_ARGS,
# BENCH_KEEP as in e2e.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

n="${READ_FROM_N:-500000}"
rounds="${READ_FROM_ROUNDS:-3}"
clients="${READ_FROM_CLIENTS:-50}"
pipeline="${READ_FROM_PIPELINE:-16}"
for v in n rounds clients pipeline; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "READ_FROM_${v^^} must be a positive number, not '${!v}'"
done
need redis-server redis-cli redis-benchmark python3 timeout
ensure_binary
install_cleanup
make_work_dir read-from

base="$(free_port_block "${READ_FROM_BASE_PORT:-7701}" 8)"
start_cluster "$base" 1
master_pids=()
replica_pids=()
replica_ports=()
for ((p = base; p < base + 6; p++)); do
  pid="$(tr -dc '0-9' <"$cluster_dir/$p/redis.pid")"
  if [ "$(redis-cli -p "$p" ROLE | head -n 1)" = master ]; then
    master_pids+=("$pid")
  else
    replica_pids+=("$pid")
    replica_ports+=("$p")
  fi
done
[ "${#master_pids[@]}" = 3 ] && [ "${#replica_pids[@]}" = 3 ] ||
  die "expected 3 masters and 3 replicas, found ${#master_pids[@]} and ${#replica_pids[@]}"
note "masters: pids ${master_pids[*]}; replicas: ports ${replica_ports[*]} (pids ${replica_pids[*]})"

start_slotgate $((base + 6)) 30 --read-from master
master_sg="$slotgate_pid"
start_slotgate $((base + 7)) 30 --read-from replica
replica_sg="$slotgate_pid"
prefill $((base + 6)) 300

# replica_gets: GETs the replicas executed (their own commandstats).
replica_gets() {
  local p total=0 calls
  for p in "${replica_ports[@]}"; do
    calls="$(redis-cli -p "$p" INFO commandstats | tr -d '\r' |
      sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p')"
    total=$((total + ${calls:-0}))
  done
  echo "$total"
}
# The replica poller learns the replicas' lag within a second or two of start-up.
deadline=$((SECONDS + 30))
until [ "$(replica_gets)" -gt 0 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "read_from = replica: no GET reached a replica within 30 s"
  redis-cli -p $((base + 7)) GET "key:000000000001" >/dev/null
  sleep 0.2
done

runs="$work_dir/runs.csv"
echo "round,mode,rps,slotgate_cpu_s,masters_cpu_s,replicas_cpu_s" >"$runs"
run_one() {
  local round="$1" mode="$2" port sg out="$work_dir/run-$1-$2.csv" s0 s1 m0 m1 r0 r1 row
  case "$mode" in
    master) port=$((base + 6)) sg="$master_sg" ;;
    replica) port=$((base + 7)) sg="$replica_sg" ;;
  esac
  s0="$(cpu_ticks "$sg")"
  m0="$(cpu_ticks "${master_pids[@]}")"
  r0="$(cpu_ticks "${replica_pids[@]}")"
  timeout 600 redis-benchmark -p "$port" -c "$clients" -P "$pipeline" -t get -r 100000 \
    -n "$n" --csv >"$out" 2>&1
  s1="$(cpu_ticks "$sg")"
  m1="$(cpu_ticks "${master_pids[@]}")"
  r1="$(cpu_ticks "${replica_pids[@]}")"
  row="$(bench_csv_row "$out" GET)"
  [ -n "$row" ] || { tail -n 5 "$out" >&2; die "run $round $mode failed"; }
  printf '%s,%s,%s,%s,%s,%s\n' "$round" "$mode" "$(cut -d, -f2 <<<"$row")" \
    "$(ticks_s "$s0" "$s1")" "$(ticks_s "$m0" "$m1")" "$(ticks_s "$r0" "$r1")" >>"$runs"
  note "$(tail -n 1 "$runs")"
}
for ((round = 1; round <= rounds; round++)); do
  run_one "$round" master
  run_one "$round" replica
done

echo
echo "GET through slotgate, read_from = master vs replica: 3 masters + 3 replicas, $(nproc) cores,"
echo "-c $clients -P $pipeline, $n GETs per run, $rounds rounds, medians"
python3 - "$runs" "$n" <<'PY'
import csv, statistics, sys
runs, n = sys.argv[1], int(sys.argv[2])
modes = {}
for r in csv.DictReader(open(runs)):
    per_m = lambda k: float(r[k]) * 1e6 / n
    modes.setdefault(r["mode"], []).append(
        (float(r["rps"]), per_m("slotgate_cpu_s"), per_m("masters_cpu_s"), per_m("replicas_cpu_s")))
med = {m: [statistics.median(c) for c in zip(*v)] for m, v in modes.items()}
print(f"{'read_from':10}{'GET/s':>12}{'CPU s per million GETs:':>26}{'masters':>9}{'replicas':>10}")
print(f"{'':10}{'':>12}{'slotgate':>26}")
for m in ("master", "replica"):
    rps, sg, ms, rs = med[m]
    print(f"{m:10}{rps:>12.0f}{sg:>26.2f}{ms:>9.2f}{rs:>10.2f}")
a, b = med["master"], med["replica"]
print(f"{'replica/master':14}{b[0] / a[0]:>8.3f}{b[1] / a[1]:>26.3f}")
PY
