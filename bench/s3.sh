#!/usr/bin/env bash
# Serving a library from S3 against serving it from local disk, and against
# the peer a user would build instead: nginx `proxy_cache` in front of the
# same S3 server. Not a test: it prints figures and ratios, it asserts
# nothing.
#
# One synthetic library (`kinema bench library`: playlists and segment
# files of exact sizes for a 0.3–6 Mbit/s ladder) is published twice, into a
# local directory and into a real S3 server (s3s-fs, installed by
# scripts/test). Servers run one at a time on CPU 0 (nginx with one worker);
# the load (wrk, kinema bench) runs on CPU 1. Measured, alternating the
# servers in every round:
#
# 1. cold start: the time to the last byte of the first request of a
#    freshly started server with empty caches, three starts per round
#    (kinema from S3 loads the manifest and the segment from S3 and fills
#    its disk cache; nginx fills its proxy cache; kinema from disk reads
#    the page cache);
# 2. viewer capacity (`kinema bench capacity` at 3 Mbit/s): kinema from S3 /
#    kinema from disk (target ≥ 0.95);
# 3. segment throughput: wrk -t1 -c64 on one 3 Mbit/s segment (1.5 MB) with
#    warm caches, the three servers up at once and measured in turn in
#    many short cycles: kinema from S3 / kinema from disk (target ≥ 0.95)
#    and kinema from S3 / nginx proxy_cache (target ≥ 1.3), each the median
#    of the ratios within a cycle. This machine's loopback throughput
#    drifts by up to 2× from one second to the next, whichever server is
#    measured; a ratio within one cycle of back-to-back runs cancels most
#    of it, a ratio of medians over long runs did not.
#
# Usage: bench/s3.sh
# Knobs (environment):
#   ROUNDS=2            alternating rounds of cold starts and capacity
#   CYCLES=15           cycles of the segment throughput
#   DURATION=2s         length of each wrk run
#   CAPACITY=1          0 skips the capacity searches (the longest part)
#   TRIAL=20s RAMP=8s START=400 PRECISION=0.1 BUFFER=12s MAX=20000
#                       the capacity search (see bench/viewers.sh)
#   KINEMA_BIN=path     use this kinema binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
CYCLES=${CYCLES:-15}
DURATION=${DURATION:-2s}
CAPACITY=${CAPACITY:-1}
TRIAL=${TRIAL:-20s}
RAMP=${RAMP:-8s}
START=${START:-400}
PRECISION=${PRECISION:-0.1}
BUFFER=${BUFFER:-12s}
MAX=${MAX:-20000}

for tool in nginx wrk taskset curl jq s3s-fs; do
    command -v "$tool" >/dev/null || { echo "s3.sh: $tool is required (s3s-fs: scripts/test installs it)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "s3.sh: needs 2 CPUs (server on one, client on the other)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -n "${KINEMA_BIN:-}" ]; then
    BIN=$KINEMA_BIN
else
    cargo build --release --locked -p kinema >&2
    BIN=$PWD/target/release/kinema
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/kinema-s3.XXXXXX)
chmod 755 "$WORK"
PIDS=()
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Polls until URL answers (any status with -a, else 200), for at most 20 s.
wait_ready() {
    local url=$1 fail=-f deadline=$((SECONDS + 20))
    [ "${2:-}" != any ] || fail=
    until curl -s $fail -o /dev/null "$url"; do
        [ $SECONDS -lt $deadline ] || { echo "s3.sh: $url never became ready" >&2; exit 1; }
        sleep 0.1
    done
}

# The S3 server, twice over one directory: with credentials for kinema, and
# without for nginx, which cannot sign requests (a bucket readable without
# credentials is how such a setup is run).
S3_PORT=$(free_port)
S3_ANON_PORT=$(free_port)
mkdir -p "$WORK/s3/bench"
taskset -c 1 s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench-key --secret-key bench-secret "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 &
PIDS+=($!)
taskset -c 1 s3s-fs --host 127.0.0.1 --port "$S3_ANON_PORT" "$WORK/s3" >"$WORK/s3s-fs-anon.log" 2>&1 &
PIDS+=($!)
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret
S3_FLAGS=(--s3-endpoint "http://127.0.0.1:$S3_PORT" --s3-region us-east-1)
sleep 0.5

LADDER=(--id synthetic --bitrates 0.3mbit,0.8mbit,1.5mbit,3mbit,6mbit --segment 4s --segments 15)
"$BIN" bench library --library "$WORK/local" "${LADDER[@]}" >&2
"$BIN" bench library --library s3://bench/lib "${S3_FLAGS[@]}" "${LADDER[@]}" >&2

declare -A PORT
PORT[kinema-disk]=$(free_port)
PORT[kinema-s3]=$(free_port)
PORT[nginx]=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 30000; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=media:64m max_size=20g inactive=1d use_temp_path=off;
    upstream s3 { server 127.0.0.1:$S3_ANON_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:${PORT[nginx]} backlog=4096;
        # /v/{id}/… is videos/{id}/… under the bucket's prefix.
        location /v/ {
            proxy_pass http://s3/bench/lib/videos/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache media;
            proxy_cache_valid 200 1y;
            proxy_cache_lock on;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
        }
    }
}
CONF

# start_server kinema-disk|kinema-s3|nginx [fresh]: one server on CPU 0;
# sets BASE. "fresh" empties the caches that survive a restart.
start_server() {
    case $1 in
        kinema-disk)
            taskset -c 0 "$BIN" serve --library "$WORK/local" --listen "127.0.0.1:${PORT[$1]}" \
                --access-log false --web-root "$WORK/no-ui" --log warn >"$WORK/kinema-disk.log" 2>&1 & ;;
        kinema-s3)
            [ "${2:-}" != fresh ] || rm -rf "$WORK/disk-cache"
            taskset -c 0 "$BIN" serve --library s3://bench/lib "${S3_FLAGS[@]}" \
                --disk-cache "$WORK/disk-cache" --listen "127.0.0.1:${PORT[$1]}" \
                --access-log false --web-root "$WORK/no-ui" --log warn >"$WORK/kinema-s3.log" 2>&1 & ;;
        nginx)
            [ "${2:-}" != fresh ] || rm -rf "$WORK/nginx/cache"
            taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & ;;
    esac
    SERVER_PID=$!
    BASE=http://127.0.0.1:${PORT[$1]}
    # Any answer will do (nginx has no /healthz); nothing of the video is
    # asked for, so its caches stay cold.
    wait_ready "$BASE/healthz" any
}
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# The segment paths of the 3 Mbit/s rung as kinema from S3 publishes them
# (its generation's directory), read from its own playlists.
start_server kinema-s3
wait_ready "$BASE/v/synthetic/master.m3u8"
VARIANT=$(curl -sf "$BASE/v/synthetic/master.m3u8" | grep -v '^#' | grep -m1 3000 || curl -sf "$BASE/v/synthetic/master.m3u8" | grep -v '^#' | sed -n 4p)
MEDIA=$(curl -sf "$BASE/v/synthetic/$VARIANT")
SEGMENTS=()
while read -r line; do SEGMENTS+=("/v/synthetic/$(dirname "$VARIANT")/$line"); done < <(echo "$MEDIA" | grep -v '^#' | grep m4s | head -6)
stop_server
echo "== segment ${SEGMENTS[0]} ($(curl -sf -o /dev/null -w '%{size_download}' "http://127.0.0.1:$S3_ANON_PORT/bench/lib/videos/${SEGMENTS[0]#/v/}") B)" >&2
# kinema from disk publishes its own generation; the same rung and numbers.
segment_on() {
    local server=$1 path=$2
    if [ "$server" = kinema-disk ]; then
        local generation
        generation=$(jq -r .generation "$WORK/local/videos/synthetic/manifest.json")
        echo "$path" | sed -E "s#/g[0-9]+/#/g$generation/#"
    else
        echo "$path"
    fi
}

wrk_rps() {
    taskset -c 1 wrk -t1 -c64 -d"$DURATION" "$1" | awk '
        /Requests\/sec:/ { rps = $2 } /Non-2xx/ { errors = $NF }
        END { if (errors > 0) print "s3.sh: wrk saw non-2xx responses: " errors > "/dev/stderr"; printf "%.0f\n", rps }'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -A RPS CAP COLD
SERVERS=(kinema-disk kinema-s3 nginx)
for round in $(seq 1 "$ROUNDS"); do
    for server in "${SERVERS[@]}"; do
        # Cold start: the first request of a freshly started server with
        # empty caches, three times (one request per start: the next
        # segment's prefetch would make a second one warm).
        times=""
        for path in "${SEGMENTS[@]:1:3}"; do
            start_server "$server" fresh
            url=$BASE$(segment_on "$server" "$path")
            times+="$(curl -sf -o /dev/null -w '%{time_total}' "$url") "
            stop_server
        done
        COLD[$server]+="$(echo "$times" | median) "
        echo "round $round $server: cold first request median $(echo "$times" | median) s" >&2
        if [ "$CAPACITY" = 1 ] && [ "$server" != nginx ]; then
            start_server "$server"
            taskset -c 1 "$BIN" bench capacity "$BASE/v/synthetic/master.m3u8" --bitrate 3mbit \
                --start "$START" --max "$MAX" --precision "$PRECISION" \
                --trial-duration "$TRIAL" --ramp "$RAMP" --buffer-target "$BUFFER" \
                --progress false --json "$WORK/$server-$round.json" >&2
            CAP[$server]+="$(jq .capacity "$WORK/$server-$round.json") "
            stop_server
        fi
    done
done

# Warm segment throughput: the three servers up at once (idle ones cost
# nothing), each measured in turn within a cycle, the order rotating.
declare -A URL
WARM_PIDS=()
for server in "${SERVERS[@]}"; do
    start_server "$server"
    WARM_PIDS+=("$SERVER_PID")
    URL[$server]=$BASE$(segment_on "$server" "${SEGMENTS[0]}")
    curl -sf -o /dev/null "${URL[$server]}"
done
SERVER_PID=
PIDS+=("${WARM_PIDS[@]}")
S3_DISK="" S3_NGINX=""
for cycle in $(seq 1 "$CYCLES"); do
    declare -A NOW=()
    for i in 0 1 2; do
        server=${SERVERS[$(( (cycle + i) % 3 ))]}
        NOW[$server]=$(wrk_rps "${URL[$server]}")
        RPS[$server]+="${NOW[$server]} "
    done
    S3_DISK+="$(awk -v s="${NOW[kinema-s3]}" -v d="${NOW[kinema-disk]}" 'BEGIN {printf "%.3f", s / d}') "
    S3_NGINX+="$(awk -v s="${NOW[kinema-s3]}" -v n="${NOW[nginx]}" 'BEGIN {printf "%.3f", s / n}') "
    echo "cycle $cycle: disk ${NOW[kinema-disk]}, S3 ${NOW[kinema-s3]}, nginx ${NOW[nginx]} req/s" >&2
done

echo
echo "segment (3 Mbit/s rung, 1.5 MB), wrk -t1 -c64 -d$DURATION, $CYCLES cycles, req/s:"
for server in "${SERVERS[@]}"; do echo "  $server: ${RPS[$server]}-> median $(echo "${RPS[$server]}" | median)"; done
echo "  kinema S3 / kinema disk per cycle: ${S3_DISK}-> median $(echo "$S3_DISK" | median) (target >= 0.95)"
echo "  kinema S3 / nginx proxy_cache per cycle: ${S3_NGINX}-> median $(echo "$S3_NGINX" | median) (target >= 1.3)"
echo "cold start, first request of a fresh server with empty caches, seconds (median of 3 per round):"
for server in "${SERVERS[@]}"; do echo "  $server: ${COLD[$server]}"; done
if [ "$CAPACITY" = 1 ]; then
    echo "capacity at 3 Mbit/s (viewers with no stall, p99 download < 2 s):"
    for server in kinema-disk kinema-s3; do echo "  $server: ${CAP[$server]}-> median $(echo "${CAP[$server]}" | median)"; done
    awk -v s="$(echo "${CAP[kinema-s3]}" | median)" -v d="$(echo "${CAP[kinema-disk]}" | median)" 'BEGIN {
        if (d > 0) printf "  kinema S3 / kinema disk: %.3f (target >= 0.95)\n", s / d }'
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
