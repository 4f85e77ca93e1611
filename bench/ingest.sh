#!/usr/bin/env bash
# Ingest overhead: wall time of `kinema ingest` versus ONE plain ffmpeg
# command that produces the same ladder and segments (the same filter
# graph, encoder settings and dash muxer, without kinema's probing,
# thumbnails, measuring, manifests, I-frame playlists, download MP4,
# checksums and publish). Prints both, the ratio kinema/ffmpeg (target
# <= 1.05) and kinema's peak memory.
#
# Usage: bench/ingest.sh [RUNS]          (default 1 run each, alternating)
#        SOURCE=film.mp4 bench/ingest.sh  (default: a 60 s 720p clip made here)
# Needs ffmpeg; builds kinema in release mode. The default ladder and audio
# are assumed (rungs 144p-1080p up to the source's height, AAC 64k + 32k).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --locked -p kinema >/dev/null 2>&1 || cargo build --release -p kinema >/dev/null
kinema="$PWD/target/release/kinema"

source="${SOURCE:-}"
if [ -z "$source" ]; then
    echo "bench/ingest: making a 60 s 1280x720 25 fps clip with stereo audio" >&2
    source="$work/source.mp4"
    ffmpeg -v error -nostdin -y \
        -f lavfi -i "testsrc2=s=1280x720:r=25:d=60" -f lavfi -i "sine=f=440:d=60" \
        -c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p -c:a aac -shortest "$source"
fi
read -r width height rate <<<"$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height,avg_frame_rate -of csv=p=0 "$source" | tr ',' ' ')"
fps=$(awk -v r="$rate" 'BEGIN { split(r, f, "/"); printf "%d", f[1] / (f[2] ? f[2] : 1) + 0.5 }')
gop=$((fps * 4))
duration=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$source")
echo "bench/ingest: source ${width}x${height} ${fps} fps, ${duration} s" >&2

# The default ladder (kinema_core::ladder): short side, bit rate; the lowest
# rung's VBV is held near its average.
graph="[0:v:0]fps=$fps,split=N"
maps=(); rates=(); index=0
for rung in 144:110000 240:300000 360:700000 480:1200000 720:2800000 1080:5000000; do
    short=${rung%%:*}; bitrate=${rung##*:}
    [ "$short" -le "$height" ] || continue
    long=$(awk -v s="$short" -v w="$width" -v h="$height" 'BEGIN { v = int(s * w / h / 2 + 0.5) * 2; print v }')
    graph+="[s$index]"
    scales+=";[s$index]scale=$long:$short:flags=bicubic,format=yuv420p,setsar=1[v$index]"
    maps+=(-map "[v$index]")
    if [ "$index" -eq 0 ]; then maxrate=$((bitrate * 6 / 5)); bufsize=$bitrate; else maxrate=$((bitrate * 3 / 2)); bufsize=$((bitrate * 2)); fi
    rates+=("-b:v:$index" "$bitrate" "-maxrate:v:$index" "$maxrate" "-bufsize:v:$index" "$bufsize")
    index=$((index + 1))
done
graph="${graph/split=N/split=$index}${scales}"
streams=$((index + 2))
sets=""; for s in $(seq 0 $((streams - 1))); do sets+="id=$s,streams=$s "; done

ingest_once() {
    local id="$1"
    local library="$work/library-$id"
    rm -rf "$library"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time-$id" \
        "$kinema" ingest --quiet --library "$library" --id "$id" "$source" >/dev/null
    rm -rf "$library"
    tail -1 "$work/time-$id"
}

ffmpeg_once() {
    local id="$1"
    local out="$work/plain-$id"
    rm -rf "$out"; mkdir -p "$out"
    for s in $(seq 0 $((streams - 1))); do mkdir -p "$out/$s"; done
    /usr/bin/time -f "%e %U %S %M" -o "$work/time-plain-$id" \
        ffmpeg -hide_banner -nostdin -y -loglevel error -i "$source" \
        -filter_complex "$graph" "${maps[@]}" -map 0:a:0 -map 0:a:0 \
        -c:v libx264 -preset veryfast -profile:v high "${rates[@]}" \
        -g "$gop" -keyint_min "$gop" -sc_threshold 0 -flags:v +cgop \
        -c:a:0 aac -b:a:0 64000 -ac:a:0 2 -c:a:1 aac -b:a:1 32000 -ac:a:1 2 -ar 48000 -af aresample=async=1 -threads 0 \
        -f dash -seg_duration 4 -use_template 1 -use_timeline 0 \
        -init_seg_name '$RepresentationID$/init.mp4' -media_seg_name '$RepresentationID$/$Number$.m4s' \
        -adaptation_sets "${sets% }" "$out/ffmpeg.mpd"
    rm -rf "$out"
    tail -1 "$work/time-plain-$id"
}

# Wall time is what the target is about, but on a shared machine other
# load swings it by tens of percent; CPU time (user + system, children
# included) is printed too, as the steadier measure of the work done.
# Peak memory is the largest resident set of the process or any child
# (ffmpeg's, for kinema): kinema's own is in its log line below.
kinema_wall=(); ffmpeg_wall=(); kinema_cpu=(); ffmpeg_cpu=(); kinema_rss=()
for run in $(seq 1 "$runs"); do
    read -r wall user sys rss <<<"$(ffmpeg_once "$run")"
    ffmpeg_wall+=("$wall"); ffmpeg_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')")
    read -r wall user sys rss <<<"$(ingest_once "r$run")"
    kinema_wall+=("$wall"); kinema_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')"); kinema_rss+=("$rss")
    echo "run $run: ffmpeg ${ffmpeg_wall[-1]} s wall ${ffmpeg_cpu[-1]} s cpu, kinema ingest ${kinema_wall[-1]} s wall ${kinema_cpu[-1]} s cpu, peak rss of kinema or its ffmpeg ${rss} KiB" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# kinema also makes the poster and sprite in the same run, and afterwards
# the download MP4 (a remux of its own outputs); the plain command does
# not, so the ratios include that work.
awk -v k="$(median "${kinema_wall[@]}")" -v f="$(median "${ffmpeg_wall[@]}")" \
    -v kc="$(median "${kinema_cpu[@]}")" -v fc="$(median "${ffmpeg_cpu[@]}")" -v d="$duration" -v h="$height" 'BEGIN {
    printf "ingest %.0f s %dp, median of runs: wall kinema %.2f s / ffmpeg %.2f s = %.3f (target <= 1.05); cpu kinema %.2f s / ffmpeg %.2f s = %.3f\n", d, h, k, f, k / f, kc, fc, kc / fc }'
