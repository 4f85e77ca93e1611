//! The response phase's answers from stored responses, checked whole.

use super::*;

fn request(method: Method, pairs: &[(&str, &str)]) -> RequestContext {
    RequestContext {
        method,
        path_and_query: "/v/a/1.m4s".into(),
        headers: crate::test_support::headers(pairs),
        key: "/v/a/1.m4s".into(),
        directives: Directives::default(),
        client: None,
        token_expiry: None,
    }
}

fn stored() -> StoredResponse {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    StoredResponse::new(
        StatusCode::OK,
        headers,
        Bytes::from_static(b"0123456789"),
        SystemTime::now(),
        SystemTime::now(),
        vec![],
    )
}

#[test]
fn stored_responses_answer_conditionals_and_ranges() {
    let stored = stored();
    let response = serve_stored(
        &request(Method::GET, &[("if-none-match", "W/\"abc\"")]),
        &stored,
        CacheStatus::hit(60),
        SystemTime::now(),
    );
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[header::ETAG], "\"abc\"");
    assert!(!response.headers().contains_key(header::CONTENT_LENGTH));

    let response = serve_stored(
        &request(Method::GET, &[("range", "bytes=2-4")]),
        &stored,
        CacheStatus::hit(60),
        SystemTime::now(),
    );
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
    let ResponseBody::Full(body) = response.body() else {
        panic!("full body")
    };
    assert_eq!(&body[..], b"234");

    let response = serve_stored(
        &request(Method::GET, &[("range", "bytes=20-")]),
        &stored,
        CacheStatus::hit(60),
        SystemTime::now(),
    );
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */10");

    // If-Range naming another representation: the whole body.
    let response = serve_stored(
        &request(
            Method::GET,
            &[("range", "bytes=2-4"), ("if-range", "\"other\"")],
        ),
        &stored,
        CacheStatus::hit(60),
        SystemTime::now(),
    );
    assert_eq!(response.status(), StatusCode::OK);

    let response = serve_stored(
        &request(Method::HEAD, &[]),
        &stored,
        CacheStatus::hit(60),
        SystemTime::now(),
    );
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "10");
    assert!(matches!(response.body(), ResponseBody::Empty));
    assert_eq!(response.headers()["cache-status"], "kinema; hit; ttl=60");
}
