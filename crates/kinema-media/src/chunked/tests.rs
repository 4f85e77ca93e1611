use kinema_core::ladder::{FrameRate, LadderConfig};

use super::*;
use crate::probe::{AudioStream, VideoStream};

fn source(duration_seconds: f64, frame_rate: FrameRate) -> SourceInfo {
    SourceInfo {
        duration_seconds,
        video: Some(VideoStream {
            index: 0,
            codec: "h264".into(),
            coded_width: 640,
            coded_height: 360,
            rotation: 0,
            frame_rate,
            pixel_format: "yuv420p".into(),
            interlaced: false,
            hdr: false,
        }),
        audio: vec![AudioStream {
            index: 1,
            codec: "aac".into(),
            channels: 2,
            sample_rate: 48000,
            language: "und".into(),
            title: None,
            default: true,
            describes_video: false,
            commentary: false,
        }],
        subtitles: Vec::new(),
        format_name: "mov,mp4,m4a,3gp,3g2,mj2".into(),
    }
}

fn config(segment_seconds: u32, chunk_seconds: u32) -> IngestConfig {
    IngestConfig {
        ladder: LadderConfig {
            segment_seconds,
            ..LadderConfig::default()
        },
        chunked: ChunkConfig { chunk_seconds },
        ..IngestConfig::default()
    }
}

/// (first segment, segments, start) of every chunk.
fn shape(plan: &ChunkedPlan) -> Vec<(u64, Option<u64>, f64)> {
    plan.chunks
        .iter()
        .map(|chunk| (chunk.first_segment, chunk.segments, chunk.start_seconds))
        .collect()
}

#[test]
fn whole_segments_per_chunk_and_the_remainder_in_the_last() {
    let plan = plan(source(25.3, FrameRate::new(25, 1)), &config(2, 6), &[]).unwrap();
    assert!(plan.is_chunked());
    assert_eq!(
        shape(&plan),
        [
            (1, Some(3), 0.0),
            (4, Some(3), 6.0),
            (7, Some(3), 12.0),
            (10, None, 18.0)
        ]
    );
    assert_eq!(
        plan.chunk_part(1).unwrap().1,
        EncodePart::VideoChunk {
            start_seconds: 6.0,
            frames: Some(150)
        }
    );
    assert!((plan.chunk_media_seconds(3) - 7.3).abs() < 1e-9);
}

#[test]
fn chunk_length_rounds_to_segments() {
    let plan = plan(source(40.0, FrameRate::new(25, 1)), &config(4, 10), &[]).unwrap();
    // 10 s of 4 s segments rounds to 3 segments (12 s); 10 whole segments
    // make 3 chunks, the last with 4.
    assert_eq!(
        shape(&plan),
        [(1, Some(3), 0.0), (4, Some(3), 12.0), (7, None, 24.0)]
    );
    // 60 s in 16 s chunks (4 segments): 15 segments make three chunks and
    // a last of three segments, not two chunks and a last of seven.
    let plan = super::plan(source(60.0, FrameRate::new(25, 1)), &config(4, 15), &[]).unwrap();
    assert_eq!(
        shape(&plan),
        [
            (1, Some(4), 0.0),
            (5, Some(4), 16.0),
            (9, Some(4), 32.0),
            (13, None, 48.0)
        ]
    );
}

#[test]
fn ntsc_chunks_start_on_frames_not_on_nominal_seconds() {
    let plan = plan(
        source(60.0, FrameRate::new(30000, 1001)),
        &config(4, 20),
        &[],
    )
    .unwrap();
    // 120 frames per segment (4.004 s); 5 segments per chunk = 600 frames;
    // 14 whole segments make three chunks, the last of four.
    assert_eq!(plan.ladder.gop_frames, Some(120));
    let starts: Vec<f64> = plan
        .chunks
        .iter()
        .map(|chunk| chunk.start_seconds)
        .collect();
    assert_eq!(starts, [0.0, 20.02, 40.04]);
}

#[test]
fn shorter_than_two_chunks_is_one_task() {
    let plan = plan(source(100.0, FrameRate::new(25, 1)), &config(4, 60), &[]).unwrap();
    assert!(!plan.is_chunked());
    assert_eq!(shape(&plan), [(1, None, 0.0)]);
    // Just under two chunks of whole segments: still one.
    let plan = plan_of(119.9);
    assert!(!plan.is_chunked());
    assert_eq!(plan_of(120.0).chunks.len(), 2);
}

fn plan_of(duration: f64) -> ChunkedPlan {
    plan(source(duration, FrameRate::new(25, 1)), &config(4, 60), &[]).unwrap()
}

#[test]
fn mpeg_ts_is_one_task_and_matroska_is_split() {
    let mut ts = source(600.0, FrameRate::new(25, 1));
    ts.format_name = "mpegts".into();
    assert!(!plan(ts, &config(4, 60), &[]).unwrap().is_chunked());
    let mut mkv = source(600.0, FrameRate::new(25, 1));
    mkv.format_name = "matroska,webm".into();
    assert_eq!(plan(mkv, &config(4, 60), &[]).unwrap().chunks.len(), 10);
}

#[test]
fn audio_only_source_is_one_task() {
    let mut silent_picture = source(600.0, FrameRate::new(25, 1));
    silent_picture.video = None;
    let plan = plan(silent_picture, &config(4, 60), &[]).unwrap();
    assert!(!plan.is_chunked());
}

#[test]
fn bad_chunk_settings_and_indexes_are_refused() {
    let error = plan(source(60.0, FrameRate::new(25, 1)), &config(4, 2), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        MediaError::Settings("chunk_seconds 2 is out of range; use 4 (one segment) to 3600".into())
            .to_string()
    );
    assert!(
        ChunkConfig {
            chunk_seconds: 3601
        }
        .validate(4)
        .is_err()
    );
    let error = plan_of(600.0).chunk_part(10).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("chunk 10 is not in the plan, which has 10 chunks")
    );
}

#[test]
fn plan_survives_json() {
    let plan = plan_of(600.0);
    let json = serde_json::to_string(&plan).unwrap();
    let back: ChunkedPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn progress_is_the_sum_of_chunk_seconds_over_the_duration() {
    let plan = plan_of(600.0);
    assert_eq!(plan.progress(0.0).percent, 2.0);
    assert_eq!(plan.progress(300.0).percent, 2.0 + 93.0 / 2.0);
    assert_eq!(plan.progress(900.0).percent, 95.0);
}
