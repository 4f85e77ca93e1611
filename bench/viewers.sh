#!/usr/bin/env bash
# Capacity in viewers: how many paced 3 Mbit/s viewers (4 s segments) kinema
# serve carries with no stall and p99 segment download time under half a
# segment (2 s), against nginx serving the same library, measured with the
# same instrument (`kinema bench capacity`), alternating the two servers.
#
# Both servers are pinned to CPU 0 (nginx with one worker; kinema's runtime
# sizes itself to the one CPU it may use); the load client is pinned to CPU 1
# on a single-threaded runtime, so the client never competes with the server
# it measures. That one client core is what gives out first, at 8,000–9,000
# viewers against nginx and about 12,000 against kinema (its CPU is printed
# with every trial): how much of the sending lands on the receiver's core
# depends on the server. The library is synthetic: playlists and segment files of the exact sizes a 0.3–6 Mbit/s ladder implies (the
# client counts bytes, it does not decode), made by `kinema bench library`.
#
# Usage: bench/viewers.sh
# Knobs (environment):
#   ROUNDS=2           alternating rounds (kinema, nginx) per run
#   TRIAL=30s          length of each capacity trial, ramp included
#   RAMP=10s           ramp of each trial
#   START=200          viewers in the first trial (doubled while passing)
#   PRECISION=0.1      stop bisecting at this relative bracket width
#   BUFFER=12s         viewers' buffer target (3 segments)
#   MAX=20000          never try more viewers than this
#   KINEMA_BIN=path    use this kinema binary instead of building one
# Prints each search's trials, then the capacities, their medians and the
# ratio kinema / nginx (target: ≥ 1.2).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
TRIAL=${TRIAL:-30s}
RAMP=${RAMP:-10s}
START=${START:-200}
PRECISION=${PRECISION:-0.1}
BUFFER=${BUFFER:-12s}
MAX=${MAX:-20000}
KINEMA_PORT=${KINEMA_PORT:-28461}
NGINX_PORT=${NGINX_PORT:-28462}

for tool in nginx taskset; do
    command -v "$tool" >/dev/null || { echo "viewers.sh: $tool is required" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "viewers.sh: needs 2 CPUs (server on one, client on the other)" >&2
    exit 1
fi
# The client asks for 512 KiB receive buffers; a lower net.core.rmem_max
# caps them, and the client's core then becomes the limit sooner.
if [ "$(cat /proc/sys/net/core/rmem_max)" -lt 524288 ]; then
    echo "viewers.sh: net.core.rmem_max is $(cat /proc/sys/net/core/rmem_max) (< 524288): the load client's receive buffers will be smaller than intended" >&2
fi
# Each viewer holds one connection; both ends are in this process tree.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -n "${KINEMA_BIN:-}" ]; then
    BIN=$KINEMA_BIN    # a prebuilt binary, e.g. while the tree is mid-edit
else
    cargo build --release --locked -p kinema
    BIN=$PWD/target/release/kinema
fi

WORK=$(mktemp -d /tmp/kinema-viewers.XXXXXX)
# nginx's workers run as an unprivileged user and must read the library.
chmod 755 "$WORK"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" bench library --library "$WORK/library" --id synthetic \
    --bitrates 0.3mbit,0.8mbit,1.5mbit,3mbit,6mbit --segment 4s --segments 15

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 30000; }
http {
    sendfile on;
    tcp_nopush on;
    open_file_cache max=10000 inactive=60s;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp4 mp4;
        video/iso.segment m4s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location /v/ { alias $WORK/library/videos/; }
    }
}
EOF

# Polls until the URL answers 200, for at most 10 s.
wait_ready() {
    local url=$1 deadline=$((SECONDS + 10))
    until curl -sf -o /dev/null "$url"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "viewers.sh: $url never became ready ($(curl -s -o /dev/null -w '%{http_code}' "$url"))" >&2
            tail -5 "$WORK/nginx/error.log" 2>/dev/null >&2 || true
            exit 1
        fi
        sleep 0.1
    done
}

# Refuses a port something already listens on: the search would measure
# that server instead.
check_free() {
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; then
        echo "viewers.sh: port $1 is in use; set KINEMA_PORT / NGINX_PORT" >&2
        exit 1
    fi
}

start_server() {
    case $1 in
    kinema) check_free "$KINEMA_PORT" ;;
    nginx) check_free "$NGINX_PORT" ;;
    esac
    case $1 in
    kinema)
        KINEMA_LOG=warn taskset -c 0 "$BIN" serve --library "$WORK/library" \
            --listen "127.0.0.1:$KINEMA_PORT" --access-log false &
        SERVER_PID=$!
        URL="http://127.0.0.1:$KINEMA_PORT/v/synthetic/master.m3u8"
        ;;
    nginx)
        taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
        SERVER_PID=$!
        URL="http://127.0.0.1:$NGINX_PORT/v/synthetic/master.m3u8"
        ;;
    esac
    wait_ready "$URL"
}

stop_server() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
    for server in kinema nginx; do
        start_server "$server"
        echo "== round $round: $server ($URL)"
        taskset -c 1 "$BIN" bench capacity "$URL" --bitrate 3mbit \
            --start "$START" --max "$MAX" --precision "$PRECISION" \
            --trial-duration "$TRIAL" --ramp "$RAMP" --buffer-target "$BUFFER" \
            --progress false --json "$WORK/$server-$round.json" | tee "$WORK/$server-$round.txt"
        stop_server
        RESULTS[$server]+="$(jq .capacity "$WORK/$server-$round.json") "
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
KINEMA=$(echo "${RESULTS[kinema]}" | median)
NGINX=$(echo "${RESULTS[nginx]}" | median)
echo
echo "capacity at 3 Mbit/s, 4 s segments (viewers with no stall, p99 download < 2 s)"
echo "  kinema: ${RESULTS[kinema]}-> median $KINEMA"
echo "  nginx:  ${RESULTS[nginx]}-> median $NGINX"
awk -v k="$KINEMA" -v n="$NGINX" 'BEGIN { if (n > 0) printf "  ratio kinema/nginx: %.2f (target >= 1.2)\n", k / n; else print "  ratio: nginx carried 0 viewers" }'
