//! Slices of large objects: the arithmetic and the checks behind caching a
//! large representation (a progressive MP4, say) as aligned byte ranges, each
//! stored as its own entry, so that a seek into a 2 GB file fetches only the
//! slices it covers.
//!
//! Pure functions over header maps, offsets and streams: no store, no
//! origin, no sockets. The edge's request handler (`edge::slices`) uses them
//! to fetch slices with `Range` requests, to check every `206` it gets back
//! (RFC 9110 §14.4 `Content-Range`, §15.3.7) and to assemble client
//! responses from the slices a range covers.
//!
//! Combining partial responses is only correct when they are parts of one
//! representation (RFC 9110 §15.3.7.3, RFC 9111 §3.4 ask for matching strong
//! validators): a slice is accepted only with a strong `ETag` or a
//! `Last-Modified`, and every slice of one client response must carry the
//! same [`Version`] (validators and total length) as the first.

use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use kinema_http::conditional::{EntityTag, Validators};

use crate::policy;

/// Separates an object's cache key from a slice number. A request target
/// never contains `#` (RFC 9112 §3.2: the fragment is not sent), so a slice
/// key cannot collide with any URL's key, and a prefix purge of the URL
/// catches its slices.
const SLICE_MARK: &str = "#slice=";

/// The cache key of slice `index` of the object stored under `key`.
pub fn slice_key(key: &str, index: u64) -> String {
    format!("{key}{SLICE_MARK}{index}")
}

/// The prefix every slice key of `key` starts with.
pub fn slice_prefix(key: &str) -> String {
    format!("{key}{SLICE_MARK}")
}

/// The bytes slice `index` covers when slices are `size` bytes (the last
/// slice of an object is shorter; the origin's `Content-Range` says so).
pub fn slice_bounds(index: u64, size: u64) -> Range<u64> {
    let start = index.saturating_mul(size);
    start..start.saturating_add(size)
}

/// The `Range` request header asking an origin for slice `index`.
pub fn range_header(index: u64, size: u64) -> HeaderValue {
    let bounds = slice_bounds(index, size);
    // Digits and ASCII only: always a valid field value.
    HeaderValue::from_str(&format!("bytes={}-{}", bounds.start, bounds.end - 1))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes=0-0"))
}

/// Why an origin's answer cannot be used as a slice (or an object cannot
/// be sliced); shown in `Cache-Status` as `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceRefusal {
    NotPartial,
    BadContentRange,
    WrongRange,
    BadLength,
    NoLength,
    Vary,
    WeakEtag,
    BadEtag,
    NoValidator,
    /// Storing it is forbidden as it would be for the whole response.
    NotStorable(crate::policy::NotStorable),
}

/// Which representation a slice belongs to: two slices may be combined only
/// when their versions are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The representation's total length.
    pub length: u64,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
}

impl Version {
    /// The version a response's validators name, refusing what cannot tell
    /// two representations apart byte for byte: no validator at all, or a
    /// weak `ETag` (RFC 9110 §8.8.1: weak validators do not promise
    /// identical bytes).
    fn from_validators(length: u64, headers: &HeaderMap) -> Result<Self, SliceRefusal> {
        let etag = headers.get(header::ETAG).cloned();
        if let Some(value) = &etag {
            match EntityTag::parse(value.as_bytes()) {
                Some(tag) if !tag.weak => {}
                Some(_) => return Err(SliceRefusal::WeakEtag),
                None => return Err(SliceRefusal::BadEtag),
            }
        }
        let last_modified = headers.get(header::LAST_MODIFIED).cloned();
        if etag.is_none() && last_modified.is_none() {
            return Err(SliceRefusal::NoValidator);
        }
        Ok(Self {
            length,
            etag,
            last_modified,
        })
    }

    /// The version of a complete (200) response that is to be sliced: its
    /// `Content-Length` and validators.
    pub fn of_whole(headers: &HeaderMap) -> Result<Self, SliceRefusal> {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or(SliceRefusal::NoLength)?;
        no_vary(headers)?;
        Self::from_validators(length, headers)
    }

    /// Validators for If-Range and conditional requests (RFC 9110 §13).
    pub fn validators(&self) -> Validators<'_> {
        Validators {
            etag: self
                .etag
                .as_ref()
                .and_then(|value| EntityTag::parse(value.as_bytes())),
            last_modified: self
                .last_modified
                .as_ref()
                .and_then(kinema_http::http_date::parse),
        }
    }
}

/// A slice response that passed [`check_slice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceMeta {
    /// The bytes of the representation it holds.
    pub range: Range<u64>,
    pub version: Version,
}

impl SliceMeta {
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// True when this one slice is the whole representation.
    pub fn is_whole(&self) -> bool {
        self.range.start == 0 && self.range.end == self.version.length
    }
}

/// `Content-Range: bytes FIRST-LAST/COMPLETE` (RFC 9110 §14.4), as a
/// half-open range and the complete length; `None` for anything else
/// (unsatisfied-range, unknown length `*`, other units).
pub fn parse_content_range(value: &HeaderValue) -> Option<(Range<u64>, u64)> {
    let text = value.to_str().ok()?.trim();
    let rest = text.strip_prefix("bytes ")?.trim_start();
    let (span, complete) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let digits = |text: &str| -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (first, last, complete) = (digits(first)?, digits(last)?, digits(complete)?);
    // §14.4: a range with last < first, or beyond the complete length, is
    // invalid.
    if last < first || last >= complete {
        return None;
    }
    Some((first..last + 1, complete))
}

fn no_vary(headers: &HeaderMap) -> Result<(), SliceRefusal> {
    // Slices are stored under one key each, without variants: a response
    // that varies is cached whole or not at all.
    match policy::vary_names(headers) {
        Some(names) if names.is_empty() => Ok(()),
        _ => Err(SliceRefusal::Vary),
    }
}

/// Checks an origin's answer to the `Range` request for slice `index`
/// (slices of `size` bytes): a `206` whose `Content-Range` is exactly the
/// slice (the last one may be shorter), a known complete length, no
/// `Vary`, and validators that name one version. The `Err` is the reason,
/// shown as the `Cache-Status` detail.
pub fn check_slice(
    status: StatusCode,
    headers: &HeaderMap,
    index: u64,
    size: u64,
) -> Result<SliceMeta, SliceRefusal> {
    if status != StatusCode::PARTIAL_CONTENT {
        return Err(SliceRefusal::NotPartial);
    }
    let (range, complete) = headers
        .get(header::CONTENT_RANGE)
        .and_then(parse_content_range)
        .ok_or(SliceRefusal::BadContentRange)?;
    let wanted = slice_bounds(index, size);
    if range.start != wanted.start || range.end != wanted.end.min(complete) {
        return Err(SliceRefusal::WrongRange);
    }
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        let length = length
            .to_str()
            .ok()
            .and_then(|text| text.parse::<u64>().ok());
        if length != Some(range.end - range.start) {
            return Err(SliceRefusal::BadLength);
        }
    }
    no_vary(headers)?;
    Ok(SliceMeta {
        range,
        version: Version::from_validators(complete, headers)?,
    })
}

/// The headers of a complete `200` made from a slice that holds the whole
/// representation (RFC 9111 §3.4: a cache may complete a response from
/// partial ones; here one part is all of it).
pub fn whole_headers(slice_headers: &HeaderMap, length: u64) -> HeaderMap {
    let mut headers = slice_headers.clone();
    headers.remove(header::CONTENT_RANGE);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers
}

/// The first byte a `Range` header asks for when that is knowable without
/// the representation's length: one `bytes=FIRST-[LAST]` range. Suffix
/// ranges, lists and invalid values give `None` (the caller then starts at
/// the first slice, which tells the length).
pub fn first_byte(range: &HeaderValue) -> Option<u64> {
    let text = range.to_str().ok()?.trim();
    let (unit, specs) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let specs: Vec<&str> = specs
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return None;
    };
    let (first, _) = spec.split_once('-')?;
    let first = first.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    first.parse().ok()
}

/// One piece of an assembled response body: framing bytes (multipart
/// headers), or part of one slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(Bytes),
    Slice {
        index: u64,
        /// Offsets within the slice.
        within: Range<u64>,
    },
}

/// Splits byte ranges of an object into per-slice pieces, in order.
pub fn pieces(range: Range<u64>, size: u64) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let index = start / size;
        let bounds = slice_bounds(index, size);
        let end = range.end.min(bounds.end);
        pieces.push(Piece::Slice {
            index,
            within: start - bounds.start..end - bounds.start,
        });
        start = end;
    }
    pieces
}

/// Exactly `take` bytes of `stream` after skipping `skip`, as chunks are
/// produced (no waiting for the whole). A stream that ends early yields an
/// error, so a client sees a truncated response rather than a short one
/// that looks complete.
pub fn cut(
    stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    skip: u64,
    take: u64,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    futures::stream::unfold(
        (stream, skip, take, false),
        |(mut stream, mut skip, mut take, finished)| async move {
            if finished || take == 0 {
                return None;
            }
            loop {
                match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        let length = chunk.len() as u64;
                        if skip >= length {
                            skip -= length;
                            continue;
                        }
                        let start = skip as usize;
                        let end = (skip + take).min(length) as usize;
                        chunk = chunk.slice(start..end);
                        skip = 0;
                        take -= chunk.len() as u64;
                        if chunk.is_empty() {
                            continue;
                        }
                        return Some((Ok(chunk), (stream, skip, take, false)));
                    }
                    Some(Err(error)) => return Some((Err(error), (stream, skip, take, true))),
                    None => {
                        let error = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the body ended before the bytes it promised",
                        );
                        return Some((Err(error), (stream, skip, take, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn keys_and_bounds() {
        assert_eq!(slice_key("/v/a.mp4?x=1", 3), "/v/a.mp4?x=1#slice=3");
        assert!(slice_key("/v/a.mp4", 3).starts_with(&slice_prefix("/v/a.mp4")));
        assert_eq!(slice_bounds(2, 10), 20..30);
        assert_eq!(range_header(2, 10), "bytes=20-29");
    }

    #[test]
    fn content_range_parsing() {
        let parse = |text: &str| parse_content_range(&HeaderValue::from_str(text).unwrap());
        assert_eq!(parse("bytes 0-9/100"), Some((0..10, 100)));
        assert_eq!(parse("bytes 90-99/100"), Some((90..100, 100)));
        assert_eq!(parse("bytes 90-100/100"), None);
        assert_eq!(parse("bytes 9-0/100"), None);
        assert_eq!(parse("bytes 0-9/*"), None);
        assert_eq!(parse("bytes */100"), None);
        assert_eq!(parse("items 0-9/100"), None);
        assert_eq!(parse("bytes -1-9/100"), None);
    }

    #[test]
    fn slices_are_checked_against_the_request() {
        let good = headers(&[
            ("content-range", "bytes 10-19/25"),
            ("content-length", "10"),
            ("etag", "\"v1\""),
        ]);
        let meta = check_slice(StatusCode::PARTIAL_CONTENT, &good, 1, 10).unwrap();
        assert_eq!(meta.range, 10..20);
        assert_eq!(meta.version.length, 25);
        assert!(!meta.is_whole());
        // The last slice is shorter.
        let last = headers(&[("content-range", "bytes 20-24/25"), ("etag", "\"v1\"")]);
        let last = check_slice(StatusCode::PARTIAL_CONTENT, &last, 2, 10).unwrap();
        assert_eq!(last.range, 20..25);
        assert_eq!(last.version, meta.version);
        let whole = headers(&[("content-range", "bytes 0-4/5"), ("last-modified", "x")]);
        assert!(
            check_slice(StatusCode::PARTIAL_CONTENT, &whole, 0, 10)
                .unwrap()
                .is_whole()
        );

        let check = |status, pairs: &[(&str, &str)], index| {
            check_slice(status, &headers(pairs), index, 10)
                .unwrap_err()
                .as_str()
        };
        assert_eq!(
            check(StatusCode::OK, &[("etag", "\"v\"")], 0),
            "not-partial"
        );
        assert_eq!(
            check(
                StatusCode::PARTIAL_CONTENT,
                &[("content-range", "bytes 0-9/25")],
                1
            ),
            "wrong-range"
        );
        assert_eq!(
            check(
                StatusCode::PARTIAL_CONTENT,
                &[("content-range", "bytes 10-14/25"), ("etag", "\"v\"")],
                1
            ),
            "wrong-range"
        );
        assert_eq!(
            check(
                StatusCode::PARTIAL_CONTENT,
                &[("content-range", "bytes 10-19/25")],
                1
            ),
            "no-validator"
        );
        assert_eq!(
            check(
                StatusCode::PARTIAL_CONTENT,
                &[("content-range", "bytes 10-19/25"), ("etag", "W/\"v\"")],
                1
            ),
            "weak-etag"
        );
        assert_eq!(
            check(
                StatusCode::PARTIAL_CONTENT,
                &[
                    ("content-range", "bytes 10-19/25"),
                    ("etag", "\"v\""),
                    ("vary", "accept-encoding")
                ],
                1
            ),
            "vary"
        );
        assert_eq!(
            check(
                StatusCode::PARTIAL_CONTENT,
                &[
                    ("content-range", "bytes 10-19/25"),
                    ("etag", "\"v\""),
                    ("content-length", "11")
                ],
                1
            ),
            "bad-length"
        );
        assert_eq!(
            check(StatusCode::PARTIAL_CONTENT, &[("etag", "\"v\"")], 1),
            "bad-content-range"
        );
    }

    #[test]
    fn versions_differ_by_validator_or_length() {
        let v1 = Version::of_whole(&headers(&[("content-length", "50"), ("etag", "\"a\"")]));
        let v2 = Version::of_whole(&headers(&[("content-length", "50"), ("etag", "\"b\"")]));
        let v3 = Version::of_whole(&headers(&[("content-length", "51"), ("etag", "\"a\"")]));
        assert_ne!(v1, v2);
        assert_ne!(v1, v3);
        assert_eq!(
            Version::of_whole(&headers(&[("etag", "\"a\"")])),
            Err(SliceRefusal::NoLength)
        );
        let version = v1.unwrap();
        assert!(version.validators().etag.is_some());
    }

    #[test]
    fn first_bytes_of_ranges() {
        let first = |text: &str| first_byte(&HeaderValue::from_str(text).unwrap());
        assert_eq!(first("bytes=100-"), Some(100));
        assert_eq!(first("bytes = 100-200"), Some(100));
        assert_eq!(first("bytes=-100"), None);
        assert_eq!(first("bytes=0-1,5-6"), None);
        assert_eq!(first("items=0-1"), None);
        assert_eq!(first("bytes=x-1"), None);
    }

    #[test]
    fn ranges_split_into_slice_pieces() {
        assert_eq!(
            pieces(5..27, 10),
            vec![
                Piece::Slice {
                    index: 0,
                    within: 5..10
                },
                Piece::Slice {
                    index: 1,
                    within: 0..10
                },
                Piece::Slice {
                    index: 2,
                    within: 0..7
                },
            ]
        );
        assert_eq!(
            pieces(20..21, 10),
            vec![Piece::Slice {
                index: 2,
                within: 0..1
            }]
        );
        assert!(pieces(3..3, 10).is_empty());
    }

    #[tokio::test]
    async fn cut_takes_exactly_and_fails_when_short() {
        let chunks = || {
            futures::stream::iter(
                [&b"abc"[..], b"defg", b"hi"]
                    .into_iter()
                    .map(|chunk| Ok(Bytes::from_static(chunk))),
            )
            .boxed()
        };
        let collected: Vec<Bytes> = cut(chunks(), 2, 6).map(Result::unwrap).collect().await;
        assert_eq!(
            crate::fill::concat(&collected),
            Bytes::from_static(b"cdefgh")
        );
        let mut short = cut(chunks(), 5, 10);
        assert_eq!(short.next().await.unwrap().unwrap(), "fg");
        assert_eq!(short.next().await.unwrap().unwrap(), "hi");
        assert!(short.next().await.unwrap().is_err());
        assert!(short.next().await.is_none());
    }
}
