# shellcheck shell=bash
# Sourced (not run) by benches/hit_path.sh and benches/memory.sh: starting, checking and
# stopping the servers they compare (an nginx origin, nginx proxy_cache, Varnish, Traffic
# Server), all run by the script itself from a temp dir, never as system services.
#
# The sourcing script sets BENCH (the prefix of its log lines) first, runs `bench_tmpdir` once
# (sets D and the cleanup trap), then starts servers; each start registers the server's pid for
# the cleanup.

# nginx, varnishd and traffic_server's helpers live in /usr/sbin, not on a normal user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[%s] %s\n' "$BENCH" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$BENCH" "$*" >&2
    exit 1
}

# ensure_commands CMD:PACKAGE...: installs (apt-get, via sudo when not root) the packages whose
# command is missing, then stops any system service the packages started: the benchmarks run
# their own instances on their own ports, and a service would compete for the CPU.
ensure_commands() {
    local pair missing=() sudo=() svc
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    ((${#missing[@]})) || return 0
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: cannot install ${missing[*]}"
        sudo=(sudo)
    fi
    log "installing missing packages: ${missing[*]} (apt-get update; apt-get install -y ${missing[*]})"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    for svc in nginx varnish trafficserver; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            log "stopping the $svc service the package started"
            "${sudo[@]}" systemctl stop "$svc" || true
        elif command -v service >/dev/null && service "$svc" status >/dev/null 2>&1; then
            log "stopping the $svc service the package started"
            "${sudo[@]}" service "$svc" stop || true
        fi
    done
}

# edge_binary ROOT: EDGE_BIN when set (EDGE_GIVEN=1), else a fresh release build of the edge.
edge_binary() {
    # shellcheck disable=SC2034 # read by the sourcing script
    EDGE_GIVEN=${EDGE_BIN:+1}
    if [[ -n ${EDGE_BIN:-} ]]; then
        [[ -x $EDGE_BIN ]] || die "EDGE_BIN=$EDGE_BIN is not an executable"
        log "using EDGE_BIN=$EDGE_BIN (no build)"
    else
        log "building the edge: cargo build --release --locked -p edge --bin edge"
        (cd "$1" && cargo build --release --locked -p edge --bin edge) ||
            die "building the edge failed"
        EDGE_BIN="${CARGO_TARGET_DIR:-$1/target}/release/edge"
        [[ -x $EDGE_BIN ]] || die "built edge not found at $EDGE_BIN"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# check_ports PORT...: none may be taken (a stray server from an earlier run?).
check_ports() {
    local p
    for p in "$@"; do
        if port_in_use "$p"; then
            die "port 127.0.0.1:$p is already in use (a stray server from an earlier run?); stop it or choose another port base"
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# Temp dir, process bookkeeping, cleanup
# ---------------------------------------------------------------------------------------------

PIDS=()    # main pid of every server the script started
SIGNALS=() # the signal that stops it quickly
NAMES=()

# bench_tmpdir: D = a new temp dir, removed (with every server stopped) when the script exits.
bench_tmpdir() {
    D=$(mktemp -d -t "$BENCH.XXXXXX")
    # nginx workers and varnishd's child drop privileges when started as root: let them in.
    chmod 755 "$D"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {
    local rc=$? i p children=() deadline
    set +e
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do
        # shellcheck disable=SC2207
        children+=($(pgrep -P "$p" 2>/dev/null))
    done
    for i in "${!PIDS[@]}"; do
        kill -"${SIGNALS[$i]}" "${PIDS[$i]}" 2>/dev/null
    done
    deadline=$((SECONDS + 5))
    for p in "${PIDS[@]}" "${children[@]}"; do
        while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; fi
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$D"
    exit "$rc"
}

# started NAME SIGNAL PID: remember a server for cleanup.
started() {
    NAMES+=("$1")
    SIGNALS+=("$2")
    PIDS+=("$3")
}

# wait_http NAME PID URL LOG...: poll URL (bounded: 20 s) until it answers 2xx; fail fast,
# showing the logs, if the process exits.
wait_http() {
    local name=$1 pid=$2 url=$3 i
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; its log (${*:4}):"
            tail -n 30 "${@:4}" >&2 || true
            die "$name did not start"
        fi
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    tail -n 30 "${@:4}" >&2 || true
    die "$name did not answer $url within 20 s"
}

# The pids of a server: its main process and its children (nginx worker and cache manager,
# varnishd child). Not nginx's cache loader: it starts a minute after nginx, reads the cache
# directory once and exits, which is no crash (and its CPU time is not serving hits).
server_pids() {
    local c
    echo "$1"
    for c in $(pgrep -P "$1" | sort -n); do
        grep -qa 'cache loader' "/proc/$c/cmdline" 2>/dev/null || echo "$c"
    done
}

# check_pinned NAME CPU PID...: every thread of every PID runs on CPU only.
check_pinned() {
    local name=$1 cpu=$2 pid task aff
    for pid in "${@:3}"; do
        for task in /proc/"$pid"/task/*; do
            aff=$(taskset -cp "${task##*/}" 2>/dev/null | awk -F': ' '{print $2}') || aff=
            [[ $aff == "$cpu" ]] ||
                die "$name process $pid thread ${task##*/} runs on cores '$aff', expected $cpu"
        done
    done
}

# ---------------------------------------------------------------------------------------------
# nginx: the origin and proxy_cache
# ---------------------------------------------------------------------------------------------

# nginx_temp_paths DIR: keep nginx's temp files out of /var/lib/nginx.
nginx_temp_paths() {
    local t
    for t in client_body proxy fastcgi uwsgi scgi; do
        printf '    %s_temp_path %s/tmp/%s;\n' "$t" "$1" "$t"
    done
}

# start_nginx NAME DIR [PIN...]: test the config, then run nginx in the foreground
# (backgrounded), under the PIN command (taskset) if given.
start_nginx() {
    local name=$1 dir=$2 pin=("${@:3}") pid
    nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" 2>"$dir/config-test.log" || {
        cat "$dir/config-test.log" >&2
        die "$name: nginx config test failed"
    }
    "${pin[@]}" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    pid=$!
    started "$name" TERM "$pid"
}

# start_origin DIR PORT: an nginx serving DIR/www/1k.bin and DIR/www/100k.bin (random bytes,
# made here), and /obj/<anything> as a copy of 100k.bin (distinct URLs, hence distinct cache
# objects, for filling caches), all with `Cache-Control: public, max-age=3600` and an ETag.
# Its access log, DIR/access.log, counts the requests that reach it (origin_requests).
# Sets ORIGIN_PID.
start_origin() {
    local dir=$1 port=$2 hdr
    mkdir -p "$dir/www" "$dir/tmp"
    head -c 1024 /dev/urandom >"$dir/www/1k.bin"
    head -c 102400 /dev/urandom >"$dir/www/100k.bin"
    touch "$dir/access.log"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/access.log;
$(nginx_temp_paths "$dir")
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        etag on;
        location / {
            add_header Cache-Control "public, max-age=3600";
        }
        location /obj/ {
            rewrite ^ /100k.bin break;
            add_header Cache-Control "public, max-age=3600";
        }
    }
}
EOF
    log "starting the origin (nginx) on 127.0.0.1:$port"
    start_nginx origin "$dir"
    ORIGIN_PID=${PIDS[-1]}
    wait_http origin "$ORIGIN_PID" "http://127.0.0.1:$port/1k.bin" "$dir/error.log"
    hdr=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$port/100k.bin")
    grep -qi '^cache-control: public, max-age=3600' <<<"$hdr" || die "origin sends no Cache-Control: $hdr"
    grep -qi '^etag:' <<<"$hdr" || die "origin sends no ETag: $hdr"
    ORIGIN_LOG=$dir/access.log
}

origin_requests() { wc -l <"$ORIGIN_LOG"; }

# write_nginx_proxy DIR PORT ORIGIN_PORT SEND_DIRECTIVES [SERVER_DIRECTIVES]: a proxy_cache
# instance (one worker, cache on disk in DIR/cache, no access log). NGINX_WORKER_CONNECTIONS
# (4096), NGINX_KEEPALIVE_TIMEOUT (65 s) and NGINX_CACHE_MAX_SIZE (1g) tune it.
write_nginx_proxy() {
    local dir=$1 port=$2 origin_port=$3 send=$4 more=${5:-}
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections ${NGINX_WORKER_CONNECTIONS:-4096}; }
http {
    access_log off;
$(nginx_temp_paths "$dir")
    $send
    keepalive_timeout ${NGINX_KEEPALIVE_TIMEOUT:-65};
    keepalive_requests 1000000;
    proxy_cache_path $dir/cache levels=1:2 keys_zone=hit_path:10m max_size=${NGINX_CACHE_MAX_SIZE:-1g} inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$origin_port;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$port;
        $more
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache hit_path;
            # Used only when the origin says nothing; it sends max-age=3600, which nginx honours.
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            add_header X-Cache \$upstream_cache_status;
        }
    }
}
EOF
}

# ---------------------------------------------------------------------------------------------
# Varnish
# ---------------------------------------------------------------------------------------------

# start_varnish DIR PORT ORIGIN_PORT STORAGE CPU [VARNISHD_ARGS...]: varnishd in the
# foreground (backgrounded), pinned to CPU, caching the origin with its default VCL plus an
# X-Cache field. Sets VARNISH_PID.
start_varnish() {
    local dir=$1 port=$2 origin_port=$3 storage=$4 cpu=$5
    mkdir -p "$dir"
    cat >"$dir/bench.vcl" <<EOF
vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "$origin_port";
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
EOF
    log "starting varnishd on 127.0.0.1:$port ($storage), pinned to core $cpu"
    taskset -c "$cpu" varnishd -F -a "127.0.0.1:$port" -T 127.0.0.1:0 -f "$dir/bench.vcl" \
        -s "$storage" -n "$dir/work" -P "$dir/varnishd.pid" "${@:6}" >"$dir/varnishd.log" 2>&1 &
    VARNISH_PID=$!
    started varnish TERM "$VARNISH_PID"
}

# ---------------------------------------------------------------------------------------------
# Apache Traffic Server
# ---------------------------------------------------------------------------------------------

# start_ats DIR PORT ORIGIN_PORT RAM_CACHE_BYTES DISK_BYTES CPU [RECORDS_LINE...]:
# traffic_server alone (no traffic_manager), with its own layout under DIR (a runroot.yaml:
# config, runtime, log and cache dirs in DIR, binaries and plugins from the package), as a
# caching reverse proxy of the origin: one event thread, access logging off, a RAM cache of
# RAM_CACHE_BYTES in front of a cache file of DISK_BYTES in DIR/cache. Extra records.config
# lines come last (the last setting of a record wins). Hits carry `Via: ... [cHs f ]` (H: a
# fresh hit from disk, R: from the RAM cache). Sets ATS_PID.
#
# traffic_server binds its event thread to the whole machine whatever its cpuset
# (proxy.config.exec_thread.affinity has no "leave it" value), so it is started under taskset
# and then every thread is pinned again to CPU once it serves.
start_ats() {
    local dir=$1 port=$2 origin_port=$3 ram=$4 disk=$5 cpu=$6 sub line
    for sub in etc run log cache; do mkdir -p "$dir/$sub"; done
    cat >"$dir/runroot.yaml" <<EOF
prefix: /usr
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $dir/etc
datadir: $dir/cache
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
localstatedir: $dir
runtimedir: $dir/run
logdir: $dir/log
cachedir: $dir/cache
EOF
    # Records not set here keep Traffic Server's built-in defaults (not Debian's records.config).
    cat >"$dir/etc/records.config" <<EOF
# Stay the user we are (root or not): no switch to an unprivileged account.
CONFIG proxy.config.admin.user_id STRING #-1
# No crash-log helper process (it would be a second process, and wants a real user).
CONFIG proxy.config.crash_log_helper STRING NULL
CONFIG proxy.config.http.server_ports STRING $port:ip-in=127.0.0.1
# One event thread (as one nginx worker, one Varnish core, the edge's threads = 1), accepting
# on it (no accept thread); one task thread and one AIO thread for the cache file.
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 1
CONFIG proxy.config.accept_threads INT 0
CONFIG proxy.config.task_threads INT 1
CONFIG proxy.config.cache.threads_per_disk INT 1
CONFIG proxy.config.exec_thread.affinity INT 0
# A reverse proxy: only what remap.config maps is served.
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.http.cache.http INT 1
# 2: cache what carries an explicit lifetime (the origin sends max-age=3600).
CONFIG proxy.config.http.cache.required_headers INT 2
CONFIG proxy.config.cache.ram_cache.size INT $ram
CONFIG proxy.config.log.logging_enabled INT 0
# Via on responses, with the cache lookup result, to check hits.
CONFIG proxy.config.http.insert_response_via_str INT 2
EOF
    for line in "${@:7}"; do printf '%s\n' "$line" >>"$dir/etc/records.config"; done
    echo "map http://127.0.0.1:$port/ http://127.0.0.1:$origin_port/" >"$dir/etc/remap.config"
    echo "$dir/cache $disk" >"$dir/etc/storage.config"
    cat >"$dir/etc/ip_allow.yaml" <<'EOF'
ip_allow:
  - apply: in
    ip_addrs: 127.0.0.1
    action: allow
    methods: ALL
EOF
    : >"$dir/etc/plugin.config"
    : >"$dir/etc/hosting.config"
    : >"$dir/etc/volume.config"
    log "starting traffic_server on 127.0.0.1:$port (RAM cache $ram bytes, cache file $disk), pinned to core $cpu"
    taskset -c "$cpu" traffic_server --run-root="$dir/runroot.yaml" >"$dir/log/stdout.log" 2>&1 &
    ATS_PID=$!
    started ats TERM "$ATS_PID"
    wait_http "traffic_server" "$ATS_PID" "http://127.0.0.1:$port/1k.bin" "$dir/log/stdout.log" "$dir/log/diags.log"
    taskset -a -cp "$cpu" "$ATS_PID" >/dev/null || die "could not pin traffic_server's threads to core $cpu"
}

# rss_kib PID...: VmRSS summed over PIDS, in KiB.
# The report's last part: what the edge logged (it runs at RUST_LOG=warn), grouped by message
# with timestamps and client ports dropped; a line saying so when it logged nothing.
edge_log_section() {
    local log_file=$1 lines
    lines=$(grep -cvE '^\s*$' "$log_file" || true)
    if ((lines > 0)); then
        echo "Edge log (RUST_LOG=warn): $lines lines, by message (timestamps and client ports dropped):"
        echo
        echo '```'
        sed -E 's/^[0-9T:.-]+Z +//; s/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' "$log_file" | sort | uniq -c | sort -rn | head -n 20
        echo '```'
    else
        echo "Edge log (RUST_LOG=warn): empty: no warnings or errors."
    fi
}

# Prints the report $1 and copies it to $2 when one is given.
publish_report() {
    cat "$1"
    if [[ -n ${2:-} ]]; then
        cp "$1" "$2"
        log "report written to $2"
    fi
}

rss_kib() {
    local pid total=0 kb
    for pid in "$@"; do
        kb=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null) ||
            die "process $pid is gone (crashed?)"
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}
