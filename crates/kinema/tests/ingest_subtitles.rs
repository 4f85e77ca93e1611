//! `kinema ingest --subtitles LANG=FILE` as a user runs it: the real
//! binary, a clip made by real ffmpeg, a SubRip file beside it. The file is
//! published as a WebVTT rendition with its cues; a playlist named `.srt`
//! is refused with a clear error and nothing is published.

use std::path::Path;
use std::process::{Command, Output};

/// The directory of the current generation of video `id` in `library`:
/// where its files are (`videos/{id}/g{N}/`).
fn generation_dir(library: &Path, id: &str) -> std::path::PathBuf {
    let id = kinema_core::VideoId::new(id).unwrap();
    let current =
        std::fs::read(library.join(kinema_store::layout::current_manifest_key(&id))).unwrap();
    let generation = kinema_core::Manifest::from_json(&current)
        .unwrap()
        .generation;
    library.join(kinema_store::layout::generation_prefix(&id, generation).trim_end_matches('/'))
}

const FRENCH_SRT: &str = "1
00:00:00,600 --> 00:00:01,400
Bonjour

2
00:00:02,000 --> 00:00:02,800
Au revoir
";

/// A 3 s 320x180 clip with a tone, made by ffmpeg.
fn clip(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=320x180:r=25:d=3")
        .args(["-f", "lavfi", "-i", "sine=d=3", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    path
}

fn ingest(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinema"))
        .arg("ingest")
        .args(args)
        .args(["--library", "library", "--preset", "ultrafast", "--quiet"])
        .current_dir(dir)
        // Settings must come from these flags alone.
        .env_remove("KINEMA_CONFIG")
        .env_remove("KINEMA_LIBRARY")
        .env_remove("KINEMA_INGEST_AUDIO_LANGUAGES")
        .output()
        .expect("kinema runs")
}

#[test]
fn sidecar_subtitles_are_published_as_webvtt() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    clip(dir);
    std::fs::write(dir.join("clip.fr.srt"), FRENCH_SRT).unwrap();
    let output = ingest(dir, &["clip.mp4", "--subtitles", "fr+forced=clip.fr.srt"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("\n  subtitles: sub0 fr \"French (forced)\"\n"),
        "{stdout}"
    );
    let video = generation_dir(&dir.join("library"), "clip");
    let segment = std::fs::read_to_string(video.join("sub0/1.vtt")).unwrap();
    assert_eq!(
        segment,
        "WEBVTT
X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000

00:00:00.600 --> 00:00:01.400
Bonjour

00:00:02.000 --> 00:00:02.800
Au revoir
"
    );
    let master = std::fs::read_to_string(video.join("master.m3u8")).unwrap();
    assert!(
        master.contains(
            &format!("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"French (forced)\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,FORCED=YES,URI=\"{}/sub0/index.m3u8\"", video.file_name().unwrap().to_str().unwrap())
        ),
        "{master}"
    );
    let manifest = std::fs::read_to_string(video.join("manifest.json")).unwrap();
    for file in ["sub0/index.m3u8", "sub0/1.vtt", "sub0/sub.vtt"] {
        assert!(
            manifest.contains(&format!("\"{file}\"")),
            "{file}: {manifest}"
        );
    }
}

#[test]
fn playlist_named_srt_is_refused_as_subtitles() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    clip(dir);
    std::fs::write(
        dir.join("evil.srt"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let output = ingest(dir, &["clip.mp4", "--subtitles", "en=evil.srt"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "subtitle file is refused: the en subtitles evil.srt: it is a hls file; only SubRip \
             (.srt), ASS/SSA (.ass, .ssa) and WebVTT (.vtt) files are accepted"
        ),
        "{stderr}"
    );
    assert!(!dir.join("library/videos/clip").exists());

    let output = ingest(dir, &["clip.mp4", "--subtitles", "evil.srt"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not LANG=FILE"), "{stderr}");
}
