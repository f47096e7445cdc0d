#!/usr/bin/env bash
# Instructions per cache hit on the edge (callgrind: deterministic for a given binary, unlike
# timings on a shared VM). Backs the hit-path work in docs/benchmarks.md.
#
# How: a tiny origin serves /1k.bin and /100k.bin (Cache-Control: public, max-age=3600); the edge
# runs under `valgrind --tool=callgrind --instr-atstart=no`; the cache is warmed; instrumentation
# is switched on for N sequential hits on one keep-alive connection, then off and dumped. The
# dump's total divided by N is the user-space instructions per hit (kernel work is not counted).
#
# Run: benches/hit_instructions.sh [EDGE_BINARY] [N]   (default target/release/edge, 2000)
# HIT_ACCESS_LOG=text|json writes the access log to a file in the run's temporary directory
# (default off, as the peers in hit_path.sh run): what a logged hit costs, the writer thread
# included.
# Installs valgrind when missing; builds the release edge when no binary is given. About 1 min.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${2:-2000}
release_edge "${1:-}"
command -v valgrind >/dev/null || apt_install valgrind
command -v python3 >/dev/null || apt_install python3

dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
head -c 1024 /dev/urandom >"$dir/1k.bin"
head -c 102400 /dev/urandom >"$dir/100k.bin"
origin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
edge_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$dir" "$origin_port" <<'PY' &
import http.server, socketserver, sys
root, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = open(root + self.path.split("?")[0], "rb").read()
        self.send_response(200)
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=($!)
cat >"$dir/edge.toml" <<EOT
[server]
listen = ["127.0.0.1:$edge_port"]
threads = 1
[origin]
addresses = ["127.0.0.1:$origin_port"]
health_check_path = ""
[admin]
listen = "127.0.0.1:$admin_port"
[access_log]
format = "${HIT_ACCESS_LOG:-off}"
path = "$dir/access.log"
EOT

for obj in 1k.bin 100k.bin; do
  out="$dir/cg.$obj"
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$EDGE" --config "$dir/edge.toml" >/dev/null 2>"$dir/valgrind.log" &
  vp=$!
  pids+=($vp)
  for _ in $(seq 300); do curl -fs -o /dev/null -H "Host: bench" "http://127.0.0.1:$edge_port/$obj" && break; sleep 0.2; done
  for _ in 1 2 3; do curl -fs -o /dev/null -H "Host: bench" "http://127.0.0.1:$edge_port/$obj"; done
  callgrind_control --instr=on "$vp" >/dev/null 2>&1
  python3 - "$edge_port" "$obj" "$N" <<'PY'
import socket, sys
port, obj, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
req = f"GET /{obj} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin1").lower()
            if "cache-status: outpost; hit" not in head:
                raise SystemExit("not a cache hit:\n" + head)
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(buf) >= end + 4 + length:
                buf = buf[end + 4 + length:]
                break
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk
PY
  callgrind_control --instr=off "$vp" >/dev/null 2>&1
  callgrind_control --dump "$vp" >/dev/null 2>&1
  kill -INT "$vp"; wait "$vp" 2>/dev/null || true
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done=1}')
  printf '%s: %d instructions per hit (%s, %d hits)\n' "$obj" $((total / N)) "$EDGE" "$N"
done
