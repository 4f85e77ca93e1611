//! A real CMAF video in a real library, for tests that put the real origin
//! behind the edge: made once per build by ffmpeg (the same fixture
//! `real_origin.rs` makes, in the same directory) and published as ingest
//! would.

use std::path::{Path, PathBuf};
use std::process::Command;

use kinema_core::{
    AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, Rendition, RenditionKind, VideoId,
};
use kinema_store::{LocalStore, Store};

/// A 4 s 320x180 clip cut into 1 s CMAF segments by ffmpeg's DASH muxer,
/// with HLS playlists written like kinema-media's; made once per build and
/// shared by test processes.
pub fn fixture() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kinema-edge-fixture-v1");
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
        .args(["-i", "testsrc2=size=320x180:rate=25", "-t", "4"])
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

/// Publishes the fixture as video `id` with `access`, as ingest would.
pub async fn publish(store: &LocalStore, id: &str, access: AccessPolicy) {
    let staged = store.staging_root().join(format!("stage-{id}"));
    copy_dir(&fixture().join("video"), &staged);
    let files = kinema_store::describe_files(&staged).await.unwrap();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: VideoId::new(id).unwrap(),
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
}
