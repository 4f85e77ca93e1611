#!/usr/bin/env bash
# kinema edge against Varnish, both in front of the same nginx origin.
#
#   bench/edge.sh            # release build, then the runs below
#   RUNS=3 DURATION=5s CACHE=1G bench/edge.sh
#   KINEMA=/path/to/kinema bench/edge.sh   # use a prebuilt binary
#   KINEMA_BEFORE=/path/to/older/kinema bench/edge.sh
#                            # also run an older build on the hit path, in
#                            # the same alternation, and print new/old
#
# 1. Hit path: wrk -t1 -c64 on a 1.5 MB segment and a ~600 B playlist, both
#    already cached, alternating Varnish and kinema, RUNS runs each; medians
#    and the ratio kinema/Varnish. The caches run on CPU 0 and wrk and the
#    nginx origin on CPU 1 (as bench/s3.sh runs the origin against nginx),
#    so each cache has one core to itself and wrk never takes its time;
#    PIN=0 leaves every process free to run on either core.
# 2. Flash crowd: 500 concurrent requests (curl --parallel, one connection each) over
#    100 uncached segments; origin requests counted from nginx's access log
#    (target: exactly 1 per segment) and the completion time.
#
# Loopback only; every server is started here and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CACHE=${CACHE:-1G}
ORIGIN_PORT=${ORIGIN_PORT:-18080}
VARNISH_PORT=${VARNISH_PORT:-18081}
KINEMA_PORT=${KINEMA_PORT:-18082}
KINEMA_BEFORE_PORT=${KINEMA_BEFORE_PORT:-18083}

PIN=${PIN:-1}
for tool in nginx varnishd wrk curl bc taskset; do
    command -v "$tool" >/dev/null || { echo "edge.sh: $tool is not installed (scripts/install-deps)" >&2; exit 1; }
done

# KINEMA=path/to/kinema skips the build (e.g. a binary built elsewhere).
if [ -z "${KINEMA:-}" ]; then
    cargo build --release -p kinema >&2
    KINEMA=target/release/kinema
fi

# on CPU COMMAND...: runs COMMAND on that CPU when pinning, else anywhere.
# Started in the background (`on … &`, a subshell), it replaces that
# subshell, so $! is COMMAND itself and the cleanup's kill reaches it.
on() {
    local cpu=$1
    shift
    local run=("$@")
    [ "$PIN" = 1 ] && run=(taskset -c "$cpu" "$@")
    if [ "$BASHPID" != "$$" ]; then exec "${run[@]}"; else "${run[@]}"; fi
}

WORK=$(mktemp -d /tmp/kinema-edge-bench.XXXXXX)
# nginx workers and varnishd drop privileges: they must read the files.
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The origin's files: one 1.5 MB segment, a media playlist, 100 segments
# for the flash crowd.
mkdir -p "$WORK/www/v/bench/720p" "$WORK/www/flash" "$WORK/nginx"
head -c 1500000 /dev/urandom > "$WORK/www/v/bench/720p/1.m4s"
{
    echo "#EXTM3U"; echo "#EXT-X-VERSION:7"; echo "#EXT-X-TARGETDURATION:4"
    echo "#EXT-X-PLAYLIST-TYPE:VOD"; echo '#EXT-X-MAP:URI="init.mp4"'
    for i in $(seq 1 15); do echo "#EXTINF:4.000,"; echo "$i.m4s"; done
    echo "#EXT-X-ENDLIST"
} > "$WORK/www/v/bench/720p/index.m3u8"
for i in $(seq 1 100); do head -c 200000 /dev/urandom > "$WORK/www/flash/$i.m4s"; done

cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/access.log;
    sendfile on;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $WORK/www;
        location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
        location = /healthz { return 200 "ok\n"; }
    }
}
CONF
on 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)

sed "s/ORIGIN_PORT/$ORIGIN_PORT/" bench/varnish.vcl > "$WORK/varnish.vcl"
on 0 varnishd -F -a "127.0.0.1:$VARNISH_PORT" -f "$WORK/varnish.vcl" -s "malloc,$CACHE" \
    -n "$WORK/varnish" -p thread_pool_min=64 >"$WORK/varnish.log" 2>&1 &
PIDS+=($!)

on 0 "$KINEMA" --log warn edge --origin "http://127.0.0.1:$ORIGIN_PORT" \
    --listen "127.0.0.1:$KINEMA_PORT" --cache-memory "${CACHE}iB" --prefetch-segments 0 \
    >"$WORK/kinema.log" 2>&1 &
PIDS+=($!)
# The hit path's contestants, by port; the flash crowd is Varnish's and
# kinema's only.
declare -A PORT=([varnish]=$VARNISH_PORT [kinema]=$KINEMA_PORT)
CONTESTANTS=(varnish kinema)
if [ -n "${KINEMA_BEFORE:-}" ]; then
    on 0 "$KINEMA_BEFORE" --log warn edge --origin "http://127.0.0.1:$ORIGIN_PORT" \
        --listen "127.0.0.1:$KINEMA_BEFORE_PORT" --cache-memory "${CACHE}iB" --prefetch-segments 0 \
        >"$WORK/kinema-before.log" 2>&1 &
    PIDS+=($!)
    PORT[kinema-before]=$KINEMA_BEFORE_PORT
    CONTESTANTS+=(kinema-before)
fi

wait_ready() {
    local deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        (( SECONDS < deadline )) || { echo "edge.sh: $1 never answered" >&2; exit 1; }
        sleep 0.1
    done
}
wait_ready "http://127.0.0.1:$ORIGIN_PORT/healthz"
for name in "${CONTESTANTS[@]}"; do
    wait_ready "http://127.0.0.1:${PORT[$name]}/v/bench/720p/index.m3u8"
done
for port in "${PORT[@]}"; do
    for path in /v/bench/720p/1.m4s /v/bench/720p/index.m3u8; do
        curl -fsS -o /dev/null "http://127.0.0.1:$port$path"
        curl -fsS -o /dev/null "http://127.0.0.1:$port$path"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Requests per second of one wrk run.
rps() { on 1 wrk -t1 -c64 -d"$DURATION" "$1" | awk '/^Requests\/sec/ {print $2}'; }

echo "== hit path: wrk -t1 -c64 -d$DURATION, $RUNS runs each, alternating, PIN=$PIN =="
for item in "segment /v/bench/720p/1.m4s 1500000" "playlist /v/bench/720p/index.m3u8 0"; do
    set -- $item
    name=$1 path=$2 bytes=$3
    for contestant in "${CONTESTANTS[@]}"; do : > "$WORK/$contestant.$name"; done
    for _ in $(seq "$RUNS"); do
        for contestant in "${CONTESTANTS[@]}"; do
            rps "http://127.0.0.1:${PORT[$contestant]}$path" >> "$WORK/$contestant.$name"
        done
    done
    v=$(median < "$WORK/varnish.$name"); k=$(median < "$WORK/kinema.$name")
    printf '%-8s varnish %10.0f req/s   kinema %10.0f req/s   kinema/varnish %.2f' "$name" "$v" "$k" "$(echo "$k / $v" | bc -l)"
    if [ "$bytes" -gt 0 ]; then
        printf '   (%.2f vs %.2f GB/s)' "$(echo "$v * $bytes / 1000000000" | bc -l)" "$(echo "$k * $bytes / 1000000000" | bc -l)"
    fi
    echo
    echo "         runs: varnish $(tr '\n' ' ' < "$WORK/varnish.$name")| kinema $(tr '\n' ' ' < "$WORK/kinema.$name")"
    if [ -n "${KINEMA_BEFORE:-}" ]; then
        b=$(median < "$WORK/kinema-before.$name")
        printf '         kinema-before %10.0f req/s   kinema/kinema-before %.3f   runs: %s\n' \
            "$b" "$(echo "$k / $b" | bc -l)" "$(tr '\n' ' ' < "$WORK/kinema-before.$name")"
    fi
done

echo "== flash crowd: 500 concurrent requests over 100 uncached segments =="
for server in varnish kinema; do
    port=$VARNISH_PORT; [ "$server" = kinema ] && port=$KINEMA_PORT
    : > "$WORK/crowd.$server"
    for round in 1 2 3 4 5; do
        for i in $(seq 1 100); do
            printf 'url = "http://127.0.0.1:%s/flash/%s.m4s?crowd=%s"\noutput = /dev/null\n' "$port" "$i" "$server" >> "$WORK/crowd.$server"
        done
    done
    before=$(grep -c "crowd=$server" "$WORK/nginx/access.log" || true)
    start=$(date +%s%N)
    codes=$(curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 500 -w '%{http_code}\n' --config "$WORK/crowd.$server")
    elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    after=$(grep -c "crowd=$server" "$WORK/nginx/access.log" || true)
    ok=$(echo "$codes" | grep -c '^200$' || true)
    printf '%-8s origin requests %3d for 100 objects   200s %s/500   completed in %d ms\n' \
        "$server" "$((after - before))" "$ok" "$elapsed_ms"
done
