#!/usr/bin/env bash
# A screenshot of slotgate's status page (GET / on the admin port) in front of a live
# cluster: 3 masters with one replica each, slotgate (release build) under a light
# redis-benchmark load, one slot being migrated (so the strip shows its marker), taken
# with headless Chromium at 1280x1000 after the page has polled for a few seconds.
#
#   benches/status_screenshot.sh [OUT.png]     (default benches/results/status-page.png)
#
# Environment: SLOTGATE_BIN, BENCH_KEEP=1. Loopback only; every process it starts is
# its own and is stopped on exit (bounded: the load runs at most 60 s).
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

shot="${1:-$repo/benches/results/status-page.png}"
need redis-server redis-cli redis-benchmark curl timeout python3
chromium="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$chromium" ]; then
  need chromium
  chromium="$(command -v chromium)"
fi
ensure_binary
install_cleanup
make_work_dir status-shot

base="$(free_port_block 7450 6)"
cluster_port="$base"
cluster_dir="$work_dir/cluster"
out="$("$repo/deploy/local-cluster.sh" -m 3 -r 1 -p "$base" -d "$cluster_dir" up)" ||
  die "deploy/local-cluster.sh up failed"
cluster_seeds="$(tail -n 1 <<<"$out")"

port=6395
while listening "$port"; do port=$((port + 1)); done
admin=9395
while listening "$admin" || [ "$admin" = "$port" ]; do admin=$((admin + 1)); done
start_slotgate "$port" 30 --admin "127.0.0.1:$admin"

# Slot 100 migrating from its master to the master of slot 16000 (keys stay put: the
# page marks the slot, clients see nothing).
owner_of() {
  local p
  for ((p = base; p < base + 6; p++)); do
    if timeout 5 redis-cli -p "$p" CLUSTER NODES | grep 'myself,master' |
      awk -v s="$1" '{ for (i = 9; i <= NF; i++) { split($i, r, "-"); if (r[2] == "") r[2] = r[1]; if (s >= r[1] && s <= r[2]) found = 1 } } END { exit !found }'; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
from="$(owner_of 100)" || die "no owner for slot 100"
to="$(owner_of 16000)" || die "no owner for slot 16000"
timeout 5 redis-cli -p "$to" CLUSTER SETSLOT 100 IMPORTING "$(timeout 5 redis-cli -p "$from" CLUSTER MYID)" >/dev/null
timeout 5 redis-cli -p "$from" CLUSTER SETSLOT 100 MIGRATING "$(timeout 5 redis-cli -p "$to" CLUSTER MYID)" >/dev/null

timeout 60 redis-benchmark -p "$port" -c 10 -d 64 -r 100000 -t set,get -l -q >/dev/null 2>&1 &
track $!

# The replicas are in slotgate's table once a refresh after their sync has run.
deadline=$((SECONDS + 30))
until [ "$(curl -fsS "http://127.0.0.1:$admin/status.json" | grep -o '"role":"replica"' | wc -l)" -ge 3 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "slotgate's status.json shows no 3 replicas after 30 s"
  sleep 0.5
done

# Headless Chromium takes its screenshot when the page has loaded. The status page
# computes rates over its own polls in real time, so it must run a few seconds first
# (Chromium's --virtual-time-budget would run its clock faster than the counters and
# show rates far too low): a wrapper page, served on loopback like the admin port,
# holds it in a frame and does not finish loading until its last image arrives, which
# the server sends after $hold seconds. The server exits after 60 s at most.
hold=6
wrap=9490
while listening "$wrap" || [ "$wrap" = "$admin" ]; do wrap=$((wrap + 1)); done
python3 - "$wrap" "$hold" "http://127.0.0.1:$admin/?every=1000" <<'PY' &
import http.server, sys, time
port, hold, page = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
wrapper = f"""<!doctype html>
<html><body style="margin:0;overflow:hidden">
<iframe src="{page}" style="border:0;width:1280px;height:1000px;display:block"></iframe>
<img src="/hold" alt="" style="position:absolute;width:1px;height:1px;left:-10px">
</body></html>""".encode()
class Wrapper(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hold":
            time.sleep(hold)
            self.send_response(204)
            self.end_headers()
        elif self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(wrapper)))
            self.end_headers()
            self.wfile.write(wrapper)
        else:
            self.send_response(404)
            self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Wrapper)
server.timeout = 1
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    server.handle_request()
PY
track $!
deadline=$((SECONDS + 10))
until listening "$wrap"; do
  [ "$SECONDS" -lt "$deadline" ] || die "the wrapper page's server did not start"
  sleep 0.1
done

mkdir -p "$(dirname "$shot")"
timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size=1280,1000 --user-data-dir="$work_dir/chromium" --screenshot="$shot" \
  "http://127.0.0.1:$wrap/" >"$work_dir/chromium.out" 2>&1 ||
  { tail -n 20 "$work_dir/chromium.out" >&2; die "chromium failed"; }
note "screenshot: $shot ($(curl -fsS "http://127.0.0.1:$admin/readyz"))"
