# shellcheck shell=bash
# Shared helpers for the benchmark scripts in benches/ (sourced, not run).
#
# Every process a script starts is recorded with `track PID` (or, for the cluster, by
# its data dir) and stopped by `cleanup`, which the scripts install as an EXIT trap.
# Only those pids are signalled; nothing is stopped by name.

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
prog="$(basename "$0")"

# The release binary: SLOTGATE_BIN, else $CARGO_TARGET_DIR/release/slotgate, else
# <repo>/target/release/slotgate.
SLOTGATE_BIN="${SLOTGATE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/slotgate}"

# Debian installs nutcracker (twemproxy, a peer in the benchmarks) in /usr/sbin, which
# is not on a normal user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac

die() {
  echo "$prog: $*" >&2
  exit 1
}

note() {
  echo "[$prog] $*" >&2
}

# need COMMAND...: every command on PATH. What is missing is installed with apt-get
# (as root, or through sudo) on a machine that has it, so the scripts run on a fresh
# Debian/Ubuntu box; BENCH_NO_INSTALL=1 only reports what is missing.
need() {
  local c pkg missing=() pkgs=()
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 && continue
    missing+=("$c")
    case "$c" in
      redis-server) pkg=redis-server ;;
      redis-cli | redis-benchmark) pkg=redis-tools ;;
      valgrind | callgrind_control) pkg=valgrind ;;
      timeout) pkg=coreutils ;;
      *) pkg="$c" ;;
    esac
    [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "${BENCH_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    note "installing ${pkgs[*]} (for ${missing[*]}; BENCH_NO_INSTALL=1 to skip)"
    $sudo apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >&2 ||
      die "apt-get install ${pkgs[*]} failed"
  fi
  for c in "${missing[@]}"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is needed and not on PATH"
  done
}

# ensure_binary: builds the release binary when it is missing (SLOTGATE_BUILD=1: always).
ensure_binary() {
  if [ ! -x "$SLOTGATE_BIN" ] || [ "${SLOTGATE_BUILD:-0}" = 1 ]; then
    note "building $SLOTGATE_BIN (cargo build --release)"
    (cd "$repo" && cargo build --release) >&2 || die "cargo build --release failed"
    [ -x "$SLOTGATE_BIN" ] ||
      die "no binary at $SLOTGATE_BIN after the build; set SLOTGATE_BIN (or CARGO_TARGET_DIR) to where cargo puts it"
  fi
  note "slotgate binary: $SLOTGATE_BIN (built $(date -r "$SLOTGATE_BIN" '+%F %T'))"
}

# ---- processes ----

tracked_pids=()
cluster_dir=""
cluster_port=""
cluster_replicas=0
work_dir=""

track() {
  tracked_pids+=("$1")
}

alive() {
  local stat
  stat="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]
}

# stop_pid PID: TERM, wait up to 10 s, then KILL.
stop_pid() {
  local pid="$1" i
  alive "$pid" || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    note "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$? i
  trap - EXIT INT TERM
  # Newest first: clients and slotgate before the servers they talk to.
  for ((i = ${#tracked_pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${tracked_pids[$i]}"
  done
  if [ -n "$cluster_dir" ]; then
    "$repo/deploy/local-cluster.sh" -m 3 -r "${cluster_replicas:-0}" -p "$cluster_port" -d "$cluster_dir" down >/dev/null 2>&1 ||
      note "stopping the cluster in $cluster_dir failed"
  fi
  if [ -n "$work_dir" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$work_dir"
  elif [ -n "$work_dir" ]; then
    note "kept $work_dir (BENCH_KEEP=1)"
  fi
  exit "$status"
}

install_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

make_work_dir() {
  work_dir="$(mktemp -d "${TMPDIR:-/tmp}/slotgate-$1.XXXXXX")"
}

# ---- ports ----

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port_block START COUNT: the first P >= START (in steps of 50) such that P..P+COUNT-1
# and their cluster bus ports (+10000) are all free on 127.0.0.1.
free_port_block() {
  local start="$1" count="$2" p i ok
  for ((p = start; p + count + 10000 < 65536; p += 50)); do
    ok=1
    for ((i = 0; i < count; i++)); do
      if listening $((p + i)) || listening $((p + i + 10000)); then
        ok=0
        break
      fi
    done
    if [ "$ok" = 1 ]; then
      echo "$p"
      return 0
    fi
  done
  die "no free block of $count ports from $start"
}

# ---- servers ----

# wait_ping PORT SECONDS: until redis-cli PING answers PONG.
wait_ping() {
  local port="$1" deadline=$((SECONDS + $2))
  until [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# start_cluster BASE_PORT [REPLICAS]: 3 masters with REPLICAS (0) replicas each, under
# $work_dir/cluster. Sets cluster_seeds and cluster_pids (every node's).
start_cluster() {
  cluster_port="$1"
  cluster_replicas="${2:-0}"
  cluster_dir="$work_dir/cluster"
  local out p
  out="$("$repo/deploy/local-cluster.sh" -m 3 -r "$cluster_replicas" -p "$cluster_port" -d "$cluster_dir" up)" ||
    die "deploy/local-cluster.sh up failed"
  cluster_seeds="$(tail -n 1 <<<"$out")"
  cluster_pids=()
  for ((p = cluster_port; p < cluster_port + 3 * (1 + cluster_replicas); p++)); do
    cluster_pids+=("$(tr -dc '0-9' <"$cluster_dir/$p/redis.pid")")
  done
  note "cluster up: $cluster_seeds (pids ${cluster_pids[*]})"
}

# start_redis PORT DIR [EXTRA ARGS...]: a redis-server (not a cluster node) without
# persistence under $work_dir/DIR, in the foreground of a background job (so its pid is
# ours). Sets redis_pid.
start_redis() {
  local port="$1" dir="$work_dir/$2"
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$dir" --logfile "$dir/redis.log" "$@" &
  redis_pid=$!
  track "$redis_pid"
  wait_ping "$port" 30 || die "redis-server on $port did not answer PING"
}

# start_standalone PORT [EXTRA ARGS...]: the standalone redis-server. Sets standalone_pid.
start_standalone() {
  start_redis "$1" standalone "${@:2}"
  standalone_pid="$redis_pid"
  note "standalone redis-server on 127.0.0.1:$1 (pid $standalone_pid)"
}

# start_twemproxy PORT FIRST_SERVER_PORT STATS_PORT [SECONDS]: twemproxy (nutcracker) on
# PORT in front of three standalone redis-servers on FIRST_SERVER_PORT..+2 (ketama over
# the key, as twemproxy is deployed), its stats server on 127.0.0.1:STATS_PORT (by
# default it would take 0.0.0.0:22222), all in the foreground of background jobs; waits
# up to SECONDS (30) for it. TWEMPROXY_WRAPPER (e.g. valgrind ...) goes in front of it.
# A peer to compare with: it shards over plain servers, so it has no slot table and no
# redirects to handle. Sets twemproxy_pid and twemproxy_server_pids.
start_twemproxy() {
  local port="$1" first="$2" stats="$3" secs="${4:-30}" p conf="$work_dir/twemproxy/nutcracker.yml"
  local deadline
  twemproxy_server_pids=()
  mkdir -p "$work_dir/twemproxy"
  {
    echo "pool:"
    echo "  listen: 127.0.0.1:$port"
    echo "  hash: fnv1a_64"
    echo "  distribution: ketama"
    echo "  redis: true"
    echo "  auto_eject_hosts: false"
    echo "  servers:"
  } >"$conf"
  for ((p = first; p < first + 3; p++)); do
    start_redis "$p" "twemproxy/$p"
    twemproxy_server_pids+=("$redis_pid")
    echo "   - 127.0.0.1:$p:1" >>"$conf"
  done
  # shellcheck disable=SC2086
  ${TWEMPROXY_WRAPPER:-} nutcracker -c "$conf" -a 127.0.0.1 -s "$stats" \
    -o "$work_dir/twemproxy/nutcracker.log" >"$work_dir/twemproxy/nutcracker.out" 2>&1 &
  twemproxy_pid=$!
  track "$twemproxy_pid"
  # A SET, not a PING (twemproxy may answer that itself): it has to reach a server.
  deadline=$((SECONDS + secs))
  until [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" SET e2e:twemproxy:ready 1 2>/dev/null)" = OK ]; do
    if ! alive "$twemproxy_pid" || [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$work_dir/twemproxy/nutcracker.log" "$work_dir/twemproxy/nutcracker.out" >&2
      die "twemproxy on $port did not get ready"
    fi
    sleep 0.2
  done
  note "twemproxy $(nutcracker --version 2>&1 | head -n 1 | awk '{print $NF}') on 127.0.0.1:$port (pid $twemproxy_pid) in front of 127.0.0.1:$first..$((first + 2)) (pids ${twemproxy_server_pids[*]})"
}

# need_peers LIST VAR: every peer in LIST (space-separated, from the variable VAR) is
# one the scripts can run, and is installed.
need_peers() {
  local peer
  for peer in $1; do
    case "$peer" in
      twemproxy) need nutcracker ;;
      *) die "$2: unknown peer '$peer' (known: twemproxy)" ;;
    esac
  done
}

# has_peer LIST PEER: PEER is in the space-separated LIST.
has_peer() {
  [[ " $1 " == *" $2 "* ]]
}

# prefill PORT SECONDS: 400,000 SETs of 64-byte values over the -r 100000 key space, so
# that GETs find values; also warms up the server(s) and any proxy's connections.
prefill() {
  timeout "$2" redis-benchmark -h 127.0.0.1 -p "$1" -c 50 -d 64 -r 100000 \
    -t set -P 16 -n 400000 -q >/dev/null || die "prefill against port $1 failed"
}

# start_slotgate PORT SECONDS [EXTRA ARGS...]: slotgate in front of the cluster; waits
# up to SECONDS for its ready line. Sets slotgate_pid. SLOTGATE_WRAPPER (e.g. valgrind
# ...) is put in front of the binary; SLOTGATE_ARGS is appended.
start_slotgate() {
  local port="$1" secs="$2" deadline
  shift 2
  local out="$work_dir/slotgate.$port.out" log="$work_dir/slotgate.$port.log"
  # shellcheck disable=SC2086
  ${SLOTGATE_WRAPPER:-} "$SLOTGATE_BIN" --listen "127.0.0.1:$port" --seeds "$cluster_seeds" \
    "$@" ${SLOTGATE_ARGS:-} >"$out" 2>"$log" &
  slotgate_pid=$!
  track "$slotgate_pid"
  deadline=$((SECONDS + secs))
  until grep -q "slotgate listening on" "$out" 2>/dev/null; do
    if ! alive "$slotgate_pid"; then
      tail -n 20 "$log" >&2
      die "slotgate exited before it was ready"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$log" >&2
      die "slotgate was not ready within ${secs}s"
    fi
    sleep 0.2
  done
  note "slotgate on 127.0.0.1:$port (pid $slotgate_pid)"
}

# ---- /proc ----

# shellcheck disable=SC2034 # used by the scripts that source this file
clk_tck="$(getconf CLK_TCK 2>/dev/null || echo 100)"

# ticks_s FROM TO: the clock ticks between two cpu_ticks readings, as seconds (%.2f).
ticks_s() {
  awk -v a="$1" -v b="$2" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }'
}

# bench_csv_row FILE TEST: redis-benchmark 7's --csv row for TEST (upper case) in FILE,
# without quotes: TEST,rps,avg,min,p50,p95,p99,max. Empty when there is none.
bench_csv_row() {
  tr -d '\r"' <"$1" | grep "^$2," | tail -n 1 || true
}

# cpu_ticks PID...: utime+stime of all PIDs, in clock ticks.
cpu_ticks() {
  local pid total=0 stat f
  for pid in "$@"; do
    stat="$(cat "/proc/$pid/stat")" || die "pid $pid is gone"
    # Fields from 3 (state) on; the comm field before them may contain spaces.
    read -ra f <<<"${stat##*) }"
    total=$((total + f[11] + f[12])) # fields 14 (utime) and 15 (stime)
  done
  echo "$total"
}

# machine_busy_ticks: non-idle CPU time of the whole machine (all cores), in clock ticks.
machine_busy_ticks() {
  local user nice system irq softirq steal _
  # cpu user nice system idle iowait irq softirq steal ...
  read -r _ user nice system _ _ irq softirq steal _ </proc/stat
  echo $((user + nice + system + irq + softirq + steal))
}

# children_ticks VAR: sets VAR to the user+sys time of this shell's waited-for children
# (and theirs), in clock ticks, from the `times` builtin. Not `$(children_ticks)`: a
# command substitution is a subshell, which has children of its own.
children_ticks() {
  local file="${work_dir:-/tmp}/.times.$$"
  times >"$file" # second line: "XmY.YYYs XmY.YYYs", the children's user and sys
  printf -v "$1" '%s' "$(awk -v t="$clk_tck" 'NR == 2 {
    total = 0
    for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); total += p[1] * 60 + p[2] }
    printf "%d", total * t + 0.5
  }' "$file")"
}

# rss_kib PID: VmRSS in KiB.
rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}
