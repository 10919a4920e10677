#!/usr/bin/env bash
# End-to-end load comparison: a standalone redis-server, a 3-master Redis Cluster
# (redis-benchmark --cluster), and slotgate in front of that cluster.
#
#   benches/e2e.sh
#
# Runs `redis-benchmark -c 50 -d 64 -r 100000 -t <set|get> -P <1|16> -n N --csv` against
# each target, interleaved (for each repeat, pipeline and test: standalone, cluster,
# slotgate), and reads the CPU time (utime+stime from /proc/PID/stat) of slotgate and of
# the redis-servers around every run. Prints one table and writes it as CSV, the raw
# runs as CSV beside it, and a PNG bar chart.
#
# Environment:
#   REPEATS            runs per target/test/pipeline                      3
#   E2E_N_P1           requests per run at -P 1                           300000
#   E2E_N_P16          requests per run at -P 16                          2000000
#   E2E_PIPELINES      pipelines to run                                   "1 16"
#   E2E_CLIENTS        redis-benchmark -c for the measured runs            50
#   E2E_TESTS          redis-benchmark tests, one per run                 "set get"
#   E2E_OUT            table CSV   benches/results/e2e-<timestamp>.csv (raw: -raw.csv, chart: .png)
#   E2E_RUN_TIMEOUT    seconds one redis-benchmark run may take           120
#   E2E_MAX_SECONDS    the whole measurement loop stops after this        1500
#   E2E_BASE_PORT      first port tried (cluster P..P+2, standalone P+3, slotgate P+4,  7401
#                      the variant P+5, twemproxy P+6, its servers P+7..P+9, its stats P+10)
#   E2E_VARIANT        a second slotgate target, NAME=FLAGS, run beside the first   "sg-wN=--workers N"
#                      (empty: none). Same cluster, same runs, its own row in the table.
#   E2E_PEERS          other proxies to measure in the same runs: "twemproxy" (nutcracker,
#                      installed with apt-get when missing, in front of three standalone
#                      redis-servers of its own)                          (none)
#   SLOTGATE_BIN       binary ($CARGO_TARGET_DIR or <repo>/target)/release/slotgate; built if missing
#   SLOTGATE_ARGS      extra slotgate flags, e.g. "--log-level warn"
#   BENCH_KEEP=1       keep the temp dir (logs, per-run redis-benchmark output)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

repeats="${REPEATS:-3}"
n_p1="${E2E_N_P1:-300000}"
n_p16="${E2E_N_P16:-2000000}"
pipelines="${E2E_PIPELINES:-1 16}"
tests="${E2E_TESTS:-set get}"
clients="${E2E_CLIENTS:-50}"
[[ "$clients" =~ ^[1-9][0-9]*$ ]] || die "E2E_CLIENTS must be a positive integer, not '$clients'"
run_timeout="${E2E_RUN_TIMEOUT:-120}"
max_seconds="${E2E_MAX_SECONDS:-1500}"
stamp="$(date +%Y%m%d-%H%M%S)"
out_csv="${E2E_OUT:-$bench_dir/results/e2e-$stamp.csv}"
raw_csv="${out_csv%.csv}-raw.csv"
out_png="${out_csv%.csv}.png"

need redis-server redis-cli redis-benchmark python3 timeout
ensure_binary
mkdir -p "$(dirname "$out_csv")"

install_cleanup
make_work_dir e2e

# A second slotgate, NAME=FLAGS: the same proxy with other flags, measured in the same
# runs. By default one worker per core (N = nproc): the default slotgate leaves a core
# to each node on this host, so the two rows show what that choice is worth here.
cores="$(nproc)"
variant="${E2E_VARIANT-sg-w$cores=--workers $cores}"
variant_name=""
variant_flags=()
if [ -n "$variant" ]; then
  [[ "$variant" == *=* ]] || die "E2E_VARIANT must be NAME=FLAGS, e.g. sg-w1=--workers 1"
  variant_name="${variant%%=*}"
  read -r -a variant_flags <<<"${variant#*=}"
  case "$variant_name" in
    "" | standalone | cluster | slotgate | *[!A-Za-z0-9_-]*)
      die "E2E_VARIANT name '$variant_name': use letters, digits, - or _, not a target's name"
      ;;
  esac
fi

# Peers: other proxies in the same runs, each with servers of its own.
peers="${E2E_PEERS:-}"
twemproxy_port=""
need_peers "$peers" E2E_PEERS

# Ports: cluster P..P+2, standalone P+3, slotgate P+4, the variant P+5; twemproxy P+6
# with its servers on P+7..P+9 and its stats on P+10.
base="$(free_port_block "${E2E_BASE_PORT:-7401}" 11)"
std_port=$((base + 3))
sg_port=$((base + 4))
variant_port=$((base + 5))
start_cluster "$base"
start_standalone "$std_port"
if has_peer "$peers" twemproxy; then
  twemproxy_port=$((base + 6))
  start_twemproxy "$twemproxy_port" $((base + 7)) $((base + 10))
fi
variant_pid=""
if [ -n "$variant_name" ]; then
  start_slotgate "$variant_port" 30 "${variant_flags[@]}"
  variant_pid="$slotgate_pid"
fi
start_slotgate "$sg_port" 30
targets=(standalone cluster slotgate)
proxy_ports=("$sg_port")
proxy_pids=("$slotgate_pid")
if [ -n "$variant_name" ]; then
  targets+=("$variant_name")
  proxy_ports+=("$variant_port")
  proxy_pids+=("$variant_pid")
fi
peer_servers=()
if [ -n "$twemproxy_port" ]; then
  targets+=(twemproxy)
  proxy_pids+=("$twemproxy_pid")
  peer_servers+=("${twemproxy_server_pids[@]}")
fi

info_field() { # PORT FIELD
  timeout 5 redis-cli -h 127.0.0.1 -p "$1" INFO 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# Every target's servers get the whole key space (the cluster through slotgate, a peer's
# servers through the peer).
note "prefilling standalone, cluster (through slotgate) and peers with 64-byte values"
for port in "$std_port" "${proxy_ports[@]}" $twemproxy_port; do
  prefill "$port" "$run_timeout"
done

echo "rep,target,test,pipeline,requests,wall_s,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,slotgate_cpu_s,servers_cpu_s,bench_errors,proxy_errors,ok,other_cores,client_cpu_s" >"$raw_csv"

# run_one REP TARGET TEST PIPELINE N
run_one() {
  local rep="$1" target="$2" test="$3" pipe="$4" n="$5"
  local args=(-h 127.0.0.1 -c "$clients" -d 64 -r 100000 -t "$test" -P "$pipe" -n "$n" --csv)
  local servers=() proxy_pid="$slotgate_pid" proxy_port=""
  case "$target" in
    standalone) args+=(-p "$std_port"); servers=("$standalone_pid") ;;
    cluster) args+=(--cluster -p "$base"); servers=("${cluster_pids[@]}") ;;
    twemproxy)
      args+=(-p "$twemproxy_port")
      proxy_pid="$twemproxy_pid"
      servers=("${twemproxy_server_pids[@]}")
      ;;
    slotgate) proxy_port="$sg_port" ;;
    *) proxy_port="$variant_port" proxy_pid="$variant_pid" ;;
  esac
  if [ -n "$proxy_port" ]; then
    args+=(-p "$proxy_port")
    servers=("${cluster_pids[@]}")
  fi
  local out="$work_dir/run-$rep-$target-$test-$pipe.out"
  local perr_before=0 perr_after=0
  # slotgate's INFO counts the errors it answered (proxy_port is set for slotgate only).
  if [ -n "$proxy_port" ]; then perr_before="$(info_field "$proxy_port" proxy_errors)"; fi
  local sg0 srv0 t0 sg1 srv1 t1 rc=0 all0 all1 mach0 mach1 kids0 kids1
  # Besides the processes measured: the machine's busy time, and ours (every server,
  # slotgate, redis-benchmark as a waited-for child), to show CPU used by strangers.
  children_ticks kids0
  all0="$(cpu_ticks "${proxy_pids[@]}" "$standalone_pid" "${cluster_pids[@]}" "${peer_servers[@]}")"
  sg0="$(cpu_ticks "$proxy_pid")"
  srv0="$(cpu_ticks "${servers[@]}")"
  mach0="$(machine_busy_ticks)"
  t0="$(date +%s.%N)"
  timeout "$run_timeout" redis-benchmark "${args[@]}" >"$out" 2>&1 || rc=$?
  t1="$(date +%s.%N)"
  mach1="$(machine_busy_ticks)"
  sg1="$(cpu_ticks "$proxy_pid")"
  srv1="$(cpu_ticks "${servers[@]}")"
  all1="$(cpu_ticks "${proxy_pids[@]}" "$standalone_pid" "${cluster_pids[@]}" "${peer_servers[@]}")"
  children_ticks kids1
  if [ -n "$proxy_port" ]; then perr_after="$(info_field "$proxy_port" proxy_errors)"; fi
  perr_before="${perr_before:-0}" perr_after="${perr_after:-0}" # INFO unanswered: count nothing

  local name row errors ok=1
  name="$(tr '[:lower:]' '[:upper:]' <<<"$test")"
  # 7.0's --csv row: "TEST","rps","avg","min","p50","p95","p99","max"
  row="$(bench_csv_row "$out" "$name" | cut -d, -f2-8)"
  errors="$(grep -c 'Error from server' "$out" || true)"
  if [ "$rc" -ne 0 ] || [ -z "$row" ]; then
    ok=0
    row=",,,,,,"
    note "run failed (exit $rc): $target $test -P $pipe; last lines of its output:"
    tail -n 5 "$out" >&2
  fi
  local wall other
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  other=$(((mach1 - mach0) - (all1 - all0) - (kids1 - kids0)))
  printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$rep" "$target" "$name" "$pipe" "$n" \
    "$wall" "$row" \
    "$(ticks_s "$sg0" "$sg1")" "$(ticks_s "$srv0" "$srv1")" \
    "$errors" "$((perr_after - perr_before))" "$ok" \
    "$(awk -v o="$other" -v w="$wall" -v t="$clk_tck" 'BEGIN { printf "%.2f", (o < 0 ? 0 : o) / t / w }')" \
    "$(ticks_s "$kids0" "$kids1")" \
    >>"$raw_csv"
  note "$(tail -n 1 "$raw_csv")"
}

deadline=$((SECONDS + max_seconds))
note "runs: $repeats x pipelines [$pipelines] x tests [$tests] x targets [${targets[*]}] (-P 1: $n_p1, -P 16: $n_p16 requests)"
stopped_early=0
for ((rep = 1; rep <= repeats; rep++)); do
  for pipe in $pipelines; do
    n="$n_p1"
    [ "$pipe" = 1 ] || n="$n_p16"
    for test in $tests; do
      for target in "${targets[@]}"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
          stopped_early=1
          break 4
        fi
        run_one "$rep" "$target" "$test" "$pipe" "$n"
      done
    done
  done
done
if [ "$stopped_early" = 1 ]; then
  note "E2E_MAX_SECONDS=$max_seconds reached: stopped early, the table covers the runs done"
fi

echo
echo "slotgate e2e: $(nproc) cores, $(redis-server --version | awk '{print $3}'), repeats=$repeats, -c $clients, -P 1 n=$n_p1, -P 16 n=$n_p16"
python3 "$bench_dir/e2e_report.py" table "$raw_csv" "$out_csv"
echo
echo "table: $out_csv"
echo "raw runs: $raw_csv"

# The chart: matplotlib from python3 or the system's /usr/bin/python3 (on a
# Debian/Ubuntu machine, apt's python3-matplotlib is installed when neither has it),
# else from a venv under target/.
with_matplotlib() { # prints the first interpreter that imports matplotlib
  local py
  for py in python3 /usr/bin/python3 "$repo/target/bench-venv/bin/python"; do
    if [ -x "$(command -v "$py" 2>/dev/null)" ] && "$py" -c 'import matplotlib' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  return 1
}
chart_python="$(with_matplotlib || true)"
if [ -z "$chart_python" ] && [ "${BENCH_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  note "matplotlib is not importable; installing python3-matplotlib (BENCH_NO_INSTALL=1 to skip)"
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq python3-matplotlib \
    >"$work_dir/apt-matplotlib.log" 2>&1 || note "apt-get install python3-matplotlib failed; trying a venv"
  chart_python="$(with_matplotlib || true)"
fi
if [ -z "$chart_python" ]; then
  venv="$repo/target/bench-venv"
  note "matplotlib is not importable; installing it into $venv"
  if timeout 300 python3 -m venv "$venv" >"$work_dir/venv.log" 2>&1 &&
    timeout 300 "$venv/bin/pip" install --quiet matplotlib >>"$work_dir/venv.log" 2>&1; then
    :
  else
    note "could not set up matplotlib in $venv; last lines:"
    tail -n 5 "$work_dir/venv.log" >&2
  fi
  chart_python="$(with_matplotlib || true)"
fi
if [ -n "$chart_python" ]; then
  E2E_CLIENTS="$clients" "$chart_python" "$bench_dir/e2e_report.py" chart "$out_csv" "$out_png"
  echo "chart: $out_png"
else
  echo "chart: skipped (no matplotlib; see the message above)"
fi
