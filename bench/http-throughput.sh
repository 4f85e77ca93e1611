#!/usr/bin/env bash
# kinema's connection layer vs nginx, side by side on the same files.
#
# Builds crates/kinema-http/examples/static_server.rs in release mode (the
# listener alone, bodies held in memory: the segment in a sealed memfd sent by
# sendfile, the playlist as shared Bytes), starts it and nginx
# (sendfile on, open_file_cache, access_log off, worker_processes auto) on
# the same directory, and measures with wrk -t1 -c64 keep-alive, alternating
# the two servers, RUNS times each (default 3), per body:
#   segment  — a 1.5 MB CMAF-sized segment
#   playlist — a ~600 B media playlist
# It prints the medians and the ratio kinema/nginx (targets: ≥ 1.15× on the
# segment, ≥ 1.2× on the playlist). For the whole origin with its cache, see
# the origin's own benchmark. Last, it measures memory per idle keep-alive
# connection of both servers with bench/http-idle-memory.py
# (IDLE_CONNECTIONS, default 10000; 0 skips it).
#
# Usage: bench/http-throughput.sh [RUNS] [SECONDS]
# Environment: KINEMA_THREADS (default: all cores), KINEMA_RUNTIME
# (per-core | multi, default per-core).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
seconds=${2:-5}
for tool in nginx wrk cargo; do
    command -v "$tool" >/dev/null || { echo "http-throughput: $tool is required" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/kinema-http-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet -p kinema-http --example static_server
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
server_bin="$target_dir/release/examples/static_server"

mkdir -p "$work/www" "$work/nginx/logs"
# nginx's workers run unprivileged: they must be able to read the files.
chmod 755 "$work" "$work/www"
head -c 1572864 /dev/urandom >"$work/www/segment.m4s"
{
    printf '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n'
    printf '#EXT-X-MAP:URI="init.mp4"\n'
    for i in $(seq 1 22); do printf '#EXTINF:4.000,\n%d.m4s\n' "$i"; done
    printf '#EXT-X-ENDLIST\n'
} >"$work/www/playlist.m3u8"
echo "bodies: segment $(stat -c %s "$work/www/segment.m4s") B, playlist $(stat -c %s "$work/www/playlist.m3u8") B" >&2

nginx_port=18480
kinema_port=18481
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile $(ulimit -Hn);
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
    }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
pids+=("$nginx_pid")
"$server_bin" --dir "$work/www" --listen "127.0.0.1:$kinema_port" \
    ${KINEMA_THREADS:+--threads "$KINEMA_THREADS"} ${KINEMA_RUNTIME:+--runtime "$KINEMA_RUNTIME"} &
kinema_pid=$!
pids+=("$kinema_pid")

wait_ready() {
    local deadline=$((SECONDS + 20))
    until curl -sf -o /dev/null "http://127.0.0.1:$1/playlist.m3u8"; do
        [ $SECONDS -lt $deadline ] || { echo "http-throughput: nothing listening on port $1" >&2; exit 1; }
        sleep 0.1
    done
}
wait_ready "$nginx_port"
wait_ready "$kinema_port"

# Both must serve the same bytes before speed means anything.
for body in segment.m4s playlist.m3u8; do
    cmp <(curl -s "http://127.0.0.1:$nginx_port/$body") <(curl -s "http://127.0.0.1:$kinema_port/$body") \
        || { echo "http-throughput: the servers disagree on $body" >&2; exit 1; }
done

# Requests/s of one wrk run.
measure() {
    wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$1/$2" \
        | awk '/Requests\/sec/ { print $2 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-9s %14s %14s %14s %14s %7s\n' body "nginx req/s" "kinema req/s" "nginx MB/s" "kinema MB/s" ratio
for body in segment.m4s playlist.m3u8; do
    size=$(stat -c %s "$work/www/$body")
    nginx_runs=()
    kinema_runs=()
    # Warm both (page cache, open_file_cache, TCP buffers) before measuring.
    wrk -t1 -c64 -d1s "http://127.0.0.1:$nginx_port/$body" >/dev/null
    wrk -t1 -c64 -d1s "http://127.0.0.1:$kinema_port/$body" >/dev/null
    for run in $(seq 1 "$runs"); do
        # Alternate which server goes first, so drift hits both alike.
        if [ $((run % 2)) -eq 1 ]; then
            nginx_runs+=("$(measure $nginx_port "$body")")
            kinema_runs+=("$(measure $kinema_port "$body")")
        else
            kinema_runs+=("$(measure $kinema_port "$body")")
            nginx_runs+=("$(measure $nginx_port "$body")")
        fi
        echo "  run $run $body: nginx ${nginx_runs[-1]} req/s, kinema ${kinema_runs[-1]} req/s" >&2
    done
    nginx_median=$(printf '%s\n' "${nginx_runs[@]}" | median)
    kinema_median=$(printf '%s\n' "${kinema_runs[@]}" | median)
    awk -v b="${body%%.*}" -v n="$nginx_median" -v k="$kinema_median" -v s="$size" 'BEGIN {
        printf "%-9s %14.0f %14.0f %14.0f %14.0f %6.2fx\n", b, n, k, n * s / 1e6, k * s / 1e6, k / n
    }'
done

idle=${IDLE_CONNECTIONS:-10000}
if [ "$idle" -gt 0 ]; then
    python3 bench/http-idle-memory.py --port "$nginx_port" --pid "$nginx_pid" -n "$idle" --label nginx
    python3 bench/http-idle-memory.py --port "$kinema_port" --pid "$kinema_pid" -n "$idle" --label kinema
fi
