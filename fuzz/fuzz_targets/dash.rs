//! The load client's DASH reader: parsing any MPD never panics, and every
//! track it returns can be walked: each segment exists up to the count it
//! states, with a finite, non-negative duration.

#![no_main]

use kinema_bench::dash;
use kinema_bench::presentation::Track;
use libfuzzer_sys::fuzz_target;
use url::Url;

fn walk(track: &Track) {
    let count = track.len();
    assert!(track.segment(count).is_none());
    // The first and last few, and a spread between: a template track may
    // hold a million segments.
    let indexes = (0..count.min(8))
        .chain(count.saturating_sub(8)..count)
        .chain((0..count).step_by((count / 16).max(1)));
    for index in indexes {
        let segment = track
            .segment(index)
            .unwrap_or_else(|| panic!("segment {index} of {count} missing"));
        assert!(
            segment.duration_seconds.is_finite() && segment.duration_seconds >= 0.0,
            "segment {index}: {}",
            segment.duration_seconds
        );
    }
    assert!(!track.duration_seconds().is_nan());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let url = Url::parse("http://127.0.0.1/v/a/manifest.mpd").unwrap();
    let Ok(presentation) = dash::parse(text, &url) else {
        return;
    };
    for rendition in &presentation.renditions {
        if let Some(track) = rendition.media.loaded() {
            walk(track);
        }
        if let Some(audio) = rendition.audio {
            assert!(audio < presentation.audio.len());
        }
    }
    for audio in &presentation.audio {
        if let Some(track) = audio.loaded() {
            walk(track);
        }
    }
});
