#!/usr/bin/env bash
# Side-by-side TLS benchmark of `kinema serve` (rustls) against nginx with
# OpenSSL (issue 5). Not a test: it prints figures and ratios, it asserts
# nothing.
#
#   bench/tls.sh [RUNS] [DURATION]      (defaults: 3 runs of 5s each)
#
# 1. builds kinema in release mode;
# 2. makes (once, cached in target/bench-tls-library) a library with one
#    video whose segment is 1.5 MB and whose master playlist is ~150 B;
# 3. makes one ECDSA P-256 certificate and serves it from both servers,
#    TLS 1.3, session tickets on, HTTP/1.1 (what wrk speaks);
# 4. with wrk, alternating the two servers, RUNS runs each, measures
#    (1) handshakes: one small request per connection (`Connection: close`,
#        wrk does not resume sessions, so each one is a full handshake);
#    (2) bulk: the 1.5 MB segment over 16 keep-alive connections;
# 5. reads each server's CPU time from /proc (nginx: master + workers) around
#    every run, and prints medians of: requests/s, requests per server
#    CPU-second, server CPU-seconds per 1,000 handshakes and per GB, and the
#    ratio kinema/nginx (higher is better except for CPU-seconds).
# Targets (issue 5): >= 1.5x nginx in handshakes per server CPU-second,
# >= 1.0x in bulk throughput. This kernel has no kTLS; neither server uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-5s}

for tool in nginx wrk openssl python3; do
    command -v "$tool" >/dev/null || { echo "tls.sh: $tool is required" >&2; exit 1; }
done

echo "== building kinema (release)" >&2
cargo build --release -p kinema >&2
KINEMA=$PWD/target/release/kinema

LIBRARY=$PWD/target/bench-tls-library
VIDEO=tls
# Published as generation 1 of the video (manifest format 2): its files in
# videos/$VIDEO/g1/, the current manifest beside them, written last.
GENERATION=1
if ! grep -qs '"format_version": 2' "$LIBRARY/videos/$VIDEO/manifest.json"; then
    echo "== making the benchmark library" >&2
    rm -rf "$LIBRARY"
    work=$(mktemp -d)
    mkdir -p "$work/v720"
    # Random bytes: the servers never look inside, and nothing compresses them.
    head -c 1500000 /dev/urandom > "$work/v720/1.m4s"
    head -c 900 /dev/urandom > "$work/v720/init.mp4"
    printf '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:4.000,\n1.m4s\n#EXT-X-ENDLIST\n' > "$work/v720/index.m3u8"
    printf '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,CODECS="avc1.42c01f"\ng1/v720/index.m3u8\n' > "$work/master.m3u8"
    mkdir -p "$LIBRARY/videos" "$LIBRARY/staging" "$LIBRARY/trash"
    python3 - "$work" "$VIDEO" <<'EOF'
import hashlib, json, os, sys, time
root, video = sys.argv[1], sys.argv[2]
files = []
for directory, _, names in os.walk(root):
    for name in sorted(names):
        path = os.path.join(directory, name)
        data = open(path, "rb").read()
        files.append({"path": os.path.relpath(path, root), "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
files.sort(key=lambda f: f["path"])
manifest = {"format_version": 2, "id": video, "generation": 1, "title": "TLS benchmark", "duration_seconds": 4.0,
    "segment_duration_seconds": 4.0, "published_at_unix": int(time.time()), "access": "public",
    "renditions": [{"id": "v720", "kind": "video", "codecs": "avc1.42c01f", "width": 1280,
        "height": 720, "frame_rate": 25.0, "bitrate": 3000000, "peak_bitrate": 3000000,
        "segments": 1}],
    "files": files}
json.dump(manifest, open(os.path.join(root, "manifest.json"), "w"), indent=2)
EOF
    chmod -R a+rX "$work"
    mkdir -p "$LIBRARY/videos/$VIDEO"
    mv "$work" "$LIBRARY/videos/$VIDEO/g$GENERATION"
    cp "$LIBRARY/videos/$VIDEO/g$GENERATION/manifest.json" "$LIBRARY/videos/$VIDEO/manifest.json"
fi
SMALL_PATH=/v/$VIDEO/master.m3u8
BULK_PATH=/v/$VIDEO/g$GENERATION/v720/1.m4s
BULK_BYTES=$(stat -c %s "$LIBRARY/videos/$VIDEO/g$GENERATION/v720/1.m4s")

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

echo "== ECDSA P-256 certificate" >&2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.pem" 2>/dev/null
chmod a+r "$RUN_DIR" "$RUN_DIR"/*.pem

cat > "$RUN_DIR/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=1000 inactive=60s;
    keepalive_requests 100000;
    types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; video/mp4 mp4; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $RUN_DIR/cert.pem;
        ssl_certificate_key $RUN_DIR/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        # A player's paths: the multivariant playlist at the video's stable
        # URL, everything else in its generation's directory.
        location = /v/$VIDEO/master.m3u8 { alias $LIBRARY/videos/$VIDEO/g$GENERATION/master.m3u8; }
        location /v/ { alias $LIBRARY/videos/; }
    }
}
EOF

start_kinema() {
    "$KINEMA" --log warn serve --library "$LIBRARY" --listen "127.0.0.1:$KINEMA_PORT" \
        --tls-cert "$RUN_DIR/cert.pem" --tls-key "$RUN_DIR/key.pem" \
        --access-log false --web-root "$RUN_DIR/no-web" \
        --keys "$RUN_DIR/no-keys.toml" --tokens "$RUN_DIR/no-tokens.toml" 2>"$RUN_DIR/kinema.log" &
    KINEMA_PID=$!
}
start_nginx() {
    nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" &
    NGINX_PID=$!
}
wait_ready() { # port
    for _ in $(seq 1 200); do
        curl -sk -o /dev/null "https://127.0.0.1:$1$SMALL_PATH" && return 0
        sleep 0.05
    done
    echo "tls.sh: server on port $1 did not come up" >&2; cat "$RUN_DIR"/*.log >&2; exit 1
}
start_kinema
start_nginx
wait_ready "$KINEMA_PORT"
wait_ready "$NGINX_PORT"

# CPU seconds (user + system) of a server: kinema's one process, or nginx's
# master and workers.
TICKS=$(getconf CLK_TCK)
cpu_seconds() { # server
    local pids
    if [ "$1" = kinema ]; then pids=$KINEMA_PID; else pids="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; fi
    local total=0
    for pid in $pids; do
        read -r -a fields < "/proc/$pid/stat"
        # Fields 14 and 15 (utime, stime); the command name has no spaces here.
        total=$((total + fields[13] + fields[14]))
    done
    python3 -c "print($total / $TICKS)"
}

# One wrk run; prints "requests seconds cpu_seconds".
measure() { # server scenario
    local port=$KINEMA_PORT
    [ "$1" = nginx ] && port=$NGINX_PORT
    local before after output
    before=$(cpu_seconds "$1")
    if [ "$2" = handshakes ]; then
        output=$(wrk -t1 -c32 -d"$DURATION" -H 'Connection: close' "https://127.0.0.1:$port$SMALL_PATH")
    else
        output=$(wrk -t1 -c16 -d"$DURATION" "https://127.0.0.1:$port$BULK_PATH")
    fi
    after=$(cpu_seconds "$1")
    local requests seconds errors
    requests=$(echo "$output" | awk '/requests in/ {print $1}')
    seconds=$(echo "$output" | awk '/requests in/ {gsub(/s,/, "", $4); print $4}')
    errors=$(echo "$output" | awk '/Non-2xx/ {print $NF}')
    [ -n "$errors" ] && echo "tls.sh: $1 $2: $errors non-2xx responses" >&2
    echo "$requests $seconds $(python3 -c "print($after - $before)")"
}

echo "== warming up" >&2
measure kinema bulk >/dev/null
measure nginx bulk >/dev/null

declare -A RESULTS
for run in $(seq 1 "$RUNS"); do
    for scenario in handshakes bulk; do
        for server in kinema nginx; do
            result=$(measure "$server" "$scenario")
            echo "run $run $scenario $server: requests seconds cpu = $result" >&2
            RESULTS[$scenario.$server]+="$result;"
        done
    done
done

python3 - "$BULK_BYTES" "${RESULTS[handshakes.kinema]}" "${RESULTS[handshakes.nginx]}" \
    "${RESULTS[bulk.kinema]}" "${RESULTS[bulk.nginx]}" <<'EOF'
import statistics, sys
bulk_bytes = int(sys.argv[1])
def runs(text):
    return [tuple(float(x) for x in run.split()) for run in text.split(";") if run.strip()]
hk, hn, bk, bn = (runs(arg) for arg in sys.argv[2:6])
def med(values): return statistics.median(values)
def rate(rs): return med([r / s for r, s, c in rs])
def per_cpu(rs): return med([r / c for r, s, c in rs if c > 0])
print()
print("kinema (rustls) vs nginx + OpenSSL, TLS 1.3, ECDSA P-256, wrk -t1; medians of %d runs" % len(hk))
print("%-44s %12s %12s %8s" % ("", "kinema", "nginx", "ratio"))
rows = [
    ("handshakes/s (1 request per connection)", rate(hk), rate(hn), True),
    ("handshakes per server CPU-second", per_cpu(hk), per_cpu(hn), True),
    ("server CPU-s per 1,000 handshakes", 1000 / per_cpu(hk), 1000 / per_cpu(hn), False),
    ("bulk MB/s (1.5 MB segment, 16 conns)", rate(bk) * bulk_bytes / 1e6, rate(bn) * bulk_bytes / 1e6, True),
    ("bulk MB per server CPU-second", per_cpu(bk) * bulk_bytes / 1e6, per_cpu(bn) * bulk_bytes / 1e6, True),
    ("server CPU-s per GB", 1e9 / (per_cpu(bk) * bulk_bytes), 1e9 / (per_cpu(bn) * bulk_bytes), False),
]
for name, k, n, higher in rows:
    digits = 3 if max(k, n) < 10 else 1
    print("%-44s %12.*f %12.*f %7.2fx%s" % (name, digits, k, digits, n, k / n, "" if higher else " (lower is better)"))
print()
print("targets: handshakes per server CPU-second >= 1.5x; bulk throughput >= 1.0x")
EOF
