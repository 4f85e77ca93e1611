//! Subtitles: the text tracks of a source and sidecar files are published
//! as segmented WebVTT (HLS) and whole WebVTT files (DASH), with cues at
//! the source's times; bitmap tracks are reported skipped with their
//! language; a sidecar that is not a subtitle file is refused. Cue times
//! are read from the published files and compared with the SubRip text the
//! fixture was made from.

mod support;

use std::path::{Path, PathBuf};

use kinema_media::MediaError;
use kinema_media::subtitles::SidecarSubtitle;
use support::{Library, assert_complete, fixture, test_config};

const ENGLISH_SRT: &str = "1
00:00:00,500 --> 00:00:01,800
Hello <i>there</i>

2
00:00:03,500 --> 00:00:04,700
Across the boundary

3
00:00:05,000 --> 00:00:05,900
Last words
";

const FRENCH_SRT: &str = "1
00:00:01,000 --> 00:00:02,000
Bonjour

2
00:00:04,200 --> 00:00:05,000
Au revoir
";

/// Writes `text` once under the fixture directory and returns its path.
fn text_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kinema-media-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let tmp = dir.join(format!(".{}-{name}", std::process::id()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// 6 s of 320x180 video and a tone, with two SubRip tracks: English (no
/// flags) and French (forced).
fn subtitled_mkv() -> PathBuf {
    let english = text_file("subtitles-en.srt", ENGLISH_SRT);
    let french = text_file("subtitles-fr.srt", FRENCH_SRT);
    fixture(
        "subtitled.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=6",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=6",
            "-i",
            english.to_str().unwrap(),
            "-i",
            french.to_str().unwrap(),
            "-map",
            "0",
            "-map",
            "1",
            "-map",
            "2",
            "-map",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-c:s",
            "srt",
            "-metadata:s:s:0",
            "language=eng",
            "-metadata:s:s:1",
            "language=fre",
            "-disposition:s:0",
            "0",
            "-disposition:s:1",
            "forced",
        ],
    )
}

/// (start, end, text) of every cue of a WebVTT or SubRip text, in seconds.
fn cues(text: &str) -> Vec<(f64, f64, String)> {
    let seconds = |stamp: &str| -> f64 {
        let stamp = stamp.trim().replace(',', ".");
        let parts: Vec<f64> = stamp.split(':').map(|p| p.parse().unwrap()).collect();
        parts.iter().fold(0.0, |total, part| total * 60.0 + part)
    };
    let text = text.replace("\r\n", "\n");
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block.lines().collect();
        let Some(timing) = lines.iter().position(|line| line.contains("-->")) else {
            continue;
        };
        let (start, rest) = lines[timing].split_once("-->").unwrap();
        let end = rest.split_whitespace().next().unwrap();
        out.push((seconds(start), seconds(end), lines[timing + 1..].join("\n")));
    }
    out
}

/// Asserts the published cues are the source's, each within one frame
/// (the encode snaps the picture to 25 fps frames).
fn assert_same_cues(published: &[(f64, f64, String)], source: &str) {
    let expected = cues(source);
    assert_eq!(
        published.iter().map(|c| &c.2).collect::<Vec<_>>(),
        expected.iter().map(|c| &c.2).collect::<Vec<_>>(),
        "{published:?}"
    );
    for (got, want) in published.iter().zip(&expected) {
        assert!(
            (got.0 - want.0).abs() <= 0.04 && (got.1 - want.1).abs() <= 0.04,
            "cue {:?} at {:.3}–{:.3}, the source has {:.3}–{:.3}",
            got.2,
            got.0,
            got.1,
            want.0,
            want.1
        );
    }
}

/// Every cue of a rendition's segments, repeats (a cue in two segments)
/// once; and each segment's cues.
fn segmented_cues(dir: &Path) -> (Vec<(f64, f64, String)>, Vec<Vec<String>>) {
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
    let mut all: Vec<(f64, f64, String)> = Vec::new();
    let mut per_segment = Vec::new();
    for uri in playlist.lines().filter(|line| !line.starts_with('#')) {
        let text = std::fs::read_to_string(dir.join(uri)).unwrap();
        assert!(
            text.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n"),
            "{uri}: {text}"
        );
        let segment = cues(&text);
        per_segment.push(segment.iter().map(|c| c.2.clone()).collect());
        for cue in segment {
            if !all.contains(&cue) {
                all.push(cue);
            }
        }
    }
    (all, per_segment)
}

#[tokio::test]
async fn text_tracks_become_segmented_webvtt_at_the_source_times() {
    let library = Library::new();
    let ingested = library
        .ingest_with_subtitles(&subtitled_mkv(), "subbed", &test_config(), Vec::new())
        .await
        .unwrap();
    assert_eq!(ingested.skipped_subtitles, []);
    let dir = library.video_dir("subbed");
    assert_complete(&dir, &ingested.manifest);

    // Segments as the video's: 4 s and 2 s; the cue from 3.5 s to 4.7 s is
    // in both.
    let (english, per_segment) = segmented_cues(&dir.join("sub0"));
    assert_same_cues(&english, ENGLISH_SRT);
    assert_eq!(
        per_segment,
        [
            vec!["Hello <i>there</i>", "Across the boundary"],
            vec!["Across the boundary", "Last words"],
        ]
    );
    assert_eq!(
        support::extinf(&dir.join("sub0/index.m3u8")),
        support::extinf(&dir.join("v180/index.m3u8"))
    );
    let (french, _) = segmented_cues(&dir.join("sub1"));
    assert_same_cues(&french, FRENCH_SRT);
    // DASH: the whole track in one file.
    let whole = std::fs::read_to_string(dir.join("sub0/sub.vtt")).unwrap();
    assert_same_cues(&cues(&whole), ENGLISH_SRT);
    assert!(!dir.join("sub0/source.vtt").exists());

    // The CMAF timeline starts at 0, which X-TIMESTAMP-MAP's MPEGTS:0 is.
    let init = std::fs::read(dir.join("v180/init.mp4")).unwrap();
    let track = kinema_media::mp4::parse_init(&init).unwrap();
    let first = std::fs::read(dir.join("v180/1.m4s")).unwrap();
    let timing = kinema_media::mp4::parse_segment(&first, &track).unwrap();
    assert_eq!(timing.base_decode_time, 0);

    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    let media: Vec<&str> = master
        .lines()
        .filter(|line| line.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .collect();
    assert_eq!(
        media,
        [
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI=\"sub0/index.m3u8\"",
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"French (forced)\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,FORCED=YES,URI=\"sub1/index.m3u8\"",
        ]
    );
    let variants: Vec<&str> = master
        .lines()
        .filter(|line| line.starts_with("#EXT-X-STREAM-INF"))
        .collect();
    assert!(!variants.is_empty());
    for variant in variants {
        assert!(variant.ends_with(",SUBTITLES=\"subs\""), "{variant}");
    }

    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    for (language, role, id) in [
        ("en", "subtitle", "sub0"),
        ("fr", "forced-subtitle", "sub1"),
    ] {
        let set = format!(
            "contentType=\"text\" mimeType=\"text/vtt\" lang=\"{language}\">\n      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"{role}\"/>"
        );
        assert!(mpd.contains(&set), "{set}\n{mpd}");
        assert!(
            mpd.contains(&format!("<BaseURL>{id}/sub.vtt</BaseURL>")),
            "{mpd}"
        );
    }
}

#[tokio::test]
async fn sidecar_file_becomes_a_track_after_the_source_ones() {
    let library = Library::new();
    let sidecar = text_file("sidecar-de.srt", FRENCH_SRT);
    let ingested = library
        .ingest_with_subtitles(
            &support::plain_clip(),
            "sidecar",
            &test_config(),
            vec![SidecarSubtitle::parse(&format!("deu+sdh={}", sidecar.display())).unwrap()],
        )
        .await
        .unwrap();
    let dir = library.video_dir("sidecar");
    assert_complete(&dir, &ingested.manifest);
    let (german, _) = segmented_cues(&dir.join("sub0"));
    // A sidecar is converted on its own: its times are its own, exactly.
    assert_eq!(german, cues(FRENCH_SRT));
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    assert!(
        master.contains("NAME=\"German (SDH)\",LANGUAGE=\"de\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,CHARACTERISTICS=\"public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound\",URI=\"sub0/index.m3u8\""),
        "{master}"
    );
    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    assert!(mpd.contains("value=\"caption\""), "{mpd}");
}

#[tokio::test]
async fn playlist_named_srt_is_refused_as_a_sidecar() {
    let library = Library::new();
    let hostile = text_file(
        "hostile.srt",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    );
    let error = library
        .ingest_with_subtitles(
            &support::plain_clip(),
            "hostile",
            &test_config(),
            vec![SidecarSubtitle::parse(&format!("en={}", hostile.display())).unwrap()],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::BadSubtitles { .. }), "{error}");
    assert!(error.is_bad_source());
    assert_eq!(
        error.to_string(),
        "subtitle file is refused: the en subtitles hostile.srt: it is a hls file; only SubRip \
         (.srt), ASS/SSA (.ass, .ssa) and WebVTT (.vtt) files are accepted"
    );
    library.assert_nothing_published().await;
}
