//! Answering a GET or HEAD from a representation (RFC 9110): preconditions
//! (§13.2.2), then the ranges (§14: one range, `multipart/byteranges`, or
//! 416), then HEAD (§9.3.2). This is the one place that is decided, for the
//! origin's published files, the edge's stored and filling responses and
//! the edge's sliced objects alike; and [`error`] is the one shape of a
//! plain-text error response, which the origin and the edge both send.
//!
//! The decision is pure: from the request's method and headers and the
//! representation's validators, length and type, an [`Answer`]: either a
//! complete response (304, 412, 416), or a [`Planned`] 200/206 whose head is
//! settled and whose body is named as byte ranges of the representation.
//! Where the bytes come from is the caller's, through [`Content`]: content
//! held in memory ([`Held`]: shared `Bytes`, sliced without copying, and a
//! [`SharedFile`] that the connection layer sends by `sendfile`), ranges
//! read from a store, slices filled from an origin. Nothing here reads or
//! waits, so a caller can fetch the content (or find that it cannot) after
//! the decision and before the body.

use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderName,
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    RANGE, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::ResponseBody;
use crate::conditional::{self, EntityTag, Precondition, Validators};
use crate::range::{self, RangeRequest};
use crate::shared_file::SharedFile;

/// The request fields that compare a representation's validators, besides
/// `If-Range`.
const PRECONDITION_FIELDS: [HeaderName; 4] = [
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
];

/// What the responder needs to know of the representation a request selects.
#[derive(Debug, Clone)]
pub struct Representation {
    /// Its `ETag`, compared by the preconditions and `If-Range`, and the
    /// seed of a multipart boundary.
    pub etag: Option<HeaderValue>,
    /// Its `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// Bytes in the whole representation.
    pub length: u64,
    /// Its `Content-Type`, which a 200 or a single range carries and every
    /// part of a multipart answer keeps.
    pub content_type: Option<HeaderValue>,
    /// `length` already rendered, when the caller keeps it so (the origin's
    /// catalogue does): one formatting less per response.
    pub content_length: Option<HeaderValue>,
}

impl Representation {
    /// The representation a stored or forwarded response head describes:
    /// its `ETag`, `Last-Modified` and `Content-Type`, with `length` bytes,
    /// as `request` needs it: the date is parsed only when the request has
    /// a field that compares it (most have none, and a cache hit is the hot
    /// path).
    pub fn of_head(headers: &HeaderMap, length: u64, request: &HeaderMap) -> Self {
        let compares_dates = [IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE, IF_RANGE]
            .iter()
            .any(|name| request.contains_key(name));
        Self {
            etag: headers.get(ETAG).cloned(),
            last_modified: if compares_dates {
                headers.get(LAST_MODIFIED).and_then(crate::http_date::parse)
            } else {
                None
            },
            length,
            content_type: headers.get(CONTENT_TYPE).cloned(),
            content_length: None,
        }
    }

    pub fn validators(&self) -> Validators<'_> {
        Validators {
            etag: self
                .etag
                .as_ref()
                .and_then(|value| EntityTag::parse(value.as_bytes())),
            last_modified: self.last_modified,
        }
    }
}

/// What to answer.
#[derive(Debug)]
pub enum Answer {
    /// A response that sends none of the representation: 304, 412 or 416.
    Complete(Response<ResponseBody>),
    /// A 200 or 206 whose body is still to be produced.
    Content(Planned),
}

/// A 200 or 206 with its head settled: status, `Content-Type`,
/// `Content-Length`, `Content-Range` and `Accept-Ranges` over the caller's
/// headers, and the body it promises.
#[derive(Debug)]
pub struct Planned {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

/// The body a [`Planned`] answer promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// None: the request was a HEAD (its head still says what a GET gets).
    Nothing,
    /// One range of the representation: all of it for a 200.
    Range(Range<u64>),
    /// A `multipart/byteranges` body: framing and ranges, in order.
    Parts(Vec<Part>),
}

/// A piece of a body: bytes in hand, or a range of the representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Bytes),
    Range(Range<u64>),
}

/// Where the bytes of an answer come from.
pub trait Content {
    /// A body of exactly `range` of the representation, which lies within
    /// it: the whole for a 200, one range for a 206.
    fn range(self, range: Range<u64>) -> ResponseBody;
    /// A body of `parts` in order.
    fn parts(self, parts: Vec<Part>) -> ResponseBody;
}

/// A representation held whole in memory: its `bytes`, and, when it has
/// one, a `file` holding the same bytes that the connection layer can send
/// by `sendfile`. Nothing is copied: a whole or single-range body is a slice
/// of the file (else of the bytes), a multipart body slices of the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub bytes: &'a Bytes,
    pub file: Option<&'a SharedFile>,
}

impl Content for Held<'_> {
    fn range(self, range: Range<u64>) -> ResponseBody {
        match self.file {
            Some(file) => ResponseBody::File(file.slice(range)),
            None => ResponseBody::Full(self.bytes.slice(range.start as usize..range.end as usize)),
        }
    }

    fn parts(self, parts: Vec<Part>) -> ResponseBody {
        ResponseBody::Parts(
            parts
                .into_iter()
                .map(|part| match part {
                    Part::Literal(bytes) => bytes,
                    Part::Range(range) => {
                        self.bytes.slice(range.start as usize..range.end as usize)
                    }
                })
                .collect(),
        )
    }
}

impl Planned {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The response, its body made by `content` (not asked for a HEAD).
    pub fn into_response(self, content: impl Content) -> Response<ResponseBody> {
        let body = match self.body {
            Body::Nothing => ResponseBody::Empty,
            Body::Range(range) => content.range(range),
            Body::Parts(parts) => content.parts(parts),
        };
        build(self.status, self.headers, body)
    }

    /// The response with a body the caller made itself from [`Self::body`]
    /// (an edge's range cut from a fill as it streams in); a HEAD's stays
    /// empty whatever is given.
    pub fn into_response_with(self, body: ResponseBody) -> Response<ResponseBody> {
        let body = match self.body {
            Body::Nothing => ResponseBody::Empty,
            _ => body,
        };
        build(self.status, self.headers, body)
    }
}

/// Answers a GET or HEAD of `representation`, given `headers` every answer
/// to it carries (validators, caching, CORS; an edge's stored fields).
///
/// In RFC 9110 §13.2.2's order: a failed precondition is a 412, a matching
/// `If-None-Match` or `If-Modified-Since` a 304; then a GET's `Range`
/// (§14.2; not when `If-Range` names another representation) selects one
/// range, several (`multipart/byteranges`, §14.6) or none (416 with
/// `Content-Range: bytes */LENGTH`, §15.5.17); a HEAD gets the head a GET
/// without `Range` would (§9.3.2) and no body.
pub fn answer(
    method: &Method,
    request: &HeaderMap,
    representation: Representation,
    mut headers: HeaderMap,
) -> Answer {
    let validators = representation.validators();
    if let Some(response) = precondition_answer(method, request, &validators, &headers) {
        return Answer::Complete(response);
    }
    let length = representation.length;
    let wanted = wanted_ranges(method, request, &validators, length);
    // A stored partial response's range says nothing of this answer's.
    headers.remove(CONTENT_RANGE);
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let head = method == Method::HEAD;
    let (status, body) = match wanted {
        RangeRequest::Unsatisfiable => {
            headers.insert(
                CONTENT_RANGE,
                header_value(&range::unsatisfied_content_range(length)),
            );
            return Answer::Complete(error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable",
                error_headers(headers),
            ));
        }
        RangeRequest::Full => {
            set_content_type(&mut headers, representation.content_type);
            headers.insert(
                CONTENT_LENGTH,
                representation
                    .content_length
                    .unwrap_or_else(|| HeaderValue::from(length)),
            );
            (StatusCode::OK, Body::Range(0..length))
        }
        RangeRequest::Single(range) => {
            set_content_type(&mut headers, representation.content_type);
            headers.insert(
                CONTENT_RANGE,
                header_value(&range::content_range(&range, length)),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(range.end - range.start));
            (StatusCode::PARTIAL_CONTENT, Body::Range(range))
        }
        RangeRequest::Multiple(ranges) => {
            let part_type = representation
                .content_type
                .as_ref()
                .and_then(|value| value.to_str().ok())
                .unwrap_or("application/octet-stream");
            let boundary = boundary(representation.etag.as_ref(), length);
            let layout = range::multipart(&boundary, part_type, &ranges, length);
            headers.insert(CONTENT_TYPE, header_value(&layout.content_type));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(layout.body_length));
            let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
            for (part_header, range) in layout.part_headers.into_iter().zip(ranges) {
                parts.push(Part::Literal(part_header));
                parts.push(Part::Range(range));
            }
            parts.push(Part::Literal(layout.closing));
            (StatusCode::PARTIAL_CONTENT, Body::Parts(parts))
        }
    };
    Answer::Content(Planned {
        status,
        headers,
        body: if head { Body::Nothing } else { body },
    })
}

/// §13.2.2 steps 1–4 for a representation that exists: the 304 (with
/// `headers`, less the body's framing, §15.4.5) or 412 answer when a
/// precondition rules out sending it; `None` to go on.
pub fn precondition_answer(
    method: &Method,
    request: &HeaderMap,
    validators: &Validators<'_>,
    headers: &HeaderMap,
) -> Option<Response<ResponseBody>> {
    // Most requests carry no precondition: then nothing is parsed.
    if !PRECONDITION_FIELDS
        .iter()
        .any(|name| request.contains_key(name))
    {
        return None;
    }
    match conditional::evaluate(method, request, validators) {
        Precondition::Proceed => None,
        Precondition::NotModified => {
            let mut headers = headers.clone();
            for name in [CONTENT_LENGTH, CONTENT_RANGE, TRANSFER_ENCODING] {
                headers.remove(name);
            }
            Some(build(
                StatusCode::NOT_MODIFIED,
                headers,
                ResponseBody::Empty,
            ))
        }
        Precondition::Failed => Some(error(
            StatusCode::PRECONDITION_FAILED,
            "precondition failed",
            error_headers(headers.clone()),
        )),
    }
}

/// What a request's `Range` asks of a representation of `length` bytes
/// (§14.2): only a GET's, and only when `If-Range` (§13.1.5) does not name
/// another representation; otherwise the whole.
pub fn wanted_ranges(
    method: &Method,
    request: &HeaderMap,
    validators: &Validators<'_>,
    length: u64,
) -> RangeRequest {
    match request.get(RANGE) {
        Some(value)
            if method == Method::GET && conditional::if_range_allows(request, validators) =>
        {
            range::parse(value.as_bytes(), length)
        }
        _ => RangeRequest::Full,
    }
}

/// An error response, the one shape every plain-text error of kinema's
/// servers takes: `status`, `message` (short, lowercase, no internals) as a
/// one-line `text/plain` body with its `Content-Length`, over `headers`
/// (the caller's `Cache-Control`, `Retry-After`, `Allow`, CORS…).
pub fn error(status: StatusCode, message: &str, mut headers: HeaderMap) -> Response<ResponseBody> {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = Bytes::from(format!("{message}\n"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    build(status, headers, ResponseBody::Full(body))
}

/// A JSON document, the shape of every answer of the admin API and of
/// access control: `status`, `value` as an `application/json` body with its
/// `Content-Length`, never cached (`Cache-Control: no-store` over
/// `headers`).
pub fn json(
    status: StatusCode,
    value: &serde_json::Value,
    mut headers: HeaderMap,
) -> Response<ResponseBody> {
    let body = Bytes::from(value.to_string());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    build(status, headers, ResponseBody::Full(body))
}

/// An error of the admin API or of access control: [`json`] of
/// `{"error": message}` (short, no internals).
pub fn json_error(status: StatusCode, message: &str, headers: HeaderMap) -> Response<ResponseBody> {
    json(status, &serde_json::json!({ "error": message }), headers)
}

/// Headers of one field, `Cache-Control: no-store`: for an error that no
/// cache may keep.
pub fn no_store() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

/// The headers of a 412 or 416 built from those of the representation: it
/// describes no representation (its body is the error's) and no cache may
/// keep it in place of one, so the content and freshness fields go; the
/// others (validators, CORS, `Accept-Ranges`, an edge's `Cache-Status`)
/// stay.
fn error_headers(mut headers: HeaderMap) -> HeaderMap {
    let dropped: Vec<_> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            (name.starts_with("content-") && name != "content-range")
                || name.ends_with("cache-control")
                || name == "expires"
                || name == "transfer-encoding"
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

/// A `multipart/byteranges` boundary (RFC 2046 §5.1.1: at most 70 of a few
/// characters, never in the content): from the entity tag, a checksum of the
/// content which that content contains only by astronomical chance, else
/// from the length.
fn boundary(etag: Option<&HeaderValue>, length: u64) -> String {
    let from_tag: String = etag
        .map(|value| {
            value
                .as_bytes()
                .iter()
                .filter(|byte| byte.is_ascii_alphanumeric())
                .take(48)
                .map(|&byte| char::from(byte))
                .collect()
        })
        .unwrap_or_default();
    if from_tag.is_empty() {
        format!("kinema-{:016x}", length ^ 0x6b69_6e65_6d61)
    } else {
        format!("kinema-{from_tag}")
    }
}

fn set_content_type(headers: &mut HeaderMap, content_type: Option<HeaderValue>) {
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, content_type);
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn build(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests;
