//! Trick play and download, checked with real ffmpeg and ffprobe rather
//! than with kinema's own measurements: every entry of every I-frame
//! playlist, cut out of its segment and put after the init segment,
//! decodes to exactly one picture, a keyframe, at the segment's start
//! time; `download.mp4` has its index first, the video's duration, a video
//! and an audio stream, and decodes without error.

mod support;

use std::path::Path;
use std::process::Command;

use kinema_media::download::DownloadSetting;
use support::*;

/// 10 s of moving picture at 320x180 with a tone: several segments of
/// differing sizes, and a short last one.
fn moving_clip() -> std::path::PathBuf {
    fixture(
        "trickplay.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=10.5",
            "-f",
            "lavfi",
            "-i",
            "sine=f=330:d=10.5:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
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

/// The value of attribute `name` of an HLS tag line, unquoted.
fn attribute<'a>(line: &'a str, name: &str) -> &'a str {
    let list = line.split_once(':').unwrap().1;
    // Split on the commas outside quotes.
    let mut in_quotes = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (index, character) in list.char_indices() {
        match character {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                pieces.push(&list[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&list[start..]);
    pieces
        .into_iter()
        .find_map(|piece| piece.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .trim_matches('"')
}

/// One I-frame playlist entry: duration, byte range, segment file.
struct Entry {
    seconds: f64,
    length: usize,
    offset: usize,
    uri: String,
}

fn entries(playlist: &str) -> (String, Vec<Entry>) {
    let mut map = None;
    let mut entries = Vec::new();
    let mut seconds = None;
    let mut range = None;
    assert!(playlist.contains("#EXT-X-I-FRAMES-ONLY\n"), "{playlist}");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=") {
            map = Some(rest.trim_matches('"').to_string());
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            seconds = Some(rest.trim_end_matches(',').parse::<f64>().unwrap());
        } else if let Some(rest) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            let (length, offset) = rest.split_once('@').expect("every range has an offset");
            range = Some((length.parse().unwrap(), offset.parse().unwrap()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let (length, offset) = range.take().expect("a byte range before each entry");
            entries.push(Entry {
                seconds: seconds.take().expect("an EXTINF before each entry"),
                length,
                offset,
                uri: line.to_string(),
            });
        }
    }
    (map.expect("an EXT-X-MAP"), entries)
}

/// The frames ffprobe decodes from `file`: (picture type, key frame, time).
fn frames(file: &Path) -> Vec<(String, bool, f64)> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_frames"])
        .args([
            "-show_entries",
            "frame=pict_type,key_frame,best_effort_timestamp_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    assert!(output.status.success(), "ffprobe {}", file.display());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            // key_frame,pict_type,best_effort_timestamp_time in ffprobe's
            // own order of the section's fields.
            let fields: Vec<&str> = line.split(',').collect();
            let key_frame = fields[0] == "1";
            let time = fields[1].parse().unwrap();
            let pict_type = fields[2].to_string();
            (pict_type, key_frame, time)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_iframe_range_decodes_to_one_keyframe_at_its_segments_start() {
    let library = Library::new();
    let manifest = library
        .ingest(&moving_clip(), "scrub", &test_config())
        .await
        .unwrap();
    let dir = library.video_dir("scrub");
    assert_complete(&dir, &manifest);
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    let iframe_lines: Vec<&str> = master
        .lines()
        .filter(|line| line.starts_with("#EXT-X-I-FRAME-STREAM-INF:"))
        .collect();
    let videos: Vec<_> = manifest
        .renditions
        .iter()
        .filter(|rendition| rendition.kind == kinema_core::RenditionKind::Video)
        .collect();
    assert_eq!(iframe_lines.len(), videos.len(), "{master}");
    let scratch = tempfile::tempdir().unwrap();
    for (line, video) in iframe_lines.iter().zip(&videos) {
        let uri = attribute(line, "URI");
        assert_eq!(
            uri,
            format!("g{}/{}/iframes.m3u8", manifest.generation, video.id)
        );
        assert_eq!(attribute(line, "CODECS"), video.codecs);
        assert_eq!(
            attribute(line, "RESOLUTION"),
            format!("{}x{}", video.width.unwrap(), video.height.unwrap())
        );
        let bandwidth: f64 = attribute(line, "BANDWIDTH").parse().unwrap();
        // Relative to the stable URL of the master: the video's directory.
        let playlist = std::fs::read_to_string(dir.parent().unwrap().join(uri)).unwrap();
        let (map, entries) = entries(&playlist);
        let init = std::fs::read(dir.join(&video.id).join(map)).unwrap();
        // One entry per segment, with the media playlist's durations.
        let extinf = extinf(&dir.join(&video.id).join("index.m3u8"));
        assert_eq!(entries.len(), extinf.len(), "{playlist}");
        let mut start = 0.0;
        for (number, (entry, seconds)) in entries.iter().zip(&extinf).enumerate() {
            assert_eq!(entry.uri, format!("{}.m4s", number + 1));
            assert!((entry.seconds - seconds).abs() < 1e-6, "{playlist}");
            let segment = std::fs::read(dir.join(&video.id).join(&entry.uri)).unwrap();
            assert!(
                entry.offset + entry.length <= segment.len(),
                "{} {}: range past the segment",
                video.id,
                entry.uri
            );
            // A full-length entry alone is a window of the peak.
            if entry.seconds >= 2.0 {
                assert!(
                    bandwidth >= entry.length as f64 * 8.0 / entry.seconds - 1.0,
                    "{line}: {} bytes in {} s",
                    entry.length,
                    entry.seconds
                );
            }
            let cut = scratch
                .path()
                .join(format!("{}-{}.mp4", video.id, number + 1));
            let mut bytes = init.clone();
            bytes.extend_from_slice(&segment[entry.offset..entry.offset + entry.length]);
            std::fs::write(&cut, bytes).unwrap();
            let decoded = frames(&cut);
            assert_eq!(decoded.len(), 1, "{} {}: {decoded:?}", video.id, entry.uri);
            let (pict_type, key_frame, time) = &decoded[0];
            assert_eq!(
                (pict_type.as_str(), *key_frame),
                ("I", true),
                "{}",
                entry.uri
            );
            assert!(
                (time - start).abs() < 0.001,
                "{} {}: the keyframe is at {time} s, the segment starts at {start} s",
                video.id,
                entry.uri
            );
            start += entry.seconds;
        }
    }
}

/// ISO BMFF top-level box types of a file, in order.
fn top_level_boxes(file: &Path) -> Vec<String> {
    let data = std::fs::read(file).unwrap();
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
        let size = match size {
            1 => u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize,
            0 => data.len() - at,
            size => size,
        };
        at += size;
    }
    boxes
}

#[tokio::test(flavor = "multi_thread")]
async fn download_mp4_starts_fast_lasts_as_long_as_the_video_and_plays() {
    let library = Library::new();
    let manifest = library
        .ingest(&moving_clip(), "take-away", &test_config())
        .await
        .unwrap();
    let dir = library.video_dir("take-away");
    assert_complete(&dir, &manifest);
    assert!(
        manifest
            .files
            .iter()
            .any(|file| file.path.as_str() == "download.mp4"),
        "manifest.json lists download.mp4"
    );
    let download = dir.join("download.mp4");
    let boxes = top_level_boxes(&download);
    let moov = boxes.iter().position(|kind| kind == "moov");
    let mdat = boxes.iter().position(|kind| kind == "mdat");
    assert!(
        matches!((moov, mdat), (Some(moov), Some(mdat)) if moov < mdat),
        "faststart: the index before the media, got {boxes:?}"
    );
    // The 180-line rung is the one nearest 720 of the test ladder.
    assert_eq!(
        stream_fields(&download, "v:0", "codec_name,width,height"),
        "codec_name=h264\nwidth=320\nheight=180\n"
    );
    assert_eq!(
        stream_fields(&download, "a:0", "codec_name,channels"),
        "codec_name=aac\nchannels=2\n"
    );
    let duration: f64 = {
        let output = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration"])
            .args(["-of", "csv=p=0"])
            .arg(&download)
            .output()
            .unwrap();
        String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        (duration - manifest.duration_seconds).abs() < 0.1,
        "download.mp4 lasts {duration} s, the video {} s",
        manifest.duration_seconds
    );
    // Plays: every packet of both streams decodes without a word.
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&download)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
    let pictures = frames(&download).len();
    assert_eq!(
        pictures,
        (manifest.duration_seconds * 25.0).round() as usize
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn download_off_writes_no_mp4_and_iframe_playlists_still() {
    let library = Library::new();
    let config = kinema_media::IngestConfig {
        download: DownloadSetting::Off,
        ..test_config()
    };
    let manifest = library
        .ingest(&plain_clip(), "stream-only", &config)
        .await
        .unwrap();
    let dir = library.video_dir("stream-only");
    assert_complete(&dir, &manifest);
    assert!(!dir.join("download.mp4").exists());
    assert!(dir.join("v180/iframes.m3u8").exists());
}
