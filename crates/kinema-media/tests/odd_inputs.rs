//! Every odd source the issue names, made with ffmpeg in test setup: each
//! either publishes a correct stream (checked with ffprobe and a full decode)
//! or fails with a clear error and publishes nothing.

mod support;

use std::path::Path;

use kinema_core::RenditionKind;
use kinema_media::MediaError;
use support::*;

/// A 2 s 320x180 clip with a tone, encoded with extra ffmpeg options.
fn clip(name: &str, video_options: &[&str], extra_inputs: &[&str]) -> std::path::PathBuf {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x180:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:d=2",
    ];
    args.extend_from_slice(extra_inputs);
    args.extend_from_slice(&["-map", "0:v", "-map", "1:a"]);
    args.extend_from_slice(video_options);
    args.extend_from_slice(&["-c:a", "aac", "-shortest"]);
    fixture(name, &args)
}

fn video_ids(manifest: &kinema_core::Manifest) -> Vec<(String, u32, u32)> {
    manifest
        .renditions
        .iter()
        .filter(|r| r.kind == RenditionKind::Video)
        .map(|r| (r.id.clone(), r.width.unwrap(), r.height.unwrap()))
        .collect()
}

async fn ingest_ok(source: &Path, id: &str) -> (Library, kinema_core::Manifest) {
    let library = Library::new();
    let manifest = library.ingest(source, id, &test_config()).await.unwrap();
    assert_complete(&library.video_dir(id), &manifest);
    assert_decodes(&library.video_dir(id).join("master.m3u8"));
    assert_decodes(&library.video_dir(id).join("manifest.mpd"));
    (library, manifest)
}

#[tokio::test]
async fn rotated_phone_video_is_published_upright() {
    // FACTS.md: rotate=90 on a stream copy sets a display matrix.
    let landscape = clip(
        "rotate-src.mp4",
        &["-c:v", "libx264", "-preset", "ultrafast"],
        &[],
    );
    let rotated = fixture(
        "rotated.mp4",
        &[
            "-i",
            landscape.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
        ],
    );
    assert!(stream_fields(&rotated, "v", "width").contains("width=320"));
    let (library, manifest) = ingest_ok(&rotated, "rotated").await;
    assert_eq!(
        video_ids(&manifest),
        [("v144".into(), 144, 256), ("v180".into(), 180, 320)]
    );
    // The output carries no rotation of its own: its pixels are upright.
    let init = library.video_dir("rotated").join("v180/init.mp4");
    let fields = stream_fields(&init, "v", "width,height");
    assert!(
        fields.contains("width=180") && fields.contains("height=320"),
        "{fields}"
    );
    let side_data = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams"])
        .arg(&init)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&side_data.stdout);
    assert!(
        !text.contains("rotation=-90") && !text.contains("rotation=90"),
        "{text}"
    );
}

#[tokio::test]
async fn odd_dimensions_give_even_renditions() {
    let source = fixture(
        "odd-321x241.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=321x241:r=25:d=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv444p",
        ],
    );
    let (_library, manifest) = ingest_ok(&source, "odd").await;
    assert_eq!(
        video_ids(&manifest),
        [("v144".into(), 192, 144), ("v180".into(), 240, 180)]
    );
    assert!(
        manifest
            .renditions
            .iter()
            .all(|r| r.kind == RenditionKind::Video),
        "no audio track"
    );
}

#[tokio::test]
async fn rungs_whose_aspect_ratios_differ_by_rounding() {
    // 334x180: the 144p rung rounds to 268x144 (1.861), the 180p rung is
    // 334x180 (1.856); ffmpeg's dash muxer refuses such rungs in one set.
    let source = fixture(
        "wide-334x180.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=334x180:r=25:d=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let (_library, manifest) = ingest_ok(&source, "wide").await;
    assert_eq!(
        video_ids(&manifest),
        [("v144".into(), 268, 144), ("v180".into(), 334, 180)]
    );
}

#[tokio::test]
async fn variable_frame_rate_becomes_constant() {
    // Timestamps stretched unevenly: frames 1/25 s apart, then 1/10 s.
    let source = clip(
        "vfr.mkv",
        &[
            "-vf",
            "setpts='if(lt(N,25),N/25,1+(N-25)/10)/TB'",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-vsync",
            "vfr",
        ],
        &[],
    );
    let (library, manifest) = ingest_ok(&source, "vfr").await;
    let frame_rate = manifest.renditions[0].frame_rate.unwrap();
    assert!(frame_rate > 1.0 && frame_rate <= 25.0, "{frame_rate}");
    let (packets, _) = packets(&library.video_dir("vfr").join("v180/index.m3u8"));
    let gaps: Vec<f64> = packets.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let first = gaps[0];
    assert!(
        gaps.iter().all(|gap| (gap - first).abs() < 0.002),
        "uneven frame spacing: {gaps:?}"
    );
}

#[tokio::test]
async fn two_audio_tracks_are_both_kept() {
    let source = clip(
        "two-audio.mp4",
        &["-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast"],
        &["-f", "lavfi", "-i", "sine=f=880:d=2"],
    );
    assert!(stream_fields(&source, "a:1", "codec_name").contains("aac"));
    let (_library, manifest) = ingest_ok(&source, "twoaudio").await;
    let audio: Vec<_> = manifest
        .renditions
        .iter()
        .filter(|r| r.kind == RenditionKind::Audio)
        .map(|r| r.id.as_str())
        .collect();
    // The main and the thin rendition of each track.
    assert_eq!(audio, ["a64", "a32", "a64-1", "a32-1"]);
}

#[tokio::test]
async fn ten_bit_source_becomes_8_bit_yuv420p_high_profile() {
    let source = clip(
        "10bit.mp4",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
        ],
        &[],
    );
    assert!(stream_fields(&source, "v", "pix_fmt").contains("yuv420p10le"));
    let (library, manifest) = ingest_ok(&source, "tenbit").await;
    let playlist = library.video_dir("tenbit").join("v180/index.m3u8");
    let fields = stream_fields(&playlist, "v", "pix_fmt");
    assert!(fields.contains("pix_fmt=yuv420p\n"), "{fields}");
    // Profile byte 0x42/0x4d/0x64 — never High 10 (0x6e).
    assert!(
        !manifest.renditions[0].codecs.starts_with("avc1.6e"),
        "{}",
        manifest.renditions[0].codecs
    );
}

/// ffmpeg's interlace detector over a whole file: (interlaced, progressive)
/// frame counts from its multi-frame verdict.
fn idet(path: &Path) -> (u32, u32) {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "info", "-nostats", "-nostdin", "-i"])
        .arg(path)
        .args(["-vf", "idet", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let line = log
        .lines()
        .find(|line| line.contains("Multi frame detection"))
        .unwrap();
    let count = |label: &str| -> u32 {
        let rest = &line[line.find(label).unwrap() + label.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (count("TFF:") + count("BFF:"), count("Progressive:"))
}

#[tokio::test]
async fn hdr_pq_source_is_tone_mapped_to_8_bit_sdr() {
    let source = clip(
        "hdr-pq.mp4",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "smpte2084",
            "-colorspace",
            "bt2020nc",
        ],
        &[],
    );
    assert!(stream_fields(&source, "v", "color_transfer").contains("smpte2084"));
    let (library, _manifest) = ingest_ok(&source, "hdr").await;
    let playlist = library.video_dir("hdr").join("v180/index.m3u8");
    let fields = stream_fields(&playlist, "v", "pix_fmt,color_transfer");
    assert!(
        fields.contains("pix_fmt=yuv420p\n") && !fields.contains("smpte2084"),
        "{fields}"
    );
}

#[tokio::test]
async fn interlaced_source_is_deinterlaced() {
    // Fields from two instants woven into each frame: real combing, coded
    // as interlaced, top field first.
    let source = fixture(
        "interlaced.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=50:d=2",
            "-vf",
            "tinterlace=mode=interleave_top,setfield=tff",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-flags",
            "+ilme+ildct",
            "-top",
            "1",
        ],
    );
    assert!(stream_fields(&source, "v", "field_order").contains("field_order=tt"));
    let (interlaced, progressive) = idet(&source);
    assert!(
        interlaced > progressive,
        "source: {interlaced} interlaced, {progressive} progressive"
    );
    let (library, _manifest) = ingest_ok(&source, "interlaced").await;
    let (interlaced, progressive) = idet(&library.video_dir("interlaced").join("v180/index.m3u8"));
    assert!(
        progressive > 4 * interlaced,
        "output: {interlaced} interlaced, {progressive} progressive"
    );
}

#[tokio::test]
async fn clip_shorter_than_one_segment() {
    let source = fixture(
        "short.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=1.2",
            "-f",
            "lavfi",
            "-i",
            "sine=d=1.2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    let (library, manifest) = ingest_ok(&source, "short").await;
    assert!(manifest.renditions.iter().all(|r| r.segments == 1));
    let durations = extinf(&library.video_dir("short").join("v180/index.m3u8"));
    assert_eq!(durations.len(), 1);
    assert!((durations[0] - 1.2).abs() < 0.05, "{durations:?}");
}

#[tokio::test]
async fn audio_only_source_becomes_an_audio_only_item() {
    let source = fixture(
        "audio-only.m4a",
        &["-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac"],
    );
    let (library, manifest) = ingest_ok(&source, "podcast").await;
    let kinds: Vec<_> = manifest
        .renditions
        .iter()
        .map(|r| (r.id.as_str(), r.kind))
        .collect();
    assert_eq!(kinds, [("a64", RenditionKind::Audio)]);
    let master = std::fs::read_to_string(library.video_dir("podcast").join("master.m3u8")).unwrap();
    assert!(
        master.contains("CODECS=\"mp4a.40.2\"") && !master.contains("avc1"),
        "{master}"
    );
    assert!(!library.video_dir("podcast").join("thumbs").exists());
}

#[tokio::test]
async fn text_file_named_mp4_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.mp4");
    std::fs::write(&path, "these are my notes, not a video\n".repeat(20)).unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "notes", &test_config())
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::NotMedia { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("source is not a video or audio file"),
        "{error}"
    );
    library.assert_nothing_published().await;
}

#[tokio::test]
async fn truncated_mp4_is_rejected() {
    let whole = std::fs::read(plain_clip()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mp4");
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "cut", &test_config())
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("truncated"), "{error}");
    library.assert_nothing_published().await;
}

#[tokio::test]
async fn truncated_faststart_mp4_is_rejected_after_decoding() {
    // With the index first, ffprobe reads the declared duration and the
    // damage shows only when decoding runs out of data.
    let faststart = fixture(
        "faststart.mp4",
        &[
            "-i",
            plain_clip().to_str().unwrap(),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
        ],
    );
    let whole = std::fs::read(faststart).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut-faststart.mp4");
    std::fs::write(&path, &whole[..whole.len() * 2 / 5]).unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "cutfast", &test_config())
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::Truncated { .. }), "{error}");
    library.assert_nothing_published().await;
}

#[tokio::test]
async fn empty_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp4");
    std::fs::write(&path, b"").unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "empty", &test_config())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "source file is empty (0 bytes)");
    library.assert_nothing_published().await;
}

#[tokio::test]
async fn existing_video_id_is_refused_before_encoding() {
    let library = Library::new();
    library
        .ingest(&plain_clip(), "same", &test_config())
        .await
        .unwrap();
    let error = library
        .ingest(&plain_clip(), "same", &test_config())
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::AlreadyExists(_)), "{error}");
}

#[tokio::test]
async fn missing_ffmpeg_is_a_clear_error() {
    let library = Library::new();
    let config = kinema_media::IngestConfig {
        ffmpeg: "kinema-test-no-ffmpeg".into(),
        ..test_config()
    };
    let error = library
        .ingest(&plain_clip(), "noffmpeg", &config)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "kinema-test-no-ffmpeg was not found on PATH; install ffmpeg (scripts/install-deps does)"
    );
    library.assert_nothing_published().await;
}
