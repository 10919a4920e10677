#!/usr/bin/env bash
# A/B: two slotgates side by side in front of one 3-master cluster, for a change too
# small to see across separate runs on a noisy machine. The two may be different
# binaries (another commit's build), the same binary with different flags, or both.
#
#   benches/ab.sh                                   # A = B = this build: the noise floor
#   AB_B_BIN=/tmp/new/target/release/slotgate benches/ab.sh
#   AB_A_ARGS="--workers 1" AB_B_ARGS="--workers 2" benches/ab.sh
#
# Runs `redis-benchmark -c CLIENTS -d 64 -r 100000 -t TEST -P P -n N --csv` against A, then
# B, AB_ROUNDS times (interleaved, so both see the same drift of the machine), after a
# prefill of the key space. Around each run it reads utime+stime from /proc of that
# slotgate and of the three nodes. Prints every run, then the medians and B/A.
#
# Environment:
#   AB_A_BIN, AB_B_BIN     binaries                                  $SLOTGATE_BIN
#   AB_A_ARGS, AB_B_ARGS   extra slotgate flags                      none
#   AB_ROUNDS              runs per side                             8
#   AB_TEST, AB_PIPELINE   redis-benchmark -t and -P                 get, 1
#   AB_CLIENTS             redis-benchmark -c (10: an unsaturated run)  50
#   AB_N                   requests per run       300000 at -P 1, 2000000 otherwise
#   AB_RUN_TIMEOUT         seconds one run may take                  120
#   AB_BASE_PORT           first port tried (cluster P..P+2, A P+3, B P+4)  7501
#   SLOTGATE_BIN, BENCH_KEEP as in e2e.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds="${AB_ROUNDS:-8}"
test="${AB_TEST:-get}"
pipe="${AB_PIPELINE:-1}"
clients="${AB_CLIENTS:-50}"
default_n=2000000
[ "$pipe" != 1 ] || default_n=300000
n="${AB_N:-$default_n}"
run_timeout="${AB_RUN_TIMEOUT:-120}"
a_bin="${AB_A_BIN:-$SLOTGATE_BIN}"
b_bin="${AB_B_BIN:-$SLOTGATE_BIN}"
read -r -a a_args <<<"${AB_A_ARGS:-}"
read -r -a b_args <<<"${AB_B_ARGS:-}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "AB_ROUNDS must be a positive number, not '$rounds'"
[[ "$pipe" =~ ^[1-9][0-9]*$ ]] || die "AB_PIPELINE must be a positive number, not '$pipe'"
[[ "$clients" =~ ^[1-9][0-9]*$ ]] || die "AB_CLIENTS must be a positive number, not '$clients'"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "AB_N must be a positive number, not '$n'"

need redis-server redis-cli redis-benchmark python3 timeout
if [ "$a_bin" = "$SLOTGATE_BIN" ] || [ "$b_bin" = "$SLOTGATE_BIN" ]; then
  ensure_binary
fi
for bin in "$a_bin" "$b_bin"; do
  [ -x "$bin" ] || die "no slotgate binary at $bin"
done

install_cleanup
make_work_dir ab

base="$(free_port_block "${AB_BASE_PORT:-7501}" 5)"
start_cluster "$base"
SLOTGATE_BIN="$a_bin" start_slotgate $((base + 3)) 30 "${a_args[@]}"
a_pid="$slotgate_pid"
SLOTGATE_BIN="$b_bin" start_slotgate $((base + 4)) 30 "${b_args[@]}"
b_pid="$slotgate_pid"

note "prefilling the key space through A"
prefill $((base + 3)) "$run_timeout"

runs="$work_dir/runs.csv"
echo "round,side,rps,p99_ms,slotgate_cpu_s,nodes_cpu_s" >"$runs"
name="$(tr '[:lower:]' '[:upper:]' <<<"$test")"

# run_one ROUND SIDE PORT PID
run_one() {
  local round="$1" side="$2" port="$3" pid="$4" out sg0 sg1 srv0 srv1 row rc=0
  out="$work_dir/run-$round-$side.out"
  sg0="$(cpu_ticks "$pid")"
  srv0="$(cpu_ticks "${cluster_pids[@]}")"
  timeout "$run_timeout" redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -d 64 -r 100000 \
    -t "$test" -P "$pipe" -n "$n" --csv >"$out" 2>&1 || rc=$?
  sg1="$(cpu_ticks "$pid")"
  srv1="$(cpu_ticks "${cluster_pids[@]}")"
  row="$(bench_csv_row "$out" "$name")"
  if [ "$rc" -ne 0 ] || [ -z "$row" ] || grep -q 'Error from server' "$out"; then
    tail -n 5 "$out" >&2
    die "run $round on $side failed (exit $rc); nothing to compare"
  fi
  printf '%s,%s,%s,%s,%s,%s\n' "$round" "$side" "$(cut -d, -f2 <<<"$row")" \
    "$(cut -d, -f7 <<<"$row")" \
    "$(ticks_s "$sg0" "$sg1")" "$(ticks_s "$srv0" "$srv1")" \
    >>"$runs"
  note "$(tail -n 1 "$runs")"
}

note "A: $a_bin ${a_args[*]}"
note "B: $b_bin ${b_args[*]}"
note "$rounds rounds of -t $test -P $pipe -n $n, A then B"
for ((round = 1; round <= rounds; round++)); do
  run_one "$round" A $((base + 3)) "$a_pid"
  run_one "$round" B $((base + 4)) "$b_pid"
done

echo
echo "slotgate A/B: $(nproc) cores, -c $clients -t $test -P $pipe -n $n, $rounds rounds each, medians"
echo "A: $a_bin ${a_args[*]}"
echo "B: $b_bin ${b_args[*]}"
python3 - "$runs" "$n" <<'EOF'
import csv, statistics, sys

runs, n = sys.argv[1], int(sys.argv[2])
per_m = 1e6 / n
sides = {}
for r in csv.DictReader(open(runs)):
    sg, srv = float(r["slotgate_cpu_s"]), float(r["nodes_cpu_s"])
    sides.setdefault(r["side"], []).append(
        (float(r["rps"]), float(r["p99_ms"]), sg * per_m, srv * per_m, sg / srv if srv else float("nan"))
    )
cols = ["rps", "p99 ms", "sg CPU/M", "nodes CPU/M", "sg/nodes"]
med = {s: [statistics.median(c) for c in zip(*v)] for s, v in sides.items()}
print(f"{'':6}" + "".join(f"{c:>13}" for c in cols))
for s in ("A", "B"):
    print(f"{s:6}" + "".join(f"{x:>13.2f}" for x in med[s]))
print(f"{'B/A':6}" + "".join(f"{b / a if a else float('nan'):>13.3f}" for a, b in zip(med["A"], med["B"])))
EOF
