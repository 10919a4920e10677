#!/usr/bin/env bash
# A local Redis Cluster for trying slotgate by hand, like the classic
# utils/create-cluster script:
#
#   deploy/local-cluster.sh up       start the nodes and create the cluster; prints the
#                                    seeds line (127.0.0.1:7001,...) as its last line
#   deploy/local-cluster.sh status   per node: up/down, role, cluster_state (exit 1 unless all ok)
#   deploy/local-cluster.sh down     stop the nodes this script started
#
# Options (flag, or environment variable, or default):
#   -m, --masters N      SLOTGATE_CLUSTER_MASTERS    3
#   -r, --replicas N     SLOTGATE_CLUSTER_REPLICAS   1   (replicas per master)
#   -p, --base-port P    SLOTGATE_CLUSTER_BASE_PORT  7001 (nodes on P .. P+N-1, bus ports +10000)
#   -d, --dir DIR        SLOTGATE_CLUSTER_DIR        ./data/local-cluster
#
# Each node lives in DIR/<port>/ (redis.conf, redis.pid, redis.log, nodes.conf), runs
# daemonized on 127.0.0.1 with cluster-node-timeout 5000 and no persistence.
#
# Data: nodes keep nothing on disk (save "", appendonly no). `down` stops the nodes by
# their pidfiles and removes their pidfiles, nodes.conf and dump.rdb but keeps redis.log; `up`
# with no node running always creates a fresh, empty cluster. `up` on a cluster that is
# already up and ok says so and exits 0.
set -euo pipefail

prog="$(basename "$0")"
masters="${SLOTGATE_CLUSTER_MASTERS:-3}"
replicas="${SLOTGATE_CLUSTER_REPLICAS:-1}"
base_port="${SLOTGATE_CLUSTER_BASE_PORT:-7001}"
data="${SLOTGATE_CLUSTER_DIR:-./data/local-cluster}"
node_timeout=5000
wait_secs=30

usage() {
  cat >&2 <<EOF
usage: $prog [options] up|down|status

  up       start $((masters * (1 + replicas))) redis-server nodes and create the cluster; prints the seeds line
  down     stop the nodes started by 'up' (by their pidfiles in the data dir)
  status   show each node (up/down, role, cluster_state); exit 0 only if all are up and ok

options (or environment):
  -m, --masters N     number of masters           (SLOTGATE_CLUSTER_MASTERS, default 3)
  -r, --replicas N    replicas per master         (SLOTGATE_CLUSTER_REPLICAS, default 1)
  -p, --base-port P   first port, nodes on P..    (SLOTGATE_CLUSTER_BASE_PORT, default 7001)
  -d, --dir DIR       data dir                    (SLOTGATE_CLUSTER_DIR, default ./data/local-cluster)
  -h, --help          this message
EOF
  exit 2
}

die() {
  echo "$prog: $*" >&2
  exit 1
}

is_uint() {
  [[ "$1" =~ ^[0-9]+$ ]]
}

# ---- arguments ----

cmd=""
while [ $# -gt 0 ]; do
  case "$1" in
    -m | --masters) [ $# -ge 2 ] || usage; masters="$2"; shift 2 ;;
    -r | --replicas) [ $# -ge 2 ] || usage; replicas="$2"; shift 2 ;;
    -p | --base-port) [ $# -ge 2 ] || usage; base_port="$2"; shift 2 ;;
    -d | --dir) [ $# -ge 2 ] || usage; data="$2"; shift 2 ;;
    -h | --help) usage ;;
    up | down | status)
      [ -z "$cmd" ] || usage
      cmd="$1"
      shift
      ;;
    *) echo "$prog: unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$cmd" ] || usage

if ! is_uint "$masters" || [ "$masters" -lt 1 ]; then
  die "masters must be a positive integer, got '$masters'"
fi
is_uint "$replicas" || die "replicas must be a non-negative integer, got '$replicas'"
if ! is_uint "$base_port" || [ "$base_port" -lt 1024 ]; then
  die "base port must be an integer >= 1024, got '$base_port'"
fi
nodes=$((masters * (1 + replicas)))
last_port=$((base_port + nodes - 1))
[ $((last_port + 10000)) -le 65535 ] || die "ports $base_port..$last_port (+10000 for the cluster bus) do not fit below 65536"

ports=()
for ((p = base_port; p <= last_port; p++)); do ports+=("$p"); done

if [ "$cmd" = up ]; then mkdir -p "$data"; fi
if [ -d "$data" ]; then data="$(cd "$data" && pwd)"; fi

# ---- helpers ----

seeds_line() {
  local out="" p
  for p in "${ports[@]}"; do out="${out:+$out,}127.0.0.1:$p"; done
  echo "$out"
}

# cli PORT ARGS...: redis-cli against one node, with a short timeout where `timeout`
# exists; prints the reply (nothing if the node is down) and never fails.
cli() {
  local port="$1"
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null || true
  else
    redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null || true
  fi
}

# field NAME: value of "NAME:value" in the text on stdin (CR stripped).
field() {
  tr -d '\r' | sed -n "s/^$1://p"
}

# pid_of DIR: the pid in DIR/redis.pid if that process is alive and a redis-server,
# else nothing (and a failing status).
pid_of() {
  local pidfile="$1/redis.pid" pid cmdline
  [ -f "$pidfile" ] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  if [ -z "$pid" ] || ! alive "$pid"; then return 1; fi
  cmdline="$(ps -p "$pid" -o command= 2>/dev/null || true)"
  case "$cmdline" in
    *redis-server*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

# listening PORT: something accepts TCP connections on 127.0.0.1:PORT.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cluster_ok() {
  [ "$(cli "$1" CLUSTER INFO | field cluster_state)" = "ok" ]
}

all_ok() {
  local p
  for p in "${ports[@]}"; do cluster_ok "$p" || return 1; done
}

wait_all_ok() {
  local deadline=$((SECONDS + wait_secs))
  until all_ok; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      sudo=(none)
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "${sudo[0]:-}" = "none" ]; then
    die "redis-server and redis-cli are needed: install Redis 7 (Debian/Ubuntu: apt-get install -y redis-server redis-tools; macOS: brew install redis)"
  fi
  echo "installing redis-server and redis-tools with apt-get"
  if ! "${sudo[@]}" apt-get install -y redis-server redis-tools; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y redis-server redis-tools
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    die "redis-server/redis-cli still not on PATH after apt-get install"
  fi
}

write_config() {
  local port="$1" dir="$2"
  cat >"$dir/redis.conf" <<EOF
# written by $prog; regenerated on every 'up'
port $port
bind 127.0.0.1
daemonize yes
pidfile "$dir/redis.pid"
logfile "$dir/redis.log"
dir "$dir"
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $node_timeout
save ""
appendonly no
# A replica keeps the RDB of its initial sync unless told otherwise.
rdb-del-sync-files yes
EOF
}

# alive PID: the process exists and is not a zombie (a daemonized node that exited is a
# zombie until init reaps it, which in some containers takes a second or two).
alive() {
  local stat
  stat="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]
}

# stop_nodes DIR...: TERM every node of DIR/redis.pid at once, wait up to 10 s for all,
# then KILL what is left; removes the pidfiles, nodes.conf and dump.rdb.
stop_nodes() {
  local dir pid i pids=() left
  for dir in "$@"; do
    if pid="$(pid_of "$dir")"; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
      echo "stopping $(basename "$dir") (pid $pid)"
    fi
  done
  for ((i = 0; i < 100; i++)); do
    left=0
    for pid in ${pids[@]+"${pids[@]}"}; do
      if alive "$pid"; then left=1; fi
    done
    [ "$left" -eq 1 ] || break
    sleep 0.1
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    if alive "$pid"; then
      echo "pid $pid did not stop on SIGTERM within 10 s, sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  for dir in "$@"; do
    rm -f "$dir/redis.pid" "$dir/nodes.conf" "$dir/dump.rdb"
  done
}

start_node() {
  local port="$1" dir="$data/$1" i
  mkdir -p "$dir"
  rm -f "$dir/nodes.conf" "$dir/redis.pid" "$dir/dump.rdb"
  write_config "$port" "$dir"
  redis-server "$dir/redis.conf" >>"$dir/redis.log" 2>&1 ||
    { tail -n 20 "$dir/redis.log" >&2; return 1; }
  for ((i = 0; i < 100; i++)); do
    if [ "$(cli "$port" PING)" = "PONG" ] && pid_of "$dir" >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$prog: node $port did not come up; last lines of $dir/redis.log:" >&2
  tail -n 20 "$dir/redis.log" >&2 || true
  return 1
}

# For fewer than 3 masters (redis-cli --cluster create refuses them): slots split
# evenly over the first nodes, the others replicate them round-robin.
create_by_hand() {
  local i p first last id known deadline
  for ((i = 0; i < masters; i++)); do
    first=$((i * 16384 / masters))
    last=$(((i + 1) * 16384 / masters - 1))
    cli "${ports[$i]}" CLUSTER ADDSLOTSRANGE "$first" "$last" >/dev/null
  done
  for p in "${ports[@]:1}"; do
    cli "$p" CLUSTER MEET 127.0.0.1 "${ports[0]}" >/dev/null
  done
  deadline=$((SECONDS + wait_secs))
  for p in "${ports[@]}"; do
    until known="$(cli "$p" CLUSTER INFO | field cluster_known_nodes)" && [ "$known" = "$nodes" ]; do
      [ "$SECONDS" -lt "$deadline" ] || return 1
      sleep 0.2
    done
  done
  for ((i = masters; i < nodes; i++)); do
    id="$(cli "${ports[$(((i - masters) % masters))]}" CLUSTER MYID)"
    [ "$(cli "${ports[$i]}" CLUSTER REPLICATE "$id")" = "OK" ] || return 1
  done
}

# ---- commands ----

cmd_up() {
  ensure_redis
  local running=() stopped=() p
  for p in "${ports[@]}"; do
    if pid_of "$data/$p" >/dev/null; then running+=("$p"); else stopped+=("$p"); fi
  done

  if [ "${#stopped[@]}" -eq 0 ]; then
    if wait_all_ok; then
      echo "local cluster already up and ok ($nodes nodes in $data)"
      seeds_line
      return 0
    fi
    die "all $nodes nodes are running but the cluster is not ok; run '$prog down' then '$prog up'"
  fi
  if [ "${#running[@]}" -gt 0 ]; then
    die "only some nodes are running (${running[*]}); run '$prog down' then '$prog up'"
  fi

  for p in "${ports[@]}"; do
    if listening "$p" || listening $((p + 10000)); then
      die "port $p or its cluster bus port $((p + 10000)) is already in use on 127.0.0.1; stop that process or pick another --base-port"
    fi
  done

  echo "starting $nodes redis-server nodes on 127.0.0.1:$base_port..$last_port (data in $data)"
  for p in "${ports[@]}"; do
    if ! start_node "$p"; then
      local dirs=()
      local q
      for q in "${ports[@]}"; do dirs+=("$data/$q"); done
      stop_nodes "${dirs[@]}" >/dev/null
      die "could not start node $p; stopped the others"
    fi
  done

  echo "creating the cluster: $masters masters, $replicas replica(s) each"
  local created=1
  if [ "$masters" -ge 3 ]; then
    local addrs=()
    for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes \
      >"$data/create.log" 2>&1 || created=0
  else
    create_by_hand >"$data/create.log" 2>&1 || created=0
  fi
  if [ "$created" -eq 0 ]; then
    cat "$data/create.log" >&2
    die "creating the cluster failed (nodes left running: '$prog down' stops them)"
  fi

  if ! wait_all_ok; then
    cmd_status >&2 || true
    die "cluster_state did not become ok on every node within ${wait_secs}s (logs in $data/<port>/redis.log)"
  fi
  echo "cluster ok; seeds:"
  seeds_line
}

cmd_down() {
  local dir dirs=()
  for dir in "$data"/*/; do
    dir="${dir%/}"
    if [ -f "$dir/redis.conf" ]; then dirs+=("$dir"); fi
  done
  if [ "${#dirs[@]}" -eq 0 ]; then
    echo "no nodes found in $data"
    return 0
  fi
  stop_nodes "${dirs[@]}"
  echo "local cluster down"
}

cmd_status() {
  local p dir state role pid all=0
  for p in "${ports[@]}"; do
    dir="$data/$p"
    pid="$(pid_of "$dir" || true)"
    if [ "$(cli "$p" PING)" = "PONG" ]; then
      role="$(cli "$p" INFO replication | field role)"
      state="$(cli "$p" CLUSTER INFO | field cluster_state)"
      printf '127.0.0.1:%s  up    %-7s cluster_state:%-5s %s\n' "$p" "${role:-?}" "${state:-?}" "${pid:+pid $pid}"
      [ "$state" = "ok" ] || all=1
    else
      printf '127.0.0.1:%s  down\n' "$p"
      all=1
    fi
  done
  return "$all"
}

case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
esac
