#!/usr/bin/env bash
# A kinema cluster on loopback, as the README's three-node setup runs it: one
# origin (`kinema serve` over a `kinema bench library` synthetic library) and
# three `kinema edge` nodes on 127.0.0.2, .3 and .4 with one port, all in one
# cluster. Viewers are `kinema bench` viewers: they start at the origin's
# stable URL, follow its 302 and the edges' content steering.
#
#   (a) flash crowd: FLASH_VIEWERS viewers start one new video at once through
#       the cluster; origin requests per object, from the origin's access log
#       (per path) and its /metrics (segments). Target: exactly 1 per object.
#   (b) hit ratio: viewers pick videos of a CATALOGUE by Zipf(ZIPF)
#       (`kinema bench --catalogue --zipf`); after a warm-up run, the byte hit
#       ratio of the cluster (1 - origin bytes / viewer bytes, origin bytes
#       from its /metrics) against the ideal for the edges' total cache size
#       (the Zipf share of the most popular videos that fit). Target: within
#       5 points.
#   (c) scale-out: each edge in a cgroup of its own with the same CPU quota
#       (EDGE_QUOTA of 100 ms; bench/cgroup.sh: v2's `cpu.max`, or v1's cpu
#       controller), removed on exit; `kinema bench capacity` over a uniform
#       catalogue with 1 edge, then with 3, each after a warm-up trial that
#       is not measured. Target: ≥ 2.7×. Each edge's CPU
#       idle and per request is printed with its requests. Skipped with a
#       message where neither cgroup version offers the cpu controller. The origin is not
#       confined; viewers it takes when every edge is overloaded would count
#       for both runs alike. The edges share the machine's cores and kernel
#       with each other, the origin and the viewers: on few cores three
#       edges serving at once each carry less than one alone, even with
#       viewers of their own, which bounds the ratio below 3 whatever
#       placement does (bench/RESULTS.md).
#   (d) failover: FAIL_VIEWERS viewers play through steering; the edge that
#       has sent them the most is SIGKILLed after FAIL_KILL_AFTER; the
#       failover stall per affected viewer (from the failed request to the
#       next segment), viewer errors and stalls, from the bench's JSON.
#
#   (s) load spread: SPREAD_VIEWERS viewers through steering over a Zipf
#       catalogue of SPREAD_CATALOGUE videos; per edge, the viewers whose
#       bytes went mostly to it, the bytes it sent them (the bench's JSON),
#       the master fetches it counted as sessions and the bytes it sent to
#       all clients, other edges filling from it included (its /metrics),
#       each as max/avg over the edges. Target: ≤ 1.25. (b) prints the same.
#
# Usage: bench/cluster.sh [a] [b] [c] [d] [s]  (no argument: all five)
# Knobs (environment; the defaults make a quick dry run):
#   KINEMA_BIN=path       a prebuilt kinema instead of a release build
#   FLASH_VIEWERS=500     FLASH_DURATION=8s
#   CATALOGUE=40 ZIPF=0.8 CACHED=10 (videos the edges' caches hold together)
#   HIT_VIEWERS=200 HIT_WARMUP=10s HIT_DURATION=15s
#   EDGE_QUOTA=25000 (µs of CPU per 100 ms per edge) CAP_START=20 CAP_MAX=4000
#   CAP_TRIAL=12s CAP_RAMP=4s CAP_BITRATE=1mbit CAP_CATALOGUE=12
#   FAIL_VIEWERS=60 FAIL_DURATION=20s FAIL_KILL_AFTER=8s FAIL_BUFFER=8s
#   SPREAD_VIEWERS=150 SPREAD_CATALOGUE=8 SPREAD_ZIPF=0.8 SPREAD_RAMP=5s SPREAD_DURATION=20s
#   ORIGIN_PORT=18380 EDGE_PORT=18381 GOSSIP_PORT=18382
# Loopback only; every process is started here and stopped on exit, and
# every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

FLASH_VIEWERS=${FLASH_VIEWERS:-500}
FLASH_DURATION=${FLASH_DURATION:-8s}
CATALOGUE=${CATALOGUE:-40}
ZIPF=${ZIPF:-0.8}
CACHED=${CACHED:-10}
HIT_VIEWERS=${HIT_VIEWERS:-200}
HIT_WARMUP=${HIT_WARMUP:-10s}
HIT_DURATION=${HIT_DURATION:-15s}
EDGE_QUOTA=${EDGE_QUOTA:-25000}
CAP_START=${CAP_START:-20}
CAP_MAX=${CAP_MAX:-4000}
CAP_TRIAL=${CAP_TRIAL:-12s}
CAP_RAMP=${CAP_RAMP:-4s}
CAP_BITRATE=${CAP_BITRATE:-1mbit}
CAP_CATALOGUE=${CAP_CATALOGUE:-12}
FAIL_VIEWERS=${FAIL_VIEWERS:-60}
FAIL_DURATION=${FAIL_DURATION:-20s}
FAIL_KILL_AFTER=${FAIL_KILL_AFTER:-8s}
FAIL_BUFFER=${FAIL_BUFFER:-8s}
SPREAD_VIEWERS=${SPREAD_VIEWERS:-150}
SPREAD_CATALOGUE=${SPREAD_CATALOGUE:-8}
SPREAD_ZIPF=${SPREAD_ZIPF:-0.8}
SPREAD_RAMP=${SPREAD_RAMP:-5s}
SPREAD_DURATION=${SPREAD_DURATION:-20s}
ORIGIN_PORT=${ORIGIN_PORT:-18380}
EDGE_PORT=${EDGE_PORT:-18381}
GOSSIP_PORT=${GOSSIP_PORT:-18382}
# The synthetic videos: one 1 Mbit/s rung of 2 s segments.
SEGMENT=2s
SEGMENTS=10
RUNG=1mbit
export NO_COLOR=1

PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(a b c d s)
for phase in "${PHASES[@]}"; do
    case $phase in a | b | c | d | s) ;; *) echo "cluster.sh: unknown phase $phase (a, b, c, d or s)" >&2; exit 2 ;; esac
done
for tool in curl jq awk openssl; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is required" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -n "${KINEMA_BIN:-}" ]; then
    BIN=$KINEMA_BIN
else
    cargo build --release --locked -p kinema >&2
    BIN=$PWD/target/release/kinema
fi

WORK=$(mktemp -d /tmp/kinema-cluster-bench.XXXXXX)
ORIGIN=127.0.0.1:$ORIGIN_PORT
EDGES=(127.0.0.2:$EDGE_PORT 127.0.0.3:$EDGE_PORT 127.0.0.4:$EDGE_PORT)
ORIGIN_PID=
EDGE_PIDS=()
source bench/cgroup.sh

stop_cluster() {
    local pid
    for pid in "${EDGE_PIDS[@]}" $ORIGIN_PID; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    EDGE_PIDS=()
    ORIGIN_PID=
}
cleanup() {
    stop_cluster
    cpu_cgroup_remove
    rm -rf "$WORK"
}
trap cleanup EXIT

# Every wait is bounded: `until_ok SECONDS WHAT COMMAND...` polls each 0.2 s.
until_ok() {
    local limit=$1 what=$2
    shift 2
    local tries=$((limit * 5))
    while ! "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        if [ $tries -le 0 ]; then
            echo "cluster.sh: $what did not happen within ${limit}s" >&2
            exit 1
        fi
        sleep 0.2
    done
}
metric() { # metric ADDRESS SAMPLE: the sample's value, 0 when absent
    curl -s --max-time 5 "http://$1/metrics" | awk -v s="$2" '$1 == s { v = $2 } END { print v + 0 }'
}
metric_sum() { # metric_sum ADDRESS REGEX: the sum of the samples whose name{labels} match
    curl -s --max-time 5 "http://$1/metrics" | awk -v re="$2" '$1 ~ re { v += $2 } END { printf "%.0f\n", v + 0 }'
}
# What the origin sent of videos (not its /metrics or steering answers).
MEDIA_BYTES='^kinema_origin_response_body_bytes_total[{]route="(segment|init|playlist|other_media)"'

live_members_are() { [ "$(metric "$ORIGIN" kinema_origin_cluster_live_members)" = "$1" ]; }
redirects() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ORIGIN/v/$1/master.m3u8")" = 302 ]; }
served_at() { curl -sf --max-time 5 -o /dev/null "http://$1/metrics"; }

# The library: `flash` (a), `zipf-1..CATALOGUE` (b, c), `play` (d).
printf '1 %s\n' "$(openssl rand -hex 32)" > "$WORK/cluster.keys"
chmod 600 "$WORK/cluster.keys"
publish() {
    "$BIN" bench library --library "$WORK/library" --id "$1" --bitrates "$RUNG" \
        --segment "$SEGMENT" --segments "$SEGMENTS" > /dev/null
}
publish flash
publish play
VIDEOS=$CATALOGUE
for more in "$CAP_CATALOGUE" "$SPREAD_CATALOGUE"; do [ "$more" -gt "$VIDEOS" ] && VIDEOS=$more; done
for n in $(seq 1 "$VIDEOS"); do publish "zipf-$n"; done

# start_cluster EDGES CACHE: the origin and the first EDGES edges, each edge
# with a CACHE memory tier, all joined; each edge is confined to EDGE_QUOTA
# when phase (c) made $CPU_CGROUP.
start_cluster() {
    local edges=$1 cache=$2 i
    "$BIN" serve --library "$WORK/library" --listen "$ORIGIN" --web-root /nonexistent \
        --cluster-node-id origin --cluster-gossip-listen "127.0.0.1:$GOSSIP_PORT" \
        --cluster-key-file "$WORK/cluster.keys" --cluster-public-url "http://$ORIGIN" \
        2> "$WORK/origin.log" &
    ORIGIN_PID=$!
    until_ok 30 "the origin listening" served_at "$ORIGIN"
    for i in $(seq 0 $((edges - 1))); do
        local host=${EDGES[$i]%:*}
        mkdir -p "$WORK/edge-$i"
        (cd "$WORK/edge-$i" && exec "$BIN" edge --origin "http://$ORIGIN" --listen "${EDGES[$i]}" \
            --cache-memory "$cache" --cluster-node-id "edge-$i" \
            --cluster-gossip-listen "$host:$GOSSIP_PORT" --cluster-seeds "127.0.0.1:$GOSSIP_PORT" \
            --cluster-key-file "$WORK/cluster.keys" --cluster-public-url "http://${EDGES[$i]}" \
            2> "$WORK/edge-$i.log") &
        EDGE_PIDS+=($!)
        if [ -n "$CPU_CGROUP" ]; then
            cpu_cgroup_confine "edge-$i" "$EDGE_QUOTA" 100000 "${EDGE_PIDS[$i]}"
        fi
        until_ok 30 "edge $i listening" served_at "${EDGES[$i]}"
    done
    until_ok 30 "$edges edges joining the origin's view" live_members_are $((edges + 1))
    until_ok 30 "the origin redirecting viewers to an edge" redirects play
}

# bench NAME URL ARGS...: a kinema bench run, its JSON in $WORK/NAME.json.
bench() {
    local name=$1 url=$2
    shift 2
    "$BIN" bench "$url" --progress false --json "$WORK/$name.json" "$@" > "$WORK/$name.txt"
}
json() { jq -r "$2" "$WORK/$1.json"; }

phase_a() {
    echo "== (a) flash crowd: $FLASH_VIEWERS viewers start one new video through 3 edges"
    start_cluster 3 256MiB
    local segments_before
    segments_before=$(metric "$ORIGIN" 'kinema_origin_requests_total{route="segment",status="2xx"}')
    bench flash "http://$ORIGIN/v/flash/master.m3u8" --viewers "$FLASH_VIEWERS" \
        --duration "$FLASH_DURATION" --bitrate "$RUNG"
    local segments_after
    segments_after=$(metric "$ORIGIN" 'kinema_origin_requests_total{route="segment",status="2xx"}')
    # Every origin response for the video but the viewers' 302s, by path.
    grep 'kinema::access' "$WORK/origin.log" | grep -v 'status=302' \
        | grep -o 'path=/v/flash/[^ ]*' | sort | uniq -c > "$WORK/flash-objects.txt" || true
    local objects requests most segment_objects
    objects=$(wc -l < "$WORK/flash-objects.txt")
    requests=$(awk '{ s += $1 } END { print s + 0 }' "$WORK/flash-objects.txt")
    most=$(awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' "$WORK/flash-objects.txt")
    segment_objects=$(grep -c '\.m4s$' "$WORK/flash-objects.txt" || true)
    echo "viewers: $(json flash .summary.viewers_admitted) admitted, $(json flash .summary.viewers_failed) failed, $(json flash .summary.segments) segments, $(json flash .summary.stalls) stalls"
    echo "origin (access log): $requests requests for $objects objects, at most $most for one object"
    echo "origin (/metrics): $((segments_after - segments_before)) segment requests for $segment_objects segments"
    awk -v r="$requests" -v o="$objects" 'BEGIN { printf "origin requests per object: %.3f (target 1.000)\n", (o > 0 ? r / o : 0) }'
    stop_cluster
}

# snapshot_edges NAME: each running edge's /metrics in $WORK/NAME-edge-I.prom.
snapshot_edges() {
    local i
    for i in "${!EDGE_PIDS[@]}"; do
        curl -s --max-time 5 "http://${EDGES[$i]}/metrics" > "$WORK/$1-edge-$i.prom" || true
    done
}
# prom FILE SAMPLE: the sample's value in a saved /metrics, 0 when absent.
prom() { awk -v s="$2" '$1 == s { v = $2 } END { printf "%.0f\n", v + 0 }' "$1"; }

# holdings EDGES: the segments of zipf-1..CATALOGUE each edge holds, asked
# with HEAD and `only-if-cached` (a 504 when not stored; a HEAD prefetches
# nothing), last segment first. One line per edge and video in
# $WORK/holdings.txt: edge video segments-held.
holdings() {
    local i n s held dir
    for i in $(seq 0 $(($1 - 1))); do
        for n in $(seq 1 "$CATALOGUE"); do
            dir=$(cd "$WORK/library/videos/zipf-$n" && ls -d g*/r*)
            local urls=()
            for s in $(seq "$SEGMENTS" -1 1); do urls+=("http://${EDGES[$i]}/v/zipf-$n/$dir/$s.m4s"); done
            held=$(curl -s -I -o /dev/null -w '%{http_code}\n' -H 'Cache-Control: only-if-cached' \
                --max-time 5 "${urls[@]}" | grep -c '^200$' || true)
            echo "$i $n $held"
        done
    done > "$WORK/holdings.txt"
}

# spread NAME EDGES BEFORE AFTER: per edge, the viewers whose bytes went
# mostly to it and the bytes it sent them (from the bench's JSON), the
# master fetches it counted as sessions and the bytes it sent to all its
# clients, other edges filling from it included (from its /metrics, AFTER
# minus BEFORE snapshots), and max/avg of each over the edges.
spread() {
    local name=$1 edges=$2 before=$3 after=$4 i
    jq -r '.viewers[] | select(.pathways | length > 0)
        | (.pathways | to_entries | max_by(.value.bytes) | .key)' "$WORK/$name.json" \
        | sort | uniq -c > "$WORK/$name-main.txt"
    for i in $(seq 0 $((edges - 1))); do
        local edge=${EDGES[$i]} viewers bytes sessions
        viewers=$(awk -v e="$edge" '$2 == e { print $1 }' "$WORK/$name-main.txt")
        bytes=$(jq -r --arg e "$edge" '.summary.steering.pathways[$e].bytes // 0' "$WORK/$name.json")
        sessions=$(( $(prom "$WORK/$after-edge-$i.prom" kinema_edge_sessions_started_total) \
            - $(prom "$WORK/$before-edge-$i.prom" kinema_edge_sessions_started_total) ))
        sent=$(( $(prom "$WORK/$after-edge-$i.prom" kinema_edge_client_bytes_total) \
            - $(prom "$WORK/$before-edge-$i.prom" kinema_edge_client_bytes_total) ))
        echo "$i ${viewers:-0} $bytes $sessions $sent"
    done > "$WORK/$name-spread.txt"
    awk -v origin="$ORIGIN" -v other="$(awk -v o="$ORIGIN" '$2 == o { print $1 }' "$WORK/$name-main.txt")" '
        { sv += $2; sb += $3; ss += $4; sc += $5
          if ($2 > mv) mv = $2; if ($3 > mb) mb = $3; if ($4 > ms) ms = $4; if ($5 > mc) mc = $5
          printf "  edge %d: %d viewers, %.1f MB to viewers, %d sessions counted, %.1f MB to all clients\n", $1, $2, $3 / 1e6, $4, $5 / 1e6 }
        END { n = NR
          printf "  viewers on the origin: %d\n", other + 0
          printf "  spread max/avg: viewers %.2f, bytes to viewers %.2f, sessions counted %.2f, bytes to all clients %.2f (target <= 1.25)\n",
            (sv > 0 ? mv * n / sv : 0), (sb > 0 ? mb * n / sb : 0), (ss > 0 ? ms * n / ss : 0), (sc > 0 ? mc * n / sc : 0) }' \
        "$WORK/$name-spread.txt"
}

phase_b() {
    echo "== (b) hit ratio: Zipf($ZIPF) over $CATALOGUE videos, caches holding $CACHED of them"
    # Every video is the same size: the edges' total memory holds CACHED.
    local video_bytes per_edge_mib cached
    video_bytes=$(du -sb "$WORK/library/videos/zipf-1" | cut -f1)
    per_edge_mib=$(( (CACHED * video_bytes + 3 * 1048576 - 1) / (3 * 1048576) ))
    cached=$(( 3 * per_edge_mib * 1048576 / video_bytes ))
    [ "$cached" -gt "$CATALOGUE" ] && cached=$CATALOGUE
    start_cluster 3 "${per_edge_mib}MiB"
    local url="http://$ORIGIN/v/zipf-{video}/master.m3u8"
    bench hit-warmup "$url" --viewers "$HIT_VIEWERS" --ramp 2s --duration "$HIT_WARMUP" \
        --bitrate "$RUNG" --catalogue "$CATALOGUE" --zipf "$ZIPF" --seed 1
    local origin_before origin_after
    snapshot_edges hit-before
    origin_before=$(metric_sum "$ORIGIN" "$MEDIA_BYTES")
    bench hit "$url" --viewers "$HIT_VIEWERS" --ramp 2s --duration "$HIT_DURATION" \
        --bitrate "$RUNG" --catalogue "$CATALOGUE" --zipf "$ZIPF" --seed 2
    origin_after=$(metric_sum "$ORIGIN" "$MEDIA_BYTES")
    snapshot_edges hit-after
    holdings 3
    local viewer_bytes
    viewer_bytes=$(json hit .summary.bytes)
    awk -v o=$((origin_after - origin_before)) -v v="$viewer_bytes" -v n="$CATALOGUE" \
        -v k="$cached" -v a="$ZIPF" -v mib="$per_edge_mib" 'BEGIN {
        for (i = 1; i <= n; i++) { p = 1 / (i ^ a); total += p; if (i <= k) top += p }
        hit = (v > 0 ? 1 - o / v : 0); ideal = top / total
        printf "edges: 3 x %d MiB memory tier (%d of %d videos fit)\n", mib, k, n
        printf "viewer bytes %d, origin bytes %d\n", v, o
        printf "hit ratio %.3f, ideal %.3f: %.1f points from ideal (target within 5)\n", hit, ideal, (ideal - hit) * 100
    }'
    # The ideal for this run's own requests (the Zipf figure above is the
    # expectation over all runs): the K videos with the most viewer bytes
    # in the cache; every byte of the others from the origin (as the Zipf
    # figure counts), or at best one copy of each (at least its
    # most-fetching viewer's bytes, at most the video's size: viewers
    # loop, so a video can cost less than its viewers fetched).
    jq -r '.viewers[] | "\(.video) \(.bytes)"' "$WORK/hit.json" | awk -v k="$cached" -v size="$video_bytes" '
        { bytes[$1] += $2; if ($2 > most[$1]) most[$1] = $2; total += $2 }
        END {
            m = 0; for (video in bytes) order[++m] = video
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
                if (bytes[order[j]] > bytes[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
            for (i = k + 1; i <= m; i++) {
                rest += bytes[order[i]]; cost += (most[order[i]] < size ? most[order[i]] : size)
            }
            printf "ideal for this run'"'"'s requests (its top %d of %d videos watched cached): %.3f, or %.3f with one copy of each other video\n",
                k, m, (total > 0 ? 1 - rest / total : 0), (total > 0 ? 1 - cost / total : 0)
        }'
    echo "per edge (the measured run):"
    local i
    for i in 0 1 2; do
        local b=$WORK/hit-before-edge-$i.prom a=$WORK/hit-after-edge-$i.prom
        awk -v i="$i" -v hits=$(( $(prom "$a" 'kinema_edge_hits_total{tier="memory"}') - $(prom "$b" 'kinema_edge_hits_total{tier="memory"}') )) \
            -v misses=$(( $(prom "$a" kinema_edge_misses_total) - $(prom "$b" kinema_edge_misses_total) )) \
            -v client=$(( $(prom "$a" kinema_edge_client_bytes_total) - $(prom "$b" kinema_edge_client_bytes_total) )) \
            -v upstream=$(( $(prom "$a" kinema_edge_origin_bytes_total) - $(prom "$b" kinema_edge_origin_bytes_total) )) \
            -v stored=$(prom "$a" kinema_edge_memory_bytes) -v objects=$(prom "$a" kinema_edge_memory_objects) \
            -v evicted=$(( $(prom "$a" 'kinema_edge_evictions_total{tier="memory"}') - $(prom "$b" 'kinema_edge_evictions_total{tier="memory"}') )) \
            -v fetches=$(( $(prom "$a" kinema_edge_origin_requests_total) - $(prom "$b" kinema_edge_origin_requests_total) )) \
            -v prefetches=$(( $(prom "$a" kinema_edge_prefetches_total) - $(prom "$b" kinema_edge_prefetches_total) )) \
            'BEGIN { printf "  edge %d: lookups hit %.3f (%d of %d), bytes from upstream / to clients %.3f, %d upstream fetches (%d prefetches), %.1f MB held in %d objects, %d evicted or turned away\n",
                i, (hits + misses > 0 ? hits / (hits + misses) : 0), hits, hits + misses,
                (client > 0 ? upstream / client : 0), fetches, prefetches, stored / 1e6, objects, evicted }'
        awk -v i="$i" '$1 == i && $3 > 0 { videos++; segments += $3; list = list " " $2 ":" $3 } END {
            printf "          holds %d segments of %d videos (video:segments)%s\n", segments, videos, list }' "$WORK/holdings.txt"
    done
    awk '$3 > 0 { copies[$2]++; segments[$2] += $3; if ($3 > most[$2]) most[$2] = $3 }
        END { for (v in copies) { held++; if (copies[v] > 1) twice++; all += segments[v]; distinct += most[v] }
            printf "cluster: %d videos held, %d of them on more than one edge; %d segment copies for at least %d distinct segments\n",
                held, twice, all, distinct }' "$WORK/holdings.txt"
    echo "origin: $((origin_after - origin_before)) media bytes sent in the measured run"
    spread hit 3 hit-before hit-after
    echo "viewers: $(json hit .summary.viewers_failed) failed, $(json hit .summary.stalls) stalls"
    stop_cluster
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

throttling() { # throttling EDGE: its cgroup's periods, throttled periods and seconds so far
    awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { n = $2 }
        $1 == "throttled_time" { t = $2 / 1e9 } $1 == "throttled_usec" { t = $2 / 1e6 }
        END { printf "%d %d %.3f\n", p, n, t }' "$CPU_CGROUP/edge-$1/cpu.stat" 2>/dev/null || echo "0 0 0"
}
capacity() { # capacity EDGES: the search's output in $WORK/capacity-EDGES.txt
    start_cluster "$1" 256MiB
    # Each edge's CPU idle (gossip, figures) over 10 s, then during
    # the search: what a request costs it, whether alone or in a cluster.
    local i hz idle=10 ticks=() now
    hz=$(getconf CLK_TCK)
    for i in $(seq 0 $(($1 - 1))); do ticks[$i]=$(cpu_ticks "${EDGE_PIDS[$i]}"); done
    sleep "$idle"
    for i in $(seq 0 $(($1 - 1))); do
        now=$(cpu_ticks "${EDGE_PIDS[$i]}")
        awk -v t=$((now - ticks[i])) -v hz="$hz" -v s="$idle" -v i="$i" \
            'BEGIN { printf "  edge %d idle: %.1f ms of CPU per second\n", i, t * 1000 / hz / s }'
        ticks[$i]=$now
    done
    # A warm-up, not measured: four viewers per video of the catalogue for
    # one trial, so that the search starts on caches that hold it (its
    # first trial otherwise pays for the cold fills, and one that fails on
    # them sends the search down to a fraction of the capacity).
    "$BIN" bench "http://$ORIGIN/v/zipf-{video}/master.m3u8" --viewers $((4 * CAP_CATALOGUE)) \
        --catalogue "$CAP_CATALOGUE" --zipf 0 --ramp "$CAP_RAMP" --duration "$CAP_TRIAL" \
        --bitrate "$CAP_BITRATE" --progress false > /dev/null
    sleep 5
    # Each edge's CPU, requests and throttling from the search's start.
    local throttle_before=() requests_before=() periods throttled seconds
    for i in $(seq 0 $(($1 - 1))); do
        ticks[$i]=$(cpu_ticks "${EDGE_PIDS[$i]}")
        requests_before[$i]=$(metric "${EDGES[$i]}" kinema_edge_requests_total)
        read -r periods throttled seconds <<< "$(throttling "$i")"
        throttle_before+=("$periods" "$throttled" "$seconds")
    done
    "$BIN" bench capacity "http://$ORIGIN/v/zipf-{video}/master.m3u8" --bitrate "$CAP_BITRATE" \
        --catalogue "$CAP_CATALOGUE" --zipf 0 --start "$CAP_START" --max "$CAP_MAX" \
        --trial-duration "$CAP_TRIAL" --ramp "$CAP_RAMP" --buffer-target 8s --progress false \
        > "$WORK/capacity-$1.txt"
    sed 's/^/  /' "$WORK/capacity-$1.txt"
    # Why the origin sent each new session where it did, and why each
    # edge kept or moved the sessions whose steering it renewed.
    decisions() { # decisions ADDRESS ROLE
        curl -s --max-time 5 "http://$1/metrics" |
            awk -v m="^kinema_$2_steering_decisions_total" '$1 ~ m { sub(/.*reason="/, ""); sub(/"}/, ""); printf "%s %s, ", $1, $2 }
                END { print "" }'
    }
    echo "  steering decisions, origin: $(decisions "$ORIGIN" origin)"
    for i in $(seq 0 $(($1 - 1))); do
        echo "  steering decisions, edge $i: $(decisions "${EDGES[$i]}" edge)"
    done
    local requests
    for i in $(seq 0 $(($1 - 1))); do
        requests=$(( $(metric "${EDGES[$i]}" kinema_edge_requests_total) - requests_before[i] ))
        now=$(cpu_ticks "${EDGE_PIDS[$i]}")
        awk -v r="$requests" -v t=$((now - ticks[i])) -v hz="$hz" -v i="$i" -v a="${EDGES[$i]}" \
            'BEGIN { printf "  edge %d (%s) requests: %d, CPU %.1f s, %.0f µs per request\n", i, a, r, t / hz, (r > 0 ? t / hz / r * 1e6 : 0) }'
        # How often the quota held the edge back during the search.
        read -r periods throttled seconds <<< "$(throttling "$i")"
        awk -v i="$i" -v p=$((periods - throttle_before[i * 3])) -v n=$((throttled - throttle_before[i * 3 + 1])) \
            -v t="$seconds" -v t0="${throttle_before[i * 3 + 2]}" \
            'BEGIN { printf "  edge %d throttled in %d of %d periods, %.1f s in all\n", i, n, p, t - t0 }'
    done
    stop_cluster
}

phase_c() {
    echo "== (c) scale-out: capacity with 3 edges against 1, each edge at $EDGE_QUOTA µs of CPU per 100 ms"
    if ! cpu_cgroup_init "kinema-cluster-bench-$$"; then
        echo "skipped: $CPU_CGROUP_WHY"
        return
    fi
    local one three
    capacity 1
    capacity 3
    one=$(awk '/^capacity:/ { print $2 }' "$WORK/capacity-1.txt")
    three=$(awk '/^capacity:/ { print $2 }' "$WORK/capacity-3.txt")
    echo "viewers carried without stall: 1 edge $one, 3 edges $three"
    awk -v a="$three" -v b="$one" 'BEGIN { printf "scale-out 3 edges / 1 edge: %.2fx (target >= 2.7)\n", (b > 0 ? a / b : 0) }'
}

phase_d() {
    echo "== (d) failover: $FAIL_VIEWERS viewers through steering, their edge SIGKILLed after $FAIL_KILL_AFTER"
    start_cluster 3 256MiB
    "$BIN" bench "http://$ORIGIN/v/play/master.m3u8" --viewers "$FAIL_VIEWERS" --ramp 2s \
        --duration "$FAIL_DURATION" --bitrate "$RUNG" --buffer-target "$FAIL_BUFFER" \
        --progress false --json "$WORK/failover.json" > "$WORK/failover.txt" &
    local bench_pid=$!
    sleep "${FAIL_KILL_AFTER%s}"
    # The edge serving the most viewers now: the one that has sent them the
    # most bytes (steering spreads a video's sessions over its replicas).
    local victim= most=0 i sent
    for i in 0 1 2; do
        sent=$(metric "${EDGES[$i]}" kinema_edge_client_bytes_total)
        if [ "${sent%.*}" -gt "$most" ]; then most=${sent%.*}; victim=$i; fi
    done
    if [ -z "$victim" ]; then
        echo "cluster.sh: no edge has sent viewers anything" >&2
        exit 1
    fi
    kill -9 "${EDGE_PIDS[$victim]}"
    echo "killed edge $victim (${EDGES[$victim]})"
    wait "$bench_pid"
    sed -n '/steering/,$p' "$WORK/failover.txt"
    jq -r '.summary | "viewers \(.viewers) (failed \(.viewers_failed)), segments failed \(.segments_failed), stalls \(.stalls) by \(.viewers_with_stalls) viewers (\(.stalled_seconds * 1000 | round / 1000) s)",
        "viewers failed over \(.steering.viewers_failed_over); failover stall per affected viewer (viewer seconds): p50 \(.steering.failover_stall_seconds.p50) p90 \(.steering.failover_stall_seconds.p90) max \(.steering.failover_stall_seconds.max)"' \
        "$WORK/failover.json"
    stop_cluster
}

phase_s() {
    echo "== (s) load spread: $SPREAD_VIEWERS viewers through steering over $SPREAD_CATALOGUE videos, Zipf($SPREAD_ZIPF)"
    start_cluster 3 256MiB
    snapshot_edges spread-before
    bench spread "http://$ORIGIN/v/zipf-{video}/master.m3u8" --viewers "$SPREAD_VIEWERS" \
        --ramp "$SPREAD_RAMP" --duration "$SPREAD_DURATION" --bitrate "$RUNG" \
        --catalogue "$SPREAD_CATALOGUE" --zipf "$SPREAD_ZIPF" --seed 3
    snapshot_edges spread-after
    spread spread 3 spread-before spread-after
    echo "viewers: $(json spread .summary.viewers_failed) failed, $(json spread .summary.stalls) stalls"
    stop_cluster
}

for phase in "${PHASES[@]}"; do
    "phase_$phase"
done
