#!/usr/bin/env bash
# Memory per idle client connection: RSS (VmRSS) of slotgate before and after opening
# 10,000 idle connections that each sent one PING; the same for a standalone redis-server.
#
#   benches/memory.sh
#
# Environment:
#   MEMORY_CLIENTS      connections opened                   10000
#   MEMORY_SETTLE       seconds between the last PING and the RSS reading   3
#   MEMORY_BASE_PORT    first port tried (cluster P..P+2, slotgate P+3, redis-server P+4;
#                       twemproxy P+5, its servers P+6..P+8, its stats P+9)   7501
#   MEMORY_PEERS        "twemproxy": the same for twemproxy (nutcracker) in front of three
#                       standalone redis-servers (its RSS only)
#   SLOTGATE_BIN, SLOTGATE_ARGS, BENCH_KEEP as in e2e.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

clients="${MEMORY_CLIENTS:-10000}"
settle="${MEMORY_SETTLE:-3}"

peers="${MEMORY_PEERS:-}"
need redis-server redis-cli redis-benchmark python3 timeout
need_peers "$peers" MEMORY_PEERS
ensure_binary

# Client sockets in the python process, accepted sockets in the server: each needs
# clients + some fds of its own.
want_fds=$((clients + 1000))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
    die "cannot raise the fd limit to $want_fds"
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$want_fds" ] ||
  die "the fd limit is $(ulimit -n) (hard $(ulimit -Hn)); $want_fds are needed for $clients clients"

install_cleanup
make_work_dir memory

base="$(free_port_block "${MEMORY_BASE_PORT:-7501}" 10)"
sg_port=$((base + 3))
std_port=$((base + 4))

# open_idle NAME PID PORT COUNTER: warm-up, RSS before, open the connections, RSS after.
# COUNTER: the INFO field that counts client connections ("-": the target has no INFO).
open_idle() {
  local name="$1" pid="$2" port="$3" counter="$4"
  timeout 60 redis-benchmark -h 127.0.0.1 -p "$port" -c 4 -n 2000 -d 64 -t set,get -q >/dev/null ||
    die "$name: warm-up failed"
  sleep 1
  local before after closed open_count line py_pid out="$work_dir/$name.clients"
  before="$(rss_kib "$pid")"
  local t0=$SECONDS
  python3 "$bench_dir/idle_clients.py" "$port" "$clients" 300 >"$out" 2>&1 &
  py_pid=$!
  track "$py_pid"
  until line="$(grep '^ready ' "$out")"; do
    alive "$py_pid" || { cat "$out" >&2; die "$name: the client process exited early"; }
    [ $((SECONDS - t0)) -lt 200 ] || die "$name: opening $clients connections took over 200 s"
    sleep 0.5
  done
  local opened failed
  read -r _ opened failed <<<"$line"
  [ "$failed" -eq 0 ] || { cat "$out" >&2; note "$name: $failed connections failed"; }
  sleep "$settle"
  after="$(rss_kib "$pid")"
  open_count=""
  if [ "$counter" != - ]; then
    open_count="$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" INFO 2>/dev/null | tr -d '\r' |
      sed -n "s/^$counter://p")"
  fi
  stop_pid "$py_pid"
  sleep "$settle"
  closed="$(rss_kib "$pid")"
  printf '%-12s RSS %8s KiB idle -> %8s KiB with %s connections (server counts %s) -> %8s KiB after closing;  %6.2f KiB per connection\n' \
    "$name" "$before" "$after" "$opened" "${open_count:-?}" "$closed" \
    "$(awk -v a="$before" -v b="$after" -v n="$opened" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')"
  per_conn="$(awk -v a="$before" -v b="$after" -v n="$opened" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')"
}

start_cluster "$base"
# max_clients (default 10000) must admit the measured clients plus the counters' INFO.
cat >"$work_dir/slotgate.toml" <<EOF
seeds = ["${cluster_seeds//,/\", \"}"]
max_clients = $((clients + 100))
EOF
start_slotgate "$sg_port" 30 --config "$work_dir/slotgate.toml"
start_standalone "$std_port" --maxclients $((clients + 100))

note "opening $clients idle connections to slotgate, then to redis-server"
open_idle slotgate "$slotgate_pid" "$sg_port" connections_open
sg_per_conn="$per_conn"
open_idle redis-server "$standalone_pid" "$std_port" connected_clients
rs_per_conn="$per_conn"
tw_per_conn=""
if has_peer "$peers" twemproxy; then
  start_twemproxy $((base + 5)) $((base + 6)) $((base + 9))
  open_idle twemproxy "$twemproxy_pid" $((base + 5)) -
  tw_per_conn="$per_conn"
fi

echo
echo "RSS per idle connection ($clients connections, one PING each, loopback):"
printf '  slotgate      %6s KiB\n' "$sg_per_conn"
printf '  redis-server  %6s KiB\n' "$rs_per_conn"
if [ -n "$tw_per_conn" ]; then
  printf '  twemproxy     %6s KiB\n' "$tw_per_conn"
fi
