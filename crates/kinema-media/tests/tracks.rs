//! Every audio track of a source: each becomes its own renditions with its
//! language, a 5.1 track keeps an AC-3 5.1 rendition beside its stereo
//! downmix, and `audio_languages` chooses which tracks are kept. Checked
//! with ffprobe on the published files, not from kinema's own manifest.

mod support;

use kinema_media::IngestConfig;
use support::{Library, assert_decodes, fixture, stream_fields, test_config};

/// 6 s of video with three audio tracks: English stereo (default), French
/// stereo, English 5.1 titled "English 5.1".
fn multi_track_mkv() -> std::path::PathBuf {
    fixture(
        "multi-track.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=6",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=6",
            "-f",
            "lavfi",
            "-i",
            "sine=f=660:d=6",
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=sin(440*2*PI*t)|sin(550*2*PI*t)|sin(660*2*PI*t)|0.1*sin(55*2*PI*t)|sin(330*2*PI*t)|sin(770*2*PI*t):c=5.1:d=6",
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
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fre",
            "-metadata:s:a:2",
            "language=eng",
            "-metadata:s:a:2",
            "title=English 5.1",
            "-disposition:a:0",
            "default",
            "-disposition:a:1",
            "0",
            "-disposition:a:2",
            "0",
        ],
    )
}

fn probe(path: &std::path::Path) -> String {
    stream_fields(path, "a:0", "codec_name,channels").replace('\n', " ")
        + &support::stream_fields_with_tags(path, "a:0", "language")
}

#[tokio::test]
async fn every_audio_track_is_published_with_its_language_and_surround() {
    let library = Library::new();
    let manifest = library
        .ingest(&multi_track_mkv(), "tracks", &test_config())
        .await
        .unwrap();
    let ids: Vec<&str> = manifest.renditions.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "v144",
            "v180",
            "a64",
            "a32",
            "a64-1",
            "a32-1",
            "a64-2",
            "a32-2",
            "a384ac3-2"
        ]
    );
    let dir = library.video_dir("tracks");
    for (rendition, expected) in [
        ("a64", "codec_name=aac channels=2 language=eng"),
        ("a32", "codec_name=aac channels=2 language=eng"),
        ("a64-1", "codec_name=aac channels=2 language=fre"),
        ("a64-2", "codec_name=aac channels=2 language=eng"),
        ("a384ac3-2", "codec_name=ac3 channels=6 language=eng"),
    ] {
        let init = dir.join(rendition).join("init.mp4");
        assert_eq!(probe(&init).trim(), expected, "{rendition}");
    }

    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    for line in [
        "GROUP-ID=\"audio\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES",
        "GROUP-ID=\"audio\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO",
        "GROUP-ID=\"audio\",NAME=\"English 5.1\",LANGUAGE=\"en\",DEFAULT=NO",
        "GROUP-ID=\"audio-ac3\",NAME=\"English 5.1\",LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"6\"",
        ",ac-3\",RESOLUTION=320x180",
    ] {
        assert!(master.contains(line), "{line} missing:\n{master}");
    }
    let mpd = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    assert_eq!(mpd.matches("contentType=\"audio\"").count(), 4, "{mpd}");
    assert!(mpd.contains("lang=\"fr\""), "{mpd}");
    assert!(mpd.contains("codecs=\"ac-3\""), "{mpd}");
    assert_decodes(&dir.join("master.m3u8"));
    assert_decodes(&dir.join("manifest.mpd"));
}

#[tokio::test]
async fn audio_languages_keeps_only_the_chosen_tracks() {
    let library = Library::new();
    let config = IngestConfig {
        audio_languages: vec!["fr".into()],
        ..test_config()
    };
    let manifest = library
        .ingest(&multi_track_mkv(), "french", &config)
        .await
        .unwrap();
    let audio: Vec<&str> = manifest
        .renditions
        .iter()
        .filter(|r| r.id.starts_with('a'))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(audio, ["a64", "a32"]);
    let init = library.video_dir("french").join("a64/init.mp4");
    assert_eq!(
        probe(&init).trim(),
        "codec_name=aac channels=2 language=fre"
    );
    let master = std::fs::read_to_string(library.video_dir("french").join("master.m3u8")).unwrap();
    assert!(master.contains("LANGUAGE=\"fr\",DEFAULT=YES"), "{master}");

    let german = IngestConfig {
        audio_languages: vec!["de".into()],
        ..test_config()
    };
    let error = library
        .ingest(&multi_track_mkv(), "german", &german)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid ingest settings: no audio track is in de; the source has en, fr, en"
    );
}
