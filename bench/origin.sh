#!/usr/bin/env bash
# Side-by-side benchmark of `kinema serve` against nginx on the same library
# (issue 2). Not a test: it prints figures and ratios, it asserts nothing.
#
#   bench/origin.sh [RUNS] [DURATION]      (defaults: 3 runs of 5s each)
#   SKIP_BUILD=1 bench/origin.sh           (reuse target/release/kinema)
#
# 1. builds kinema in release mode;
# 2. makes (once, cached in target/bench-origin-library) a library with one
#    80 s video: 360p and 720p renditions cut into 4 s CMAF segments (the
#    720p ones about 1.5 MB), HLS playlists (~600 B media playlists), an MPD;
# 3. starts kinema (access log off) and nginx (sendfile on, tcp_nopush,
#    open_file_cache, access_log off, worker_processes auto) on that library;
# 4. with wrk -t1 -c64, alternating the two servers, RUNS runs each, measures
#    (1) one 1.5 MB segment, (2) one media playlist, (3) a realistic mix
#    (bench/mix.lua: master, media playlists, every init and segment);
# 5. measures memory per idle keep-alive connection on fresh servers: opens
#    10,000 connections, sends one request on each, and divides the growth of
#    the servers' resident memory (nginx: master + workers) by 10,000
#    (bench/http-idle-memory.py when present, else an equivalent below);
# 6. prints medians and the ratio kinema/nginx (higher is better for
#    throughput, lower for memory).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-5s}
CONNECTIONS=64
IDLE_CONNECTIONS=10000

command -v nginx >/dev/null || { echo "origin.sh: nginx is required (apt-get install nginx)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "origin.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "origin.sh: ffmpeg is required" >&2; exit 1; }

if [ -z "${SKIP_BUILD:-}" ]; then
    echo "== building kinema (release; SKIP_BUILD=1 reuses the last build)" >&2
    cargo build --release -p kinema >&2
fi
KINEMA=$PWD/target/release/kinema

LIBRARY=$PWD/target/bench-origin-library
VIDEO=bench
SEGMENTS=20
# Published as generation 1 of the video (manifest format 2): its files in
# videos/$VIDEO/g1/, the current manifest beside them, written last.
GENERATION=1
if ! grep -qs '"format_version": 2' "$LIBRARY/videos/$VIDEO/manifest.json"; then
    echo "== making the benchmark library (80 s, 360p + 720p, 4 s segments)" >&2
    rm -rf "$LIBRARY"
    work=$(mktemp -d)
    mkdir -p "$work/v360" "$work/v720" "$work/thumbs"
    # Constant bit rate so every 720p segment is close to 1.5 MB (3 Mb/s x 4 s).
    for spec in "v360 640x360 800k" "v720 1280x720 3000k"; do
        set -- $spec
        (cd "$work/$1" && ffmpeg -hide_banner -loglevel error \
            -f lavfi -i "testsrc2=size=$2:rate=25" -t $((SEGMENTS * 4)) \
            -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
            -b:v "$3" -minrate "$3" -maxrate "$3" -bufsize "$3" -x264-params nal-hrd=cbr \
            -g 100 -keyint_min 100 -sc_threshold 0 \
            -f dash -seg_duration 4 -use_template 1 -use_timeline 0 \
            -init_seg_name init.mp4 -media_seg_name '$Number$.m4s' stream.mpd)
        rm -f "$work/$1/stream.mpd"
        {
            printf '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:4\n'
            printf '#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI="init.mp4"\n'
            for n in $(seq 1 "$SEGMENTS"); do printf '#EXTINF:4.000,\n%d.m4s\n' "$n"; done
            printf '#EXT-X-ENDLIST\n'
        } > "$work/$1/index.m3u8"
    done
    printf '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,CODECS="avc1.42c01e"\ng1/v360/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,CODECS="avc1.42c01f"\ng1/v720/index.m3u8\n' > "$work/master.m3u8"
    ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720 -frames:v 1 "$work/thumbs/poster.jpg"
    mkdir -p "$LIBRARY/videos" "$LIBRARY/staging" "$LIBRARY/trash"
    # The manifest (format 1) lists every file with its size and SHA-256,
    # written last, exactly as a publish does.
    python3 - "$work" "$VIDEO" "$SEGMENTS" <<'EOF'
import hashlib, json, os, sys, time
root, video, segments = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = []
for directory, _, names in os.walk(root):
    for name in sorted(names):
        path = os.path.join(directory, name)
        data = open(path, "rb").read()
        files.append({"path": os.path.relpath(path, root), "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
files.sort(key=lambda f: f["path"])
rendition = lambda rid, w, h, rate: {"id": rid, "kind": "video", "codecs": "avc1.42c01f",
    "width": w, "height": h, "frame_rate": 25.0, "bitrate": rate, "peak_bitrate": rate,
    "segments": segments}
manifest = {"format_version": 2, "id": video, "generation": 1, "title": "Benchmark", "duration_seconds": segments * 4.0,
    "segment_duration_seconds": 4.0, "published_at_unix": int(time.time()), "access": "public",
    "renditions": [rendition("v360", 640, 360, 800000), rendition("v720", 1280, 720, 3000000)],
    "files": files}
json.dump(manifest, open(os.path.join(root, "manifest.json"), "w"), indent=2)
EOF
    # mktemp made the directory private; nginx's workers run as nobody.
    chmod -R a+rX "$work"
    mkdir -p "$LIBRARY/videos/$VIDEO"
    mv "$work" "$LIBRARY/videos/$VIDEO/g$GENERATION"
    cp "$LIBRARY/videos/$VIDEO/g$GENERATION/manifest.json" "$LIBRARY/videos/$VIDEO/manifest.json"
fi
SEGMENT_PATH=/v/$VIDEO/g$GENERATION/v720/3.m4s
PLAYLIST_PATH=/v/$VIDEO/g$GENERATION/v360/index.m3u8
echo "== segment $(stat -c %s "$LIBRARY/videos/$VIDEO/g$GENERATION/v720/3.m4s") B, playlist $(stat -c %s "$LIBRARY/videos/$VIDEO/g$GENERATION/v360/index.m3u8") B" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KINEMA_PORT=$(free_port)
NGINX_PORT=$(free_port)
RUN_DIR=$(mktemp -d)
KINEMA_PID=
NGINX_PID=
cleanup() {
    [ -n "$KINEMA_PID" ] && kill "$KINEMA_PID" 2>/dev/null && wait "$KINEMA_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT

cat > "$RUN_DIR/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 65536;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx-error.log warn;
events { worker_connections 32768; }
http {
    types {
        application/vnd.apple.mpegurl m3u8;
        application/dash+xml mpd;
        video/mp4 mp4;
        video/iso.segment m4s;
        image/jpeg jpg;
    }
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $RUN_DIR/body;
    proxy_temp_path $RUN_DIR/proxy;
    fastcgi_temp_path $RUN_DIR/fastcgi;
    uwsgi_temp_path $RUN_DIR/uwsgi;
    scgi_temp_path $RUN_DIR/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        # A player's paths: the multivariant playlist at the video's stable
        # URL, everything else in its generation's directory.
        location = /v/$VIDEO/master.m3u8 {
            alias $LIBRARY/videos/$VIDEO/g$GENERATION/master.m3u8;
            add_header Access-Control-Allow-Origin *;
        }
        location /v/ {
            alias $LIBRARY/videos/;
            add_header Access-Control-Allow-Origin *;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }
    }
}
EOF

wait_ready() {
    local url=$1 deadline=$((SECONDS + 20))
    until curl -fs -o /dev/null "$url"; do
        [ $SECONDS -lt $deadline ] || { echo "origin.sh: $url did not come up" >&2; exit 1; }
        sleep 0.1
    done
}

start_kinema() {
    ulimit -n 65536 2>/dev/null || true
    "$KINEMA" serve --library "$LIBRARY" --listen "127.0.0.1:$KINEMA_PORT" \
        --access-log false --web-root "$RUN_DIR/no-ui" --log warn &
    KINEMA_PID=$!
    wait_ready "http://127.0.0.1:$KINEMA_PORT$PLAYLIST_PATH"
}
start_nginx() {
    nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" &
    NGINX_PID=$!
    wait_ready "http://127.0.0.1:$NGINX_PORT$PLAYLIST_PATH"
}
stop_servers() {
    kill "$KINEMA_PID" "$NGINX_PID" 2>/dev/null || true
    wait "$KINEMA_PID" "$NGINX_PID" 2>/dev/null || true
    KINEMA_PID= NGINX_PID=
}

# Prints "REQUESTS_PER_SECOND BYTES_PER_SECOND" for one wrk run; arguments
# after the URL go to bench/mix.lua when given.
measure() {
    local url=$1; shift
    local script=()
    [ $# -gt 0 ] && script=(-s bench/mix.lua "$url" --)
    [ $# -gt 0 ] || script=("$url")
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${script[@]}" "$@" | awk '
        /Requests\/sec:/ { rps = $2 }
        /Transfer\/sec:/ {
            value = $2; unit = value; sub(/[0-9.]+/, "", unit); sub(/[A-Za-z]+/, "", value)
            factor = (unit == "GB") ? 1073741824 : (unit == "MB") ? 1048576 : (unit == "KB") ? 1024 : 1
            bps = value * factor
        }
        /Non-2xx/ { errors = $NF }
        END { if (errors > 0) print "origin.sh: wrk saw non-2xx responses: " errors > "/dev/stderr"; printf "%.0f %.0f\n", rps, bps }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_kinema
start_nginx
# Warm both: kinema's memory cache and nginx's page-cache/open-file cache.
wrk -t1 -c8 -d2s -s bench/mix.lua "http://127.0.0.1:$KINEMA_PORT" -- "$VIDEO" "g$GENERATION/v360:$SEGMENTS" "g$GENERATION/v720:$SEGMENTS" >/dev/null
wrk -t1 -c8 -d2s -s bench/mix.lua "http://127.0.0.1:$NGINX_PORT" -- "$VIDEO" "g$GENERATION/v360:$SEGMENTS" "g$GENERATION/v720:$SEGMENTS" >/dev/null

declare -A RPS BPS
for scenario in segment playlist mix; do
    for run in $(seq 1 "$RUNS"); do
        for server in kinema nginx; do
            port=$KINEMA_PORT; [ "$server" = nginx ] && port=$NGINX_PORT
            case $scenario in
                segment) result=$(measure "http://127.0.0.1:$port$SEGMENT_PATH") ;;
                playlist) result=$(measure "http://127.0.0.1:$port$PLAYLIST_PATH") ;;
                mix) result=$(measure "http://127.0.0.1:$port" "$VIDEO" "g$GENERATION/v360:$SEGMENTS" "g$GENERATION/v720:$SEGMENTS") ;;
            esac
            read -r rps bps <<<"$result"
            RPS[$scenario.$server]+="$rps "
            BPS[$scenario.$server]+="$bps "
            echo "   $scenario run $run $server: $rps req/s, $((bps / 1048576)) MiB/s" >&2
        done
    done
done
stop_servers

idle_memory() {
    # Prints the bytes of resident memory per idle connection of the
    # processes PIDS (comma-separated) when N connections to PORT idle.
    local port=$1 pids=$2
    if [ -f bench/http-idle-memory.py ]; then
        # The connection layer's tool; it counts the children of the pid
        # (nginx's workers) and prints "... N B per connection".
        python3 bench/http-idle-memory.py --port "$port" --pid "${pids%%,*}" \
            -n "$IDLE_CONNECTIONS" --path "$PLAYLIST_PATH" --label "$port" \
            | tee /dev/stderr | sed -n 's/.* \([0-9]*\) B per connection.*/\1/p'
        return
    fi
    python3 - "$port" "$pids" "$IDLE_CONNECTIONS" "$PLAYLIST_PATH" <<'EOF'
import resource, selectors, socket, sys, time
port, pids, count, path = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 1024, count + 1024))
def rss():
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total
request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
def open_idle(n):
    sockets = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        sockets.append(s)
    # Read each whole response (headers + Content-Length body), so the
    # connection is idle in keep-alive when memory is measured.
    for s in sockets:
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
        while len(body) < length:
            body += s.recv(65536)
    return sockets
warm = open_idle(200)
for s in warm:
    s.close()
time.sleep(0.5)
before = rss()
sockets = open_idle(count)
time.sleep(1.0)
after = rss()
print(max(0, after - before) / count)
EOF
}

start_kinema
KINEMA_IDLE=$(idle_memory "$KINEMA_PORT" "$KINEMA_PID")
stop_servers
start_nginx
# The master first (http-idle-memory.py adds its workers itself).
NGINX_PIDS="$NGINX_PID,$(pgrep -d, -P "$NGINX_PID")"
NGINX_IDLE=$(idle_memory "$NGINX_PORT" "$NGINX_PIDS")
stop_servers

printf '\n%s; load average before: %s\n' "$(nproc) cores" "$LOAD_BEFORE"
printf 'kinema vs nginx 1.22, wrk -t1 -c%s -d%s, %s runs each, alternating; medians\n' "$CONNECTIONS" "$DURATION" "$RUNS"
printf '%-34s %14s %14s %8s\n' scenario kinema nginx ratio
for scenario in segment playlist mix; do
    k=$(echo "${RPS[$scenario.kinema]}" | tr ' ' '\n' | grep . | median)
    n=$(echo "${RPS[$scenario.nginx]}" | tr ' ' '\n' | grep . | median)
    kb=$(echo "${BPS[$scenario.kinema]}" | tr ' ' '\n' | grep . | median)
    nb=$(echo "${BPS[$scenario.nginx]}" | tr ' ' '\n' | grep . | median)
    case $scenario in
        segment) label="(1) 1.5 MB segment, req/s" ;;
        playlist) label="(2) media playlist, req/s" ;;
        mix) label="(3) mix (bench/mix.lua), req/s" ;;
    esac
    printf '%-34s %14.0f %14.0f %7.2fx\n' "$label" "$k" "$n" "$(echo "$k / $n" | bc -l)"
    printf '%-34s %14.0f %14.0f\n' "    MiB/s" "$(echo "$kb / 1048576" | bc -l)" "$(echo "$nb / 1048576" | bc -l)"
done
printf '%-34s %14.0f %14.0f %7.2fx  (lower is better)\n' "(4) bytes per idle connection" "$KINEMA_IDLE" "$NGINX_IDLE" "$(echo "$KINEMA_IDLE / ($NGINX_IDLE + 0.000001)" | bc -l)"
