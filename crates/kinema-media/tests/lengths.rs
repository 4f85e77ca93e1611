//! Sources of every length: an encode longer than the stall timeout, whose
//! progress must come from the segments written, and clips shorter than one
//! thumbnail interval.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use kinema_media::{Progress, Stage};
use support::{Library, assert_complete, fixture, test_config};

/// 90 s of 640x360 with sound: its encode takes several seconds even at
/// `ultrafast`, many times the stall timeout below.
fn long_clip() -> std::path::PathBuf {
    fixture(
        "long-90s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=25:d=90",
            "-f",
            "lavfi",
            "-i",
            "sine=f=330:d=90",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    )
}

/// The regression: ffmpeg reports no progress until its sprite output
/// starts at the very end, so every encode longer than the stall timeout
/// was stopped as stalled, and progress sat at its first value.
#[tokio::test]
async fn encode_longer_than_the_stall_timeout_publishes_with_progress_from_segments() {
    let source = long_clip();
    let library = Library::new();
    // One-second segments: each is written within a small part of the
    // stall timeout even on a loaded machine, while the whole encode
    // lasts several stall timeouts.
    let base = test_config();
    let config = kinema_media::IngestConfig {
        stall_timeout: Duration::from_secs(2),
        ladder: kinema_core::ladder::LadderConfig {
            segment_seconds: 1,
            ..base.ladder.clone()
        },
        ..base
    };
    let seen = Mutex::new(Vec::<Progress>::new());
    let started = std::time::Instant::now();
    let manifest = library
        .ingest_reporting(&source, "long", &config, &|progress| {
            seen.lock().unwrap().push(progress)
        })
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_complete(&library.video_dir("long"), &manifest);
    assert!((manifest.duration_seconds - 90.0).abs() < 0.5);

    let seen = seen.into_inner().unwrap();
    let transcoding: Vec<f64> = seen
        .iter()
        .filter(|progress| progress.stage == Stage::Transcoding)
        .map(|progress| progress.percent)
        .collect();
    // 90 segments of 1 s: at least a handful of distinct readings whatever
    // the machine's speed, each further than the last.
    assert!(
        transcoding.len() >= 6,
        "{} readings in {elapsed:?}: {transcoding:?}",
        transcoding.len()
    );
    assert!(
        transcoding.windows(2).all(|pair| pair[0] < pair[1]),
        "{transcoding:?}"
    );
    assert!(
        transcoding[1] < 50.0 && *transcoding.last().unwrap() > 80.0,
        "{transcoding:?}"
    );
    let percents: Vec<f64> = seen.iter().map(|progress| progress.percent).collect();
    assert!(
        percents.windows(2).all(|pair| pair[0] <= pair[1]),
        "{percents:?}"
    );
    assert_eq!(seen.last().unwrap().stage, Stage::Done);
}

async fn publishes_with_thumbnails(seconds: &str, id: &str) {
    let source = fixture(
        &format!("{id}.mp4"),
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=s=320x180:r=25:d={seconds}"),
            "-f",
            "lavfi",
            "-i",
            &format!("sine=d={seconds}"),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    let library = Library::new();
    let manifest = library.ingest(&source, id, &test_config()).await.unwrap();
    assert_complete(&library.video_dir(id), &manifest);
    let dir = library.video_dir(id);
    for file in [
        "thumbs/sprite.jpg",
        "thumbs/poster.jpg",
        "thumbs/thumbs.vtt",
    ] {
        assert!(
            std::fs::metadata(dir.join(file)).unwrap().len() > 0,
            "{file}"
        );
    }
    let sprite = support::stream_fields(&dir.join("thumbs/sprite.jpg"), "v:0", "width,height");
    assert_eq!(sprite, "width=160\nheight=90\n", "one thumbnail of 160x90");
}

/// A clip shorter than half a sprite interval once failed with "ffmpeg
/// wrote no thumbs/sprite.jpg" (`fps=1/2` emits no frame for it).
#[tokio::test]
async fn half_second_clip_publishes() {
    publishes_with_thumbnails("0.5", "half-second").await;
}

#[tokio::test]
async fn one_second_clip_publishes() {
    publishes_with_thumbnails("1", "one-second").await;
}
