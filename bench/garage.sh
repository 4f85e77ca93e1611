#!/usr/bin/env bash
# kinema on a replicated object store: a three-node Garage cluster
# (replication factor 3) on loopback, a library published into it, `kinema
# serve` reading from it with a cache too small to hold the video (so viewers'
# segments keep coming from Garage), and one Garage node stopped mid-playback.
# With three copies, reads and writes need two nodes (Garage's quorum), so
# viewers must not notice: the script prints the viewers' report and fails
# if any viewer saw an error or a stall.
#
# Not in CI: Garage builds from crates.io (`cargo install garage`, ~30 min
# on two cores; done once, into cargo's bin directory).
#
# Usage: bench/garage.sh
# Knobs (environment):
#   VIEWERS=20          viewers playing while a node stops
#   DURATION=60s        length of the viewing run
#   STOP_AFTER=20       seconds into the run at which node 3 is stopped
#   KINEMA_BIN=path     use this kinema binary instead of building one
#   GARAGE_BIN=path     use this garage binary instead of installing one
#   WORK=dir            where the nodes keep their data [default: a temp dir]
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${VIEWERS:-20}
DURATION=${DURATION:-60s}
STOP_AFTER=${STOP_AFTER:-20}
KINEMA_PORT=${KINEMA_PORT:-28491}
GARAGE_VERSION=2.5

garage=${GARAGE_BIN:-$(command -v garage || echo "${CARGO_HOME:-$HOME/.cargo}/bin/garage")}
if ! "$garage" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    echo "garage.sh: installing Garage $GARAGE_VERSION from crates.io (about 30 minutes)" >&2
    cargo install garage --version "~$GARAGE_VERSION" --locked
    garage="${CARGO_HOME:-$HOME/.cargo}/bin/garage"
fi
if [ -z "${KINEMA_BIN:-}" ]; then
    cargo build --release --locked -p kinema >&2
    KINEMA_BIN=target/release/kinema
fi
kinema=$KINEMA_BIN

work=${WORK:-$(mktemp -d /tmp/kinema-garage.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# Three nodes, one zone, three copies of everything; node n listens for RPC
# on 39n1, for S3 on 39n0 and for admin on 39n3.
rpc_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for n in 1 2 3; do
    mkdir -p "$work/node$n"
    cat > "$work/node$n/garage.toml" <<EOF
metadata_dir = "$work/node$n/meta"
data_dir = "$work/node$n/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:39${n}1"
rpc_public_addr = "127.0.0.1:39${n}1"
rpc_secret = "$rpc_secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:39${n}0"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:39${n}3"
EOF
    "$garage" -c "$work/node$n/garage.toml" server > "$work/node$n/log" 2>&1 &
    pids+=($!)
done
node_pid=("" "${pids[0]}" "${pids[1]}" "${pids[2]}")
g() { "$garage" -c "$work/node1/garage.toml" "$@"; }

# Polls (every 0.2 s, up to 30 s) until the command succeeds.
wait_for() {
    local deadline=$((SECONDS + 30))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "garage.sh: timed out waiting for: $*" >&2; exit 1; }
        sleep 0.2
    done
}
for n in 1 2 3; do wait_for "$garage" -c "$work/node$n/garage.toml" node id -q; done
for n in 2 3; do
    g node connect "$("$garage" -c "$work/node$n/garage.toml" node id -q)" >/dev/null
done
for n in 1 2 3; do
    id=$("$garage" -c "$work/node$n/garage.toml" node id -q | cut -d@ -f1)
    g layout assign -z loopback -c 1GB "$id" >/dev/null
done
g layout apply --version 1 >/dev/null
wait_for g bucket create kinema
key=$(g key create kinema-bench)
export AWS_ACCESS_KEY_ID=$(printf '%s\n' "$key" | awk '/Key ID/ {print $NF}')
export AWS_SECRET_ACCESS_KEY=$(printf '%s\n' "$key" | awk '/Secret key/ {print $NF}')
g bucket allow --read --write --owner kinema --key kinema-bench >/dev/null
echo "garage.sh: three nodes up, bucket kinema, key $AWS_ACCESS_KEY_ID" >&2
g status >&2

library=s3://kinema/lib
s3=(--s3-endpoint http://127.0.0.1:3910 --s3-region garage)
"$kinema" bench library --library "$library" "${s3[@]}" --id synthetic \
    --bitrates 1mbit,3mbit --segment 2s --segments 60

# A cache of 4 MiB holds under three 3 Mbit/s segments: nearly every
# request reads Garage. The origin talks to node 1; node 3 is stopped.
"$kinema" serve --library "$library" "${s3[@]}" --listen "127.0.0.1:$KINEMA_PORT" \
    --cache-size 4MiB --prefetch false --access-log false > "$work/serve.log" 2>&1 &
pids+=($!)
wait_for curl -fsS "http://127.0.0.1:$KINEMA_PORT/healthz"

# The origin's reads from the store (whole files: misses and prefetches).
store_reads() {
    curl -fsS "http://127.0.0.1:$KINEMA_PORT/metrics" | awk '/^kinema_origin_store_reads_total / {print $2}'
}
( sleep "$STOP_AFTER"; echo "garage.sh: stopping garage node 3 at ${STOP_AFTER}s" >&2
  store_reads > "$work/reads-at-stop"
  kill "${node_pid[3]}" ) &
"$kinema" bench "http://127.0.0.1:$KINEMA_PORT/v/synthetic/master.m3u8" \
    --viewers "$VIEWERS" --ramp 5s --duration "$DURATION" --link 5mbit \
    --progress false --json "$work/viewers.json"

g status >&2 || true
echo "garage.sh: the origin read $(cat "$work/reads-at-stop") files from Garage before node 3 stopped, $(store_reads) in all" >&2
python3 - "$work/viewers.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
summary = report["summary"]
errors = summary["http_errors"] + summary["segments_failed"] + summary["viewers_failed"]
stalls = summary["stalls"]
print(f"garage.sh: node 3 stopped mid-run; {summary['viewers']} viewers, "
      f"{summary['segments']} segments, {errors} errors, {stalls} stalls, "
      f"{summary['retries']} retries")
sys.exit(1 if errors or stalls else 0)
EOF
