#!/usr/bin/env bash
# The cost of TLS, same run: redis-benchmark -t get,set through slotgate's plain listener
# and through its [tls] listener (one slotgate, both listeners, in front of a plain
# 3-master cluster), and for reference straight to a standalone redis-server on its
# plain port and on its tls-port (one server, both ports).
#
#   benches/tls.sh
#
# Certificates are made with openssl in the temp dir (a CA, a certificate for
# 127.0.0.1). Each round runs every target once per test (interleaved, so all see the
# same drift of the machine); around each run it reads utime+stime of slotgate (or of
# the standalone server for the direct runs) from /proc. Prints every run, then the
# medians: rps, p99, and CPU seconds per million requests of the process measured.
#
# Environment:
#   TLS_ROUNDS      rounds                                  3
#   TLS_TESTS       redis-benchmark -t, one at a time       "get set"
#   TLS_PIPELINES   redis-benchmark -P values               "1 16"
#   TLS_CLIENTS     redis-benchmark -c                      50
#   TLS_N           requests per run     200000 at -P 1, 1000000 otherwise
#   TLS_BASE_PORT   first port tried (cluster P..P+2, slotgate P+3, its TLS P+4,
#                   redis-server P+5, its TLS P+6)           7551
#   SLOTGATE_BIN, BENCH_KEEP as in e2e.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds="${TLS_ROUNDS:-3}"
tests="${TLS_TESTS:-get set}"
pipelines="${TLS_PIPELINES:-1 16}"
clients="${TLS_CLIENTS:-50}"
run_timeout=180

need redis-server redis-cli redis-benchmark python3 timeout openssl
redis-benchmark --help 2>&1 | grep -q -- '--tls' || die "this redis-benchmark has no --tls"
ensure_binary

install_cleanup
make_work_dir tls

# ---- certificates ----
certs="$work_dir/certs"
mkdir -p "$certs"
(
  cd "$certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=slotgate bench CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout key.pem -out req.pem 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
  openssl x509 -req -in req.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile ext.cnf -out cert.pem 2>/dev/null
) || die "openssl could not make the certificates"

base="$(free_port_block "${TLS_BASE_PORT:-7551}" 7)"
sg_port=$((base + 3))
sg_tls=$((base + 4))
std_port=$((base + 5))
std_tls=$((base + 6))

start_cluster "$base"
cat >"$work_dir/slotgate.toml" <<EOF
[tls]
listen = "127.0.0.1:$sg_tls"
cert_file = "$certs/cert.pem"
key_file = "$certs/key.pem"
EOF
start_slotgate "$sg_port" 30 --config "$work_dir/slotgate.toml"
sg_pid="$slotgate_pid"
start_standalone "$std_port" --tls-port "$std_tls" --tls-cert-file "$certs/cert.pem" \
  --tls-key-file "$certs/key.pem" --tls-ca-cert-file "$certs/ca.pem" --tls-auth-clients no
tls_args=(--tls --cacert "$certs/ca.pem")

note "prefilling the key space through slotgate and on the standalone server"
prefill "$sg_port" "$run_timeout"
prefill "$std_port" "$run_timeout"

runs="$work_dir/runs.csv"
echo "round,test,pipeline,target,rps,p99_ms,cpu_s,n" >"$runs"

# run_one ROUND TEST PIPELINE TARGET PORT PID [TLS ARGS...]
run_one() {
  local round="$1" test="$2" pipe="$3" target="$4" port="$5" pid="$6" n out t0 t1 row rc=0
  shift 6
  n="${TLS_N:-}"
  [ -n "$n" ] || { [ "$pipe" = 1 ] && n=200000 || n=1000000; }
  out="$work_dir/run-$round-$test-$pipe-$target.out"
  t0="$(cpu_ticks "$pid")"
  timeout "$run_timeout" redis-benchmark -h 127.0.0.1 -p "$port" "$@" -c "$clients" -d 64 \
    -r 100000 -t "$test" -P "$pipe" -n "$n" --csv >"$out" 2>&1 || rc=$?
  t1="$(cpu_ticks "$pid")"
  row="$(bench_csv_row "$out" "$(tr '[:lower:]' '[:upper:]' <<<"$test")")"
  if [ "$rc" -ne 0 ] || [ -z "$row" ] || grep -q 'Error from server' "$out"; then
    tail -n 5 "$out" >&2
    die "run $round $test -P $pipe on $target failed (exit $rc)"
  fi
  printf '%s,%s,%s,%s,%s,%s,%s,%s\n' "$round" "$test" "$pipe" "$target" \
    "$(cut -d, -f2 <<<"$row")" "$(cut -d, -f7 <<<"$row")" "$(ticks_s "$t0" "$t1")" "$n" >>"$runs"
  note "$(tail -n 1 "$runs")"
}

for ((round = 1; round <= rounds; round++)); do
  for pipe in $pipelines; do
    for test in $tests; do
      run_one "$round" "$test" "$pipe" slotgate "$sg_port" "$sg_pid"
      run_one "$round" "$test" "$pipe" slotgate-tls "$sg_tls" "$sg_pid" "${tls_args[@]}"
      run_one "$round" "$test" "$pipe" redis "$std_port" "$standalone_pid"
      run_one "$round" "$test" "$pipe" redis-tls "$std_tls" "$standalone_pid" "${tls_args[@]}"
    done
  done
done

echo
echo "TLS vs plain: $(nproc) cores, -c $clients -d 64 -r 100000, $rounds rounds, medians;"
echo "CPU/M: CPU seconds per million requests of slotgate (slotgate rows) or of the"
echo "standalone redis-server (redis rows)"
python3 - "$runs" <<'EOF'
import csv, statistics, sys

rows = {}
for r in csv.DictReader(open(sys.argv[1])):
    per_m = 1e6 / int(r["n"])
    key = (r["test"], r["pipeline"], r["target"])
    rows.setdefault(key, []).append((float(r["rps"]), float(r["p99_ms"]), float(r["cpu_s"]) * per_m))
print(f"{'test':6}{'-P':>4}  {'target':14}{'rps':>12}{'p99 ms':>9}{'CPU/M':>9}{'rps/plain':>11}{'CPU/plain':>11}")
for (test, pipe, target), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    med = [statistics.median(c) for c in zip(*v)]
    plain = rows.get((test, pipe, target.removesuffix("-tls")))
    ratio = ""
    if target.endswith("-tls") and plain:
        p = [statistics.median(c) for c in zip(*plain)]
        ratio = f"{med[0] / p[0]:>11.2f}{med[2] / p[2] if p[2] else float('nan'):>11.2f}"
    print(f"{test:6}{pipe:>4}  {target:14}{med[0]:>12.0f}{med[1]:>9.2f}{med[2]:>9.2f}{ratio}")
EOF
