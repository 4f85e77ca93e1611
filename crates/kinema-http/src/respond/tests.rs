//! The responder against RFC 9110, each expected head and body written out
//! by hand from the RFC's rules, not computed by the code under test.

use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7's example).
const LAST_MODIFIED_TEXT: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const ONE_SECOND_EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
const CONTENT: &[u8] = b"0123456789";

fn representation() -> Representation {
    Representation {
        etag: Some(HeaderValue::from_static("\"v1\"")),
        last_modified: Some(UNIX_EPOCH + Duration::from_secs(784_111_777)),
        length: 10,
        content_type: Some(HeaderValue::from_static("video/mp4")),
        content_length: None,
    }
}

/// What every answer carries: validators, caching, CORS.
fn base_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
    headers.insert(LAST_MODIFIED, HeaderValue::from_static(LAST_MODIFIED_TEXT));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers
}

fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_str(value).unwrap());
    }
    headers
}

fn respond(method: Method, pairs: &[(&'static str, &str)]) -> Response<ResponseBody> {
    let bytes = Bytes::from_static(CONTENT);
    match answer(&method, &request(pairs), representation(), base_headers()) {
        Answer::Complete(response) => response,
        Answer::Content(planned) => planned.into_response(Held {
            bytes: &bytes,
            file: None,
        }),
    }
}

fn body(response: &Response<ResponseBody>) -> Vec<u8> {
    match response.body() {
        ResponseBody::Empty => Vec::new(),
        ResponseBody::Full(bytes) => bytes.to_vec(),
        ResponseBody::Parts(parts) => parts.concat(),
        ResponseBody::File(slice) => slice.bytes().to_vec(),
        ResponseBody::Stream(_) => panic!("held content is never streamed"),
    }
}

fn header<'a>(response: &'a Response<ResponseBody>, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

/// A 200 of the whole representation.
fn assert_whole(response: &Response<ResponseBody>) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response, "content-length"), Some("10"));
    assert_eq!(header(response, "content-type"), Some("video/mp4"));
    assert_eq!(header(response, "content-range"), None);
    assert_eq!(body(response), CONTENT);
}

/// §15.4.5: a 304 has the fields a 200 would have had that describe the
/// representation's validators and caching, and no body.
fn assert_not_modified(response: &Response<ResponseBody>) {
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(response, "etag"), Some("\"v1\""));
    assert_eq!(
        header(response, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(header(response, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(response, "content-length"), None);
    assert!(body(response).is_empty());
}

fn assert_precondition_failed(response: &Response<ResponseBody>) {
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(body(response), b"precondition failed\n");
    assert_eq!(header(response, "content-length"), Some("20"));
    assert_eq!(
        header(response, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    assert_eq!(header(response, "access-control-allow-origin"), Some("*"));
}

#[test]
fn no_precondition_and_no_range_is_the_whole_representation() {
    let response = respond(Method::GET, &[]);
    assert_whole(&response);
    assert_eq!(header(&response, "accept-ranges"), Some("bytes"));
    assert_eq!(header(&response, "etag"), Some("\"v1\""));
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
}

#[test]
fn if_none_match_is_a_weak_comparison_answered_with_304() {
    // §13.1.2: weak comparison, a list, `*`.
    for value in ["\"v1\"", "W/\"v1\"", "\"v0\", \"v1\"", "*"] {
        assert_not_modified(&respond(Method::GET, &[("if-none-match", value)]));
        assert_not_modified(&respond(Method::HEAD, &[("if-none-match", value)]));
    }
    assert_whole(&respond(Method::GET, &[("if-none-match", "\"v0\"")]));
}

#[test]
fn if_modified_since_at_or_after_last_modified_is_304() {
    assert_not_modified(&respond(
        Method::GET,
        &[("if-modified-since", LAST_MODIFIED_TEXT)],
    ));
    assert_whole(&respond(
        Method::GET,
        &[("if-modified-since", ONE_SECOND_EARLIER)],
    ));
    // §13.1.3: ignored when If-None-Match is present.
    assert_whole(&respond(
        Method::GET,
        &[
            ("if-none-match", "\"v0\""),
            ("if-modified-since", LAST_MODIFIED_TEXT),
        ],
    ));
    // An invalid date is ignored.
    assert_whole(&respond(Method::GET, &[("if-modified-since", "yesterday")]));
}

#[test]
fn if_match_is_a_strong_comparison_failing_with_412() {
    assert_precondition_failed(&respond(Method::GET, &[("if-match", "\"v0\"")]));
    // §13.1.1: a weak tag never matches strongly.
    assert_precondition_failed(&respond(Method::GET, &[("if-match", "W/\"v1\"")]));
    assert_whole(&respond(Method::GET, &[("if-match", "\"v1\"")]));
    assert_whole(&respond(Method::GET, &[("if-match", "*")]));
}

#[test]
fn if_unmodified_since_before_last_modified_is_412() {
    assert_precondition_failed(&respond(
        Method::GET,
        &[("if-unmodified-since", ONE_SECOND_EARLIER)],
    ));
    assert_whole(&respond(
        Method::GET,
        &[("if-unmodified-since", LAST_MODIFIED_TEXT)],
    ));
    // §13.2.2 step 2: only without If-Match.
    assert_whole(&respond(
        Method::GET,
        &[
            ("if-match", "\"v1\""),
            ("if-unmodified-since", ONE_SECOND_EARLIER),
        ],
    ));
}

#[test]
fn a_failed_if_match_wins_over_a_matching_if_none_match() {
    // §13.2.2: step 1 comes before step 3.
    assert_precondition_failed(&respond(
        Method::GET,
        &[("if-match", "\"v0\""), ("if-none-match", "\"v1\"")],
    ));
}

#[test]
fn preconditions_come_before_the_range() {
    assert_not_modified(&respond(
        Method::GET,
        &[("if-none-match", "\"v1\""), ("range", "bytes=50-")],
    ));
}

#[test]
fn a_single_range_is_206_with_its_content_range() {
    for (range, content_range, content) in [
        ("bytes=2-4", "bytes 2-4/10", &b"234"[..]),
        ("bytes=-3", "bytes 7-9/10", b"789"),
        ("bytes=8-", "bytes 8-9/10", b"89"),
        ("bytes=9-100", "bytes 9-9/10", b"9"),
        // An unsatisfiable range among satisfiable ones is dropped (§14.1.2).
        ("bytes=20-30,0-0", "bytes 0-0/10", b"0"),
    ] {
        let response = respond(Method::GET, &[("range", range)]);
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&response, "content-range"), Some(content_range));
        assert_eq!(
            header(&response, "content-length"),
            Some(content.len().to_string().as_str())
        );
        assert_eq!(header(&response, "content-type"), Some("video/mp4"));
        assert_eq!(body(&response), content, "{range}");
    }
}

#[test]
fn if_range_lets_the_range_apply_only_to_the_representation_it_names() {
    // §13.1.5: a strong entity tag, or a date exactly Last-Modified.
    for if_range in ["\"v1\"", LAST_MODIFIED_TEXT] {
        let response = respond(
            Method::GET,
            &[("range", "bytes=2-4"), ("if-range", if_range)],
        );
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{if_range}");
        assert_eq!(body(&response), b"234");
    }
    for if_range in ["\"v0\"", "W/\"v1\"", ONE_SECOND_EARLIER, "nonsense"] {
        assert_whole(&respond(
            Method::GET,
            &[("range", "bytes=2-4"), ("if-range", if_range)],
        ));
    }
}

#[test]
fn a_range_the_server_may_ignore_is_the_whole_representation() {
    // §14.2: invalid syntax, another unit, overlapping ranges.
    for range in ["bytes=4-2", "items=0-1", "bytes=0-5,3-8"] {
        assert_whole(&respond(Method::GET, &[("range", range)]));
    }
}

#[test]
fn several_ranges_are_one_multipart_byteranges_body() {
    let response = respond(Method::GET, &[("range", "bytes=0-1,5-6")]);
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&response, "content-type"),
        Some("multipart/byteranges; boundary=kinema-v1")
    );
    assert_eq!(header(&response, "content-range"), None);
    // §14.6: each part has its type and Content-Range; CRLF before every
    // delimiter but the first; the close delimiter ends with "--".
    let expected = b"--kinema-v1\r\n\
Content-Type: video/mp4\r\n\
Content-Range: bytes 0-1/10\r\n\
\r\n\
01\r\n\
--kinema-v1\r\n\
Content-Type: video/mp4\r\n\
Content-Range: bytes 5-6/10\r\n\
\r\n\
56\r\n\
--kinema-v1--\r\n";
    assert_eq!(
        String::from_utf8(body(&response)).unwrap(),
        std::str::from_utf8(expected).unwrap()
    );
    // A first part header of 13 + 25 + 29 + 2 = 69 bytes, a second of 71
    // (CRLF before its delimiter), 4 of content, a close delimiter of 17.
    assert_eq!(header(&response, "content-length"), Some("161"));
    assert_eq!(expected.len(), 161);
}

#[test]
fn no_satisfiable_range_is_416_with_the_length() {
    // §15.5.17: Content-Range: bytes */complete-length.
    for range in ["bytes=10-", "bytes=-0", "bytes=20-30,40-"] {
        let response = respond(Method::GET, &[("range", range)]);
        assert_eq!(
            response.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}"
        );
        assert_eq!(header(&response, "content-range"), Some("bytes */10"));
        assert_eq!(body(&response), b"range not satisfiable\n");
        assert_eq!(header(&response, "content-length"), Some("22"));
        assert_eq!(
            header(&response, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(&response, "cache-control"), Some("no-store"));
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    }
}

#[test]
fn head_is_the_head_of_a_get_without_a_body() {
    // §9.3.2; and a Range applies to GET only (§14.2).
    for pairs in [
        &[][..],
        &[("range", "bytes=2-4")],
        &[("range", "bytes=50-")],
    ] {
        let response = respond(Method::HEAD, pairs);
        assert_eq!(response.status(), StatusCode::OK, "{pairs:?}");
        assert_eq!(header(&response, "content-length"), Some("10"));
        assert_eq!(header(&response, "content-type"), Some("video/mp4"));
        assert_eq!(header(&response, "accept-ranges"), Some("bytes"));
        assert!(matches!(response.body(), ResponseBody::Empty));
    }
    let Answer::Content(planned) = answer(
        &Method::HEAD,
        &HeaderMap::new(),
        representation(),
        base_headers(),
    ) else {
        panic!("a HEAD is answered with content headers");
    };
    assert_eq!(planned.body(), &Body::Nothing);
}

#[test]
fn a_stored_partial_head_says_nothing_of_the_answer_s_framing() {
    let mut stored = base_headers();
    stored.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
    stored.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 0-998/5000"));
    let Answer::Content(planned) = answer(
        &Method::GET,
        &request(&[("range", "bytes=2-4")]),
        representation(),
        stored.clone(),
    ) else {
        panic!("a satisfiable range has content");
    };
    assert_eq!(planned.headers()["content-length"], "3");
    assert_eq!(planned.headers()["content-range"], "bytes 2-4/10");
    let Answer::Content(planned) =
        answer(&Method::GET, &HeaderMap::new(), representation(), stored)
    else {
        panic!("no range has content");
    };
    assert_eq!(planned.headers()["content-length"], "10");
    assert!(!planned.headers().contains_key("content-range"));
}

#[test]
fn errors_describe_no_representation_and_are_not_stored() {
    let mut stored = base_headers();
    stored.insert(CONTENT_ENCODING_NAME, HeaderValue::from_static("gzip"));
    stored.insert("cdn-cache-control", HeaderValue::from_static("max-age=600"));
    stored.insert("expires", HeaderValue::from_static(LAST_MODIFIED_TEXT));
    let Answer::Complete(response) = answer(
        &Method::GET,
        &request(&[("range", "bytes=50-")]),
        representation(),
        stored,
    ) else {
        panic!("416 is complete");
    };
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    for gone in ["content-encoding", "cdn-cache-control", "expires"] {
        assert_eq!(header(&response, gone), None, "{gone}");
    }
    assert_eq!(header(&response, "etag"), Some("\"v1\""));
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
}

const CONTENT_ENCODING_NAME: http::header::HeaderName = http::header::CONTENT_ENCODING;

#[test]
fn a_shared_file_sends_whole_and_single_ranges_by_sendfile() {
    let bytes = Bytes::from_static(CONTENT);
    let file = SharedFile::from_bytes(&bytes).unwrap();
    for (pairs, expected_range) in [(&[][..], 0..10), (&[("range", "bytes=2-4")][..], 2..5)] {
        let Answer::Content(planned) = answer(
            &Method::GET,
            &request(pairs),
            representation(),
            base_headers(),
        ) else {
            panic!("content expected");
        };
        let response = planned.into_response(Held {
            bytes: &bytes,
            file: Some(&file),
        });
        let ResponseBody::File(slice) = response.body() else {
            panic!("{pairs:?} is sent from the file: {:?}", response.body());
        };
        assert_eq!(slice.range(), expected_range);
    }
    // Multipart bodies are slices of the shared bytes.
    let Answer::Content(planned) = answer(
        &Method::GET,
        &request(&[("range", "bytes=0-1,5-6")]),
        representation(),
        base_headers(),
    ) else {
        panic!("content expected");
    };
    let response = planned.into_response(Held {
        bytes: &bytes,
        file: Some(&file),
    });
    assert!(matches!(response.body(), ResponseBody::Parts(parts) if parts.len() == 5));
}

#[test]
fn an_error_is_a_short_plain_text_line() {
    let mut headers = HeaderMap::new();
    headers.insert("allow", HeaderValue::from_static("GET, HEAD"));
    let response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        headers,
    );
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body(&response), b"method not allowed\n");
    assert_eq!(header(&response, "content-length"), Some("19"));
    assert_eq!(
        header(&response, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
}

#[test]
fn without_an_entity_tag_the_boundary_comes_from_the_length() {
    assert_eq!(
        boundary(None, 10),
        format!("kinema-{:016x}", 10u64 ^ 0x6b69_6e65_6d61)
    );
    assert_eq!(
        boundary(Some(&HeaderValue::from_static("W/\"a-b.c\"")), 10),
        "kinema-Wabc"
    );
}

#[test]
fn a_head_s_date_is_read_only_for_a_request_that_compares_it() {
    let head = base_headers();
    assert_eq!(
        Representation::of_head(&head, 10, &HeaderMap::new()).last_modified,
        None
    );
    let tags_only = request(&[("if-none-match", "\"v1\""), ("if-match", "\"v1\"")]);
    assert_eq!(
        Representation::of_head(&head, 10, &tags_only).last_modified,
        None
    );
    for field in ["if-modified-since", "if-unmodified-since", "if-range"] {
        let request = request(&[(field, LAST_MODIFIED_TEXT)]);
        let representation = Representation::of_head(&head, 10, &request);
        assert_eq!(
            representation.last_modified,
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "{field}"
        );
        assert_eq!(
            representation.etag,
            Some(HeaderValue::from_static("\"v1\""))
        );
        assert_eq!(representation.length, 10);
    }
}
