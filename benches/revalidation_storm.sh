#!/usr/bin/env bash
# What a soft purge and a purge-log gap cost the origin under load (issue: "revalidation storms").
# Before the fix an object revalidated on *every* request after either, for as long as the purge
# mark lived; now each object should cost the origin one conditional request, then be a hit.
#
# How: two memcached servers (the purge log on both), a tiny origin serving /o/0../o/99 with a
# strong ETag, `max-age=3600`, and 304 to a matching If-None-Match, counting full and conditional
# requests; the edge in front with both servers as its shared tier. 100 objects are warmed, then
#   1. a soft purge of everything, then wrk for D seconds over the 100 URLs;
#   2. one memcached server restarted (a gap for the node), then wrk again.
# After each, the origin's counts: 100 conditional requests and no full ones is the ideal.
#
# Run: benches/revalidation_storm.sh [EDGE_BINARY] [SECONDS]   (default target/release/edge, 10)
# Installs wrk and memcached when missing; builds the release edge when no binary is given.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

D=${2:-10}
release_edge "${1:-}"
command -v wrk >/dev/null || apt_install wrk
command -v memcached >/dev/null || apt_install memcached
command -v python3 >/dev/null || apt_install python3

dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(port); edge_port=$(port); admin_port=$(port); mc1=$(port); mc2=$(port)

start_memcached() { # port → pid in $last
  memcached -l 127.0.0.1 -p "$1" -U 0 -m 64 -u "$(id -un)" >/dev/null 2>&1 &
  last=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  die "memcached on $1 did not start"
}
start_memcached "$mc1"; mc1_pid=$last; pids+=("$mc1_pid")
start_memcached "$mc2"; pids+=("$last")

python3 - "$origin_port" <<'PY' &
import http.server, json, socketserver, sys, threading
port = int(sys.argv[1])
counts = {"full": 0, "conditional": 0}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, status, body=b"", extra=()):
        self.send_response(status)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/stats":
            with lock:
                body = json.dumps(counts).encode()
                counts.update(full=0, conditional=0)
            return self.reply(200, body, [("Cache-Control", "no-store")])
        tag = '"' + self.path.replace("/", "-") + '"'
        cache = [("ETag", tag), ("Cache-Control", "max-age=3600")]
        with lock:
            if self.headers.get("If-None-Match") == tag:
                counts["conditional"] += 1
                conditional = True
            else:
                counts["full"] += 1
                conditional = False
        if conditional:
            self.reply(304, b"", cache)
        else:
            self.reply(200, b"x" * 1024, cache)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", port), H).serve_forever()
PY
pids+=($!)

cat >"$dir/edge.toml" <<EOT
[server]
listen = ["127.0.0.1:$edge_port"]
threads = 2
grace_period_secs = 0
[origin]
addresses = ["127.0.0.1:$origin_port"]
health_check_path = ""
[l2]
servers = ["127.0.0.1:$mc1", "127.0.0.1:$mc2"]
[purge]
log_replicas = 2
[admin]
listen = "127.0.0.1:$admin_port"
token = "bench"
[access_log]
format = "off"
EOT
RUST_LOG=warn "$EDGE" --config "$dir/edge.toml" >"$dir/edge.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$admin_port/readyz" && break; sleep 0.1; done
for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$origin_port/stats" && break; sleep 0.1; done

warm() {
  for i in $(seq 0 99); do
    curl -fs -o /dev/null -H "Host: bench" "http://127.0.0.1:$edge_port/o/$i"
    curl -fs -o /dev/null -H "Host: bench" "http://127.0.0.1:$edge_port/o/$i"
  done
}
cat >"$dir/paths.lua" <<'LUA'
local i = 0
request = function()
  i = (i + 1) % 100
  return wrk.format("GET", "/o/" .. i, { Host = "bench" })
end
LUA
load() { # label
  local rps
  rps=$(wrk -t2 -c32 -d"${D}s" -s "$dir/paths.lua" "http://127.0.0.1:$edge_port/" | awk '/Requests\/sec/ {print $2}')
  local stats
  stats=$(curl -fs "http://127.0.0.1:$origin_port/stats")
  printf '%-48s %10s req/s through the edge; origin saw %s\n' "$1" "$rps" "$stats"
}
metric() { curl -fs "http://127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

warm
curl -fs "http://127.0.0.1:$origin_port/stats" >/dev/null
load "baseline (100 warm objects, ${D} s)"

curl -fs -H 'Authorization: Bearer bench' -d '{"all": true, "soft": true, "wait": true}' \
  "http://127.0.0.1:$admin_port/purge" >/dev/null
load "after a soft purge of everything (${D} s)"

gaps=$(metric outpost_purge_log_gaps_total)
kill "$mc1_pid"; wait "$mc1_pid" 2>/dev/null || true
start_memcached "$mc1"; pids+=("$last")
for _ in $(seq 100); do
  [ "$(metric outpost_purge_log_gaps_total)" != "$gaps" ] && break
  sleep 0.05
done
[ "$(metric outpost_purge_log_gaps_total)" != "$gaps" ] || die "the edge did not count the gap"
load "after a purge-log gap (memcached restarted, ${D} s)"
