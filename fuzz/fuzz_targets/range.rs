//! The `Range` header parser (RFC 9110 §14): never panics, and every range
//! it grants lies inside the representation, in order of the request, with
//! no overlap, and frames into a multipart body of the length it states.

#![no_main]

use arbitrary::Arbitrary;
use kinema_http::range::{self, MAX_RANGES, RangeRequest};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Small lengths are where the edge cases are; huge ones find overflow.
    small: bool,
    length: u64,
    header: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let length = if input.small {
        input.length % 4096
    } else {
        input.length
    };
    let parsed = range::parse(&input.header, length);
    assert_eq!(parsed, range::parse(&input.header, length));
    let ranges = match &parsed {
        RangeRequest::Full => return,
        RangeRequest::Unsatisfiable => {
            assert_eq!(
                range::unsatisfied_content_range(length),
                format!("bytes */{length}")
            );
            return;
        }
        RangeRequest::Single(range) => vec![range.clone()],
        RangeRequest::Multiple(ranges) => {
            assert!(
                ranges.len() >= 2 && ranges.len() <= MAX_RANGES,
                "{ranges:?}"
            );
            ranges.clone()
        }
    };
    for range in &ranges {
        assert!(range.start < range.end, "empty range {range:?}");
        assert!(range.end <= length, "{range:?} exceeds the length {length}");
        assert_eq!(
            range::content_range(range, length),
            format!("bytes {}-{}/{length}", range.start, range.end - 1)
        );
    }
    for (index, a) in ranges.iter().enumerate() {
        for b in &ranges[index + 1..] {
            assert!(a.end <= b.start || b.end <= a.start, "{a:?} overlaps {b:?}");
        }
    }
    if ranges.len() > 1 {
        let parts = range::multipart("BOUNDARY", "video/mp4", &ranges, length);
        assert_eq!(parts.part_headers.len(), ranges.len());
        let framing = parts
            .part_headers
            .iter()
            .map(|part| part.len() as u64)
            .sum::<u64>()
            + parts.closing.len() as u64;
        let content = ranges
            .iter()
            .try_fold(0u64, |sum, range| sum.checked_add(range.end - range.start));
        // Past u64 (a representation near 16 EiB) the length saturates.
        let exact = content.and_then(|content| content.checked_add(framing));
        assert_eq!(parts.body_length, exact.unwrap_or(u64::MAX));
    }
});
