#!/usr/bin/env bash
# Hit-path load benchmark: Outpost's edge vs nginx (proxy_cache) vs Varnish vs Apache Traffic
# Server, serving CACHED objects (1 KiB and 100 KiB) from the same origin; then Outpost vs nginx
# over HTTPS.
#
# What it measures
#   For each proxy and object size: requests/second, p50 and p99 latency (wrk --latency) and
#   requests per server CPU-second (utime+stime from /proc/<pid>/stat summed over all of the
#   proxy's processes: nginx master+worker, varnishd manager+child, traffic_server, edge;
#   divided by `getconf CLK_TCK`). Then the ratios Outpost/nginx, Outpost/Varnish and
#   Outpost/Traffic Server.
#   nginx runs in two configurations, with and without sendfile, because each is clearly best
#   for one of the two sizes on Linux loopback (details at its config below); the Outpost/nginx
#   ratios use, per object, the configuration with the higher median req/s.
#   Traffic Server (HIT_PATH_ATS=1, the default) runs as traffic_server alone (no
#   traffic_manager, no system service), from its own layout in the temp dir, with one event
#   thread, a 256 MiB RAM cache in front of a cache file, access logging off (details at
#   start_ats in benches/lib/servers.sh).
#   HTTPS (HIT_PATH_TLS=1, the default; Varnish has no TLS, so Outpost vs nginx only), both
#   sides with the same ECDSA P-256 certificate, negotiating TLS 1.3:
#   - keep-alive: the same measurements over https://, both sizes;
#   - resumed handshakes: every request on a new connection (`wrk -H 'Connection: close'`: the
#     server closes after each answer and wrk reconnects), 1 KiB only: handshakes (= requests)
#     per second and per server CPU-second. wrk's OpenSSL resumes the session of the
#     connection's previous handshake (TLS 1.3 PSK with an X25519 key exchange, no certificate
#     signature), and both servers accept it: the script checks that each resumes a session
#     for an OpenSSL client, and counts the edge's handshakes (outpost_tls_handshakes_total)
#     against wrk's requests.
#   - full handshakes (HIT_PATH_TLS_FULL=1, the default): `openssl s_time -new` makes each
#     connection with a fresh client session, so there is nothing to resume: X25519 and an ECDSA
#     P-256 signature by the server on every connection. Each connection carries the same
#     request as the resumed test (GET /1k.bin, Host, Connection: close), read to the end.
#     Handshakes per second, and the server's CPU time per handshake. s_time is single-threaded
#     and a full handshake costs the client more than the server (it verifies the signature),
#     so HIT_PATH_TLS_FULL_CLIENTS processes (2) share core 1 and still leave the server's core
#     mostly idle: the handshakes/s column measures the client; CPU per handshake compares the
#     servers. The script checks that no connection resumed (s_time marks each one), that
#     every connection read a whole 1 KiB hit, and that the edge's outpost_tls_handshakes_total
#     rose by one per connection.
#   Clients ask for the certificate's name, bench.localhost (SNI and Host), connecting to
#   127.0.0.1. Every run also records wrk's own CPU %: TLS costs the client about as much as
#   the server, so with one core each, wrk can be the limit (then compare req per CPU-s).
#
# How
#   - An origin (its own nginx instance, not pinned) serves /1k.bin and /100k.bin with
#     `Cache-Control: public, max-age=3600` and an ETag. Its access log counts the requests that
#     reach it: every measured run must add none (all hits), or the script fails.
#   - Each proxy is started by this script (no system services), pinned to core 0 with
#     `taskset -c 0`; wrk (1 thread, 64 connections) is pinned to core 1.
#   - Each cache is warmed and checked to answer from cache (Outpost `cache-status: outpost; hit`,
#     nginx `X-Cache: HIT`, Varnish two ids in `X-Varnish`, Traffic Server `Via: ... [cHs` or
#     `[cRs`: a fresh hit from its cache file or its RAM cache) and to return the origin's bytes.
#   - Runs are interleaved: for round in 1..3, for size in 1k 100k, for each proxy (the order of
#     proxies rotates per round): 2 s warm-up run, then a 10 s measured run. Tables report the
#     median over rounds. Every run also records how busy the proxy's core was with anything
#     other than the proxy ("other busy %"): other work on the machine makes numbers noisy.
#   - HTTPS runs come after the plain ones, interleaved the same way (round -> keep-alive 1k,
#     keep-alive 100k, resumed handshakes 1k, full handshakes 1k -> Outpost and nginx, order
#     rotating; s_time runs for the same warm-up and measured seconds as wrk). The edge serves
#     HTTPS from a [server.tls] listener of the same process; nginx from an `ssl` listener of
#     its "no sendfile" instance (sendfile does not apply to TLS without kernel TLS, so the
#     "sendfile" instance would only differ by its smaller output buffers).
#
# Run
#   benches/hit_path.sh [OUT.md]
#   Prints a Markdown report on stdout (progress on stderr) and also writes it to OUT.md if given.
#   Installs nginx, varnish, trafficserver, wrk and, for HTTPS, openssl (apt-get; via sudo when
#   not root) if missing, and builds the edge (`cargo build --release --locked -p edge --bin
#   edge`). Takes about 11 minutes plus the build: plain HTTP 3 rounds x 2 sizes x 5 proxy
#   configs x 12 s = 360 s of load, HTTPS 3 rounds x 3 wrk tests x 2 proxies x 12 s = 216 s,
#   full handshakes 3 rounds x 2 proxies x about 13 s (s_time counts whole seconds and stops
#   within the second after its time) = about 80 s, plus setup and waits. HIT_PATH_TLS=0 skips
#   HTTPS (about 6 minutes); HIT_PATH_TLS_FULL=0 skips the full handshakes; HIT_PATH_ATS=0
#   leaves Traffic Server out (72 s less); HIT_PATH_PLAIN=0 skips plain HTTP (about 5 minutes,
#   HTTPS only; Varnish, Traffic Server and nginx's sendfile instance are not started).
#
# Knobs (environment): HIT_PATH_ROUNDS (3), HIT_PATH_DURATION (10, seconds), HIT_PATH_WARMUP (2),
#   HIT_PATH_CONNECTIONS (64), HIT_PATH_PORT_BASE (18480; uses 9 ports from it),
#   HIT_PATH_PROXY_CPU (0), HIT_PATH_WRK_CPU (1), HIT_PATH_PLAIN (1; 0 skips plain HTTP),
#   HIT_PATH_ATS (1; 0 leaves Traffic Server out of plain HTTP),
#   HIT_PATH_TLS (1; 0 skips HTTPS), HIT_PATH_TLS_ROUNDS (HIT_PATH_ROUNDS),
#   HIT_PATH_TLS_FULL (1; 0 skips the full handshakes), HIT_PATH_TLS_FULL_CLIENTS (2, s_time
#   processes on the wrk core), EDGE_BIN (use this edge binary, skip the build).
#   Needs a Linux machine with at least 2 cores; everything stays on 127.0.0.1.

set -euo pipefail
umask 022

ROUNDS=${HIT_PATH_ROUNDS:-3}
DURATION=${HIT_PATH_DURATION:-10}
WARMUP=${HIT_PATH_WARMUP:-2}
CONNS=${HIT_PATH_CONNECTIONS:-64}
PORT_BASE=${HIT_PATH_PORT_BASE:-18480}
PROXY_CPU=${HIT_PATH_PROXY_CPU:-0}
WRK_CPU=${HIT_PATH_WRK_CPU:-1}
PLAIN=${HIT_PATH_PLAIN:-1}
TLS=${HIT_PATH_TLS:-1}
TLS_ROUNDS=${HIT_PATH_TLS_ROUNDS:-$ROUNDS}
TLS_FULL=${HIT_PATH_TLS_FULL:-1}
ATS=${HIT_PATH_ATS:-1}
FULL_CLIENTS=${HIT_PATH_TLS_FULL_CLIENTS:-2}

ORIGIN_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
NGINX_COPY_PORT=$((PORT_BASE + 5))
VARNISH_PORT=$((PORT_BASE + 2))
EDGE_PORT=$((PORT_BASE + 3))
EDGE_ADMIN_PORT=$((PORT_BASE + 4))
EDGE_TLS_PORT=$((PORT_BASE + 6))
NGINX_TLS_PORT=$((PORT_BASE + 7))
ATS_PORT=$((PORT_BASE + 8))

SIZES=(1k 100k)
# nginx runs twice, in the two configurations that are each best for one object size here (see
# "nginx with proxy_cache" below); ratios compare Outpost with the better of the two per object.
PROXIES=()
# Over HTTPS: the edge's TLS listener, and nginx's "no sendfile" instance's `ssl` listener.
TLS_PROXIES=()

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-}
if [[ -n $OUT && $OUT != /* ]]; then OUT="$PWD/$OUT"; fi
BENCH=hit_path
# log, die, installing, the edge build, the temp dir and cleanup, starting the origin and the
# other proxies.
# shellcheck source-path=SCRIPTDIR source=lib/servers.sh
source "$ROOT/benches/lib/servers.sh"

# ---------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------

[[ $(uname -s) == Linux ]] || die "Linux only (taskset, /proc/<pid>/stat)"
[[ $PLAIN == 0 || $PLAIN == 1 ]] || die "HIT_PATH_PLAIN must be 0 or 1, not '$PLAIN'"
[[ $TLS == 0 || $TLS == 1 ]] || die "HIT_PATH_TLS must be 0 or 1, not '$TLS'"
[[ $TLS_FULL == 0 || $TLS_FULL == 1 ]] || die "HIT_PATH_TLS_FULL must be 0 or 1, not '$TLS_FULL'"
[[ $ATS == 0 || $ATS == 1 ]] || die "HIT_PATH_ATS must be 0 or 1, not '$ATS'"
[[ $FULL_CLIENTS =~ ^[1-9][0-9]*$ ]] || die "HIT_PATH_TLS_FULL_CLIENTS must be a positive integer, not '$FULL_CLIENTS'"
((PLAIN || TLS)) || die "HIT_PATH_PLAIN=0 and HIT_PATH_TLS=0 leave nothing to measure"
if ((PLAIN)); then PROXIES=(outpost nginx nginx-copy varnish); else ATS=0; fi
if ((ATS)); then PROXIES+=(ats); fi
if ((TLS)); then TLS_PROXIES=(outpost-tls nginx-tls); else TLS_FULL=0; fi
ncpu=$(getconf _NPROCESSORS_ONLN)
((ncpu >= 2)) || die "needs 2 cores (proxy on core $PROXY_CPU, wrk on core $WRK_CPU); this machine has $ncpu"

needed=(nginx:nginx wrk:wrk curl:curl pgrep:procps taskset:util-linux)
if ((PLAIN)); then needed+=(varnishd:varnish); fi
if ((ATS)); then needed+=(traffic_server:trafficserver); fi
if ((TLS)); then needed+=(openssl:openssl); fi
ensure_commands "${needed[@]}"

edge_binary "$ROOT"

CLK_TCK=$(getconf CLK_TCK)

ports=("$ORIGIN_PORT" "$NGINX_PORT" "$VARNISH_PORT" "$EDGE_PORT" "$EDGE_ADMIN_PORT" "$NGINX_COPY_PORT")
if ((TLS)); then ports+=("$EDGE_TLS_PORT" "$NGINX_TLS_PORT"); fi
if ((ATS)); then ports+=("$ATS_PORT"); fi
check_ports "${ports[@]}"

# ---------------------------------------------------------------------------------------------
# Temp dir (removed at exit, with every server this script started stopped), CPU accounting
# ---------------------------------------------------------------------------------------------

bench_tmpdir

# cpu_ticks PID...: utime + stime (fields 14 and 15 of /proc/<pid>/stat) summed over PIDs.
cpu_ticks() {
    local total=0 pid stat rest f
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || die "process $pid is gone (crashed?)"
        rest=${stat##*) } # drop "pid (comm) ": comm may hold spaces; f[0] is field 3
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# core_ticks CPU -> "busy total" jiffies of one core from /proc/stat (busy = all but idle+iowait).
core_ticks() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# sample_before PROXY PID / sample_after PROXY PID: what a measured run is judged by, read just
# before and just after it: the proxy's processes (pids_before: they must not change), their CPU
# ticks (t0/t1), the proxy core's busy and total ticks (busy0 total0 / busy1 total1), the wall
# clock (w0/w1), the origin's request count (o0/o1) and, for the edge over TLS, its handshake
# count (h0/h1). Globals, as the run functions read them.
sample_before() {
    pids_before=$(server_pids "$2")
    if [[ $1 == outpost-tls ]]; then h0=$(edge_handshakes); fi
    o0=$(origin_requests)
    # shellcheck disable=SC2086
    t0=$(cpu_ticks $pids_before)
    read -r busy0 total0 < <(core_ticks "$PROXY_CPU")
    w0=$(date +%s%N)
}
sample_after() {
    local pids_after
    # shellcheck disable=SC2086
    t1=$(cpu_ticks $pids_before)
    w1=$(date +%s%N)
    read -r busy1 total1 < <(core_ticks "$PROXY_CPU")
    o1=$(origin_requests)
    if [[ $1 == outpost-tls ]]; then h1=$(edge_handshakes); fi
    pids_after=$(server_pids "$2")
    [[ $pids_before == "$pids_after" ]] ||
        die "$1's processes changed during the run (a crash/restart?): ${pids_before//$'\n'/ } -> ${pids_after//$'\n'/ }"
}

# other_busy_pct: busy time on the proxy's core not charged to the proxy's processes, in % of
# the run (from the samples above): other programs, and interrupt time the kernel charges to no
# process. High = noisy run.
other_busy_pct() {
    awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" -v p="$((t1 - t0))" \
        'BEGIN { v = (t > 0) ? 100 * (b - p) / t : 0; printf "%.1f\n", (v < 0) ? 0 : v }'
}

# ---------------------------------------------------------------------------------------------
# Origin: its own nginx, serving /1k.bin and /100k.bin with Cache-Control and an ETag
# ---------------------------------------------------------------------------------------------

start_origin "$D/origin" "$ORIGIN_PORT"

PIN=(taskset -c "$PROXY_CPU")

# ---------------------------------------------------------------------------------------------
# Test certificate (HTTPS part): one ECDSA P-256 key and self-signed certificate for both sides
# ---------------------------------------------------------------------------------------------

# Clients ask for TLS_HOST (SNI and Host), as a browser would: the edge answers 421 to a host its
# certificate does not serve, and rustls logs a warning per handshake for an IP address in SNI
# (which wrk would send for https://127.0.0.1). The name need not resolve: wrk is pointed at
# 127.0.0.1 by a script (wrk.resolve), curl by --resolve.
TLS_HOST=bench.localhost
CERT="$D/tls/cert.pem"
KEY="$D/tls/key.pem"
WRK_TLS=(-s "$D/tls/resolve.lua")
CURL_TLS=(--cacert "$CERT" --resolve "$TLS_HOST:$EDGE_TLS_PORT:127.0.0.1"
    --resolve "$TLS_HOST:$NGINX_TLS_PORT:127.0.0.1")
if ((TLS)); then
    mkdir -p "$D/tls"
    # wrk does not verify certificates (curl does, with this one as the authority); the edge
    # checks at start that it is valid now, names a DNS host and matches its key.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$TLS_HOST" -addext "subjectAltName=DNS:$TLS_HOST" \
        -keyout "$KEY" -out "$CERT" >"$D/tls/openssl.log" 2>&1 || {
        cat "$D/tls/openssl.log" >&2
        die "openssl could not make the test certificate"
    }
    # Defines no per-request function, so wrk's requests stay static (no Lua per request).
    cat >"$D/tls/resolve.lua" <<'EOF'
-- Connect to 127.0.0.1 whatever the URL's host (the certificate's name, which need not resolve).
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
EOF
fi

# ---------------------------------------------------------------------------------------------
# nginx with proxy_cache
# ---------------------------------------------------------------------------------------------

# How nginx sends a cached file is the one setting that matters here, and no single choice is
# best for both sizes on Linux loopback:
#   - `sendfile on; tcp_nopush on` (the usual advice, Debian's default nginx.conf) stalls cached
#     100 KiB responses on delayed ACKs: p50 ~43 ms, ~2k req/s. Not used.
#   - `sendfile on; tcp_nopush off` (instance "nginx"): best for 100 KiB (zero-copy), but header
#     and body leave in two writes, which costs ~30% at 1 KiB.
#   - `sendfile off; output_buffers 1 256k` (instance "nginx-copy"): header and body in one
#     writev, best for 1 KiB, ~30% slower at 100 KiB (a copy through user space).
# Both run (same cache settings, own port and cache dir); the ratios use the better per object.
#
# Over TLS nginx writes through OpenSSL, so sendfile does not apply (it would need kernel TLS,
# `ssl_conf_command Options KTLS`, off by default): the HTTPS listener is on "nginx-copy", whose
# 256k output buffer reads the cached file in one go. TLS settings: the session part of
# Mozilla's "intermediate" nginx template (what production configs copy): a shared session
# cache, no session tickets, so TLS 1.3 resumes from a server-side cache, as rustls does in the
# edge (stateful, 256 sessions in memory). The rest at nginx's defaults (ciphers, `ssl_ecdh_curve
# auto`: X25519 first, `ssl_buffer_size 16k`). No `http2` on the listener: wrk offers no ALPN,
# so both sides speak HTTP/1.1.
NGINX_TLS="listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1d;
        ssl_session_tickets off;"


# HIT_PATH_PLAIN=0 (HTTPS only) needs neither this instance nor Varnish.
if ((PLAIN)); then
    write_nginx_proxy "$D/nginx" "$NGINX_PORT" "$ORIGIN_PORT" "sendfile on; tcp_nopush off;"
    log "starting nginx (proxy_cache, sendfile) on 127.0.0.1:$NGINX_PORT, pinned to core $PROXY_CPU"
    start_nginx nginx "$D/nginx" "${PIN[@]}"
    NGINX_PID=${PIDS[-1]}
fi

nginx_copy_tls=
if ((TLS)); then nginx_copy_tls=$NGINX_TLS; fi
write_nginx_proxy "$D/nginx-copy" "$NGINX_COPY_PORT" "$ORIGIN_PORT" "sendfile off; output_buffers 1 256k;" "$nginx_copy_tls"
log "starting nginx (proxy_cache, no sendfile) on 127.0.0.1:$NGINX_COPY_PORT$( ((TLS)) && echo " and https $NGINX_TLS_PORT"), pinned to core $PROXY_CPU"
start_nginx nginx-copy "$D/nginx-copy" "${PIN[@]}"
NGINX_COPY_PID=${PIDS[-1]}

# ---------------------------------------------------------------------------------------------
# Varnish
# ---------------------------------------------------------------------------------------------

if ((PLAIN)); then start_varnish "$D/varnish" "$VARNISH_PORT" "$ORIGIN_PORT" malloc,256m "$PROXY_CPU"; fi

# ---------------------------------------------------------------------------------------------
# Apache Traffic Server
# ---------------------------------------------------------------------------------------------

# A 256 MiB RAM cache, as Varnish's malloc storage and the edge's L1; objects are written to a
# cache file in the temp dir and the RAM cache keeps what is read back (the second request).
# keep_alive_no_activity_timeout_in: the keep-alive timeout, as nginx's 65 s.
if ((ATS)); then
    start_ats "$D/ats" "$ATS_PORT" "$ORIGIN_PORT" 268435456 512M "$PROXY_CPU" \
        "CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT 65"
fi

# ---------------------------------------------------------------------------------------------
# Outpost's edge
# ---------------------------------------------------------------------------------------------

mkdir -p "$D/edge"
cat >"$D/edge/edge.toml" <<EOF
[server]
listen = ["127.0.0.1:$EDGE_PORT"]
threads = 1
# A bench has no balancer to drain from: stop at once.
grace_period_secs = 0

[origin]
addresses = ["127.0.0.1:$ORIGIN_PORT"]
health_check_path = ""

[cache.l1]
capacity_bytes = 268435456

[admin]
listen = "127.0.0.1:$EDGE_ADMIN_PORT"

# As nginx, Varnish and Traffic Server run here: no access log.
[access_log]
format = "off"
EOF
if ((TLS)); then
    # The implicit site answers any host, so one certificate is enough. http2: ALPN h2 and
    # http/1.1 are offered; wrk sends no ALPN and speaks HTTP/1.1.
    cat >>"$D/edge/edge.toml" <<EOF

[server.tls]
listen = ["127.0.0.1:$EDGE_TLS_PORT"]
http2 = true

[[server.tls.certificates]]
cert_file = "$CERT"
key_file = "$KEY"
EOF
fi
"$EDGE_BIN" --config "$D/edge/edge.toml" --validate >"$D/edge/validate.log" 2>&1 || {
    cat "$D/edge/validate.log" >&2
    die "edge --validate rejected the config"
}
log "starting the edge on 127.0.0.1:$EDGE_PORT$( ((TLS)) && echo " and https $EDGE_TLS_PORT") (admin $EDGE_ADMIN_PORT), pinned to core $PROXY_CPU"
# RUST_LOG=warn: no info lines either.
RUST_LOG=warn "${PIN[@]}" "$EDGE_BIN" --config "$D/edge/edge.toml" >"$D/edge/edge.log" 2>&1 &
started outpost INT "$!"
EDGE_PID=$!

if ((PLAIN)); then
    wait_http nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/1k.bin" "$D/nginx/error.log"
    wait_http varnish "$VARNISH_PID" "http://127.0.0.1:$VARNISH_PORT/1k.bin" "$D/varnish/varnishd.log"
fi
wait_http nginx-copy "$NGINX_COPY_PID" "http://127.0.0.1:$NGINX_COPY_PORT/1k.bin" "$D/nginx-copy/error.log"
wait_http "edge admin" "$EDGE_PID" "http://127.0.0.1:$EDGE_ADMIN_PORT/healthz" "$D/edge/edge.log"
wait_http "edge (readyz: origin healthy)" "$EDGE_PID" "http://127.0.0.1:$EDGE_ADMIN_PORT/readyz" "$D/edge/edge.log"
wait_http edge "$EDGE_PID" "http://127.0.0.1:$EDGE_PORT/1k.bin" "$D/edge/edge.log"

proxy_pid() {
    case $1 in
    outpost | outpost-tls) echo "$EDGE_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    nginx-copy | nginx-tls) echo "$NGINX_COPY_PID" ;;
    varnish) echo "$VARNISH_PID" ;;
    ats) echo "$ATS_PID" ;;
    esac
}
proxy_port() {
    case $1 in
    outpost) echo "$EDGE_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    nginx-copy) echo "$NGINX_COPY_PORT" ;;
    varnish) echo "$VARNISH_PORT" ;;
    ats) echo "$ATS_PORT" ;;
    outpost-tls) echo "$EDGE_TLS_PORT" ;;
    nginx-tls) echo "$NGINX_TLS_PORT" ;;
    esac
}
# proxy_url PROXY SIZE
proxy_url() {
    case $1 in
    *-tls) echo "https://$TLS_HOST:$(proxy_port "$1")/$2.bin" ;;
    *) echo "http://127.0.0.1:$(proxy_port "$1")/$2.bin" ;;
    esac
}
proxy_label() {
    case $1 in
    outpost | outpost-tls) echo "Outpost edge" ;;
    nginx) echo "nginx proxy_cache (sendfile)" ;;
    nginx-copy) echo "nginx proxy_cache (no sendfile)" ;;
    nginx-tls) echo "nginx proxy_cache (no sendfile)" ;;
    varnish) echo "Varnish" ;;
    ats) echo "Traffic Server" ;;
    esac
}
size_label() {
    case $1 in
    1k) echo "1 KiB" ;;
    100k) echo "100 KiB" ;;
    esac
}

# Every process of every proxy must be pinned to the proxy core.
for proxy in "${PROXIES[@]}" "${TLS_PROXIES[@]}"; do
    # shellcheck disable=SC2046
    check_pinned "$proxy" "$PROXY_CPU" $(server_pids "$(proxy_pid "$proxy")")
done

# ---------------------------------------------------------------------------------------------
# Warm the caches and check that each proxy answers from cache with the origin's bytes
# ---------------------------------------------------------------------------------------------

# is_hit PROXY HEADERS_FILE
is_hit() {
    case $1 in
    outpost | outpost-tls) grep -qiE '^cache-status: *outpost; *hit' "$2" ;;
    nginx | nginx-copy | nginx-tls) grep -qiE '^x-cache: *HIT' "$2" ;;
    varnish) grep -qiE '^x-varnish: *[0-9]+ +[0-9]+' "$2" ;;
    ats) grep -qiE '^via: .*\[c[HR]s' "$2" ;;
    esac
}

mkdir -p "$D/check"
for proxy in "${PROXIES[@]}" "${TLS_PROXIES[@]}"; do
    for size in "${SIZES[@]}"; do
        for i in 1 2 3 4; do
            code=$(curl -sS "${CURL_TLS[@]}" --max-time 5 -o "$D/check/body" -D "$D/check/$proxy-$size.hdr" \
                -w '%{http_code}' "$(proxy_url "$proxy" "$size")") ||
                die "$proxy: request for /$size.bin failed"
            [[ $code == 200 ]] || die "$proxy: /$size.bin answered $code"
            cmp -s "$D/check/body" "$D/origin/www/$size.bin" ||
                die "$proxy: /$size.bin body differs from the origin's"
        done
        if ! is_hit "$proxy" "$D/check/$proxy-$size.hdr"; then
            cat "$D/check/$proxy-$size.hdr" >&2
            die "$proxy does not serve /$size.bin from cache after 4 requests (headers above)"
        fi
    done
done
# And the origin must see nothing more once the caches are warm.
before=$(origin_requests)
for proxy in "${PROXIES[@]}" "${TLS_PROXIES[@]}"; do
    for size in "${SIZES[@]}"; do
        for i in 1 2 3 4 5; do
            curl -fsS "${CURL_TLS[@]}" --max-time 5 -o /dev/null "$(proxy_url "$proxy" "$size")"
        done
    done
done
after=$(origin_requests)
((after == before)) || die "warm caches still sent $((after - before)) requests to the origin"
log "all proxies serve both objects from cache"

# The edge's TLS handshakes so far (outpost_tls_handshakes_total, all certificates).
edge_handshakes() {
    curl -fsS --max-time 5 "http://127.0.0.1:$EDGE_ADMIN_PORT/metrics" |
        awk '$1 ~ /^outpost_tls_handshakes_total/ { s += $NF } END { printf "%d\n", s }'
}

# What TLS each side negotiates with an OpenSSL client (wrk's library), which certificate it
# serves, and whether it resumes a session: a first connection saves the session (TLS 1.3 sends
# its tickets after the handshake, so the request is answered and read first), a second offers it.
declare -A TLS_SUMMARY=()
if ((TLS)); then
    our_cert=$(openssl x509 -in "$CERT" -noout -fingerprint -sha256)
    request=$'GET /1k.bin HTTP/1.1\r\nHost: '"$TLS_HOST"$'\r\nConnection: close\r\n\r\n'
    for proxy in "${TLS_PROXIES[@]}"; do
        port=$(proxy_port "$proxy")
        out="$D/check/$proxy-s_client"
        rm -f "$out.sess"
        printf '%s' "$request" | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
            -servername "$TLS_HOST" -sess_out "$out.sess" -ign_eof >"$out.1" 2>&1 || true
        printf '%s' "$request" | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
            -servername "$TLS_HOST" -sess_in "$out.sess" -ign_eof >"$out.2" 2>&1 || true
        first=$(grep -a -m1 -E '^(New|Reused), ' "$out.1" || true)
        second=$(grep -a -m1 -E '^(New|Reused), ' "$out.2" || true)
        [[ $first == "New, TLSv1.3, "* ]] || {
            cat "$out.1" >&2
            die "$proxy: openssl s_client did not negotiate TLS 1.3 (output above)"
        }
        [[ $(openssl x509 -noout -fingerprint -sha256 <"$out.1" 2>/dev/null) == "$our_cert" ]] ||
            die "$proxy serves another certificate than $CERT (see $out.1)"
        grep -aq '^HTTP/1.1 200' "$out.1" || die "$proxy: no 200 over openssl s_client (see $out.1)"
        kx=$(sed -n 's/^Server Temp Key: //p' "$out.1" | head -n 1)
        sig=$(sed -n 's/^Peer signature type: //p' "$out.1" | head -n 1)
        TLS_SUMMARY[$proxy]="${first#New, }; key exchange ${kx:-?}; signature ${sig:-?}; second connection offering the first's session: ${second%%,*}"
        log "$proxy: ${TLS_SUMMARY[$proxy]}"
    done
fi

# The full-handshake client, `openssl s_time -new`: a fresh SSL object per connection and no
# client session cache, so it never offers a session to resume. OpenSSL 3.0's s_time has no
# -servername: it sends no SNI, and each side serves its default certificate (the only one
# here; checked below with s_client -noservername). Its `-www PATH` sends
# "GET PATH HTTP/1.0\r\n\r\n", without Host, which the edge answers 400 while nginx serves
# the object; so PATH carries the resumed test's request head and ends with a dummy field that
# the trailing " HTTP/1.0" becomes the value of. Every connection sends
#   GET /1k.bin HTTP/1.1 | Host: bench.localhost | Connection: close | X-Pad: HTTP/1.0
# and reads the answer until the server closes.
declare -A FULL_SUMMARY=() FULL_BYTES=()
FULL_WWW=$'/1k.bin HTTP/1.1\r\nHost: '"$TLS_HOST"$'\r\nConnection: close\r\nX-Pad:'
if ((TLS_FULL)); then
    s_time_help=$(openssl s_time -help 2>&1 || true)
    for flag in -new -tls1_3 -www -time; do
        grep -q -- "^ *$flag " <<<"$s_time_help" || die "this openssl s_time has no $flag option"
    done
    full_request="GET $FULL_WWW HTTP/1.0"$'\r\n\r\n'
    for proxy in "${TLS_PROXIES[@]}"; do
        port=$(proxy_port "$proxy")
        out="$D/check/$proxy-full"
        printf '%s' "$full_request" | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
            -noservername -tls1_3 -ign_eof >"$out.s_client" 2>&1 || true
        printf '%s' "$full_request" | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
            -noservername -tls1_3 -quiet >"$out.response" 2>/dev/null || true
        first=$(grep -a -m1 -E '^(New|Reused), ' "$out.s_client" || true)
        [[ $first == "New, TLSv1.3, "* ]] || {
            cat "$out.s_client" >&2
            die "$proxy: no new TLS 1.3 session without SNI (output above)"
        }
        [[ $(openssl x509 -noout -fingerprint -sha256 <"$out.s_client" 2>/dev/null) == "$our_cert" ]] ||
            die "$proxy serves another certificate than $CERT to a client without SNI (see $out.s_client)"
        head -n 1 "$out.response" | grep -aq '^HTTP/1.1 200' ||
            die "$proxy: s_time's request did not get a 200 (see $out.response)"
        is_hit "$proxy" "$out.response" || die "$proxy: s_time's request was not a cache hit (see $out.response)"
        tail -c 1024 "$out.response" | cmp -s - "$D/origin/www/1k.bin" ||
            die "$proxy: s_time's request did not get the origin's 1 KiB (see $out.response)"
        FULL_BYTES[$proxy]=$(wc -c <"$out.response")
        kx=$(sed -n 's/^Server Temp Key: //p' "$out.s_client" | head -n 1)
        sig=$(sed -n 's/^Peer signature type: //p' "$out.s_client" | head -n 1)
        FULL_SUMMARY[$proxy]="no SNI: ${first#New, }; key exchange ${kx:-?}; signature ${sig:-?}; our certificate; a 200 hit of ${FULL_BYTES[$proxy]} bytes"
        log "$proxy, s_time's request: ${FULL_SUMMARY[$proxy]}"
    done
fi

# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------

# parse_wrk FILE -> "rps p50_ms p99_ms requests non2xx socket_errors connect/read/write/timeout"
parse_wrk() {
    awk '
    function ms(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s") return n * 1000
        if (u == "m") return n * 60000
        if (u == "h") return n * 3600000
        return -1
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    / requests in / { req = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); sockerr = $4 + $6 + $8 + $10; kinds = $4 "/" $6 "/" $8 "/" $10 }
    END {
        if (rps == "" || p50 == "" || p99 == "" || req == "" || p50 < 0 || p99 < 0) exit 1
        printf "%s %s %s %s %d %d %s\n", rps, p50, p99, req, non2xx, sockerr, (kinds == "") ? "0/0/0/0" : kinds
    }' "$1"
}

WRK=(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS")
RESULTS="$D/results.tsv"         # plain HTTP
TLS_RESULTS="$D/tls-results.tsv" # HTTPS, keep-alive
HS_RESULTS="$D/hs-results.tsv"   # HTTPS, a new connection (TLS handshake) per request
FULL_RESULTS="$D/full-results.tsv" # HTTPS, full handshakes (s_time -new)
: >"$RESULTS"
: >"$TLS_RESULTS"
: >"$HS_RESULTS"
: >"$FULL_RESULTS"
mkdir -p "$D/wrk" "$D/s_time"

# run_one ROUND SIZE PROXY [close]: one warm-up and one measured run; "close" sends
# `Connection: close`, so every request is a new connection. Appends a row to the results:
# round size proxy rps p50 p99 requests cpu_s cpu% req_per_cpu errors origin other% non2xx
# socket_errors(connect/read/write/timeout) edge_tls_handshakes("-" when not counted) wrk_cpu%
run_one() {
    local round=$1 size=$2 proxy=$3 mode=${4:-keep-alive} url pid pids_before pids_after t0 t1 o0 o1
    local out parsed rps p50 p99 req non2xx sockerr kinds cpu_s cpu_pct per_cpu busy0 total0 busy1
    local total1 other_pct w0 w1 h0=- h1=- hs=- results=$RESULTS extra=() wrk_pct TIMEFORMAT='%3U %3S'
    url=$(proxy_url "$proxy" "$size")
    pid=$(proxy_pid "$proxy")
    out="$D/wrk/$round-$size-$proxy-$mode.txt"
    if [[ $proxy == *-tls ]]; then
        results=$TLS_RESULTS
        extra=("${WRK_TLS[@]}")
    fi
    if [[ $mode == close ]]; then
        results=$HS_RESULTS
        extra+=(-H 'Connection: close')
    fi
    "${WRK[@]}" "${extra[@]}" -d"${WARMUP}s" "$url" >"$out.warmup" 2>&1 || {
        cat "$out.warmup" >&2
        die "wrk warm-up against $proxy failed"
    }
    sample_before "$proxy" "$pid"
    # `time`: wrk's own CPU time, to tell which side was the limit.
    { time "${WRK[@]}" "${extra[@]}" -d"${DURATION}s" --latency "$url" >"$out" 2>&1; } 2>"$out.time" || {
        cat "$out" >&2
        die "wrk against $proxy failed"
    }
    sample_after "$proxy" "$pid"
    if [[ $proxy == outpost-tls ]]; then hs=$((h1 - h0)); fi
    parsed=$(parse_wrk "$out") || {
        cat "$out" >&2
        die "could not parse wrk's output (above)"
    }
    read -r rps p50 p99 req non2xx sockerr kinds <<<"$parsed"
    ((t1 > t0)) || die "$proxy used no CPU time during the run?"
    # server CPU % = CPU time over the wall time between the two samples.
    read -r cpu_s cpu_pct per_cpu < <(awk -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v req="$req" \
        -v wall_ns="$((w1 - w0))" 'BEGIN { s = d / hz; printf "%.2f %.1f %.0f\n", s, 100 * s / (wall_ns / 1e9), req / s }')
    other_pct=$(other_busy_pct)
    # wrk's CPU % (user+system over the same wall time; 100% = its core saturated).
    wrk_pct=$(awk -v wall_ns="$((w1 - w0))" '{ printf "%.1f\n", 100 * ($1 + $2) / (wall_ns / 1e9) }' "$out.time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$size" \
        "$proxy" "$rps" "$p50" "$p99" "$req" "$cpu_s" "$cpu_pct" "$per_cpu" "$((non2xx + sockerr))" \
        "$((o1 - o0))" "$other_pct" "$non2xx" "$kinds" "$hs" "$wrk_pct" >>"$results"
    log "$(printf 'round %d %-5s %-11s %-10s %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %6.0f req/CPU-s  cpu %5.1f%%  wrk %5.1f%%  other %4.1f%%  errors %d  origin %d%s' \
        "$round" "$size" "$proxy" "$mode" "$rps" "$p50" "$p99" "$per_cpu" "$cpu_pct" "$wrk_pct" \
        "$other_pct" "$((non2xx + sockerr))" "$((o1 - o0))" "$([[ $hs == - ]] || echo "  handshakes $hs")")"
}

# s_time_group SECONDS PORT OUT: HIT_PATH_TLS_FULL_CLIENTS `openssl s_time -new` processes at
# once on the wrk core, each writing OUT.<n>; fails if any of them fails (s_time stops at the
# first connection that fails).
s_time_group() {
    local secs=$1 port=$2 out=$3 i pids=() rc=0
    for ((i = 0; i < FULL_CLIENTS; i++)); do
        taskset -c "$WRK_CPU" openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 \
            -time "$secs" -www "$FULL_WWW" >"$out.$i" 2>&1 &
        pids+=("$!")
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}

# parse_s_time FILE -> "connections new resumed other bytes_per_connection": s_time prints a
# character per connection ('*' a new session, 'r' a resumed one, 't'/'3' for TLS 1.0/SSL 3),
# then "N connections in T real seconds, B bytes read per connection".
parse_s_time() {
    awk '
    /^Collecting connection statistics/ {
        if ((getline line) > 0) { n = gsub(/\*/, "", line); r = gsub(/r/, "", line); o = length(line) }
    }
    / connections in [0-9]+ real seconds/ { conns = $1; bytes = $7 }
    END {
        if (conns == "" || n == "") exit 1
        printf "%d %d %d %d %d\n", conns, n, r, o, bytes
    }' "$1"
}

# run_full ROUND PROXY: one warm-up and one measured s_time run (full handshakes, 1 KiB hits).
# Appends a row to FULL_RESULTS: round proxy handshakes wall_s handshakes_per_s cpu_s cpu%
# handshakes_per_cpu_s cpu_us_per_handshake other% client_cpu% resumed bytes_per_connection
# edge_tls_handshakes("-" for nginx) origin_requests
run_full() {
    local round=$1 proxy=$2 port pid out pids_before pids_after t0 t1 o0 o1 w0 w1 h0=- h1=- hs=-
    local busy0 total0 busy1 total1 other_pct i parsed c n r o b conns=0 resumed=0 odd=0 bytes=0
    local wall hps cpu_s cpu_pct per_cpu us client_pct TIMEFORMAT='%3U %3S'
    port=$(proxy_port "$proxy")
    pid=$(proxy_pid "$proxy")
    out="$D/s_time/$round-$proxy"
    if ((WARMUP > 0)); then
        s_time_group "$WARMUP" "$port" "$out.warmup" || {
            cat "$out.warmup".* >&2
            die "s_time warm-up against $proxy failed"
        }
    fi
    sample_before "$proxy" "$pid"
    { time s_time_group "$DURATION" "$port" "$out"; } 2>"$out.time" || {
        cat "$out".[0-9]* >&2
        die "s_time against $proxy failed"
    }
    sample_after "$proxy" "$pid"
    for ((i = 0; i < FULL_CLIENTS; i++)); do
        parsed=$(parse_s_time "$out.$i") || {
            cat "$out.$i" >&2
            die "could not parse s_time's output (above)"
        }
        read -r c n r o b <<<"$parsed"
        ((n + r + o == c)) || die "s_time marked $((n + r + o)) connections but counted $c (see $out.$i)"
        # Each connection must have read a whole hit (Age may add a digit while the run goes).
        ((b >= FULL_BYTES[$proxy] - 16 && b <= FULL_BYTES[$proxy] + 16)) ||
            die "$proxy: s_time read $b bytes per connection, a hit is ${FULL_BYTES[$proxy]} (see $out.$i)"
        conns=$((conns + c))
        resumed=$((resumed + r))
        odd=$((odd + o))
        bytes=$((bytes + b * c))
    done
    ((conns > 0)) || die "s_time made no connection to $proxy"
    ((resumed == 0 && odd == 0)) ||
        die "$proxy: $resumed of $conns s_time connections resumed a session ($odd marked TLS 1.0 or SSL 3)"
    if [[ $proxy == outpost-tls ]]; then
        hs=$((h1 - h0))
        # One finished handshake per connection; a few more or less only if something else connects.
        ((hs * 100 >= conns * 99 && hs * 100 <= conns * 101)) ||
            die "the edge counted $hs TLS handshakes for $conns s_time connections"
    fi
    ((t1 > t0)) || die "$proxy used no CPU time during the run?"
    other_pct=$(other_busy_pct)
    read -r wall hps cpu_s cpu_pct per_cpu us client_pct < <(awk -v d="$((t1 - t0))" \
        -v hz="$CLK_TCK" -v c="$conns" -v wall_ns="$((w1 - w0))" '{
            wall = wall_ns / 1e9; s = d / hz
            printf "%.2f %.1f %.2f %.1f %.0f %.1f %.1f\n", wall, c / wall, s, 100 * s / wall, c / s,
                1e6 * s / c, 100 * ($1 + $2) / wall
        }' "$out.time")
    printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\n' "$round" "$proxy" \
        "$conns" "$wall" "$hps" "$cpu_s" "$cpu_pct" "$per_cpu" "$us" "$other_pct" "$client_pct" \
        "$resumed" "$((bytes / conns))" "$hs" "$((o1 - o0))" >>"$FULL_RESULTS"
    log "$(printf 'round %d 1k    %-11s full       %8.0f hs/s  %6.1f us CPU/hs  %6.0f hs/CPU-s  cpu %5.1f%%  s_time x%d %5.1f%%  other %4.1f%%  resumed %d  origin %d%s' \
        "$round" "$proxy" "$hps" "$us" "$per_cpu" "$cpu_pct" "$FULL_CLIENTS" "$client_pct" \
        "$other_pct" "$resumed" "$((o1 - o0))" "$([[ $hs == - ]] || echo "  handshakes $hs/$conns")")"
}

load_secs=0
if ((PLAIN)); then
    started_at=$SECONDS
    log "load: $ROUNDS rounds x ${#SIZES[@]} sizes x ${#PROXIES[@]} proxies, each ${WARMUP}s warm-up + ${DURATION}s measured, $CONNS connections"
    for ((round = 1; round <= ROUNDS; round++)); do
        for size in "${SIZES[@]}"; do
            for ((k = 0; k < ${#PROXIES[@]}; k++)); do
                # Rotate which proxy goes first so no proxy always runs right after the same one.
                proxy=${PROXIES[$(((k + round - 1) % ${#PROXIES[@]}))]}
                run_one "$round" "$size" "$proxy"
            done
        done
    done
    load_secs=$((SECONDS - started_at))
fi

tls_secs=0
if ((TLS)); then
    started_at=$SECONDS
    tests=("${SIZES[@]/%/ keep-alive}" "1k close")
    if ((TLS_FULL)); then tests+=("1k full"); fi
    log "HTTPS load: $TLS_ROUNDS rounds x (keep-alive ${SIZES[*]}, new connection per request 1k$( ((TLS_FULL)) && echo ", full handshakes 1k")) x ${#TLS_PROXIES[@]} proxies, each ${WARMUP}s warm-up + ${DURATION}s measured, $CONNS wrk connections$( ((TLS_FULL)) && echo " or $FULL_CLIENTS s_time processes")"
    for ((round = 1; round <= TLS_ROUNDS; round++)); do
        for test in "${tests[@]}"; do
            read -r size mode <<<"$test"
            for ((k = 0; k < ${#TLS_PROXIES[@]}; k++)); do
                proxy=${TLS_PROXIES[$(((k + round - 1) % ${#TLS_PROXIES[@]}))]}
                if [[ $mode == full ]]; then
                    run_full "$round" "$proxy"
                else
                    run_one "$round" "$size" "$proxy" "$mode"
                fi
            done
        done
    done
    tls_secs=$((SECONDS - started_at))
fi

# Every run must have been served from cache, without errors.
bad_origin=$(cat "$RESULTS" "$TLS_RESULTS" "$HS_RESULTS" | awk -F'\t' '$12 > 0')
bad_errors=$(cat "$RESULTS" "$TLS_RESULTS" "$HS_RESULTS" | awk -F'\t' '$11 > 0')
bad_origin+=$(awk -F'\t' '$15 > 0' "$FULL_RESULTS")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

# medians RESULTS -> per (size, proxy): "size proxy rps p50 p99 per_cpu cpu_pct errors
# handshakes_per_request wrk_cpu_pct" (handshakes_per_request: edge TLS handshakes / requests
# over all rounds, or "-")
medians() {
    awk -F'\t' '
function median(key, col,   n, i, j, t, v) {
    n = cnt[key]
    for (i = 1; i <= n; i++) v[i] = val[key, col, i]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
    key = $2 SUBSEP $3
    if (!(key in cnt)) order[++nkeys] = key
    n = ++cnt[key]
    val[key, 4, n] = $4; val[key, 5, n] = $5; val[key, 6, n] = $6
    val[key, 10, n] = $10; val[key, 9, n] = $9; val[key, 17, n] = $17; err[key] += $11
    req[key] += $7; if ($16 != "" && $16 != "-") hs[key] += $16; else nohs[key] = 1
}
END {
    for (k = 1; k <= nkeys; k++) {
        key = order[k]; split(key, p, SUBSEP)
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p[1], p[2], median(key, 4), median(key, 5),
            median(key, 6), median(key, 10), median(key, 9), err[key],
            (key in nohs) ? "-" : sprintf("%.3f", hs[key] / req[key]), median(key, 17)
    }
}' "$1"
}
MEDIANS="$D/medians.tsv"
TLS_MEDIANS="$D/tls-medians.tsv"
HS_MEDIANS="$D/hs-medians.tsv"
medians "$RESULTS" >"$MEDIANS"
medians "$TLS_RESULTS" >"$TLS_MEDIANS"
medians "$HS_RESULTS" >"$HS_MEDIANS"

# full_medians -> per proxy: "proxy handshakes_per_s cpu_us_per_handshake handshakes_per_cpu_s
# cpu% client_cpu% connections resumed bytes_per_connection edge_handshakes_per_connection"
# (medians over rounds; connections and resumed summed; the last "-" for nginx)
full_medians() {
    awk -F'\t' '
function median(key, col,   n, i, j, t, v) {
    n = cnt[key]
    for (i = 1; i <= n; i++) v[i] = val[key, col, i]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
    key = $2
    if (!(key in cnt)) order[++nkeys] = key
    n = ++cnt[key]
    val[key, 5, n] = $5; val[key, 9, n] = $9; val[key, 8, n] = $8; val[key, 7, n] = $7
    val[key, 11, n] = $11; val[key, 13, n] = $13
    conns[key] += $3; resumed[key] += $12; if ($14 != "-") hs[key] += $14; else nohs[key] = 1
}
END {
    for (k = 1; k <= nkeys; k++) {
        key = order[k]
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", key, median(key, 5), median(key, 9),
            median(key, 8), median(key, 7), median(key, 11), conns[key], resumed[key], median(key, 13),
            (key in nohs) ? "-" : sprintf("%.3f", hs[key] / conns[key])
    }
}' "$FULL_RESULTS"
}
FULL_MEDIANS="$D/full-medians.tsv"
full_medians >"$FULL_MEDIANS"
# fmed PROXY COLUMN(2=hs/s 3=us per hs 4=hs per CPU-s 5=cpu% 6=client cpu% 7=connections
# 8=resumed 9=bytes per connection 10=edge handshakes per connection)
fmed() {
    awk -F'\t' -v p="$1" -v c="$2" '$1 == p { print $c }' "$FULL_MEDIANS"
}

med() { # med SIZE PROXY COLUMN(3=rps 4=p50 5=p99 6=per_cpu 7=cpu% 8=errors 9=hs/req 10=wrk cpu%) [MEDIANS]
    awk -F'\t' -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p { print $c }' "${4:-$MEDIANS}"
}

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
varnish_version=
if ((PLAIN)); then varnish_version=$(varnishd -V 2>&1 | head -n 1); fi
ats_version=
if ((ATS)); then ats_version=$(traffic_server -V 2>&1 | awk '/^Traffic Server/ { print $1, $2, $3; exit }'); fi
wrk_version=$({ wrk -v 2>&1 || true; } | head -n 1 | awk '{ print $1, $2 }')
edge_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- edge common Cargo.lock 2>/dev/null) ]]; then
    edge_commit="$edge_commit (edge/common with uncommitted changes)"
fi
edge_desc="commit $edge_commit"
if [[ -n $EDGE_GIVEN ]]; then edge_desc="binary $EDGE_BIN (EDGE_BIN; the work tree is at $edge_commit)"; fi
if ((TLS)); then
    rustls_version=$(awk '/^name = "rustls"$/ { getline; gsub("\"", "", $3); print $3; exit }' "$ROOT/Cargo.lock")
    nginx_openssl=$(nginx -V 2>&1 | sed -n 's/.*running with \(OpenSSL [^ ]*\).*/\1/p; s/^built with \(OpenSSL [^ ]*\).*/\1/p' | head -n 1)
    openssl_version=$(openssl version | sed -n 's/.*(Library: \(OpenSSL [^ ]*\).*/\1/p')
    openssl_version=${openssl_version:-$(openssl version | awk '{ print $1, $2 }')}
fi

# error_kinds RESULTS PROXY -> socket errors "connect/read/write/timeout" summed over rounds
error_kinds() {
    awk -F'\t' -v p="$2" '$3 == p { split($15, k, "/"); for (i = 1; i <= 4; i++) s[i] += k[i] }
        END { printf "%d/%d/%d/%d\n", s[1], s[2], s[3], s[4] }' "$1"
}

REPORT="$D/report.md"
{
    echo "# Hit-path benchmark: Outpost edge vs nginx proxy_cache vs Varnish$( ((ATS)) && echo " vs Traffic Server")"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- CPU: $cpu_model ($ncpu cores online), kernel $(uname -r)"
    echo "- Outpost edge: $edge_desc, release build, \`threads = 1\`, \`access_log.format = off\`, \`RUST_LOG=warn\`"
    if ((PLAIN)); then
        echo "- nginx: $nginx_version (\`worker_processes 1\`, proxy_cache on disk in a temp dir, \`access_log off\`); two configs: \"sendfile\" = \`sendfile on; tcp_nopush off\`, \"no sendfile\" = \`sendfile off; output_buffers 1 256k\` (\`tcp_nopush on\` stalls 100 KiB hits ~40 ms on delayed ACKs here, so it is not used)"
        echo "- Varnish: $varnish_version (\`-s malloc,256m\`, default thread pools)"
        if ((ATS)); then
            echo "- Traffic Server: $ats_version (\`traffic_server\` alone, no traffic_manager; one event thread: \`exec_thread.autoconfig 0\`, \`exec_thread.limit 1\`, \`accept_threads 0\`, one task and one AIO thread; \`ram_cache.size\` 256 MiB (CLFUS, the default) in front of a 512 MiB cache file in the temp dir; \`cache.required_headers 2\`; \`logging_enabled 0\`; \`insert_response_via_str 2\` (the hit check); \`keep_alive_no_activity_timeout_in 65\`; other records at Traffic Server's defaults)"
        fi
        echo "- wrk: $wrk_version, 1 thread, $CONNS connections, keep-alive"
        echo "- Each proxy (all its processes) pinned to core $PROXY_CPU, wrk to core $WRK_CPU; origin: a separate nginx, not pinned, idle during runs (0 requests reached it)"
        echo "- $ROUNDS rounds, interleaved (round → object → proxy, proxy order rotating), each a ${WARMUP} s warm-up then ${DURATION} s measured; medians over rounds. Load phase: ${load_secs} s"
        echo "- req per CPU-s = requests / (utime+stime of all the proxy's processes from /proc/<pid>/stat, in seconds); server CPU % = that CPU time / the wall time of the run (100% = the proxy's core saturated; clock-tick granularity makes it ±1%)"
        echo
        echo "## Results (median of $ROUNDS)"
        echo
        echo "| proxy | object | req/s | p50 ms | p99 ms | req per CPU-s | server CPU % | errors |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|"
        for size in "${SIZES[@]}"; do
            for proxy in "${PROXIES[@]}"; do
                printf '| %s | %s | %.0f | %.3f | %.3f | %.0f | %.1f | %d |\n' "$(proxy_label "$proxy")" \
                    "$(size_label "$size")" "$(med "$size" "$proxy" 3)" "$(med "$size" "$proxy" 4)" \
                    "$(med "$size" "$proxy" 5)" "$(med "$size" "$proxy" 6)" "$(med "$size" "$proxy" 7)" \
                    "$(med "$size" "$proxy" 8)"
            done
        done
        echo
        echo "errors = wrk's non-2xx/3xx responses + socket errors (connect, read, write, timeout), summed over rounds."
        echo
        echo "## Ratios (Outpost / other, from the medians)"
        echo
        if ((ATS)); then
            echo "| object | metric | better when | Outpost/nginx | Outpost/Varnish | Outpost/Traffic Server | nginx config used |"
            echo "|---|---|---|---:|---:|---:|---|"
        else
            echo "| object | metric | better when | Outpost/nginx | Outpost/Varnish | nginx config used |"
            echo "|---|---|---|---:|---:|---|"
        fi
        for size in "${SIZES[@]}"; do
            # The nginx configuration with the higher median req/s for this object.
            best_nginx=$(awk -v a="$(med "$size" nginx 3)" -v b="$(med "$size" nginx-copy 3)" \
                'BEGIN { print (b > a) ? "nginx-copy" : "nginx" }')
            for m in "3 req/s higher" "4 p50_latency lower" "5 p99_latency lower" "6 req_per_CPU-s higher"; do
                read -r col name better <<<"$m"
                o=$(med "$size" outpost "$col")
                n=$(med "$size" "$best_nginx" "$col")
                v=$(med "$size" varnish "$col")
                a=
                if ((ATS)); then a=$(med "$size" ats "$col"); fi
                awk -v s="$(size_label "$size")" -v name="${name//_/ }" -v b="$better" -v o="$o" -v n="$n" \
                    -v v="$v" -v a="$a" -v cfg="$(proxy_label "$best_nginx" | sed 's/^nginx proxy_cache //')" \
                    'BEGIN {
                        printf "| %s | %s | %s | %.2f | %.2f |", s, name, b, o / n, o / v
                        if (a != "") printf " %.2f |", o / a
                        printf " %s |\n", cfg
                    }'
            done
        done
        echo
        echo "For req/s and req per CPU-s a ratio above 1 favours Outpost; for latency (lower is better) a ratio below 1 favours Outpost. Outpost/nginx uses, per object, the nginx configuration with the higher median req/s."
        echo
    else
        echo "- nginx: $nginx_version (\`worker_processes 1\`, proxy_cache on disk in a temp dir, \`access_log off\`, \`sendfile off; output_buffers 1 256k\`)"
        echo "- wrk: $wrk_version"
        echo "- Plain HTTP not measured (HIT_PATH_PLAIN=0). Each proxy (all its processes) pinned to core $PROXY_CPU, the clients to core $WRK_CPU; origin: a separate nginx, not pinned, idle during runs (0 requests reached it)"
        echo "- req per CPU-s = requests / (utime+stime of all the proxy's processes from /proc/<pid>/stat, in seconds); server CPU % = that CPU time / the wall time of the run (100% = the proxy's core saturated; clock-tick granularity makes it ±1%)"
        echo
    fi
    if ((TLS)); then
        echo "## HTTPS: Outpost vs nginx (median of $TLS_ROUNDS)"
        echo
        echo "- Certificate: the same files for both, ECDSA P-256, self-signed, \`subjectAltName DNS:bench.localhost\` (wrk does not verify)"
        echo "- Outpost: a \`[server.tls]\` listener of the same edge process (\`http2 = true\`: ALPN h2 and http/1.1), rustls $rustls_version with ring, TLS 1.2 and 1.3; resumption as Pingora leaves rustls's defaults: stateful, 256 sessions in memory, 2 TLS 1.3 tickets per handshake, no ticket key"
        echo "- nginx: an \`ssl\` listener of the \"no sendfile\" instance (sendfile does not apply to TLS without kernel TLS), $nginx_openssl; \`ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_timeout 1d; ssl_session_tickets off\` (the session settings of Mozilla's intermediate template); ciphers, curves (\`auto\`), \`ssl_buffer_size 16k\` at nginx's defaults; no http2 (wrk sends no ALPN)"
        echo "- wrk (linked with $openssl_version) over https://$TLS_HOST (SNI and Host; connecting to 127.0.0.1), 1 thread, $CONNS connections; \"resumed handshakes\": \`-H 'Connection: close'\`, so the server closes after each answer and wrk reconnects: one TCP connection and one TLS handshake per request, resuming the connection's previous session"
        for proxy in "${TLS_PROXIES[@]}"; do
            echo "- $(proxy_label "$proxy") with \`openssl s_client\` (OpenSSL, as wrk): ${TLS_SUMMARY[$proxy]}"
        done
        if ((TLS_FULL)); then
            echo "- \"full handshakes\": $FULL_CLIENTS \`openssl s_time -new -tls1_3\` processes ($openssl_version) on core $WRK_CPU, each making one connection after another: a fresh session per connection (nothing to resume), no SNI (s_time has no option for it), and the resumed test's request (\`GET /1k.bin\`, \`Host: $TLS_HOST\`, \`Connection: close\`, plus a dummy \`X-Pad\` field) read until the server closes"
            for proxy in "${TLS_PROXIES[@]}"; do
                echo "- $(proxy_label "$proxy") with s_time's request over \`openssl s_client -noservername\`: ${FULL_SUMMARY[$proxy]}"
            done
        fi
        echo "- $TLS_ROUNDS rounds, interleaved (round → test → proxy, proxy order rotating), each a ${WARMUP} s warm-up then ${DURATION} s measured. HTTPS load phase: ${tls_secs} s"
        echo
        echo "### Keep-alive"
        echo
        echo "| proxy | object | req/s | p50 ms | p99 ms | req per CPU-s | server CPU % | wrk CPU % | errors | edge TLS handshakes per request |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        for size in "${SIZES[@]}"; do
            for proxy in "${TLS_PROXIES[@]}"; do
                printf '| %s | %s | %.0f | %.3f | %.3f | %.0f | %.1f | %.1f | %d | %s |\n' "$(proxy_label "$proxy")" \
                    "$(size_label "$size")" "$(med "$size" "$proxy" 3 "$TLS_MEDIANS")" \
                    "$(med "$size" "$proxy" 4 "$TLS_MEDIANS")" "$(med "$size" "$proxy" 5 "$TLS_MEDIANS")" \
                    "$(med "$size" "$proxy" 6 "$TLS_MEDIANS")" "$(med "$size" "$proxy" 7 "$TLS_MEDIANS")" \
                    "$(med "$size" "$proxy" 10 "$TLS_MEDIANS")" "$(med "$size" "$proxy" 8 "$TLS_MEDIANS")" \
                    "$(med "$size" "$proxy" 9 "$TLS_MEDIANS")"
            done
        done
        echo
        echo "wrk CPU % = wrk's user+system time over the run's wall time: near 100 with the server's core below it, the client was the limit (TLS costs the client about what it costs the server, and wrk has one core), so req/s compares wrk as much as the proxies; req per CPU-s still compares the proxies' cost per request."
        echo
        echo "| object | metric | better when | Outpost/nginx |"
        echo "|---|---|---|---:|"
        for size in "${SIZES[@]}"; do
            for m in "3 req/s higher" "4 p50_latency lower" "5 p99_latency lower" "6 req_per_CPU-s higher"; do
                read -r col name better <<<"$m"
                awk -v s="$(size_label "$size")" -v name="${name//_/ }" -v b="$better" \
                    -v o="$(med "$size" outpost-tls "$col" "$TLS_MEDIANS")" -v n="$(med "$size" nginx-tls "$col" "$TLS_MEDIANS")" \
                    'BEGIN { printf "| %s | %s | %s | %.2f |\n", s, name, b, o / n }'
            done
        done
        echo
        if ((PLAIN)); then
            echo "What TLS costs each side (same run; nginx plain = the same \"no sendfile\" instance):"
            echo
            echo "| object | proxy | req per CPU-s, plain HTTP | req per CPU-s, HTTPS | HTTPS/plain |"
            echo "|---|---|---:|---:|---:|"
            for size in "${SIZES[@]}"; do
                for pair in "outpost outpost-tls" "nginx-copy nginx-tls"; do
                    read -r plain tls <<<"$pair"
                    awk -v s="$(size_label "$size")" -v p="$(proxy_label "$tls")" -v a="$(med "$size" "$plain" 6)" \
                        -v b="$(med "$size" "$tls" 6 "$TLS_MEDIANS")" \
                        'BEGIN { printf "| %s | %s | %.0f | %.0f | %.2f |\n", s, p, a, b, b / a }'
                done
            done
            echo
        fi
        echo "### Resumed TLS handshakes (wrk, \`Connection: close\`, 1 KiB)"
        echo
        echo "| proxy | handshakes/s (= req/s) | handshakes per CPU-s | server CPU % | wrk CPU % | non-2xx | socket errors (connect/read/write/timeout) | edge TLS handshakes per request |"
        echo "|---|---:|---:|---:|---:|---:|---|---:|"
        for proxy in "${TLS_PROXIES[@]}"; do
            printf '| %s | %.0f | %.0f | %.1f | %.1f | %d | %s | %s |\n' "$(proxy_label "$proxy")" \
                "$(med 1k "$proxy" 3 "$HS_MEDIANS")" "$(med 1k "$proxy" 6 "$HS_MEDIANS")" \
                "$(med 1k "$proxy" 7 "$HS_MEDIANS")" "$(med 1k "$proxy" 10 "$HS_MEDIANS")" \
                "$(awk -F'\t' -v p="$proxy" '$3 == p { s += $14 } END { print s + 0 }' "$HS_RESULTS")" \
                "$(error_kinds "$HS_RESULTS" "$proxy")" "$(med 1k "$proxy" 9 "$HS_MEDIANS")"
        done
        echo
        awk -v a="$(med 1k outpost-tls 3 "$HS_MEDIANS")" -v b="$(med 1k nginx-tls 3 "$HS_MEDIANS")" \
            -v c="$(med 1k outpost-tls 6 "$HS_MEDIANS")" -v d="$(med 1k nginx-tls 6 "$HS_MEDIANS")" \
            'BEGIN { printf "Outpost/nginx: handshakes/s %.2f, handshakes per CPU-s %.2f (higher favours Outpost).\n", a / b, c / d }'
        echo
        echo "non-2xx and socket errors summed over rounds. Latency is left out: wrk starts its clock after the connection and handshake. edge TLS handshakes per request = the rise of \`outpost_tls_handshakes_total\` during the measured runs / wrk's completed requests (1.0 = one handshake per request; connections cut at the end of a run add a little). wrk's OpenSSL resumes each connection's previous session, so these are almost all resumed handshakes (PSK + X25519, no certificate, no signature)."
        echo
        if ((TLS_FULL)); then
            echo "### Full TLS handshakes (\`openssl s_time -new\`, 1 KiB)"
            echo
            echo "| proxy | handshakes/s | server CPU per handshake µs | handshakes per CPU-s | server CPU % | s_time CPU % | connections | resumed | bytes read per connection | edge TLS handshakes per connection |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for proxy in "${TLS_PROXIES[@]}"; do
                printf '| %s | %.0f | %.1f | %.0f | %.1f | %.1f | %d | %d | %.0f | %s |\n' "$(proxy_label "$proxy")" \
                    "$(fmed "$proxy" 2)" "$(fmed "$proxy" 3)" "$(fmed "$proxy" 4)" "$(fmed "$proxy" 5)" \
                    "$(fmed "$proxy" 6)" "$(fmed "$proxy" 7)" "$(fmed "$proxy" 8)" "$(fmed "$proxy" 9)" \
                    "$(fmed "$proxy" 10)"
            done
            echo
            awk -v a="$(fmed outpost-tls 2)" -v b="$(fmed nginx-tls 2)" -v c="$(fmed outpost-tls 4)" \
                -v d="$(fmed nginx-tls 4)" -v e="$(fmed outpost-tls 3)" -v f="$(fmed nginx-tls 3)" \
                'BEGIN { printf "Outpost/nginx: handshakes/s %.2f, handshakes per CPU-s %.2f (higher favours Outpost); server CPU per handshake %.2f (lower favours Outpost).\n", a / b, c / d, e / f }'
            echo
            echo "Every connection is a full handshake: s_time marks each connection new or resumed (resumed = 0 is checked), the edge's \`outpost_tls_handshakes_total\` rose by one per connection, and every connection read a whole 1 KiB hit. s_time CPU % = the s_time processes' user+system time over the run's wall time (100% = core $WRK_CPU saturated): a full handshake costs the client more than the server (it verifies the ECDSA signature), so the clients are the limit and handshakes/s measures them; server CPU per handshake (and its inverse, handshakes per CPU-s) compares the servers, at the partial load the clients allow."
            echo
            echo "What a full handshake adds to a resumed one (per connection, each with the same 1 KiB request; the resumed figures from wrk at a higher load, so only roughly comparable):"
            echo
            echo "| proxy | server CPU per connection, resumed µs | full µs | full − resumed µs |"
            echo "|---|---:|---:|---:|"
            for proxy in "${TLS_PROXIES[@]}"; do
                awk -v p="$(proxy_label "$proxy")" -v r="$(med 1k "$proxy" 6 "$HS_MEDIANS")" -v f="$(fmed "$proxy" 3)" \
                    'BEGIN { printf "| %s | %.1f | %.1f | %.1f |\n", p, 1e6 / r, f, f - 1e6 / r }'
            done
            echo
        fi
    fi
    echo "## Every run"
    if ((PLAIN)); then
        echo
        echo "| round | object | proxy | req/s | p50 ms | p99 ms | requests | CPU s | server CPU % | other busy % on core $PROXY_CPU | wrk CPU % | req per CPU-s | errors | origin requests |"
        echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F'\t' '{ printf "| %s | %s | %s | %.0f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $13, $17, $10, $11, $12 }' "$RESULTS"
    fi
    if ((TLS)); then
        echo
        echo "HTTPS (proxy \`-tls\`; test: keep-alive, or close = a new connection per request, resumed):"
        echo
        echo "| round | object | test | proxy | req/s | p50 ms | p99 ms | requests | CPU s | server CPU % | other busy % on core $PROXY_CPU | wrk CPU % | req per CPU-s | errors | origin requests | edge TLS handshakes |"
        echo "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for f in "$TLS_RESULTS keep-alive" "$HS_RESULTS close"; do
            read -r file test <<<"$f"
            awk -F'\t' -v t="$test" '{ printf "| %s | %s | %s | %s | %.0f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, t, $3, $4, $5, $6, $7, $8, $9, $13, $17, $10, $11, $12, $16 }' "$file"
        done
    fi
    if ((TLS_FULL)); then
        echo
        echo "Full handshakes (s_time, 1 KiB):"
        echo
        echo "| round | proxy | connections | seconds | handshakes/s | CPU s | server CPU % | handshakes per CPU-s | CPU µs per handshake | other busy % on core $PROXY_CPU | s_time CPU % | resumed | bytes per connection | edge TLS handshakes | origin requests |"
        echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F'\t' '{ printf "| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }' "$FULL_RESULTS"
    fi
    echo
    echo "other busy % = busy time of core $PROXY_CPU (/proc/stat) not charged to the proxy's processes: other programs, and interrupt time charged to no process."
    echo
    echo "## Hit response headers (as checked before the load)"
    hdr_proxies=("${PROXIES[@]}")
    if ((!PLAIN)); then hdr_proxies=("${TLS_PROXIES[@]}"); fi
    for proxy in "${hdr_proxies[@]}"; do
        echo
        echo "$(proxy_label "$proxy"), /1k.bin:"
        echo
        echo '```'
        tr -d '\r' <"$D/check/$proxy-1k.hdr" | sed '/^$/d'
        echo '```'
    done
    echo
    edge_log_section "$D/edge/edge.log"
} >"$REPORT"

publish_report "$REPORT" "$OUT"

[[ -z $bad_origin ]] || die "some runs reached the origin (not pure hits), see the 'origin requests' column: $bad_origin"
[[ -z $bad_errors ]] || die "some runs had wrk errors (non-2xx or socket errors), see the 'errors' column"
log "done in $SECONDS s"
