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

/// Sends every fill to an address nobody listens on, and says viewers'
/// fills go to another edge first when `peer_first`.
#[derive(Debug)]
struct Nowhere {
    peer_first: bool,
}

impl UpstreamSelector for Nowhere {
    fn select(&self, _request: &UpstreamRequest<'_>) -> Vec<Upstream> {
        vec![Upstream::parse("http://127.0.0.1:9").unwrap()]
    }

    fn fills_from_peer(&self, request: &UpstreamRequest<'_>) -> bool {
        self.peer_first && !request.through_kinema
    }

    fn report_failure(&self, _upstream: &Upstream, _failure: crate::upstream::UpstreamFailure) {}

    fn healthy_count(&self) -> u64 {
        0
    }
}

async fn edge_with(selector: Nowhere) -> Arc<Edge> {
    let config = crate::Config {
        origin: vec!["http://127.0.0.1:9".into()],
        ..crate::Config::default()
    };
    let mut parts = crate::EdgeParts::open(&config).await.unwrap();
    parts.upstreams = Arc::new(selector);
    crate::build_with(&config, parts).unwrap()
}

fn whole() -> FillJob {
    FillJob::Whole {
        candidate: None,
        prefetch: false,
    }
}

#[tokio::test]
async fn a_request_through_a_kinema_node_never_joins_a_fill_sent_to_another_edge() {
    let edge = edge_with(Nowhere { peer_first: true }).await;
    let viewer = request(Method::GET, &[]);
    let through = request(Method::GET, &[("via", "1.1 kinema")]);
    let key = viewer.key.clone();
    let Joined::Leader(to_peer) = edge.join(&key, &viewer, whole()) else {
        panic!("the first viewer leads");
    };
    // Another edge's request starts a fill of its own, to the origins...
    let Joined::Leader(to_origins) = edge.join(&key, &through, whole()) else {
        panic!("a request through a kinema node must not wait for a fill sent to another edge");
    };
    assert!(!Arc::ptr_eq(&to_peer, &to_origins));
    // ...which the next such request joins, while viewers keep joining the
    // first.
    let Joined::Waiter(joined) = edge.join(&key, &through, whole()) else {
        panic!("joins the fill to the origins");
    };
    assert!(Arc::ptr_eq(&joined, &to_origins));
    let Joined::Waiter(joined) = edge.join(&key, &viewer, whole()) else {
        panic!("a viewer joins");
    };
    assert!(Arc::ptr_eq(&joined, &to_peer));
}

#[tokio::test]
async fn a_fill_sent_to_the_origins_is_joined_by_viewers_and_other_edges_alike() {
    let edge = edge_with(Nowhere { peer_first: false }).await;
    let viewer = request(Method::GET, &[]);
    let through = request(Method::GET, &[("via", "1.1 kinema")]);
    let key = viewer.key.clone();
    let Joined::Leader(fill) = edge.join(&key, &viewer, whole()) else {
        panic!("the first viewer leads");
    };
    for joiner in [&through, &viewer] {
        let Joined::Waiter(joined) = edge.join(&key, joiner, whole()) else {
            panic!("one fill for everyone");
        };
        assert!(Arc::ptr_eq(&joined, &fill));
    }
    // And a fill another edge started is joined by viewers too.
    let other = "/v/a/2.m4s";
    let Joined::Leader(fill) = edge.join(other, &through, whole()) else {
        panic!("leads");
    };
    let Joined::Waiter(joined) = edge.join(other, &viewer, whole()) else {
        panic!("a viewer joins a fill to the origins");
    };
    assert!(Arc::ptr_eq(&joined, &fill));
}
