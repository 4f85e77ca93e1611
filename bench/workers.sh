#!/usr/bin/env bash
# Distributed ingest: one source published by `kinema worker` processes,
# each confined to the same CPU quota (bench/cgroup.sh), against one.
#
#   (1) whole:   1 worker, the source encoded as one task (chunk_seconds
#                above its length): what a server without workers does.
#   (3) chunked: 3 workers, the source in CHUNK-second chunks, audio once,
#                then the assembly.
#   (1c) chunked on 1 worker, with RUN_ONE_CHUNKED=1: the chunked job's
#                wall time without parallelism.
#
# Each run has a server of its own (`kinema serve` over an S3 library on
# s3s-fs, embedded queue) and fresh workers; the wall time runs from the
# upload's first byte to the job's `done`; CPU time is each worker's own
# plus its waited-for children's (ffmpeg, ffprobe), from /proc/PID/stat
# before it stops. Prints wall whole / wall chunked (target ≥ 2.5) and CPU
# chunked / CPU whole (the per-title overhead of chunking, target ≤ 1.1),
# and after each run every task's claim and end in seconds from the upload,
# with the phases its worker logged.
#
#   bench/workers.sh                       # a 10-minute 1080p source, made once
#   SOURCE=film.mp4 bench/workers.sh       # any source
#   SOURCE_SECONDS=120 bench/workers.sh    # a shorter synthetic one
# Knobs: KINEMA_BIN (prebuilt kinema), WORKER_QUOTA (µs of CPU per 100 ms
# per worker, default 60000), CHUNK (60), RUN_ONE_CHUNKED (0),
# LIMIT (seconds a run may take, 7200), WHOLE_WALL and WHOLE_CPU (the whole
# encode's seconds from an earlier run with the same build, source and
# quota: the whole run is skipped, to compare chunk lengths).
#
# Needs root (cgroups), ffmpeg, s3s-fs (scripts/test installs it), curl,
# jq. Loopback only; every process is started here and stopped on exit, and
# every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_QUOTA=${WORKER_QUOTA:-60000}
CHUNK=${CHUNK:-60}
RUN_ONE_CHUNKED=${RUN_ONE_CHUNKED:-0}
LIMIT=${LIMIT:-7200}
SOURCE_SECONDS=${SOURCE_SECONDS:-600}

for tool in ffmpeg curl jq; do
    command -v "$tool" >/dev/null || { echo "workers.sh: $tool is not installed (scripts/install-deps)" >&2; exit 1; }
done
S3S_FS=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
[ -x "$S3S_FS" ] || { echo "workers.sh: s3s-fs is not installed (scripts/test installs it)" >&2; exit 1; }

if [ -z "${KINEMA_BIN:-}" ]; then
    cargo build --release -p kinema >&2
    KINEMA_BIN=target/release/kinema
fi
BIN=$(realpath "$KINEMA_BIN")

# A synthetic source with motion and grain, made once and kept for later
# runs (the recipe of bench/RESULTS.md's 10-minute source).
if [ -z "${SOURCE:-}" ]; then
    SOURCE=/tmp/kinema-bench-src-${SOURCE_SECONDS}s-1080p.mp4
    if ! [ -s "$SOURCE" ]; then
        echo "making $SOURCE ($SOURCE_SECONDS s, 1920x1080)" >&2
        ffmpeg -v error -nostdin -y -f lavfi \
            -i "testsrc2=s=1920x1080:r=30:d=$SOURCE_SECONDS,noise=alls=4:allf=t" \
            -f lavfi -i "sine=f=440:d=$SOURCE_SECONDS" -c:v libx264 -preset veryfast \
            -crf 26 -pix_fmt yuv420p -c:a aac -shortest -f mp4 "$SOURCE.part"
        mv "$SOURCE.part" "$SOURCE"
    fi
fi
SOURCE=$(realpath "$SOURCE")

source bench/cgroup.sh
if ! cpu_cgroup_init "kinema-workers-bench-$$"; then
    echo "workers.sh: $CPU_CGROUP_WHY" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/kinema-workers-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    cpu_cgroup_remove
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

S3_PORT=$(free_port)
mkdir -p "$WORK/s3/media"
"$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key bench-key --secret-key bench-secret \
    "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 &
PIDS+=($!)
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret
export KINEMA_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
# Plain log lines, which the task counts below are read from.
export NO_COLOR=1

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# CPU seconds of PID and its waited-for children.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"
}

# run NAME WORKERS CHUNK_SECONDS: one server, WORKERS confined workers, the
# source uploaded and waited for; sets WALL and CPU (seconds).
run() {
    local name=$1 workers=$2 chunk=$3 dir=$WORK/$1 port i
    mkdir -p "$dir"
    port=$(free_port)
    cat > "$dir/kinema.toml" <<TOML
[ingest]
workspace = "$dir/ingest"
[ingest.chunked]
chunk_seconds = $chunk
TOML
    local admin worker_token
    admin=$(KINEMA_CONFIG=$dir/kinema.toml "$BIN" tokens new --scope admin --name bench --tokens "$dir/tokens.toml")
    KINEMA_CONFIG=$dir/kinema.toml "$BIN" tokens new --scope worker --name workers \
        --tokens "$dir/tokens.toml" > "$dir/worker.token"
    KINEMA_CONFIG=$dir/kinema.toml "$BIN" --log warn serve --library "s3://media/$name" \
        --listen "127.0.0.1:$port" --tokens "$dir/tokens.toml" --keys "$dir/keys.toml" \
        --web-root /nonexistent --access-log false 2> "$dir/serve.log" &
    local server=$!
    PIDS+=($server)
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do
        (( SECONDS < deadline )) || { echo "workers.sh: the server never answered" >&2; cat "$dir/serve.log" >&2; exit 1; }
        sleep 0.2
    done
    local worker_pids=()
    for i in $(seq 1 "$workers"); do
        KINEMA_CONFIG=$dir/kinema.toml "$BIN" --log info worker --server "http://127.0.0.1:$port" \
            --token-file "$dir/worker.token" --library "s3://media/$name" --name "w$i" \
            --scratch "$dir/scratch-$i" 2> "$dir/worker-$i.log" &
        worker_pids+=($!)
        PIDS+=($!)
        cpu_cgroup_confine "$name-w$i" "$WORKER_QUOTA" 100000 "$!"
    done
    local start job state
    start=$(now)
    job=$(curl -fsS -H "Authorization: Bearer $admin" -H 'content-type: video/mp4' \
        --data-binary @"$SOURCE" "http://127.0.0.1:$port/api/videos?id=$name&title=$name" | jq -r .job.id)
    deadline=$((SECONDS + LIMIT))
    while :; do
        state=$(curl -fsS -H "Authorization: Bearer $admin" "http://127.0.0.1:$port/api/jobs/$job" | jq -r .job.state)
        case $state in
            done) break ;;
            queued|running) ;;
            *) echo "workers.sh: job $job of run $name ended $state" >&2
               tail -n 20 "$dir"/worker-*.log "$dir/serve.log" >&2; exit 1 ;;
        esac
        (( SECONDS < deadline )) || { echo "workers.sh: run $name took over $LIMIT s" >&2; exit 1; }
        sleep 0.5
    done
    local pid
    CPU=0
    WALL=$(echo "$(now) - $start" | bc -l)
    for pid in "${worker_pids[@]}"; do
        CPU=$(echo "$CPU + $(cpu_seconds "$pid")" | bc -l)
    done
    for pid in "${worker_pids[@]}" "$server"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    local tasks
    # Tasks claimed, by kind (a claim's log line names its task's kind).
    tasks=$( (grep -h 'task claimed' "$dir"/worker-*.log || true) | grep -o 'kind=[a-z]*' | sort | uniq -c \
        | awk '{ sub("kind=", "", $2); printf "%s %s  ", $1, $2 }')
    printf '%-8s %d worker(s)  wall %8.1f s  CPU %8.1f s  tasks claimed: %s\n' "$name" "$workers" "$WALL" "$CPU" "$tasks"
    timeline "$start" "$dir"/worker-*.log
}

# timeline START LOG...: each task's claim and end, in seconds from START,
# with the phases the worker logs (source, encode, upload, packaging and
# publish), so where the wall time went can be read off.
timeline() {
    python3 - "$@" <<'PY'
import datetime, re, sys
start = float(sys.argv[1])
line_re = re.compile(r'^(\S+Z)\s+\w+\s+task\{[^}]*?task=(\S+) kind=(\w+)[^}]*\}: \S+ (.*)$')
rows = {}
for log in sys.argv[2:]:
    worker = log.rsplit('-', 1)[1].removesuffix('.log')
    for line in open(log, errors='replace'):
        match = line_re.match(line.strip())
        if not match:
            continue
        stamp, task, kind, rest = match.groups()
        at = datetime.datetime.fromisoformat(stamp).timestamp() - start
        row = rows.setdefault((worker, task), {'kind': kind, 'phases': []})
        if 'task claimed' in rest:
            row['claimed'] = at
        elif rest.startswith('task done'):
            row['done'] = at
        else:
            fields = dict(re.findall(r'(\w+)=([0-9.]+)', rest))
            what = re.sub(r'\s\w+=\S+', '', rest).strip()
            figures = ' '.join(f'{k}={float(v):.1f}' for k, v in fields.items() if 'seconds' in k)
            row['phases'].append(f'{what} {figures}'.strip())
# A task whose worker was stopped before it logged its end (the run ends
# when the job is done) shows "?".
at = lambda row, key: f"{row[key]:7.1f}" if key in row else "      ?"
for (worker, task), row in sorted(rows.items(), key=lambda item: item[1].get('claimed', 0)):
    print(f"  w{worker:<2} {row['kind']:<8} {at(row, 'claimed')} -> {at(row, 'done')} s   "
          + '; '.join(row['phases']))
PY
}

duration=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$SOURCE")
echo "== $SOURCE ($duration s), each worker at $WORKER_QUOTA µs of CPU per 100 ms, chunks of $CHUNK s"
if [ -n "${WHOLE_WALL:-}" ]; then
    # The whole encode's figures from an earlier run of the same build,
    # source and quota (it is the long half), given as WHOLE_WALL/WHOLE_CPU.
    echo "whole    (given: wall $WHOLE_WALL s, CPU ${WHOLE_CPU:?WHOLE_CPU goes with WHOLE_WALL} s)"
    WALL=$WHOLE_WALL CPU=$WHOLE_CPU
else
    run whole 1 3600
fi
whole_wall=$WALL whole_cpu=$CPU
run chunked 3 "$CHUNK"
chunked_wall=$WALL chunked_cpu=$CPU
if [ "$RUN_ONE_CHUNKED" = 1 ]; then
    run chunked1 1 "$CHUNK"
fi
printf 'wall, 1 worker whole / 3 workers chunked: %.2fx (target >= 2.5)\n' "$(echo "$whole_wall / $chunked_wall" | bc -l)"
printf 'CPU, chunked / whole: %.3f (target <= 1.1)\n' "$(echo "$chunked_cpu / $whole_cpu" | bc -l)"
