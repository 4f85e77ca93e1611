//! Byte-range requests (RFC 9110 §14): parsing the `Range` header against a
//! representation's length, `Content-Range` values, and the framing of a
//! `multipart/byteranges` body.
//!
//! These are pure functions over header bytes and lengths, shared by the
//! origin and the edge; they read no files and send nothing. Deciding whether
//! a `Range` applies at all (only to GET, only when `If-Range` matches) is the
//! caller's, with [`crate::conditional::if_range_allows`].

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// Most ranges honoured in one request. Beyond this the whole representation
/// is sent instead, so a request listing thousands of tiny ranges cannot make
/// the server do thousands of reads and part headers for one response
/// (RFC 9110 §14.2 lets a server ignore such a `Range`).
pub const MAX_RANGES: usize = 16;

/// What a `Range` header asks for, resolved against a length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// Send the whole representation (200): no `Range`, a syntactically
    /// invalid one, a unit other than `bytes`, more than [`MAX_RANGES`]
    /// ranges, or overlapping ranges (RFC 9110 §14.2: a server MAY ignore
    /// the header field).
    Full,
    /// One satisfiable range (206 with `Content-Range`), half-open and
    /// clamped to the length.
    Single(Range<u64>),
    /// Several satisfiable ranges in request order (206 with
    /// `multipart/byteranges`), none overlapping.
    Multiple(Vec<Range<u64>>),
    /// Syntactically valid, but no range is satisfiable (416 with
    /// `Content-Range: bytes */LENGTH`, RFC 9110 §15.5.17).
    Unsatisfiable,
}

/// Resolves a `Range` header value against a representation of `length`
/// bytes (RFC 9110 §14.1.1 grammar, §14.1.2 satisfiability).
pub fn parse(header: &[u8], length: u64) -> RangeRequest {
    let Some(specs) = strip_bytes_unit(header) else {
        return RangeRequest::Full;
    };
    let mut satisfiable: Vec<Range<u64>> = Vec::new();
    let mut listed = 0usize;
    // `1#range-spec`: a comma-separated list in which empty elements are
    // allowed and ignored (RFC 9110 §5.6.1.2).
    for element in specs.split(|&b| b == b',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        listed += 1;
        if listed > MAX_RANGES {
            return RangeRequest::Full;
        }
        let Some(spec) = parse_spec(element) else {
            return RangeRequest::Full;
        };
        if let Some(range) = spec.resolve(length) {
            satisfiable.push(range);
        }
    }
    if listed == 0 {
        return RangeRequest::Full;
    }
    match satisfiable.len() {
        0 => RangeRequest::Unsatisfiable,
        1 => RangeRequest::Single(satisfiable.pop().expect("one range")),
        _ => {
            if overlap(&satisfiable) {
                RangeRequest::Full
            } else {
                RangeRequest::Multiple(satisfiable)
            }
        }
    }
}

/// `Content-Range` of a 206 part: `bytes FIRST-LAST/LENGTH` (RFC 9110 §14.4).
pub fn content_range(range: &Range<u64>, length: u64) -> String {
    format!("bytes {}-{}/{}", range.start, range.end - 1, length)
}

/// `Content-Range` of a 416: `bytes */LENGTH` (RFC 9110 §14.4).
pub fn unsatisfied_content_range(length: u64) -> String {
    format!("bytes */{length}")
}

/// The framing of a `multipart/byteranges` body (RFC 9110 §14.6): what goes
/// before each range's bytes and after the last, so a caller can send the
/// framing and the content slices back to back without copying content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    /// The `Content-Type` of the whole response.
    pub content_type: String,
    /// The header block preceding each range, in the order of the ranges.
    pub part_headers: Vec<Bytes>,
    /// The closing delimiter.
    pub closing: Bytes,
    /// Exact length of the whole body: framing plus every range.
    pub body_length: u64,
}

/// Lays out a `multipart/byteranges` body for `ranges` of a representation
/// of `length` bytes whose own type is `part_content_type`. `boundary` must
/// not occur in the content; a caller derives it from something unguessable
/// per representation (such as its checksum) or random.
pub fn multipart(
    boundary: &str,
    part_content_type: &str,
    ranges: &[Range<u64>],
    length: u64,
) -> Multipart {
    let mut part_headers = Vec::with_capacity(ranges.len());
    let mut body_length = 0u64;
    for (index, range) in ranges.iter().enumerate() {
        let mut header = BytesMut::with_capacity(96 + boundary.len() + part_content_type.len());
        // The delimiter is CRLF "--" boundary; the first one may omit the
        // CRLF because the body starts there (RFC 2046 §5.1.1).
        if index > 0 {
            header.put_slice(b"\r\n");
        }
        header.put_slice(b"--");
        header.put_slice(boundary.as_bytes());
        header.put_slice(b"\r\nContent-Type: ");
        header.put_slice(part_content_type.as_bytes());
        header.put_slice(b"\r\nContent-Range: ");
        header.put_slice(content_range(range, length).as_bytes());
        header.put_slice(b"\r\n\r\n");
        // Saturating: ranges of a representation near 16 EiB would overflow
        // (a length no store holds, but one a header can state).
        body_length = body_length
            .saturating_add(header.len() as u64)
            .saturating_add(range.end - range.start);
        part_headers.push(header.freeze());
    }
    let closing = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    body_length = body_length.saturating_add(closing.len() as u64);
    Multipart {
        content_type: format!("multipart/byteranges; boundary={boundary}"),
        part_headers,
        closing,
        body_length,
    }
}

#[derive(Debug, Clone, Copy)]
enum Spec {
    /// `first-last` or `first-` (then `last` is `None`).
    FromTo { first: u64, last: Option<u64> },
    /// `-suffix_length`.
    Suffix(u64),
}

impl Spec {
    fn resolve(self, length: u64) -> Option<Range<u64>> {
        match self {
            Spec::FromTo { first, last } => {
                if first >= length {
                    return None;
                }
                let end = match last {
                    Some(last) => last.saturating_add(1).min(length),
                    None => length,
                };
                Some(first..end)
            }
            // A zero-length representation has no bytes to send, whatever
            // the suffix asks.
            Spec::Suffix(suffix) => {
                if suffix == 0 || length == 0 {
                    None
                } else {
                    Some(length.saturating_sub(suffix)..length)
                }
            }
        }
    }
}

fn strip_bytes_unit(header: &[u8]) -> Option<&[u8]> {
    let header = trim_ows(header);
    let (unit, rest) = header.split_at_checked(6)?;
    // Range units are case-insensitive (RFC 9110 §14.1).
    unit.eq_ignore_ascii_case(b"bytes=").then_some(rest)
}

fn parse_spec(element: &[u8]) -> Option<Spec> {
    let dash = element.iter().position(|&b| b == b'-')?;
    let (first, last) = (&element[..dash], &element[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(Spec::FromTo { first, last: None });
    }
    let last = parse_digits(last)?;
    // "first-pos > last-pos" makes the whole field invalid (§14.1.1).
    if last < first {
        return None;
    }
    Some(Spec::FromTo {
        first,
        last: Some(last),
    })
}

/// `1*DIGIT`, saturating: a position beyond `u64` is simply beyond any
/// representation, which the satisfiability rules then handle.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |value, &digit| {
        value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn overlap(ranges: &[Range<u64>]) -> bool {
    let mut sorted: Vec<&Range<u64>> = ranges.iter().collect();
    sorted.sort_by_key(|range| range.start);
    sorted.windows(2).any(|pair| pair[1].start < pair[0].end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, length: u64, expected: RangeRequest) {
        assert_eq!(parse(header.as_bytes(), length), expected, "{header:?}");
    }

    #[test]
    fn single_open_ended_and_suffix_ranges() {
        check("bytes=0-99", 1000, RangeRequest::Single(0..100));
        check("bytes=100-", 1000, RangeRequest::Single(100..1000));
        check("bytes=-100", 1000, RangeRequest::Single(900..1000));
        check("Bytes = 5-5", 1000, RangeRequest::Full);
        check("BYTES=5-5", 1000, RangeRequest::Single(5..6));
        check(" bytes=0-0 ", 1, RangeRequest::Single(0..1));
    }

    #[test]
    fn range_end_past_the_length_is_clamped() {
        check("bytes=900-5000", 1000, RangeRequest::Single(900..1000));
        check(
            "bytes=0-99999999999999999999999999",
            10,
            RangeRequest::Single(0..10),
        );
    }

    #[test]
    fn range_suffix_larger_than_file() {
        check("bytes=-5000", 1000, RangeRequest::Single(0..1000));
    }

    #[test]
    fn unsatisfiable_ranges() {
        check("bytes=1000-", 1000, RangeRequest::Unsatisfiable);
        check("bytes=1000-2000", 1000, RangeRequest::Unsatisfiable);
        check("bytes=-0", 1000, RangeRequest::Unsatisfiable);
        check("bytes=0-0", 0, RangeRequest::Unsatisfiable);
        check("bytes=-10", 0, RangeRequest::Unsatisfiable);
        check("bytes=2000-,3000-3001", 1000, RangeRequest::Unsatisfiable);
        check(
            "bytes=99999999999999999999999-",
            1000,
            RangeRequest::Unsatisfiable,
        );
    }

    #[test]
    fn unsatisfiable_ranges_among_satisfiable_ones_are_dropped() {
        check("bytes=2000-,0-9", 1000, RangeRequest::Single(0..10));
    }

    #[test]
    fn invalid_syntax_means_the_whole_representation() {
        for header in [
            "",
            "bytes=",
            "bytes=,",
            "bytes=a-b",
            "bytes=10-5",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=0x10-",
            "bytes=+1-2",
            "items=0-1",
            "bytes 0-1",
            "bytes=0-1;",
            "bytes=0-1,foo",
        ] {
            check(header, 1000, RangeRequest::Full);
        }
    }

    #[test]
    fn several_ranges_with_empty_list_elements() {
        check(
            "bytes=0-9, ,20-29,\t-10",
            1000,
            RangeRequest::Multiple(vec![0..10, 20..30, 990..1000]),
        );
    }

    #[test]
    fn overlapping_or_too_many_ranges_mean_the_whole_representation() {
        check("bytes=0-9,5-14", 1000, RangeRequest::Full);
        check("bytes=500-,-600", 1000, RangeRequest::Full);
        let sixteen: Vec<String> = (0..16).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        assert!(matches!(
            parse(format!("bytes={}", sixteen.join(",")).as_bytes(), 1000),
            RangeRequest::Multiple(ranges) if ranges.len() == 16
        ));
        let seventeen: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        check(
            &format!("bytes={}", seventeen.join(",")),
            1000,
            RangeRequest::Full,
        );
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(&(0..100), 1000), "bytes 0-99/1000");
        assert_eq!(content_range(&(999..1000), 1000), "bytes 999-999/1000");
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
    }

    #[test]
    fn multipart_length_near_the_top_of_u64_saturates_instead_of_panicking() {
        let length = u64::MAX;
        let layout = multipart("B", "video/mp4", &[0..10, 20..length], length);
        assert_eq!(layout.body_length, u64::MAX);
    }

    #[test]
    fn multipart_framing_and_length() {
        let layout = multipart("B", "video/mp4", &[0..2, 5..6], 10);
        assert_eq!(layout.content_type, "multipart/byteranges; boundary=B");
        assert_eq!(
            &layout.part_headers[0][..],
            b"--B\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-1/10\r\n\r\n"
        );
        assert_eq!(
            &layout.part_headers[1][..],
            b"\r\n--B\r\nContent-Type: video/mp4\r\nContent-Range: bytes 5-5/10\r\n\r\n"
        );
        assert_eq!(&layout.closing[..], b"\r\n--B--\r\n");
        let framing: u64 = layout
            .part_headers
            .iter()
            .map(|h| h.len() as u64)
            .sum::<u64>()
            + layout.closing.len() as u64;
        assert_eq!(layout.body_length, framing + 3);
    }
}
