//! The HTTP/1.1 request head (RFC 9112 §2–§7): reading a complete header
//! section into the connection's one buffer, parsing it into a `Request<()>`
//! whose values are slices of that buffer, and deciding the body's framing
//! and the connection's persistence from it.
//!
//! What it is not: the body decoder (`h1_body.rs`), the response writers
//! (`h1_write.rs`), or the connection loop (`h1.rs`).

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Shared;
use super::h1_body::Framing;

/// Most header fields in one request; more → 431.
const MAX_HEADERS: usize = 100;

// ---------------------------------------------------------------------------
// Request head

pub(super) struct ParsedHead {
    pub(super) request: Request<()>,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
}

pub(super) enum HeadError {
    /// Answer with this status and close.
    Respond(StatusCode, &'static str),
    /// Close without a word (client gone, or too slow).
    Close,
}

fn bad_request(message: &'static str) -> HeadError {
    HeadError::Respond(StatusCode::BAD_REQUEST, message)
}

/// Reads until `buffer` holds a complete header section, then splits it off
/// and parses it; the body and any pipelined request stay in `buffer`.
pub(super) async fn read_head<S: AsyncRead + Unpin, H>(
    io: &mut S,
    buffer: &mut BytesMut,
    shared: &Shared<H>,
) -> Result<ParsedHead, HeadError> {
    let config = &shared.config;
    let max_header = config.max_header_bytes.as_u64() as usize;
    let max_uri = config.max_uri_bytes.as_u64() as usize;
    // The clock starts at the request's first byte, which has arrived; it
    // is read only if the head is not all there (usually it is).
    let mut deadline = None;
    loop {
        if let Some(length) = head_length(buffer)? {
            if length > max_header {
                return Err(HeadError::Respond(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request header section too large",
                ));
            }
            let head = buffer.split_to(length).freeze();
            return parse_head(head, max_uri);
        }
        // Incomplete: a request line still unfinished past the longest
        // target we take is a 414, a header section past its limit a 431.
        let request_line_done = memchr_newline(buffer);
        if !request_line_done && buffer.len() > max_uri + 64 {
            return Err(HeadError::Respond(
                StatusCode::URI_TOO_LONG,
                "request target too long",
            ));
        }
        if buffer.len() >= max_header {
            return Err(HeadError::Respond(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header section too large",
            ));
        }
        buffer.reserve(4096.min(max_header + 1 - buffer.len()).max(1024));
        let deadline = *deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + config.header_read_timeout);
        match tokio::time::timeout_at(deadline, io.read_buf(buffer)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow (slowloris): nothing to answer.
            _ => return Err(HeadError::Close),
        }
    }
}

/// The length of the header section if `buffer` holds all of it. A plain
/// function, not inlined into the async reader: its field array must not
/// live in the connection's future across an await.
fn head_length(buffer: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => Ok(Some(length)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::Respond(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many request header fields",
        )),
        Err(_) => Err(bad_request("malformed request")),
    }
}

fn memchr_newline(buffer: &[u8]) -> bool {
    buffer.contains(&b'\n')
}

/// Builds the request from a complete header section; values and the target
/// share `head`'s memory.
fn parse_head(head: Bytes, max_uri: usize) -> Result<ParsedHead, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    if !matches!(parsed.parse(&head), Ok(httparse::Status::Complete(_))) {
        return Err(bad_request("malformed request"));
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(bad_request("malformed request line"));
    };
    if target.len() > max_uri {
        return Err(HeadError::Respond(
            StatusCode::URI_TOO_LONG,
            "request target too long",
        ));
    }
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| bad_request("invalid method"))?;
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes()))
        .map_err(|_| bad_request("invalid request target"))?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| bad_request("invalid header field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value))
            .map_err(|_| bad_request("invalid header field value"))?;
        headers.append(name, value);
    }

    // RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request.
    if version == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return Err(bad_request(
            "an http/1.1 request needs exactly one host header",
        ));
    }
    let framing = body_framing(&headers, version)?;
    let (mut keep_alive, close) = connection_options(&headers);
    // RFC 9112 §9.3: 1.1 persists unless closed; 1.0 only when asked.
    keep_alive = if close {
        false
    } else {
        version == Version::HTTP_11 || keep_alive
    };
    let expect_continue = match headers.get(header::EXPECT) {
        None => false,
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"100-continue") => {
            // RFC 9110 §10.1.1: never send 100 to an HTTP/1.0 client.
            version == Version::HTTP_11
        }
        Some(_) => {
            return Err(HeadError::Respond(
                StatusCode::EXPECTATION_FAILED,
                "only the 100-continue expectation is supported",
            ));
        }
    };

    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(ParsedHead {
        request,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// RFC 9112 §6.3: how the body of a request is delimited. Ambiguous
/// framing (both Transfer-Encoding and Content-Length, differing lengths) is
/// rejected outright, since it is how requests are smuggled past proxies.
fn body_framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .peekable();
    // The field's presence decides, not its codings: a proxy may take an
    // empty `Transfer-Encoding` for chunked while we read Content-Length.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if codings.peek().is_none() {
            return Err(bad_request(
                "transfer-encoding names no coding; send chunked or no transfer-encoding",
            ));
        }
        if version == Version::HTTP_10 {
            // RFC 9112 §6.1: HTTP/1.0 has no transfer codings.
            return Err(bad_request("transfer-encoding in an http/1.0 request"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(bad_request(
                "both transfer-encoding and content-length in one request",
            ));
        }
        let codings: Vec<&[u8]> = codings.collect();
        if codings
            .iter()
            .any(|coding| !coding.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(HeadError::Respond(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer coding; only chunked is understood",
            ));
        }
        if codings.len() > 1 {
            return Err(bad_request("chunked applied more than once"));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 19 {
                return Err(bad_request("invalid content-length"));
            }
            let parsed: u64 = std::str::from_utf8(item)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| bad_request("invalid content-length"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(bad_request("conflicting content-length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(length) => Framing::Length(length),
    })
}

/// The `keep-alive` and `close` options of the Connection header.
pub(super) fn connection_options(headers: &HeaderMap) -> (bool, bool) {
    let mut keep_alive = false;
    let mut close = false;
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            close |= token.eq_ignore_ascii_case(b"close");
        }
    }
    (keep_alive, close)
}

/// [`head_length`] then [`parse_head`] over bytes already read, as
/// [`read_head`] applies them; for the fuzz targets (`fuzzing.rs`).
pub(super) fn parse_buffered_head(
    buffer: &mut BytesMut,
    max_uri: usize,
) -> super::fuzzing::HeadOutcome {
    use super::fuzzing::HeadOutcome;
    let refused = |error| match error {
        HeadError::Respond(status, message) => HeadOutcome::Refused(status, message),
        HeadError::Close => HeadOutcome::Closed,
    };
    match head_length(buffer) {
        Ok(None) => HeadOutcome::Incomplete,
        Err(error) => refused(error),
        Ok(Some(length)) => match parse_head(buffer.split_to(length).freeze(), max_uri) {
            Ok(head) => HeadOutcome::Request {
                request: Box::new(head.request),
                framing: head.framing.into(),
                keep_alive: head.keep_alive,
                expect_continue: head.expect_continue,
            },
            Err(error) => refused(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedHead, (StatusCode, &'static str)> {
        parse_head(Bytes::copy_from_slice(text.as_bytes()), 8192).map_err(|error| match error {
            HeadError::Respond(status, message) => (status, message),
            HeadError::Close => (StatusCode::OK, "close"),
        })
    }

    #[test]
    fn parses_a_request_sharing_its_buffer() {
        let parsed =
            parse("GET /v/a/master.m3u8?t=1 HTTP/1.1\r\nHost: x\r\nX-A: b c\r\n\r\n").unwrap();
        assert_eq!(parsed.request.method(), Method::GET);
        assert_eq!(parsed.request.uri().path(), "/v/a/master.m3u8");
        assert_eq!(parsed.request.uri().query(), Some("t=1"));
        assert_eq!(parsed.request.headers()["x-a"], "b c");
        assert_eq!(parsed.framing, Framing::Empty);
        assert!(parsed.keep_alive);
    }

    #[test]
    fn framing_rules_of_rfc_9112() {
        let framing = |text| parse(text).map(|p| p.framing);
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        let status = |text| parse(text).err().map(|(status, _)| status);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n"),
            Some(StatusCode::EXPECTATION_FAILED)
        );
    }

    #[test]
    fn an_empty_transfer_encoding_is_refused_not_ignored() {
        // It was skipped, so Content-Length framed the body of a request a
        // proxy in front may have framed as chunked.
        for text in [
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: ,\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n",
        ] {
            let refused = parse(text).err().map(|(status, _)| status);
            assert_eq!(refused, Some(StatusCode::BAD_REQUEST), "{text:?}");
        }
    }

    #[test]
    fn persistence_by_version() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }
}
