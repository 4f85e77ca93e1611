//! The load client's HLS reader: parsing any playlist never panics, and a
//! media playlist's track lists every segment with a usable duration.

#![no_main]

use kinema_bench::hls::{self, Playlist};
use kinema_bench::presentation::Track;
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(playlist) = hls::parse(&text) else {
        return;
    };
    match playlist {
        Playlist::Multivariant(multivariant) => {
            for variant in &multivariant.variants {
                if let Some(audio) = multivariant.audio_for(variant) {
                    assert_eq!(Some(&audio.group_id), variant.audio_group.as_ref());
                }
            }
        }
        Playlist::Media(media) => {
            assert!(media.target_duration_seconds.is_finite());
            let count = media.segments.len();
            for segment in &media.segments {
                assert!(segment.duration_seconds.is_finite() && segment.duration_seconds >= 0.0);
            }
            let track = Track::from_media_playlist(
                media,
                Url::parse("http://127.0.0.1/a/index.m3u8").unwrap(),
            );
            assert_eq!(track.len(), count);
            assert!(track.segment(count).is_none());
            if count > 0 {
                assert!(track.segment(count - 1).is_some());
            }
            assert!(!track.duration_seconds().is_nan());
        }
    }
});
