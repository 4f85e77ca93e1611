//! What viewers and peers send network quality: CMCD (query and headers)
//! never panics and keeps only bounded values, and a gossiped summary never
//! panics, lists at most four prefixes a side, and writes back to text
//! within its bound that reads back the same.

#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use kinema_netq::cmcd::{HEADER_NAMES, MAX_ID_BYTES};
use kinema_netq::summary::{MAX_PER_SIDE, MAX_SUMMARY_BYTES};
use kinema_netq::{Cmcd, Summary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    query: String,
    headers: Vec<(u8, Vec<u8>)>,
    summary: String,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (which, value) in input.headers.iter().take(8) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HEADER_NAMES[usize::from(*which) % 4], value);
        }
    }
    let cmcd = Cmcd::from_request(Some(&input.query), &headers);
    assert_eq!(cmcd, Cmcd::from_request(Some(&input.query), &headers));
    for id in [&cmcd.session_id, &cmcd.content_id].into_iter().flatten() {
        assert!(id.len() <= MAX_ID_BYTES);
    }
    if let Some(rate) = cmcd.playback_rate {
        assert!((0.0..=100.0).contains(&rate));
    }

    let summary = Summary::parse(&input.summary);
    assert!(summary.best.len() <= MAX_PER_SIDE && summary.worst.len() <= MAX_PER_SIDE);
    // Canonical text is never longer than what it was read from.
    let text = summary.to_string();
    assert!(
        text.len() <= input.summary.len().min(MAX_SUMMARY_BYTES),
        "{text}"
    );
    assert_eq!(Summary::parse(&text), summary, "{text}");
});
