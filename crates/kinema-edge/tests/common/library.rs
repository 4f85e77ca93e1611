//! Real CMAF videos in a real library, for tests that put the real origin
//! behind the edge: made once per build by ffmpeg and published as ingest
//! would (the multivariant playlist pointing into the generation).

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kinema_core::{
    AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, Rendition, RenditionKind, VideoId,
};
use kinema_store::{Store, StoreConfig, StoreOptions};

/// A 4 s clip cut into 1 s CMAF segments by ffmpeg's DASH muxer, with HLS
/// playlists written like kinema-media's; made once per build and shared by
/// test processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clip {
    /// 320x180 `testsrc2`.
    Test,
    /// 256x144 SMPTE bars: different bytes in every file, the init segment
    /// included (another size).
    Bars,
}

impl Clip {
    fn name(self) -> &'static str {
        match self {
            Clip::Test => "kinema-edge-fixture-v1",
            Clip::Bars => "kinema-edge-fixture-bars-v1",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Clip::Test => "testsrc2=size=320x180:rate=25",
            Clip::Bars => "smptebars=size=256x144:rate=25",
        }
    }
}

pub fn fixture(clip: Clip) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(clip.name());
    if dir.join("complete").exists() {
        return dir;
    }
    let work = tempfile::Builder::new()
        .prefix("kinema-edge-fixture-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let video = work.path().join("video");
    std::fs::create_dir_all(video.join("v180")).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", clip.source(), "-t", "4"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-f", "dash", "-seg_duration", "1", "-use_template", "1"])
        .args(["-use_timeline", "0"])
        .args([
            "-init_seg_name",
            "init.mp4",
            "-media_seg_name",
            "$Number$.m4s",
        ])
        .arg(video.join("v180/manifest.mpd"))
        .status()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    assert!(status.success(), "ffmpeg failed: {status}");
    std::fs::remove_file(video.join("v180/manifest.mpd")).unwrap();
    std::fs::write(
        video.join("master.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-STREAM-INF:BANDWIDTH=700000,AVERAGE-BANDWIDTH=620000,RESOLUTION=320x180,CODECS=\"avc1.42c00c\"\n\
         v180/index.m3u8\n",
    )
    .unwrap();
    let mut media = String::from(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:1\n\
         #EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI=\"init.mp4\"\n",
    );
    for n in 1..=4 {
        media.push_str(&format!("#EXTINF:1.000,\n{n}.m4s\n"));
    }
    media.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(video.join("v180/index.m3u8"), media).unwrap();
    std::fs::write(work.path().join("complete"), b"").unwrap();
    // Another test process may have finished first; either copy is good.
    let staged = work.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The library directory `dir`, opened as `kinema serve` opens it.
pub async fn open(dir: &Path) -> Arc<dyn Store> {
    kinema_store::open(&StoreConfig::directory(dir))
        .await
        .unwrap()
}

/// The library directory `dir` with `options` of a test's choosing.
pub async fn open_with(dir: &Path, options: StoreOptions) -> Arc<dyn Store> {
    kinema_store::open_with(&StoreConfig::directory(dir), options)
        .await
        .unwrap()
}

/// Publishes the test clip as video `id` with `access`, as ingest would.
pub async fn publish(store: &dyn Store, id: &str, access: AccessPolicy) -> Manifest {
    publish_clip(store, id, access, Clip::Test).await
}

/// A generation newer than any this process made before: publishing again
/// in the same millisecond must still replace.
fn next_generation() -> u64 {
    static LAST: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut last = LAST.lock().unwrap();
    *last = kinema_store::layout::unix_millis(std::time::SystemTime::now()).max(*last + 1);
    *last
}

/// Publishes `clip` as a new generation of video `id`, as ingest would:
/// the multivariant playlist's URIs lead into the generation (`g{N}/…`).
pub async fn publish_clip(
    store: &dyn Store,
    id: &str,
    access: AccessPolicy,
    clip: Clip,
) -> Manifest {
    let generation = next_generation();
    // Staged beside the test's temporary libraries, on their file system.
    let staged = std::env::temp_dir().join(format!(
        "kinema-edge-stage-{}-{id}-{generation}",
        std::process::id()
    ));
    copy_dir(&fixture(clip).join("video"), &staged);
    let master = std::fs::read_to_string(staged.join("master.m3u8")).unwrap();
    std::fs::write(
        staged.join("master.m3u8"),
        master.replace("v180/", &format!("g{generation}/v180/")),
    )
    .unwrap();
    let files = kinema_store::describe_files(&staged).await.unwrap();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: VideoId::new(id).unwrap(),
        generation,
        title: "Edge test clip".into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 1.0,
        published_at_unix: 1_700_000_000,
        access,
        renditions: vec![Rendition {
            id: "v180".into(),
            kind: RenditionKind::Video,
            codecs: "avc1.42c00c".into(),
            width: Some(320),
            height: Some(180),
            frame_rate: Some(25.0),
            bitrate: 620_000,
            peak_bitrate: 700_000,
            segments: 4,
        }],
        files,
    };
    store.publish(&manifest, &staged).await.unwrap();
    manifest
}
