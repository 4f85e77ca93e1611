#!/usr/bin/env bash
# Overload: what viewers feel when more of them come than the server can
# carry. kinema serve (admission control on, its defaults), kinema serve
# with admission off (--max-load 1) and nginx serve the same synthetic
# library, each confined to a share of one CPU (a cgroup
# CPU quota, so the server, not the load client, is what gives out); the
# load client offers rising numbers of paced 3 Mbit/s viewers (4 s segments,
# 12 s buffer), alternating the servers at every step.
#
# For each offered load it prints, per server: viewers that started playing
# and that never did (kinema refuses session starts with 503 + Retry-After,
# which the viewers wait out and retry; an overloaded nginx lets its accept
# queue overflow, and the viewers' requests fail), HTTP and transport errors
# (refusals are not errors), viewers that stalled, the rebuffering ratio, the
# delivered Mbit/s, and the viewers that played without a single stall.
# The figures that matter are at the highest load: nginx (and kinema
# without admission) let every viewer in, and past capacity most of them
# stall; kinema keeps the ones it admits playing.
#
# Usage: bench/overload.sh
# Knobs (environment):
#   CPU_SHARE=25       the servers' CPU quota, percent of one CPU
#   LOADS="500 1000 2000 4000"   offered viewers, one trial per server each
#   TRIAL=40s          length of each trial, ramp included
#   RAMP=10s           ramp of each trial
#   KINEMA_BIN=path    use this kinema binary instead of building one
# Needs root (a cgroup of its own under the cpu controller, v1 or v2).
set -euo pipefail
cd "$(dirname "$0")/.."

CPU_SHARE=${CPU_SHARE:-25}
LOADS=${LOADS:-500 1000 2000 4000}
TRIAL=${TRIAL:-40s}
RAMP=${RAMP:-10s}
KINEMA_PORT=${KINEMA_PORT:-28471}
NGINX_PORT=${NGINX_PORT:-28472}

for tool in nginx taskset jq curl; do
    command -v "$tool" >/dev/null || { echo "overload.sh: $tool is required" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "overload.sh: needs 2 CPUs (server on one, client on the other)" >&2
    exit 1
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The cgroup that holds the server: cgroup v2 (cpu.max) or v1 (cfs quota).
CGROUP=
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    CGROUP=/sys/fs/cgroup/kinema-overload-$$
    mkdir "$CGROUP"
    echo "$((CPU_SHARE * 1000)) 100000" >"$CGROUP/cpu.max"
elif [ -d /sys/fs/cgroup/cpu ]; then
    CGROUP=/sys/fs/cgroup/cpu/kinema-overload-$$
    mkdir "$CGROUP"
    echo 100000 >"$CGROUP/cpu.cfs_period_us"
    echo "$((CPU_SHARE * 1000))" >"$CGROUP/cpu.cfs_quota_us"
else
    echo "overload.sh: no cgroup cpu controller to confine the servers" >&2
    exit 1
fi

if [ -n "${KINEMA_BIN:-}" ]; then
    BIN=$KINEMA_BIN
else
    cargo build --release --locked -p kinema
    BIN=$PWD/target/release/kinema
fi

WORK=$(mktemp -d /tmp/kinema-overload.XXXXXX)
chmod 755 "$WORK"
# Runs its arguments inside the cgroup (the shell joins it, then execs).
cat >"$WORK/in-cgroup" <<EOF
#!/bin/sh
echo \$\$ >"$CGROUP/cgroup.procs"
exec "\$@"
EOF
chmod +x "$WORK/in-cgroup"
SERVER_WRAP=$WORK/in-cgroup
# shellcheck source=bench/viewer-servers.sh
. bench/viewer-servers.sh
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
    rmdir "$CGROUP" 2>/dev/null || true
}
trap cleanup EXIT
make_library

# One row of the table from a bench JSON report.
row() {
    jq -r --arg server "$1" --arg offered "$2" '.summary as $s |
        [$offered, $server, $s.viewers_admitted, $s.viewers_never_admitted,
         $s.http_errors, $s.viewers_with_stalls, ($s.rebuffering_ratio * 100 | . * 100 | round / 100),
         ($s.mbit_per_second | round), ($s.viewers_admitted - $s.viewers_with_stalls)]
        | @tsv' "$3"
}

echo "servers confined to $CPU_SHARE% of CPU 0; client on CPU 1; 3 Mbit/s viewers, ${TRIAL} trials"
TABLE=$WORK/table.tsv
printf 'offered\tserver\tstarted\tnever_started\terrors\tstalled\trebuffering_%%\tMbit/s\tplayed_without_stall\n' >"$TABLE"
for load in $LOADS; do
    for server in kinema kinema-no-admission nginx; do
        case $server in
        kinema-no-admission) KINEMA_FLAGS="--max-load 1" start_server kinema ;;
        *) start_server "$server" ;;
        esac
        echo "== $load viewers: $server"
        taskset -c 1 "$BIN" bench "$URL" --viewers "$load" --ramp "$RAMP" --duration "$TRIAL" \
            --bitrate 3mbit --buffer-target 12s --progress false \
            --json "$WORK/$server-$load.json" >"$WORK/$server-$load.txt"
        stop_server
        row "$server" "$load" "$WORK/$server-$load.json" >>"$TABLE"
        tail -1 "$TABLE"
    done
done
echo
column -t -s $'\t' "$TABLE"
LAST=${LOADS##* }
K=$(awk -F'\t' -v l="$LAST" '$1 == l && $2 == "kinema" { print $9 }' "$TABLE")
N=$(awk -F'\t' -v l="$LAST" '$1 == l && $2 == "nginx" { print $9 }' "$TABLE")
echo
echo "at $LAST offered viewers, viewers that played without a stall: kinema $K, nginx $N"
awk -v k="$K" -v n="$N" 'BEGIN { if (n > 0) printf "  ratio kinema/nginx: %.2f\n", k / n; else printf "  nginx: none (kinema: %d)\n", k }'
