#!/usr/bin/env bash
# Memory benchmark: what an operator pays in RAM for open client connections and for cached
# bytes, Outpost's edge vs nginx (proxy_cache) vs Varnish vs Apache Traffic Server, each caching
# the same origin.
#
# What it measures (RSS = VmRSS from /proc/<pid>/status, summed over all of a proxy's
# processes: nginx master+worker+cache manager, varnishd manager+child, traffic_server, edge)
#   - RSS per cached GiB: RSS before, then after filling the cache through the proxy with
#     MEMORY_FILL_MIB of distinct 100 KiB objects (/obj/1 ... /obj/N, each a miss that reaches
#     the origin), then after two more passes over the same URLs (all hits: the origin must see
#     none, or the proxy did not keep everything; Traffic Server's RAM cache takes an object in
#     on its second hit). Growth of RSS per GiB of bodies stored. nginx and Traffic Server keep
#     bodies in files (nginx one per object, Traffic Server one cache file): those bodies sit in
#     the kernel's page cache, which no process's RSS shows, so the report also gives how much
#     the cache files grew on disk.
#   - RSS per open client connection: RSS before, then with MEMORY_CONNECTIONS idle keep-alive
#     connections open (each made one request, a 1 KiB hit, and read the whole answer: a real
#     HTTP/1.1 keep-alive connection, then idle), then after closing them. (with − before) / N.
#     The client checks that every connection is still open when RSS is read.
#   Fill first, connections second, on the same instance: memory freed by closed connections
#   and kept by the allocator would otherwise be counted as cache.
#
# How
#   - The origin, an nginx of its own (benches/lib/servers.sh start_origin), serves
#     `Cache-Control: public, max-age=3600`; its access log counts what reaches it.
#   - Each proxy is started by this script (no system services), pinned to core
#     MEMORY_PROXY_CPU (0); the client, a small Python 3 program (one connection for the fill,
#     N sockets for the hold), to core MEMORY_CLIENT_CPU (1). One proxy at a time is measured.
#   - Each proxy allows the connections (limits above N, no per-client limit) and keeps idle
#     keep-alive connections for 600 s, far longer than the hold; each has a cache big enough
#     for the fill (2x MEMORY_FILL_MIB, at least 1 GiB).
#   - The file limit is raised to its hard limit: the client and each proxy need N descriptors.
#
# Run
#   benches/memory.sh [OUT.md]
#   Prints a Markdown report on stdout (progress on stderr) and also writes it to OUT.md if given.
#   Installs nginx, varnish, trafficserver, python3 (apt-get; via sudo when not root) if
#   missing, and builds the edge (`cargo build --release --locked -p edge --bin edge`) unless
#   EDGE_BIN is set. About 1.5 minutes plus the build. Only 127.0.0.1.
#
# Knobs (environment): MEMORY_CONNECTIONS (10000), MEMORY_FILL_MIB (512), MEMORY_SETTLE (2,
#   seconds between a change and reading RSS), MEMORY_PORT_BASE (18500; uses 6 ports from it),
#   MEMORY_PROXY_CPU (0), MEMORY_CLIENT_CPU (1), MEMORY_ATS (1; 0 leaves Traffic Server out),
#   EDGE_BIN (use this edge binary, skip the build).

set -euo pipefail
umask 022

CONNS=${MEMORY_CONNECTIONS:-10000}
FILL_MIB=${MEMORY_FILL_MIB:-512}
SETTLE=${MEMORY_SETTLE:-2}
PORT_BASE=${MEMORY_PORT_BASE:-18500}
PROXY_CPU=${MEMORY_PROXY_CPU:-0}
CLIENT_CPU=${MEMORY_CLIENT_CPU:-1}
ATS=${MEMORY_ATS:-1}

ORIGIN_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
VARNISH_PORT=$((PORT_BASE + 2))
EDGE_PORT=$((PORT_BASE + 3))
EDGE_ADMIN_PORT=$((PORT_BASE + 4))
ATS_PORT=$((PORT_BASE + 5))

OBJECT_BYTES=102400
OBJECTS=$(((FILL_MIB * 1048576 + OBJECT_BYTES - 1) / OBJECT_BYTES))
# Every cache gets room for twice the fill (at least 1 GiB), so nothing is evicted.
CACHE_MIB=$((FILL_MIB * 2 > 1024 ? FILL_MIB * 2 : 1024))
KEEPALIVE_SECS=600

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-}
if [[ -n $OUT && $OUT != /* ]]; then OUT="$PWD/$OUT"; fi

BENCH=memory
# shellcheck source-path=SCRIPTDIR source=lib/servers.sh
source "$ROOT/benches/lib/servers.sh"

# ---------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------

[[ $(uname -s) == Linux ]] || die "Linux only (taskset, /proc/<pid>/status)"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "MEMORY_CONNECTIONS must be a positive integer, not '$CONNS'"
[[ $FILL_MIB =~ ^[1-9][0-9]*$ ]] || die "MEMORY_FILL_MIB must be a positive integer, not '$FILL_MIB'"
[[ $ATS == 0 || $ATS == 1 ]] || die "MEMORY_ATS must be 0 or 1, not '$ATS'"
ncpu=$(getconf _NPROCESSORS_ONLN)
((ncpu >= 2)) || die "needs 2 cores (proxy on core $PROXY_CPU, client on core $CLIENT_CPU); this machine has $ncpu"

PROXIES=(outpost nginx varnish)
needed=(nginx:nginx varnishd:varnish python3:python3 curl:curl pgrep:procps taskset:util-linux)
if ((ATS)); then
    PROXIES+=(ats)
    needed+=(traffic_server:trafficserver)
fi
ensure_commands "${needed[@]}"
edge_binary "$ROOT"

# N client sockets in the client, N in each proxy, plus the proxies' own files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[[ $nofile == unlimited ]] || ((nofile >= CONNS + 1024)) ||
    die "the open-file limit is $nofile (hard limit $(ulimit -Hn)): $CONNS connections need $((CONNS + 1024)); lower MEMORY_CONNECTIONS or raise the limit"
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
((hi - lo + 1 >= CONNS + 1024)) ||
    die "the local port range ($lo-$hi) is too small for $CONNS connections to one address"

check_ports "$ORIGIN_PORT" "$NGINX_PORT" "$VARNISH_PORT" "$EDGE_PORT" "$EDGE_ADMIN_PORT" "$ATS_PORT"
bench_tmpdir

# ---------------------------------------------------------------------------------------------
# The client: fills a cache, or opens N keep-alive connections and holds them
# ---------------------------------------------------------------------------------------------

cat >"$D/client.py" <<'EOF'
"""fill PORT COUNT: GET /obj/1 ... /obj/COUNT over one keep-alive connection; each answer
must be a 200 of 102400 bytes; print "filled COUNT ram R" (R: answers whose Via says Traffic
Server found the object in its RAM cache, "[cR"). hold PORT PATH N: open N connections, one GET PATH on each
(read whole), keep them; print "open N"; on "check" from stdin print "alive K" (K = those
neither closed nor sent anything since); on "close" close them all and print "closed"."""
import http.client
import resource
import select
import socket
import sys

HOST = "127.0.0.1"


def fill(port, count):
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    ram = 0
    for i in range(1, count + 1):
        conn.request("GET", f"/obj/{i}")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or len(body) != 102400:
            sys.exit(f"/obj/{i}: status {resp.status}, {len(body)} bytes")
        if "[cR" in (resp.getheader("Via") or ""):
            ram += 1
    conn.close()
    print(f"filled {count} ram {ram}", flush=True)


def read_answer(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed before the answer's head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            raise ValueError("the server will close the connection")
    if status != 200 or length is None:
        raise ValueError(f"status {status}, content-length {length}")
    need = length - len(body)
    while need > 0:
        chunk = sock.recv(min(need, 65536))
        if not chunk:
            raise EOFError("closed in the body")
        need -= len(chunk)


def hold(port, path, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    socks = []
    for i in range(n):
        sock = socket.create_connection((HOST, port), timeout=10)
        try:
            sock.sendall(request)
            read_answer(sock)
        except Exception as e:  # noqa: BLE001 - report which connection failed, and how
            sys.exit(f"connection {i + 1}: {e!r}")
        socks.append(sock)
    print(f"open {len(socks)}", flush=True)
    while True:
        cmd = sys.stdin.readline().strip()
        if not cmd:
            return
        if cmd == "check":
            # An idle keep-alive connection has nothing to read; a closed one reads as EOF.
            poller = select.poll()
            for sock in socks:
                poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
            events = poller.poll(0)
            print(f"alive {len(socks) - len(events)}", flush=True)
        elif cmd == "close":
            for sock in socks:
                sock.close()
            print("closed", flush=True)
            return


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(int(sys.argv[2]), int(sys.argv[3]))
    else:
        hold(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
EOF
CLIENT=(taskset -c "$CLIENT_CPU" python3 "$D/client.py")

# ---------------------------------------------------------------------------------------------
# Origin and proxies
# ---------------------------------------------------------------------------------------------

start_origin "$D/origin" "$ORIGIN_PORT"

# nginx: the hit_path.sh "sendfile" instance, with room for the connections and the fill.
NGINX_WORKER_CONNECTIONS=$((CONNS + 1024))
NGINX_KEEPALIVE_TIMEOUT=$KEEPALIVE_SECS
NGINX_CACHE_MAX_SIZE="${CACHE_MIB}m"
write_nginx_proxy "$D/nginx" "$NGINX_PORT" "$ORIGIN_PORT" "sendfile on; tcp_nopush off;"
log "starting nginx (proxy_cache) on 127.0.0.1:$NGINX_PORT, pinned to core $PROXY_CPU"
start_nginx nginx "$D/nginx" taskset -c "$PROXY_CPU"
NGINX_PID=${PIDS[-1]}

# Varnish: timeout_idle is its keep-alive timeout (5 s by default).
start_varnish "$D/varnish" "$VARNISH_PORT" "$ORIGIN_PORT" "malloc,${CACHE_MIB}m" "$PROXY_CPU" \
    -p timeout_idle="$KEEPALIVE_SECS"

if ((ATS)); then
    # connections_throttle and max_connections_in: Traffic Server's limits on client
    # connections (it closes idle keep-alive connections beyond max_connections_in).
    start_ats "$D/ats" "$ATS_PORT" "$ORIGIN_PORT" $((CACHE_MIB * 1048576)) "$((CACHE_MIB * 2))M" "$PROXY_CPU" \
        "CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT $KEEPALIVE_SECS" \
        "CONFIG proxy.config.net.connections_throttle INT $((CONNS + 1024))" \
        "CONFIG proxy.config.net.max_connections_in INT $((CONNS + 1024))"
fi

mkdir -p "$D/edge"
cat >"$D/edge/edge.toml" <<EOF
[server]
listen = ["127.0.0.1:$EDGE_PORT"]
threads = 1
grace_period_secs = 0
keepalive_timeout_secs = $KEEPALIVE_SECS
max_connections = $((CONNS + 1024))
# All the client's connections come from 127.0.0.1.
max_connections_per_client = 0

[origin]
addresses = ["127.0.0.1:$ORIGIN_PORT"]
health_check_path = ""

[cache.l1]
capacity_bytes = $((CACHE_MIB * 1048576))

[admin]
listen = "127.0.0.1:$EDGE_ADMIN_PORT"

# As nginx, Varnish and Traffic Server run here: no access log.
[access_log]
format = "off"
EOF
"$EDGE_BIN" --config "$D/edge/edge.toml" --validate >"$D/edge/validate.log" 2>&1 || {
    cat "$D/edge/validate.log" >&2
    die "edge --validate rejected the config"
}
log "starting the edge on 127.0.0.1:$EDGE_PORT (admin $EDGE_ADMIN_PORT), pinned to core $PROXY_CPU"
RUST_LOG=warn taskset -c "$PROXY_CPU" "$EDGE_BIN" --config "$D/edge/edge.toml" >"$D/edge/edge.log" 2>&1 &
EDGE_PID=$!
started outpost INT "$EDGE_PID"

wait_http nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/1k.bin" "$D/nginx/error.log"
wait_http varnish "$VARNISH_PID" "http://127.0.0.1:$VARNISH_PORT/1k.bin" "$D/varnish/varnishd.log"
wait_http "edge (readyz: origin healthy)" "$EDGE_PID" "http://127.0.0.1:$EDGE_ADMIN_PORT/readyz" "$D/edge/edge.log"
wait_http edge "$EDGE_PID" "http://127.0.0.1:$EDGE_PORT/1k.bin" "$D/edge/edge.log"

proxy_pid() {
    case $1 in
    outpost) echo "$EDGE_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    varnish) echo "$VARNISH_PID" ;;
    ats) echo "$ATS_PID" ;;
    esac
}
proxy_port() {
    case $1 in
    outpost) echo "$EDGE_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    varnish) echo "$VARNISH_PORT" ;;
    ats) echo "$ATS_PORT" ;;
    esac
}
proxy_label() {
    case $1 in
    outpost) echo "Outpost edge" ;;
    nginx) echo "nginx proxy_cache" ;;
    varnish) echo "Varnish" ;;
    ats) echo "Traffic Server" ;;
    esac
}
# cache_dir PROXY: where the proxy keeps cached bodies on disk ("" if in memory).
cache_dir() {
    case $1 in
    nginx) echo "$D/nginx/cache" ;;
    ats) echo "$D/ats/cache" ;;
    *) echo "" ;;
    esac
}
# disk_kib PROXY: blocks its cache files take (du; Traffic Server's cache file is sparse). For
# Outpost: its L1 bodies in memory files (memfd, from cache.l1.sendfile_min_bytes up), which
# are shared memory in no process's RSS, from its own gauge.
disk_kib() {
    local dir
    if [[ $1 == outpost ]]; then
        curl -fsS --max-time 5 "http://127.0.0.1:$EDGE_ADMIN_PORT/metrics" |
            awk '$1 == "outpost_l1_body_file_bytes" { printf "%d\n", $2 / 1024; f = 1 } END { if (!f) print 0 }'
        return
    fi
    dir=$(cache_dir "$1")
    if [[ -n $dir ]]; then du -sk "$dir" | awk '{ print $1 }'; else echo 0; fi
}
# objects_held PROXY: the proxy's own count of cached objects ("-" where none is at hand).
objects_held() {
    case $1 in
    outpost)
        curl -fsS --max-time 5 "http://127.0.0.1:$EDGE_ADMIN_PORT/metrics" |
            awk '$1 == "outpost_l1_entries" { printf "%d\n", $2; f = 1 } END { if (!f) print "-" }'
        ;;
    varnish) varnishstat -n "$D/varnish/work" -1 -f MAIN.n_object 2>/dev/null | awk '{ print $2 }' ;;
    nginx) find "$D/nginx/cache" -type f | wc -l ;;
    *) echo "-" ;;
    esac
}
# threads PROXY: threads of all the proxy's processes.
threads() {
    local pid n=0 t
    for pid in $(server_pids "$(proxy_pid "$1")"); do
        for t in /proc/"$pid"/task/*; do n=$((n + 1)); done
    done
    echo "$n"
}
# rss PROXY: RSS of all the proxy's processes, KiB.
rss() {
    # shellcheck disable=SC2046
    rss_kib $(server_pids "$(proxy_pid "$1")")
}

for proxy in "${PROXIES[@]}"; do
    # shellcheck disable=SC2046
    check_pinned "$proxy" "$PROXY_CPU" $(server_pids "$(proxy_pid "$proxy")")
    # Warm: the 1 KiB object the connections will ask for is a hit from here on.
    for i in 1 2 3; do
        curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$(proxy_port "$proxy")/1k.bin" ||
            die "$proxy: /1k.bin failed"
    done
done
before=$(origin_requests)
for proxy in "${PROXIES[@]}"; do
    curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$(proxy_port "$proxy")/1k.bin"
done
(($(origin_requests) == before)) || die "a warm proxy still sent /1k.bin to the origin"

# ---------------------------------------------------------------------------------------------
# Measure
# ---------------------------------------------------------------------------------------------

FILL="$D/fill.tsv"   # proxy objects rss_before rss_fill rss_hits disk_before disk_after origin_fill origin_hits held
HOLDS="$D/holds.tsv" # proxy n rss_before rss_open rss_closed alive open_s threads_before threads_open
: >"$FILL"
: >"$HOLDS"

# bc_mib KIB -> MiB, one decimal
bc_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# measure_fill PROXY
measure_fill() {
    local proxy=$1 port r0 r1 r2 d0 d1 o0 o1 o2 t0 held
    port=$(proxy_port "$proxy")
    sleep "$SETTLE"
    r0=$(rss "$proxy")
    d0=$(disk_kib "$proxy")
    o0=$(origin_requests)
    t0=$SECONDS
    "${CLIENT[@]}" fill "$port" "$OBJECTS" >/dev/null || die "$proxy: filling the cache failed"
    o1=$(origin_requests)
    sleep "$SETTLE"
    r1=$(rss "$proxy")
    "${CLIENT[@]}" fill "$port" "$OBJECTS" >/dev/null || die "$proxy: the second pass failed"
    "${CLIENT[@]}" fill "$port" "$OBJECTS" >"$D/pass3-$proxy" || die "$proxy: the third pass failed"
    o2=$(origin_requests)
    sleep "$SETTLE"
    r2=$(rss "$proxy")
    d1=$(disk_kib "$proxy")
    held=$(objects_held "$proxy")
    if [[ $proxy == ats ]]; then
        # Traffic Server keeps no count at hand: how many of the last pass's hits came from RAM.
        held="$(awk '{ print $4 }' "$D/pass3-$proxy") of $OBJECTS hits from its RAM cache"
    fi
    printf '%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n' "$proxy" "$OBJECTS" "$r0" "$r1" "$r2" "$d0" "$d1" \
        "$((o1 - o0))" "$((o2 - o1))" "$held" >>"$FILL"
    log "$(printf '%-8s fill %d x 100 KiB and 2 passes of hits in %d s: RSS %.0f -> %.0f -> %.0f MiB (after the hits), disk +%.0f MiB, origin %d then %d, held %s' \
        "$proxy" "$OBJECTS" "$((SECONDS - t0))" "$(bc_mib "$r0")" "$(bc_mib "$r1")" "$(bc_mib "$r2")" \
        "$(bc_mib $((d1 - d0)))" "$((o1 - o0))" "$((o2 - o1))" "$held")"
}

# measure_hold PROXY
measure_hold() {
    local proxy=$1 port r0 r1 r2 line alive t0 open_s th0 th1
    port=$(proxy_port "$proxy")
    sleep "$SETTLE"
    r0=$(rss "$proxy")
    th0=$(threads "$proxy")
    t0=$(date +%s%N)
    coproc HOLD { "${CLIENT[@]}" hold "$port" /1k.bin "$CONNS" 2>"$D/hold-$proxy.err"; }
    if ! read -r -t 300 line <&"${HOLD[0]}" || [[ $line != "open $CONNS" ]]; then
        cat "$D/hold-$proxy.err" >&2
        die "$proxy: the client could not open $CONNS connections (got '${line:-nothing}')"
    fi
    open_s=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    sleep "$SETTLE"
    r1=$(rss "$proxy")
    th1=$(threads "$proxy")
    echo check >&"${HOLD[1]}"
    read -r -t 60 line <&"${HOLD[0]}" || die "$proxy: no answer from the client to check"
    alive=${line#alive }
    echo close >&"${HOLD[1]}"
    read -r -t 60 line <&"${HOLD[0]}" || die "$proxy: no answer from the client to close"
    wait "$HOLD_PID" || die "$proxy: the client failed"
    sleep "$SETTLE"
    r2=$(rss "$proxy")
    printf '%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\n' "$proxy" "$CONNS" "$r0" "$r1" "$r2" "$alive" "$open_s" \
        "$th0" "$th1" >>"$HOLDS"
    log "$(printf '%-8s %d connections opened in %s s: RSS %.0f -> %.0f MiB (%.1f KiB each), %.0f MiB after closing; threads %d -> %d; alive at the check: %s' \
        "$proxy" "$CONNS" "$open_s" "$(bc_mib "$r0")" "$(bc_mib "$r1")" \
        "$(awk -v a="$r0" -v b="$r1" -v n="$CONNS" 'BEGIN { print (b - a) / n }')" "$(bc_mib "$r2")" "$th0" "$th1" "$alive")"
}

started_at=$SECONDS
for proxy in "${PROXIES[@]}"; do
    measure_fill "$proxy"
    measure_hold "$proxy"
done
measure_secs=$((SECONDS - started_at))

bad_origin=$(awk -F'\t' '$9 > 0 { print $1 }' "$FILL")
bad_alive=$(awk -F'\t' '$6 != $2 { print $1 }' "$HOLDS")

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '$1 == "MemTotal:" { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
varnish_version=$(varnishd -V 2>&1 | head -n 1)
ats_version=
if ((ATS)); then ats_version=$(traffic_server -V 2>&1 | awk '/^Traffic Server/ { print $1, $2, $3; exit }'); fi
edge_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- edge common Cargo.lock 2>/dev/null) ]]; then
    edge_commit="$edge_commit (edge/common with uncommitted changes)"
fi
edge_desc="commit $edge_commit"
if [[ -n $EDGE_GIVEN ]]; then edge_desc="binary $EDGE_BIN (EDGE_BIN; the work tree is at $edge_commit)"; fi
stored_kib=$((OBJECTS * OBJECT_BYTES / 1024))

REPORT="$D/report.md"
{
    echo "# Memory: Outpost edge vs nginx proxy_cache vs Varnish$( ((ATS)) && echo " vs Traffic Server")"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- CPU: $cpu_model ($ncpu cores online), $mem_total RAM, kernel $(uname -r)"
    echo "- Outpost edge: $edge_desc, release build, \`threads = 1\`, \`access_log.format = off\`, \`RUST_LOG=warn\`, \`keepalive_timeout_secs = $KEEPALIVE_SECS\`, \`max_connections = $((CONNS + 1024))\`, \`max_connections_per_client = 0\`, \`[cache.l1] capacity_bytes\` = $CACHE_MIB MiB"
    echo "- nginx: $nginx_version (\`worker_processes 1\`, \`worker_connections $((CONNS + 1024))\`, \`keepalive_timeout $KEEPALIVE_SECS\`, \`sendfile on; tcp_nopush off\`, \`proxy_cache_path ... keys_zone=10m max_size=${CACHE_MIB}m\` in a temp dir on $(df -T "$D" | awk 'NR == 2 { print $2 }'), \`access_log off\`)"
    echo "- Varnish: $varnish_version (\`-s malloc,${CACHE_MIB}m\`, \`-p timeout_idle=$KEEPALIVE_SECS\`, default thread pools)"
    if ((ATS)); then
        echo "- Traffic Server: $ats_version (\`traffic_server\` alone, one event thread, \`ram_cache.size\` $CACHE_MIB MiB (CLFUS, the default) in front of a $((CACHE_MIB * 2)) MiB cache file in the temp dir, \`keep_alive_no_activity_timeout_in $KEEPALIVE_SECS\`, \`connections_throttle\` and \`max_connections_in\` $((CONNS + 1024)), \`logging_enabled 0\`)"
    fi
    echo "- Each proxy (all its processes) pinned to core $PROXY_CPU, the Python client to core $CLIENT_CPU; RSS = VmRSS (/proc/<pid>/status) summed over the proxy's processes, read $SETTLE s after each step. Measuring took ${measure_secs} s."
    echo
    echo "## RSS per cached GiB"
    echo
    echo "$OBJECTS distinct 100 KiB objects (/obj/1 … /obj/$OBJECTS, $(bc_mib "$stored_kib") MiB of bodies), fetched once through the proxy (all misses), then twice more (all hits), one request at a time."
    echo
    echo "| proxy | RSS before MiB | after the fill MiB | after the hits MiB | RSS growth per GiB stored | cache files (disk; Outpost: memory files), growth MiB | objects held (the proxy's count) | origin requests, fill / hits |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for proxy in "${PROXIES[@]}"; do
        awk -F'\t' -v p="$proxy" -v label="$(proxy_label "$proxy")" -v s="$stored_kib" '$1 == p {
            printf "| %s | %.0f | %.0f | %.0f | %.2f GiB | %s | %s | %d / %d |\n", label, $3 / 1024, $4 / 1024,
                $5 / 1024, ($5 - $3) / s, ($7 > $6 + 1024) ? sprintf("%.0f", ($7 - $6) / 1024) : "0 (in memory)", $10, $8, $9
        }' "$FILL"
    done
    echo
    echo "RSS growth per GiB stored = (RSS after the hits − RSS before) / bodies stored: 1.00 would be the bodies alone. nginx and Traffic Server write bodies to files: the page cache holds those (memory the machine pays for, but in no process's RSS, and the kernel may drop it), so their RSS growth is mostly their index (and, for Traffic Server, what its RAM cache kept). Outpost keeps bodies from \`cache.l1.sendfile_min_bytes\` (32 KiB) up in memory files (memfd) for the kernel to send: shared memory, in no RSS either but never dropped while cached (its column gives their size from \`outpost_l1_body_file_bytes\`); what it pays per cached GiB is RSS growth plus those files."
    echo
    echo "## RSS per open client connection"
    echo
    echo "$CONNS idle HTTP/1.1 keep-alive connections, each after one request (\`GET /1k.bin\`, a hit, read whole)."
    echo
    echo "| proxy | RSS before MiB | with $CONNS open MiB | per connection KiB | after closing MiB | threads before → with them open | still open at the check | seconds to open all |"
    echo "|---|---:|---:|---:|---:|---|---:|---:|"
    for proxy in "${PROXIES[@]}"; do
        awk -F'\t' -v p="$proxy" -v label="$(proxy_label "$proxy")" '$1 == p {
            printf "| %s | %.0f | %.0f | %.1f | %.0f | %d → %d | %s | %s |\n", label, $3 / 1024, $4 / 1024,
                ($4 - $3) / $2, $5 / 1024, $8, $9, $6, $7
        }' "$HOLDS"
    done
    echo
    echo "per connection = (RSS with the connections open − RSS before) / $CONNS. The client opens them one after another (connect, request, read the answer); a proxy that gives a connection to a thread for a while after each request (Varnish: \`timeout_linger\`, 50 ms) starts threads while they open, and those threads' memory is in the figure (see the threads column). The kernel's socket buffers are in no process's RSS (the same for every proxy)."
    echo
    edge_log_section "$D/edge/edge.log"
} >"$REPORT"

publish_report "$REPORT" "$OUT"

[[ -z $bad_origin ]] || die "the passes of hits reached the origin (the cache did not keep the fill): $bad_origin"
[[ -z $bad_alive ]] || die "some connections were closed before the check: $bad_alive"
log "done in $SECONDS s"
