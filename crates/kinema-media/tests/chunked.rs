//! A video encoded in time chunks, each chunk a separate call into its own
//! directory, is the video a whole encode makes: compared file by file with
//! a box reader of this test's own and with real ffmpeg, never through
//! kinema's manifests or its mp4 module.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use kinema_core::{AccessPolicy, VideoId};
use kinema_media::chunked::{self, AssembleRequest, ChunkConfig, ChunkedPlan};
use kinema_media::{IngestConfig, MediaError};
use kinema_store::Store;
use support::*;
use tokio_util::sync::CancellationToken;

/// 24 s of moving picture (testsrc2's counter and sweep) at 25 fps with a
/// tone: four chunks of 6 s, each three 2 s segments.
fn moving_clip() -> PathBuf {
    fixture(
        "moving-24s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=24",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=24:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-shortest",
        ],
    )
}

/// 24 s of the same picture at NTSC's 29.97 fps in Matroska, its video
/// starting 0.32 s after its audio: segments of 60 frames (2.002 s), chunk
/// starts that are no whole number of seconds, and a video timeline that
/// does not begin at zero.
fn ntsc_late_video_clip() -> PathBuf {
    fixture(
        "moving-24s-ntsc-late-video.mkv",
        &[
            "-itsoffset",
            "0.3",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=30000/1001:d=24",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=24.5:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
        ],
    )
}

/// What a case's video must be, known without kinema: its frame duration
/// (seconds), frames per segment and frame count.
struct Expected {
    frame_seconds: f64,
    frames_per_segment: usize,
    frames: usize,
}

/// The test ladder in 2 s segments and 6 s chunks, with x264's `veryfast`:
/// unlike `ultrafast` it makes B-frames, so composition offsets must carry
/// over chunk boundaries too.
fn chunked_config() -> IngestConfig {
    let mut config = test_config();
    config.ladder.segment_seconds = 2;
    config.preset = "veryfast".into();
    config.chunked = ChunkConfig { chunk_seconds: 6 };
    config
}

/// One track fragment as this test reads it: its base decode time, sample
/// durations and composition offsets, and whether its first sample is a
/// sync sample.
#[derive(Debug, Clone, PartialEq)]
struct Fragment {
    base_decode_time: u64,
    durations: Vec<u64>,
    composition_offsets: Vec<i64>,
    starts_with_sync: bool,
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The boxes in `bytes[start..end]`: (type, body start, end).
fn boxes(bytes: &[u8], start: usize, end: usize) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        let size = be32(bytes, at) as usize;
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
        let (body, size) = match size {
            1 => (at + 16, be64(bytes, at + 8) as usize),
            0 => (at + 8, end - at),
            size => (at + 8, size),
        };
        assert!(size >= 8 && at + size <= end, "box {kind} overruns");
        found.push((kind, body, at + size));
        at += size;
    }
    found
}

fn child(bytes: &[u8], start: usize, end: usize, kind: &str) -> Option<(usize, usize)> {
    boxes(bytes, start, end)
        .into_iter()
        .find(|(found, _, _)| found == kind)
        .map(|(_, body, end)| (body, end))
}

/// The default sample duration and flags of the track (`trex` in the init
/// segment).
fn trex(init: &[u8]) -> (u64, u32) {
    let (moov, moov_end) = child(init, 0, init.len(), "moov").unwrap();
    let (mvex, mvex_end) = child(init, moov, moov_end, "mvex").unwrap();
    let (trex, _) = child(init, mvex, mvex_end, "trex").unwrap();
    (u64::from(be32(init, trex + 12)), be32(init, trex + 16))
}

/// Reads the single track fragment of a CMAF segment.
fn fragment(segment: &[u8], init_defaults: (u64, u32)) -> Fragment {
    let (moof, moof_end) = child(segment, 0, segment.len(), "moof").unwrap();
    let (traf, traf_end) = child(segment, moof, moof_end, "traf").unwrap();
    let (tfhd, _) = child(segment, traf, traf_end, "tfhd").unwrap();
    let tfhd_flags = be32(segment, tfhd) & 0x00ff_ffff;
    let mut at = tfhd + 8;
    if tfhd_flags & 0x1 != 0 {
        at += 8;
    }
    if tfhd_flags & 0x2 != 0 {
        at += 4;
    }
    let mut default_duration = init_defaults.0;
    if tfhd_flags & 0x8 != 0 {
        default_duration = u64::from(be32(segment, at));
        at += 4;
    }
    if tfhd_flags & 0x10 != 0 {
        at += 4;
    }
    let mut default_flags = init_defaults.1;
    if tfhd_flags & 0x20 != 0 {
        default_flags = be32(segment, at);
    }
    let (tfdt, _) = child(segment, traf, traf_end, "tfdt").unwrap();
    let base_decode_time = if segment[tfdt] == 1 {
        be64(segment, tfdt + 4)
    } else {
        u64::from(be32(segment, tfdt + 4))
    };
    let (trun, _) = child(segment, traf, traf_end, "trun").unwrap();
    let version = segment[trun];
    let flags = be32(segment, trun) & 0x00ff_ffff;
    let count = be32(segment, trun + 4) as usize;
    let mut at = trun + 8;
    if flags & 0x1 != 0 {
        at += 4;
    }
    let mut first_flags = None;
    if flags & 0x4 != 0 {
        first_flags = Some(be32(segment, at));
        at += 4;
    }
    let mut durations = Vec::new();
    let mut composition_offsets = Vec::new();
    let mut sample_flags = Vec::new();
    for _ in 0..count {
        let mut duration = default_duration;
        if flags & 0x100 != 0 {
            duration = u64::from(be32(segment, at));
            at += 4;
        }
        if flags & 0x200 != 0 {
            at += 4;
        }
        let mut sample_flag = default_flags;
        if flags & 0x400 != 0 {
            sample_flag = be32(segment, at);
            at += 4;
        }
        let mut offset = 0;
        if flags & 0x800 != 0 {
            let raw = be32(segment, at);
            offset = if version == 0 {
                i64::from(raw)
            } else {
                i64::from(raw as i32)
            };
            at += 4;
        }
        durations.push(duration);
        composition_offsets.push(offset);
        sample_flags.push(sample_flag);
    }
    let first = first_flags.or(sample_flags.first().copied()).unwrap();
    // ISO/IEC 14496-12 §8.8.3.1: sample_is_non_sync_sample is bit 16.
    Fragment {
        base_decode_time,
        durations,
        composition_offsets,
        starts_with_sync: first & 0x0001_0000 == 0,
    }
}

/// The rendition directories of a published video (those with an init
/// segment), by name.
fn rendition_dirs(video_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(video_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("init.mp4").exists())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A rendition's init segment and its segments 1, 2, … in order.
fn read_rendition(dir: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let init = std::fs::read(dir.join("init.mp4")).unwrap();
    let mut segments = Vec::new();
    for number in 1.. {
        match std::fs::read(dir.join(format!("{number}.m4s"))) {
            Ok(bytes) => segments.push(bytes),
            Err(_) => break,
        }
    }
    (init, segments)
}

/// The presentation times of a fragment's samples (decode time plus
/// composition offset), in order of presentation.
fn presentation_times(fragment: &Fragment) -> Vec<i64> {
    let mut decode_time = fragment.base_decode_time as i64;
    let mut times = Vec::new();
    for (duration, offset) in fragment.durations.iter().zip(&fragment.composition_offsets) {
        times.push(decode_time + offset);
        decode_time += *duration as i64;
    }
    times.sort_unstable();
    times
}

fn fragments(dir: &Path) -> Vec<Fragment> {
    let (init, segments) = read_rendition(dir);
    let defaults = trex(&init);
    segments
        .iter()
        .map(|segment| fragment(segment, defaults))
        .collect()
}

/// The rendition as one file: its init segment then every segment, as a
/// player appends them.
fn concatenated(dir: &Path, out: &Path) -> PathBuf {
    let (init, segments) = read_rendition(dir);
    let mut bytes = init;
    for segment in segments {
        bytes.extend(segment);
    }
    let path = out.join(format!(
        "{}.mp4",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// ffmpeg decodes the whole file without a word on stderr; returns the
/// decoded frames' presentation times (seconds, in decode output order).
fn decode_frames(path: &Path) -> Vec<f64> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{} decoded with errors: {stderr}",
        path.display()
    );
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.trim().trim_end_matches(',').parse().unwrap())
        .collect()
}

/// ffmpeg's PSNR of image `b` against `a` (same size, or it fails), dB.
fn psnr(a: &Path, b: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-v", "info", "-nostdin", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", "psnr", "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psnr of {}: {stderr}", b.display());
    let average = stderr
        .split("average:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no PSNR in {stderr}"));
    if average == "inf" {
        f64::INFINITY
    } else {
        average.parse().unwrap()
    }
}

/// Copies every file under `from` into `to`, keeping relative paths (what
/// a worker does when it downloads a task's objects into its scratch).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Runs every task of `plan` as its own call into its own directory under
/// `scratch` (chunks out of order, chunk 1 twice over a stale file, as a
/// retry after a lost worker would), then copies their outputs into one
/// staging directory; returns it and the most media seconds each chunk
/// reported.
async fn run_tasks(
    config: &IngestConfig,
    plan: &ChunkedPlan,
    source: &Path,
    scratch: &Path,
) -> (PathBuf, Vec<f64>) {
    let cancel = CancellationToken::new();
    let reported = Mutex::new(vec![0.0_f64; plan.chunks.len()]);
    let chunk_dir = |index: usize| scratch.join(format!("chunk{index}"));
    let order: Vec<usize> = (0..plan.chunks.len()).rev().chain([1]).collect();
    for index in order {
        if index == 1 && chunk_dir(1).exists() {
            std::fs::write(chunk_dir(1).join("0").join("99.m4s"), b"stale").unwrap();
        }
        let on_progress = |seconds: f64| {
            let mut reported = reported.lock().unwrap();
            reported[index] = reported[index].max(seconds);
        };
        chunked::run_chunk(
            config,
            plan,
            index,
            source,
            &chunk_dir(index),
            &cancel,
            &on_progress,
        )
        .await
        .unwrap();
    }
    let audio_dir = scratch.join("audio");
    chunked::run_audio(config, plan, source, &audio_dir, &cancel, &|_| {})
        .await
        .unwrap();
    let staging = scratch.join("staging");
    for index in 0..plan.chunks.len() {
        copy_tree(&chunk_dir(index), &staging);
    }
    copy_tree(&audio_dir, &staging);
    (staging, reported.into_inner().unwrap())
}

fn request(id: &str) -> AssembleRequest {
    AssembleRequest {
        id: VideoId::new(id).unwrap(),
        title: id.to_string(),
        access: AccessPolicy::Public,
    }
}

#[tokio::test]
async fn chunked_encode_equals_the_whole_encode() {
    let expected = Expected {
        frame_seconds: 1.0 / 25.0,
        frames_per_segment: 50,
        frames: 600,
    };
    assert_chunked_equals_whole(&moving_clip(), &expected).await;
}

#[tokio::test]
async fn ntsc_matroska_with_late_video_chunked_equals_the_whole_encode() {
    let expected = Expected {
        frame_seconds: 1001.0 / 30000.0,
        frames_per_segment: 60,
        // The source's 720 frames (ffprobe -count_frames), from 0.321 s,
        // after the 10 frames (0.321 s × 29.97) by which the constant frame
        // rate fills the time before the video's first frame.
        frames: 730,
    };
    assert_chunked_equals_whole(&ntsc_late_video_clip(), &expected).await;
}

async fn assert_chunked_equals_whole(source: &Path, expected: &Expected) {
    let source = source.to_path_buf();
    let config = chunked_config();
    let library = Library::new();
    library.ingest(&source, "whole", &config).await.unwrap();

    let plan = chunked::probe_and_plan(&config, &source, &[])
        .await
        .unwrap();
    let starts: Vec<(u64, Option<u64>)> = plan
        .chunks
        .iter()
        .map(|chunk| (chunk.first_segment, chunk.segments))
        .collect();
    assert_eq!(
        starts,
        [(1, Some(3)), (4, Some(3)), (7, Some(3)), (10, None)],
        "6 s chunks of three segments, the rest in the last"
    );
    // The plan travels as JSON in a queue task.
    let plan: ChunkedPlan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (staging, reported) = run_tasks(&config, &plan, &source, scratch.path()).await;
    // Progress is media seconds per chunk; the sum reaches the source.
    assert!(
        reported.iter().sum::<f64>() >= 24.0 * 0.9,
        "chunks reported {reported:?}"
    );
    let ingested = chunked::assemble(
        library.store.as_ref(),
        &config,
        &plan,
        &staging,
        &request("chunked"),
        &CancellationToken::new(),
        &|_| {},
    )
    .await
    .unwrap();
    let whole_dir = library.video_dir("whole");
    let chunked_dir = library.video_dir("chunked");
    assert_complete(&chunked_dir, &ingested.manifest);

    let renditions = rendition_dirs(&whole_dir);
    assert_eq!(renditions, ["a32", "a64", "v144", "v180"]);
    assert_eq!(rendition_dirs(&chunked_dir), renditions);
    let decoded = tempfile::tempdir().unwrap();
    for name in &renditions {
        let whole = fragments(&whole_dir.join(name));
        let chunked = fragments(&chunked_dir.join(name));
        let is_video = name.starts_with('v');
        if is_video {
            let segments = expected.frames.div_ceil(expected.frames_per_segment);
            assert_eq!(chunked.len(), segments, "{name}");
            let whole_init = std::fs::read(whole_dir.join(name).join("init.mp4")).unwrap();
            let chunked_init = std::fs::read(chunked_dir.join(name).join("init.mp4")).unwrap();
            assert!(whole_init == chunked_init, "{name}: init segments differ");
        }
        assert_eq!(chunked.len(), whole.len(), "{name}: segment count");
        let mut expected_start = chunked[0].base_decode_time;
        assert_eq!(expected_start, whole[0].base_decode_time, "{name}");
        let chunked_count = chunked.len();
        for (number, (chunked, whole)) in chunked.iter().zip(&whole).enumerate() {
            let number = number + 1;
            assert!(
                chunked.starts_with_sync,
                "{name}/{number} starts without a keyframe"
            );
            // No gap, no overlap: each fragment starts where the last ended.
            assert_eq!(
                chunked.base_decode_time, expected_start,
                "{name}/{number} tfdt"
            );
            if is_video {
                // Where the whole encode's starts, 2 s at 25 fps, with its
                // B-frame reordering.
                assert_eq!(
                    chunked.base_decode_time, whole.base_decode_time,
                    "{name}/{number}"
                );
                assert_eq!(
                    chunked.durations, whole.durations,
                    "{name}/{number} durations"
                );
                if number < chunked_count {
                    assert_eq!(
                        chunked.durations.len(),
                        expected.frames_per_segment,
                        "{name}/{number}"
                    );
                }
                // x264 places B-frames by what it sees ahead, which ends at
                // a chunk's end, so the order inside a segment may differ;
                // what must not is the frames shown: every frame slot of
                // the segment once, the first (the keyframe) as in the
                // whole encode's edit list.
                assert_eq!(
                    presentation_times(chunked),
                    presentation_times(whole),
                    "{name}/{number} presentation times"
                );
                assert_eq!(
                    chunked.composition_offsets[0], whole.composition_offsets[0],
                    "{name}/{number} keyframe composition offset"
                );
            } else {
                // In a whole encode ffmpeg's dash muxer cuts the audio when
                // the video cuts, at the audio frame interleaved before the
                // video's keyframe; the audio task, alone in its muxer, cuts
                // at its own 2 s. Both are continuous; they differ by a few
                // 1024-sample AAC frames (21 ms each at 48 kHz).
                let seconds =
                    |fragment: &Fragment| fragment.durations.iter().sum::<u64>() as f64 / 48_000.0;
                assert!(
                    (seconds(chunked) - seconds(whole)).abs() <= 0.1,
                    "{name}/{number}: {} s against {} s",
                    seconds(chunked),
                    seconds(whole)
                );
            }
            expected_start += chunked.durations.iter().sum::<u64>();
        }
        let samples = |fragments: &[Fragment]| -> usize {
            fragments
                .iter()
                .map(|fragment| fragment.durations.len())
                .sum()
        };
        assert_eq!(samples(&chunked), samples(&whole), "{name}: sample count");

        let chunked_frames = decode_frames(&concatenated(&chunked_dir.join(name), decoded.path()));
        let whole_frames = decode_frames(&concatenated(&whole_dir.join(name), decoded.path()));
        assert_eq!(
            chunked_frames.len(),
            whole_frames.len(),
            "{name}: frames decoded"
        );
        if is_video {
            assert_eq!(chunked_frames.len(), expected.frames, "{name}");
            // Each frame is shown one frame after the one before, across
            // every chunk boundary.
            let mut shown = chunked_frames.clone();
            shown.sort_by(f64::total_cmp);
            for (k, time) in shown.iter().enumerate() {
                assert!(
                    (time - (shown[0] + k as f64 * expected.frame_seconds)).abs() < 0.001,
                    "{name}: frame {k} shown at {time}"
                );
            }
        }
    }
    assert_decodes(&chunked_dir.join("master.m3u8"));
    assert_decodes(&chunked_dir.join("manifest.mpd"));
    // The sprite is tiled from the chunks' tiles, the poster made by the
    // chunk that holds its frame: the same pictures as the whole encode's,
    // give or take a JPEG encode.
    for file in ["thumbs/sprite.jpg", "thumbs/poster.jpg"] {
        let similarity = psnr(&whole_dir.join(file), &chunked_dir.join(file));
        assert!(
            similarity >= 30.0,
            "{file}: PSNR {similarity} dB against the whole encode's"
        );
    }
    assert_eq!(
        std::fs::read_to_string(chunked_dir.join("thumbs/thumbs.vtt")).unwrap(),
        std::fs::read_to_string(whole_dir.join("thumbs/thumbs.vtt")).unwrap()
    );
}

#[tokio::test]
async fn assemble_refuses_a_missing_chunk_and_publishes_nothing() {
    let source = moving_clip();
    let config = chunked_config();
    let library = Library::new();
    let plan = chunked::probe_and_plan(&config, &source, &[])
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let staging = scratch.path().join("staging");
    // Chunk 2 never ran.
    for index in [0, 1, 3] {
        chunked::run_chunk(&config, &plan, index, &source, &staging, &cancel, &|_| {})
            .await
            .unwrap_or_else(|error| panic!("chunk {index}: {error}"));
        copy_tree(&staging, &scratch.path().join("merged"));
    }
    let merged = scratch.path().join("merged");
    chunked::run_audio(&config, &plan, &source, &staging, &cancel, &|_| {})
        .await
        .unwrap();
    copy_tree(&staging, &merged);
    let error = chunked::assemble(
        library.store.as_ref(),
        &config,
        &plan,
        &merged,
        &request("gap"),
        &cancel,
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, MediaError::Output(detail) if detail.contains("chunk 2 has no output")),
        "{error}"
    );
    assert!(!merged.exists(), "staging left behind");
    assert!(library.store.list_videos().await.unwrap().is_empty());

    let error = chunked::run_chunk(&config, &plan, 4, &source, &staging, &cancel, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        MediaError::Settings("chunk 4 is not in the plan, which has 4 chunks".into()).to_string()
    );
}
