#!/usr/bin/env bash
# What a library in S3 costs in S3 requests: a 1,000-video library (each a
# small synthetic video from `kinema bench library`) in a real S3 server
# (s3s-fs, whose debug log names every request's operation), served by
# `kinema serve`, counted
#
# 1. while the server starts,
# 2. at rest for REST seconds (no viewer): the catalogue's own upkeep,
# 3. with one viewer playing one video for REST seconds,
#
# and printed per operation and per minute. Not a test; it asserts nothing.
#
# Usage: bench/s3-catalog.sh
# Knobs (environment):
#   VIDEOS=1000        videos in the library
#   REST=120           seconds of each counted window
#   KINEMA_BIN=path    use this kinema binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

VIDEOS=${VIDEOS:-1000}
REST=${REST:-120}
for tool in s3s-fs curl; do
    command -v "$tool" >/dev/null || { echo "s3-catalog.sh: $tool is required (s3s-fs: scripts/test installs it)" >&2; exit 1; }
done
if [ -n "${KINEMA_BIN:-}" ]; then
    BIN=$KINEMA_BIN
else
    cargo build --release --locked -p kinema >&2
    BIN=$PWD/target/release/kinema
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/kinema-s3-catalog.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

S3_PORT=$(free_port)
mkdir -p "$WORK/s3/bench"
RUST_LOG=s3s=debug s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench-key \
    --secret-key bench-secret "$WORK/s3" >"$WORK/s3.log" 2>&1 &
PIDS+=($!)
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret
export KINEMA_S3_ENDPOINT=http://127.0.0.1:$S3_PORT KINEMA_S3_REGION=us-east-1
sleep 0.5

echo "== publishing $VIDEOS videos (one 0.3 Mbit/s rung, one 4 s segment each)" >&2
seq -f 'video-%04g' 1 "$VIDEOS" | xargs -P 4 -I{} "$BIN" bench library --log warn \
    --library s3://bench/lib --id {} --bitrates 0.3mbit --segments 1 >/dev/null

# Operations s3s-fs resolved since line $1 of its log, one "count op" per
# line.
operations_since() {
    tail -n +"$(($1 + 1))" "$WORK/s3.log" | { grep -o 'resolved route, op: [A-Za-z0-9]*' || true; } | awk '{print $NF}' | sort | uniq -c
}
lines() { wc -l <"$WORK/s3.log"; }
report() {
    local title=$1 since=$2 seconds=$3 counts total
    counts=$(operations_since "$since")
    total=$(echo "$counts" | awk '{s += $1} END {print s + 0}')
    echo "$title: $total requests$( [ "$seconds" = 0 ] || awk -v t="$total" -v s="$seconds" 'BEGIN { printf ", %.1f per minute", t * 60 / s }')"
    [ -z "$counts" ] || echo "$counts" | sed 's/^/    /'
}

PORT=$(free_port)
mark=$(lines)
"$BIN" serve --library s3://bench/lib --disk-cache "$WORK/disk-cache" --listen "127.0.0.1:$PORT" \
    --access-log false --web-root "$WORK/no-ui" --log warn >"$WORK/kinema.log" 2>&1 &
PIDS+=($!)
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; do sleep 0.1; done
sleep 2
echo
report "start of kinema serve over $VIDEOS videos" "$mark" 0

mark=$(lines)
sleep "$REST"
report "at rest, ${REST} s" "$mark" "$REST"

mark=$(lines)
"$BIN" bench "http://127.0.0.1:$PORT/v/video-0001/master.m3u8" --viewers 1 \
    --duration "${REST}s" --progress false >/dev/null
report "one viewer of one video, ${REST} s" "$mark" "$REST"
