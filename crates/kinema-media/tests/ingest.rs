//! End-to-end ingest with real ffmpeg on tiny generated clips: a plain clip
//! must publish HLS and DASH that real ffmpeg decodes, with keyframes at the
//! same instants in every rendition and playlist durations true to the media.

mod support;

use kinema_core::RenditionKind;
use kinema_store::Store;
use support::*;

#[tokio::test]
async fn plain_clip_publishes_aligned_hls_dash_and_thumbnails() {
    let library = Library::new();
    let manifest = library
        .ingest(&plain_clip(), "plain", &test_config())
        .await
        .unwrap();
    let dir = library.video_dir("plain");
    assert_eq!(library.store.list_videos().await.unwrap().len(), 1);
    assert_complete(&dir, &manifest);
    assert!(
        std::fs::read_dir(library.workspace().staging())
            .unwrap()
            .next()
            .is_none()
    );

    let ids: Vec<&str> = manifest.renditions.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["v144", "v180", "a64", "a32"]);
    let v180 = &manifest.renditions[1];
    assert_eq!(
        (v180.width, v180.height, v180.frame_rate),
        (Some(320), Some(180), Some(25.0))
    );
    assert!(v180.codecs.starts_with("avc1."), "{}", v180.codecs);
    assert_eq!(manifest.renditions[2].codecs, "mp4a.40.2");
    assert_eq!(manifest.renditions[2].kind, RenditionKind::Audio);
    // 4.5 s in 4 s segments.
    assert_eq!(v180.segments, 2);
    assert!(
        (manifest.duration_seconds - 4.5).abs() < 0.05,
        "{}",
        manifest.duration_seconds
    );

    // The CODECS attribute is the init segment's avcC, e.g. avc1.64000d.
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    assert!(
        master.contains(&format!("CODECS=\"{},mp4a.40.2\"", v180.codecs)),
        "{master}"
    );
    assert!(
        master.contains("RESOLUTION=256x144") && master.contains("TYPE=AUDIO"),
        "{master}"
    );
    // The lowest variant carries the thin audio, every other the main one.
    let variants: Vec<&str> = master
        .lines()
        .filter(|line| line.starts_with("#EXT-X-STREAM-INF"))
        .collect();
    assert!(variants[0].ends_with("AUDIO=\"audio-thin\""), "{master}");
    assert!(variants[1].ends_with("AUDIO=\"audio\""), "{master}");
    assert!(
        master.contains(&format!("GROUP-ID=\"audio-thin\",NAME=\"Audio 1\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"g{}/a32/index.m3u8\"", manifest.generation)),
        "{master}"
    );
    let media = std::fs::read_to_string(dir.join("v180/index.m3u8")).unwrap();
    for tag in [
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MAP:URI=\"init.mp4\"",
        "#EXT-X-ENDLIST",
        "#EXT-X-TARGETDURATION:4",
    ] {
        assert!(media.contains(tag), "{tag} missing:\n{media}");
    }

    assert_decodes(&dir.join("master.m3u8"));
    assert_decodes(&dir.join("manifest.mpd"));

    // Keyframes at identical instants in every video rendition, exactly at
    // the segment boundaries the playlists announce; playlist durations
    // within one frame of the media.
    let frame = 1.0 / 25.0;
    let mut boundaries_of_first: Option<Vec<f64>> = None;
    for rendition in ["v144", "v180"] {
        let playlist = dir.join(rendition).join("index.m3u8");
        let durations = extinf(&playlist);
        let (packets, end) = packets(&playlist);
        let start = packets[0].0;
        let keyframes: Vec<f64> = packets
            .iter()
            .filter(|p| p.1)
            .map(|p| p.0 - start)
            .collect();
        let mut boundaries = vec![0.0];
        for duration in &durations[..durations.len() - 1] {
            boundaries.push(boundaries.last().unwrap() + duration);
        }
        assert_eq!(
            keyframes.len(),
            boundaries.len(),
            "{rendition}: keyframes {keyframes:?}"
        );
        for (keyframe, boundary) in keyframes.iter().zip(&boundaries) {
            assert!(
                (keyframe - boundary).abs() < frame / 2.0,
                "{rendition}: {keyframes:?} vs {boundaries:?}"
            );
        }
        let total: f64 = durations.iter().sum();
        assert!(
            (total - (end - start)).abs() <= frame,
            "{rendition}: playlist {total} s, media {} s",
            end - start
        );
        match &boundaries_of_first {
            None => boundaries_of_first = Some(keyframes),
            Some(first) => assert_eq!(first, &keyframes),
        }
    }
    let audio_total: f64 = extinf(&dir.join("a64/index.m3u8")).iter().sum();
    let (_, audio_end) = packets(&dir.join("a64/index.m3u8"));
    assert!(
        (audio_total - audio_end).abs() < 0.05,
        "audio playlist {audio_total} s, media {audio_end} s"
    );

    let vtt = std::fs::read_to_string(dir.join("thumbs/thumbs.vtt")).unwrap();
    assert!(
        vtt.starts_with("WEBVTT\n") && vtt.contains("sprite.jpg#xywh=160,0,160,90"),
        "{vtt}"
    );
    assert!(
        stream_fields(&dir.join("thumbs/sprite.jpg"), "v", "codec_name,width")
            .contains("width=480")
    );
    assert!(
        stream_fields(&dir.join("thumbs/poster.jpg"), "v", "width,height").contains("height=180")
    );
}
