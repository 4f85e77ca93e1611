//! Subtitles: the text tracks of a source and sidecar files are published
//! as segmented WebVTT (HLS) and whole WebVTT files (DASH), with cues at
//! the source's times; bitmap tracks are reported skipped with their
//! language; a sidecar that is not a subtitle file is refused. Cue times
//! are read from the published files and compared with the SubRip text the
//! fixture was made from.

mod support;

use std::path::{Path, PathBuf};

use kinema_core::{AccessPolicy, VideoId};
use kinema_media::subtitles::{SidecarSubtitle, SkippedSubtitle};
use kinema_media::{JobState, MediaError, SubmitRequest};
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

/// A cue as (start, end, text), seconds.
type TimedCue = (f64, f64, String);

/// (start, end, text) of every cue of a WebVTT or SubRip text, in seconds.
fn cues(text: &str) -> Vec<TimedCue> {
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
fn assert_same_cues(published: &[TimedCue], source: &str) {
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
fn segmented_cues(dir: &Path) -> (Vec<TimedCue>, Vec<Vec<String>>) {
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
    let mut all: Vec<TimedCue> = Vec::new();
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
    let generation = ingested.manifest.generation;
    assert_eq!(
        media,
        [
            format!(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI=\"g{generation}/sub0/index.m3u8\""
            ),
            format!(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"French (forced)\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,FORCED=YES,URI=\"g{generation}/sub1/index.m3u8\""
            ),
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
        master.contains(&format!("NAME=\"German (SDH)\",LANGUAGE=\"de\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,CHARACTERISTICS=\"public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound\",URI=\"g{}/sub0/index.m3u8\"", ingested.manifest.generation)),
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

/// One DVD subpicture (the bitmap subtitle of DVDs, `dvd_subtitle`): a 2x2
/// transparent picture shown for about a second. Debian's ffmpeg cannot
/// render text into a bitmap subtitle, so the packet is written by hand
/// (DVD-Video SPU: RLE fields, then display control sequences).
fn dvd_subpicture() -> Vec<u8> {
    // Each field one line, "run to the end of the line in colour 0".
    let fields = [0u8, 0, 0, 0];
    let first_sequence: u16 = 4 + fields.len() as u16;
    let mut commands = vec![0x01, 0x03, 0x32, 0x10, 0x04, 0xff, 0xf0];
    commands.extend([0x05, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01]); // area 0..1 x 0..1
    commands.extend([0x06, 0x00, 0x04, 0x00, 0x06, 0xff]); // field offsets, end
    let second_sequence = first_sequence + 4 + commands.len() as u16;
    let mut body = fields.to_vec();
    body.extend(0u16.to_be_bytes());
    body.extend(second_sequence.to_be_bytes());
    body.extend(commands);
    body.extend(88u16.to_be_bytes()); // stop after 88 × 1024 / 90000 s
    body.extend(second_sequence.to_be_bytes());
    body.extend([0x02, 0xff]);
    let mut spu = (4 + body.len() as u16).to_be_bytes().to_vec();
    spu.extend(first_sequence.to_be_bytes());
    spu.extend(body);
    spu
}

/// An MPEG program stream of DVD subpictures at `seconds`.
fn dvd_subtitle_stream(seconds: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for second in seconds {
        let pts = second * 90_000;
        out.extend([0, 0, 1, 0xba, 0x44, 0, 4, 0, 4, 1, 1, 0x89, 0xc3, 0xf8]);
        let mut data = vec![0x81, 0x80, 0x05];
        data.extend([
            0x21 | ((pts >> 29) & 0x0e) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) & 0xfe) as u8,
            (pts >> 7) as u8,
            0x01 | ((pts << 1) & 0xfe) as u8,
        ]);
        data.push(0x20); // DVD subpicture stream 0
        data.extend(dvd_subpicture());
        out.extend([0, 0, 1, 0xbd]);
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    out.extend([0, 0, 1, 0xb9]);
    out
}

/// 6 s of video and a tone with an English SubRip track and a German DVD
/// (bitmap) subtitle track.
fn bitmap_subtitled_mkv() -> PathBuf {
    let english = text_file("bitmap-en.srt", ENGLISH_SRT);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kinema-media-fixtures");
    let bitmap = dir.join(format!(".{}-dvd-subtitles.sub", std::process::id()));
    std::fs::write(&bitmap, dvd_subtitle_stream(&[1, 3])).unwrap();
    fixture(
        "bitmap-subtitled.mkv",
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
            "-f",
            "mpeg",
            "-i",
            bitmap.to_str().unwrap(),
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
            "-c:s:0",
            "srt",
            "-c:s:1",
            "copy",
            "-metadata:s:s:0",
            "language=eng",
            "-metadata:s:s:1",
            "language=ger",
        ],
    )
}

#[tokio::test]
async fn bitmap_track_is_reported_skipped_with_its_language() {
    let source = bitmap_subtitled_mkv();
    let german_bitmap = SkippedSubtitle {
        language: "de".into(),
        codec: "dvd_subtitle".into(),
    };
    let library = Library::new();
    let ingested = library
        .ingest_with_subtitles(&source, "bitmap", &test_config(), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        ingested.skipped_subtitles,
        std::slice::from_ref(&german_bitmap)
    );
    let dir = library.video_dir("bitmap");
    let (english, _) = segmented_cues(&dir.join("sub0"));
    assert_same_cues(&english, ENGLISH_SRT);
    assert!(!dir.join("sub1").exists());

    // The job record (and the API's view of it) says the same, across a
    // restart of the service.
    let library = Library::new();
    let service = library.job_service(test_config()).await;
    let job = service
        .submit(SubmitRequest {
            source: source.clone(),
            owned_source: false,
            video_id: Some(VideoId::new("bitmap-job").unwrap()),
            title: None,
            access: AccessPolicy::Public,
            subtitles: Vec::new(),
        })
        .await
        .unwrap();
    let done = service.wait(&job.id).await.unwrap();
    assert_eq!(done.state, JobState::Done, "{done:?}");
    assert_eq!(done.skipped_subtitles, std::slice::from_ref(&german_bitmap));
    let json = serde_json::to_value(&done).unwrap();
    assert_eq!(
        json["skipped_subtitles"],
        serde_json::json!([{"language": "de", "codec": "dvd_subtitle"}])
    );
    drop(service);
    let again = library.job_service(test_config()).await;
    assert_eq!(
        again.job(&job.id).await.unwrap().skipped_subtitles,
        [german_bitmap]
    );
}
