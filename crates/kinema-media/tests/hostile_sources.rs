//! Sources that try to make ffmpeg read something else: playlists, file
//! lists and image sequences that name files on the server. Each must be
//! refused as not media, and nothing published, whatever the file is named.

mod support;

use kinema_media::MediaError;
use support::{Library, plain_clip, test_config};

/// Ingests `contents` (written as `name`) and expects a refusal naming
/// `format`.
async fn refused(name: &str, contents: &str, format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "hostile", &test_config())
        .await
        .unwrap_err();
    assert!(
        matches!(error, MediaError::NotMedia { .. }),
        "{name}: {error}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("it is a {format} file")) && text.contains("playlists"),
        "{name}: {text}"
    );
    library.assert_nothing_published().await;
}

fn secret() -> String {
    // A real media file elsewhere on the server: what an attacker wants
    // published.
    plain_clip().display().to_string()
}

#[tokio::test]
async fn hls_playlist_naming_a_server_file_url_is_refused() {
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:4.5,\nfile://{}\n#EXT-X-ENDLIST\n",
        secret()
    );
    refused("upload.mp4", &playlist, "hls").await;
}

#[tokio::test]
async fn hls_playlist_naming_a_bare_absolute_path_is_refused() {
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:4.5,\n{}\n#EXT-X-ENDLIST\n",
        secret()
    );
    refused("upload.m3u8", &playlist, "hls").await;
}

#[tokio::test]
async fn ffconcat_list_is_refused() {
    let list = format!("ffconcat version 1.0\nfile '{}'\n", secret());
    refused("upload.mkv", &list, "concat").await;
}

#[tokio::test]
async fn dash_manifest_is_refused() {
    let mpd = format!(
        r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
<Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000"><BaseURL>file://{}</BaseURL></Representation></AdaptationSet></Period></MPD>
"#,
        secret()
    );
    // Debian's ffmpeg has no DASH demuxer, so it reads as XML text at best:
    // refused either way, never ingested.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.mpd");
    std::fs::write(&path, mpd).unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "hostile", &test_config())
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::NotMedia { .. }), "{error}");
    library.assert_nothing_published().await;
}

/// A name with a colon would be read as a protocol (`concat:`, `subfile:`)
/// if ffmpeg were given the bare path.
#[tokio::test]
async fn file_name_that_looks_like_a_protocol_is_read_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join(format!("concat:{}", secret().replace('/', "_")));
    std::fs::copy(plain_clip(), &path).unwrap();
    let library = Library::new();
    let manifest = library
        .ingest(&path, "colon", &test_config())
        .await
        .unwrap();
    assert!((manifest.duration_seconds - 4.5).abs() < 0.2);
}
