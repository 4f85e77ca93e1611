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
# depends on the server. The library is synthetic (bench/viewer-servers.sh).
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
# shellcheck source=bench/viewer-servers.sh
. bench/viewer-servers.sh
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
make_library

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
