#!/usr/bin/env bash
# A failover seen through slotgate's metrics: a local cluster of 3 masters with one
# replica each, slotgate (release build) with its admin port, a bounded redis-benchmark
# load through slotgate, /metrics scraped every 250 ms, and a manual CLUSTER FAILOVER on
# one replica in the middle of the run. Prints a timeline from the metric deltas: time,
# requests/s, errors/s, redirects by kind, unreachable-node retries, topology refreshes
# by cause, readiness; then a summary.
#
#   benches/failover_timeline.sh [> benches/results/failover-timeline-DATE.txt]
#
# Environment: FAILOVER_SECONDS (length of the run, default 16), FAILOVER_AT (seconds
# into the run when the failover is asked for, default 5), FAILOVER_CLIENTS (default 20),
# FAILOVER_PIPELINE (default 1), SLOTGATE_BIN, BENCH_KEEP=1 (keep the work dir).
# Loopback only; every process it starts is its own and is stopped on exit.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

seconds="${FAILOVER_SECONDS:-16}"
fail_at="${FAILOVER_AT:-5}"
clients="${FAILOVER_CLIENTS:-20}"
pipeline="${FAILOVER_PIPELINE:-1}"
interval_ms=250
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 4 && "$seconds" -le 300 ]] ||
  die "FAILOVER_SECONDS must be 4..300"
[[ "$fail_at" =~ ^[0-9]+$ && "$fail_at" -ge 1 && "$fail_at" -lt "$seconds" ]] ||
  die "FAILOVER_AT must be 1..FAILOVER_SECONDS-1"

need redis-server redis-cli redis-benchmark curl timeout python3
ensure_binary
install_cleanup
make_work_dir failover

# ---- cluster: 3 masters + 3 replicas ----
base="$(free_port_block 7400 6)"
cluster_port="$base"
cluster_dir="$work_dir/cluster"
out="$("$repo/deploy/local-cluster.sh" -m 3 -r 1 -p "$base" -d "$cluster_dir" up)" ||
  die "deploy/local-cluster.sh up failed"
cluster_seeds="$(tail -n 1 <<<"$out")"
note "cluster up: $cluster_seeds"

# The master that owns slot 0 and its replica: the failover promotes that replica.
slot0_master=""
for ((p = base; p < base + 6; p++)); do
  if timeout 5 redis-cli -p "$p" CLUSTER NODES | grep -q 'myself,master.* 0-'; then
    slot0_master="$p"
  fi
done
[ -n "$slot0_master" ] || die "no master owns slot 0"
master_id="$(timeout 5 redis-cli -p "$slot0_master" CLUSTER MYID)"
replica=""
for ((p = base; p < base + 6; p++)); do
  if timeout 5 redis-cli -p "$p" CLUSTER NODES | grep -q "myself,slave $master_id"; then
    replica="$p"
  fi
done
[ -n "$replica" ] || die "the master on $slot0_master has no replica"
# Wait until the replica has synced, or CLUSTER FAILOVER is refused.
deadline=$((SECONDS + 30))
until timeout 5 redis-cli -p "$replica" INFO replication | tr -d '\r' | grep -q '^master_link_status:up'; do
  [ "$SECONDS" -lt "$deadline" ] || die "replica $replica did not sync"
  sleep 0.2
done

# ---- slotgate with its admin port ----
port=6390
while listening "$port"; do port=$((port + 1)); done
admin=9390
while listening "$admin" || [ "$admin" = "$port" ]; do admin=$((admin + 1)); done
start_slotgate "$port" 30 --admin "127.0.0.1:$admin"
metrics_url="http://127.0.0.1:$admin/metrics"
curl -fsS "$metrics_url" >/dev/null || die "no /metrics on 127.0.0.1:$admin"
timeout 60 redis-benchmark -p "$port" -c 20 -d 64 -r 100000 -t set -n 100000 -q >/dev/null ||
  die "prefill through slotgate failed"

# ---- the run ----
scrapes="$work_dir/scrapes.txt"
events="$work_dir/events.txt"
: >"$scrapes"
: >"$events"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Other work on the machine shows in the rates: the header gives the load average.
load_before="$(cut -d ' ' -f 1-3 /proc/loadavg)"
start_ms="$(now_ms)"
echo "load $start_ms" >>"$events"
timeout "$seconds" redis-benchmark -p "$port" -c "$clients" -P "$pipeline" -d 64 -r 100000 \
  -t set,get -l -q >"$work_dir/benchmark.out" 2>&1 &
bench_pid=$!
track "$bench_pid"

failed_over=0
end_ms=$((start_ms + seconds * 1000))
while :; do
  t="$(now_ms)"
  [ "$t" -lt "$end_ms" ] || break
  if [ "$failed_over" = 0 ] && [ "$t" -ge $((start_ms + fail_at * 1000)) ]; then
    asked="$(now_ms)"
    reply="$(timeout 5 redis-cli -p "$replica" CLUSTER FAILOVER 2>&1 || true)"
    echo "failover $asked $replica $reply" >>"$events"
    note "CLUSTER FAILOVER on replica 127.0.0.1:$replica: $reply"
    failed_over=1
  fi
  {
    # The time of the scrape itself, not of the loop's start (the failover may lie between).
    echo "@ $(now_ms)"
    curl -fsS --max-time 1 "$metrics_url" | grep -E '^slotgate_(requests_total|errors_total|redirects_total|retries_unreachable_total|topology_refreshes_total|ready)[{ ]' || true
  } >>"$scrapes"
  next=$((t + interval_ms))
  t="$(now_ms)"
  if [ "$t" -lt "$next" ]; then sleep "$(awk -v ms=$((next - t)) 'BEGIN { printf "%.3f", ms / 1000 }')"; fi
done
wait "$bench_pid" 2>/dev/null || true

# Where the slots went.
new_role="$(timeout 5 redis-cli -p "$replica" ROLE | head -n 1)"
old_role="$(timeout 5 redis-cli -p "$slot0_master" ROLE | head -n 1)"

echo "# slotgate failover timeline, $(date -u '+%F %T UTC')"
echo "# $("$SLOTGATE_BIN" --version 2>/dev/null | head -n 1) ($SLOTGATE_BIN), redis-server $(redis-server --version | awk '{print $3}' | sed 's/^v=//'), $(nproc) cores, load average before the run: $load_before"
echo "# cluster: 3 masters + 3 replicas on 127.0.0.1:$base..$((base + 5)); slotgate on 127.0.0.1:$port, admin 127.0.0.1:$admin"
echo "# load: redis-benchmark -c $clients -P $pipeline -d 64 -r 100000 -t set,get -l for ${seconds}s"
echo "# at +${fail_at}s: CLUSTER FAILOVER on 127.0.0.1:$replica (replica of 127.0.0.1:$slot0_master, which owned slot 0)"
echo "# after: 127.0.0.1:$replica is $new_role, 127.0.0.1:$slot0_master is $old_role"
echo "# each row: the deltas between two scrapes of /metrics (every ${interval_ms} ms), as rates or counts"
python3 - "$scrapes" "$events" <<'EOF'
import re, sys
from collections import defaultdict

scrapes_path, events_path = sys.argv[1], sys.argv[2]
samples = []  # (t_ms, {series: value})
cur = None
line_re = re.compile(r'^(\w+)(\{[^}]*\})? (\S+)$')
for line in open(scrapes_path):
    line = line.rstrip("\n")
    if line.startswith("@ "):
        cur = (int(line[2:]), {})
        samples.append(cur)
        continue
    m = line_re.match(line)
    if m and cur is not None:
        cur[1][m.group(1) + (m.group(2) or "")] = float(m.group(3))
samples = [s for s in samples if s[1]]

events = {}
for line in open(events_path):
    parts = line.split()
    events[parts[0]] = int(parts[1])
start = events["load"]
failover = events.get("failover")

def label(series, name):
    m = re.search(name + r'="([^"]*)"', series)
    return m.group(1) if m else ""

def total(s, metric):
    return sum(v for k, v in s.items() if k.split("{")[0] == metric)

def by(s, metric, key, where=None):
    out = defaultdict(float)
    for k, v in s.items():
        if k.split("{")[0] != metric:
            continue
        if where and label(k, where[0]) != where[1]:
            continue
        out[label(k, key)] += v
    return out

kinds = ["moved", "ask", "tryagain", "clusterdown"]
print(f"{'t(s)':>6} {'req/s':>8} {'err/s':>7} {'moved':>5} {'ask':>4} {'tryag':>5} {'cdown':>5} {'unrch':>5} {'ready':>5}  refreshes (cause:ok/failed)")
totals = defaultdict(float)
first_moved = first_refresh = None
rates_before, rates_after = [], []
for (t0, a), (t1, b) in zip(samples, samples[1:]):
    dt = (t1 - t0) / 1000.0
    if dt <= 0:
        continue
    req = total(b, "slotgate_requests_total") - total(a, "slotgate_requests_total")
    err = total(b, "slotgate_errors_total") - total(a, "slotgate_errors_total")
    red_a, red_b = by(a, "slotgate_redirects_total", "kind"), by(b, "slotgate_redirects_total", "kind")
    red = {k: int(red_b[k] - red_a[k]) for k in kinds}
    unr = int(total(b, "slotgate_retries_unreachable_total") - total(a, "slotgate_retries_unreachable_total"))
    ref = []
    for result in ["ok", "failed"]:
        ra = by(a, "slotgate_topology_refreshes_total", "cause", ("result", result))
        rb = by(b, "slotgate_topology_refreshes_total", "cause", ("result", result))
        for cause in sorted(rb):
            d = int(rb[cause] - ra.get(cause, 0))
            if d:
                ref.append(f"{cause}:{result}={d}")
                totals[f"refresh {cause} {result}"] += d
    ready = int(b.get("slotgate_ready", -1))
    t = (t1 - start) / 1000.0
    mark = ""
    if failover is not None and t0 < failover <= t1:
        mark = "   <- CLUSTER FAILOVER asked"
    if failover is not None and t1 <= failover:
        rates_before.append(req / dt)
    elif failover is not None and t0 >= failover:
        rates_after.append((t, req / dt))
    if red["moved"] and first_moved is None:
        first_moved = t
    if ref and failover is not None and t1 >= failover and first_refresh is None:
        first_refresh = t
    totals["requests"] += req
    totals["errors"] += err
    totals["unreachable"] += unr
    for k in kinds:
        totals[k] += red[k]
    print(f"{t:6.2f} {req / dt:8.0f} {err / dt:7.0f} {red['moved']:5d} {red['ask']:4d} {red['tryagain']:5d} "
          f"{red['clusterdown']:5d} {unr:5d} {ready:5d}  {' '.join(ref)}{mark}")

print()
print("# summary")
print(f"requests {int(totals['requests'])}, error replies {int(totals['errors'])}")
print("redirects absorbed: " + ", ".join(f"{k} {int(totals[k])}" for k in kinds)
      + f"; retries for an unreachable node {int(totals['unreachable'])}")
refreshes = sorted((k[len('refresh '):], int(v)) for k, v in totals.items() if k.startswith("refresh "))
print("topology refreshes: " + (", ".join(f"{k} {v}" for k, v in refreshes) or "none"))
if failover is not None:
    fo = (failover - start) / 1000.0
    print(f"failover asked at {fo:.2f}s")
    if first_moved is not None:
        print(f"first MOVED absorbed in the interval ending {first_moved:.2f}s")
    if first_refresh is not None:
        print(f"first refresh after it in the interval ending {first_refresh:.2f}s")
    if rates_before:
        base = sorted(rates_before)[len(rates_before) // 2]
        print(f"median rate before the failover: {base:.0f} req/s")
        soon = [(t, r) for t, r in rates_after if t <= fo + 2.0]
        later = [r for t, r in rates_after if t > fo + 2.0]
        if soon:
            low = min(soon, key=lambda x: x[1])
            print(f"lowest rate in the 2 s after it: {low[1]:.0f} req/s (interval ending {low[0]:.2f}s)")
        if later:
            print(f"median rate from 2 s after it: {sorted(later)[len(later) // 2]:.0f} req/s")
EOF
echo
echo "# redis-benchmark's own last lines (rates per test; it is killed by the time bound):"
tr '\r' '\n' <"$work_dir/benchmark.out" | grep -E 'requests per second' | tail -n 4 || true
