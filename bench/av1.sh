#!/usr/bin/env bash
# AV1 against H.264 at equal quality: bits saved by kinema's AV1 rungs.
#
# A 720p clip with real motion (a Mandelbrot zoom) and film grain (temporal
# noise) is ingested by kinema with one 720p H.264 rung and AV1 at several
# shares of its bit rate ([ingest.ladder] av1 = true, av1_bitrate_percent).
# Each published rendition (init + segments, as a player gets them) is
# compared with the source by ffmpeg's ssim filter. The AV1 bit rate that
# reaches the H.264 rung's SSIM is interpolated between the two AV1 points
# around it; bits saved = 1 - that / the H.264 bit rate (measured bit rates,
# from the segment bytes). The wall time of an ingest with and without the
# AV1 rung is printed too.
#
# Usage: bench/av1.sh   (SECONDS_OF_CLIP=20 BITRATE=2800000 PERCENTS="30 40 50 60 80")
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_OF_CLIP:-20}"
bitrate="${BITRATE:-2800000}"
percents="${PERCENTS:-30 40 50 60 80}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --locked -p kinema >/dev/null 2>&1 || cargo build --release -p kinema >/dev/null
kinema="$PWD/target/release/kinema"

echo "bench/av1: making a ${seconds} s 1280x720 clip with motion and grain" >&2
ffmpeg -v error -nostdin -y \
    -f lavfi -i "mandelbrot=s=1280x720:r=25,noise=alls=14:allf=t+u,format=yuv420p" \
    -f lavfi -i "sine=f=440" -t "$seconds" \
    -c:v libx264 -preset medium -crf 14 -c:a aac "$work/source.mp4"

# Joins a rendition's init and segments into one file, in segment order.
joined() {
    local dir="$1" out="$2"
    cat "$dir/init.mp4" > "$out"
    local n=1
    while [ -f "$dir/$n.m4s" ]; do cat "$dir/$n.m4s" >> "$out"; n=$((n + 1)); done
}

ssim_of() {
    ffmpeg -nostdin -v info -i "$1" -i "$work/source.mp4" -lavfi "[0:v][1:v]ssim" -f null - 2>&1 \
        | sed -n 's/.*SSIM.* All:\([0-9.]*\).*/\1/p' | tail -1
}

bits_per_second() {
    local dir="$1"
    local bytes n=1 total=0
    while [ -f "$dir/$n.m4s" ]; do total=$((total + $(stat -c %s "$dir/$n.m4s"))); n=$((n + 1)); done
    awk -v b="$total" -v s="$seconds" 'BEGIN { printf "%.0f", b * 8 / s }'
}

ingest() {
    local name="$1" av1="$2" percent="$3"
    cat > "$work/$name.toml" <<EOF
[ingest]
threads = 0
[ingest.ladder]
rungs = [{ height = 720, bitrate = $bitrate }]
thin_audio_bitrate = 0
av1 = $av1
av1_bitrate_percent = $percent
EOF
    local start end
    start=$(date +%s.%N)
    "$kinema" --config "$work/$name.toml" ingest --quiet --download off \
        --library "$work/lib-$name" --id "$name" "$work/source.mp4" >/dev/null
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

# A rendition's directory in the one generation a fresh library holds.
rendition_dir() { local video="$work/lib-$1/videos/$1"; echo "$video/g$(jq -r .generation "$video/manifest.json")/$2"; }

h264_time=$(ingest h264 false 60)
dir=$(rendition_dir h264 v720)
joined "$dir" "$work/h264.mp4"
h264_rate=$(bits_per_second "$dir")
h264_ssim=$(ssim_of "$work/h264.mp4")
echo "H.264 720p: $h264_rate bit/s, SSIM $h264_ssim, ingest $h264_time s" >&2

points=()
for percent in $percents; do
    time=$(ingest "av1-$percent" true "$percent")
    dir=$(rendition_dir "av1-$percent" v720av1)
    joined "$dir" "$work/av1-$percent.mp4"
    rate=$(bits_per_second "$dir")
    ssim=$(ssim_of "$work/av1-$percent.mp4")
    echo "AV1 720p at $percent%: $rate bit/s, SSIM $ssim, ingest with both rungs $time s" >&2
    points+=("$rate $ssim")
    rm -rf "$work/lib-av1-$percent"
done

printf '%s\n' "${points[@]}" | sort -n | awk -v hr="$h264_rate" -v hs="$h264_ssim" '
    { rate[NR] = $1; ssim[NR] = $2 }
    END {
        for (i = 1; i < NR; i++) {
            if (ssim[i] <= hs && hs <= ssim[i + 1]) {
                r = rate[i] + (hs - ssim[i]) * (rate[i + 1] - rate[i]) / (ssim[i + 1] - ssim[i])
                printf "AV1 reaches H.264 SSIM %.5f at %.0f bit/s against %.0f: %.1f%% of the bits saved\n", hs, r, hr, 100 * (1 - r / hr)
                exit 0
            }
        }
        printf "H.264 SSIM %.5f is outside the AV1 points measured (%.5f .. %.5f); widen PERCENTS\n", hs, ssim[1], ssim[NR]
        exit 1
    }'
