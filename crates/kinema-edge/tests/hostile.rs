//! The edge under hostile traffic, over real HTTP on loopback: cache
//! busting with one-off queries and one-off keys, and what it answers when
//! its origin goes away or refuses. The origin here is a small hyper server
//! that counts what it is asked.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Edge, Service, cache_status, get, serve_http1};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

/// The hot playlist and segment every viewer fetches.
const PLAYLIST: &str = "/v/hot/720p/index.m3u8";
const SEGMENT: &str = "/v/hot/720p/1.m4s";

/// An origin of video objects: any `/v/…` path answers, segments with
/// `SEGMENT_BYTES` bytes; it counts the requests per target (query
/// included).
struct CountingOrigin {
    server: Service<Infallible>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

const SEGMENT_BYTES: usize = 96 * 1024;

impl CountingOrigin {
    async fn start() -> Self {
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counts = seen.clone();
        let handler = move |request: Request<Incoming>| {
            let counts = counts.clone();
            async move {
                let target = request.uri().to_string();
                if request.uri().path() != "/healthz" {
                    *counts.lock().unwrap().entry(target).or_default() += 1;
                }
                let path = request.uri().path();
                let body = if path.ends_with(".m4s") {
                    Bytes::from(vec![b's'; SEGMENT_BYTES])
                } else {
                    Bytes::from_static(b"#EXTM3U\n#EXT-X-ENDLIST\n")
                };
                let mut response = Response::new(Full::new(body));
                if !path.starts_with("/v/") {
                    *response.status_mut() = StatusCode::NOT_FOUND;
                }
                response
                    .headers_mut()
                    .insert("cache-control", "public, max-age=3600".parse().unwrap());
                response
            }
        };
        let server =
            Service::spawn(|listener, shutdown| serve_http1(listener, shutdown, handler)).await;
        Self { server, seen }
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().values().sum()
    }
}

fn config(origin: &CountingOrigin) -> kinema_edge::Config {
    kinema_edge::Config {
        origin: vec![origin.server.url()],
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    }
}

async fn expect_hit(edge: &Edge, target: &str) {
    let (status, headers, _) = get(edge.address, target, &[]).await;
    assert_eq!(status, StatusCode::OK, "{target}");
    assert!(
        cache_status(&headers).contains("; hit"),
        "{target} is no longer a hit: {headers:?}"
    );
}

#[tokio::test]
async fn cache_busting_queries_cost_no_origin_fetches_and_evict_nothing() {
    let origin = CountingOrigin::start().await;
    let edge = Edge::start(kinema_edge::Config {
        // Room for a few segments only: one-off keys would evict the hot
        // ones at once.
        cache_memory: bytesize::ByteSize::kib(512),
        ..config(&origin)
    })
    .await;
    for target in [PLAYLIST, SEGMENT] {
        get(edge.address, target, &[]).await;
    }
    let before = origin.total();
    for n in 0..300 {
        for target in [PLAYLIST, SEGMENT] {
            let busted = format!("{target}?cb={n}&CMCD=sid%3D%22{n}%22");
            let (status, headers, _) = get(edge.address, &busted, &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert!(cache_status(&headers).contains("; hit"), "{headers:?}");
        }
    }
    // The prefetches of segments 2 and 3 (without the query), nothing else.
    assert!(
        origin.total() - before <= 2,
        "{} origin fetches for 600 busted requests: {:?}",
        origin.total() - before,
        origin.seen.lock().unwrap()
    );
    assert!(
        origin
            .seen
            .lock()
            .unwrap()
            .keys()
            .all(|target| !target.contains('?')),
        "a query reached the origin: {:?}",
        origin.seen.lock().unwrap()
    );
    expect_hit(&edge, PLAYLIST).await;
    expect_hit(&edge, SEGMENT).await;
    edge.stop().await;
}

#[tokio::test]
async fn query_policy_refuse_answers_400_and_keep_never_prefetches_the_query() {
    let origin = CountingOrigin::start().await;
    let edge = Edge::start(kinema_edge::Config {
        query_policy: kinema_edge::key::QueryPolicy::Refuse,
        ..config(&origin)
    })
    .await;
    let (status, _, body) = get(edge.address, &format!("{SEGMENT}?cb=1"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("\"cb\"") && body.contains("query_policy"),
        "{body}"
    );
    // CMCD is what players send: accepted, and shares the plain entry.
    let (status, _, _) = get(edge.address, &format!("{SEGMENT}?CMCD=br%3D800"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    expect_hit(&edge, SEGMENT).await;
    edge.stop().await;

    let origin = CountingOrigin::start().await;
    let edge = Edge::start(kinema_edge::Config {
        query_policy: kinema_edge::key::QueryPolicy::Keep,
        ..config(&origin)
    })
    .await;
    let (status, _, _) = get(edge.address, &format!("{SEGMENT}?cb=1"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    edge.wait_metric("kinema_edge_prefetches_total", 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while origin.total() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "prefetches never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = origin.seen.lock().unwrap().clone();
    assert_eq!(seen.get("/v/hot/720p/2.m4s"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("/v/hot/720p/3.m4s"), Some(&1), "{seen:?}");
    assert_eq!(seen.get(&format!("{SEGMENT}?cb=1")), Some(&1), "{seen:?}");
    edge.stop().await;
}

#[tokio::test]
async fn a_flood_of_one_off_objects_leaves_the_hot_ones_resident() {
    let origin = CountingOrigin::start().await;
    let edge = Edge::start(kinema_edge::Config {
        cache_memory: bytesize::ByteSize::mib(2),
        prefetch_segments: 0,
        ..config(&origin)
    })
    .await;
    // The hot objects, fetched a few times while the tier is nearly empty
    // (before the fix, those uses were never counted by the admission).
    for _ in 0..3 {
        for target in [PLAYLIST, SEGMENT] {
            get(edge.address, target, &[]).await;
        }
    }
    // A scan of distinct objects, each fetched once: ten times the memory
    // tier's size.
    for n in 0..200 {
        let (status, _, _) = get(edge.address, &format!("/v/cold{n}/720p/1.m4s"), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let hot_fetches = |target: &str| origin.seen.lock().unwrap().get(target).copied();
    assert_eq!(hot_fetches(PLAYLIST), Some(1));
    assert_eq!(hot_fetches(SEGMENT), Some(1));
    expect_hit(&edge, PLAYLIST).await;
    expect_hit(&edge, SEGMENT).await;
    edge.stop().await;
}

/// Sends `request` as raw bytes on a fresh connection and returns the
/// status code of the answer (0 when the connection closes first).
async fn raw_status(address: std::net::SocketAddr, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => answer.extend_from_slice(&buffer[..count]),
            }
            if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the edge never answered");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_a_400_not_an_origin_error() {
    use http_body_util::BodyExt;
    // An origin that reads the whole body before it answers.
    let origin = Service::spawn(|listener, shutdown| {
        serve_http1(
            listener,
            shutdown,
            |request: Request<Incoming>| async move {
                let length = match request.into_body().collect().await {
                    Ok(body) => body.to_bytes().len(),
                    Err(_) => 0,
                };
                Response::new(Full::new(Bytes::from(format!("got {length}\n"))))
            },
        )
    })
    .await;
    let edge = Edge::start(kinema_edge::Config {
        origin: vec![origin.url()],
        ..kinema_edge::Config::default()
    })
    .await;
    let valid = b"POST /api/upload HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(raw_status(edge.address, valid).await, 200);
    let malformed: [&[u8]; 3] = [
        // A chunk size that is not hexadecimal.
        b"POST /api/upload HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n",
        // A chunk longer than its size, with no CRLF where one must be.
        b"POST /api/upload HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        // A size too large for any integer.
        b"POST /api/upload HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    ];
    for request in malformed {
        let status = raw_status(edge.address, request).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(request));
    }
    assert_eq!(edge.metric("kinema_edge_origin_errors_total").await, 0);
    edge.stop().await;
}

/// The status and headers an origin answers, per path.
type Answers = Arc<Mutex<HashMap<String, (StatusCode, Vec<(&'static str, &'static str)>)>>>;

/// An origin whose answer for each path is set by the test while it runs.
struct SwitchableOrigin {
    server: Service<Infallible>,
    answers: Answers,
}

impl SwitchableOrigin {
    async fn start() -> Self {
        let answers: Answers = Arc::default();
        let table = answers.clone();
        let handler = move |request: Request<Incoming>| {
            let table = table.clone();
            async move {
                let answer = table.lock().unwrap().get(request.uri().path()).cloned();
                let (status, headers) = answer.unwrap_or((StatusCode::OK, Vec::new()));
                let body = if status == StatusCode::OK {
                    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=700000\nv180/index.m3u8\n"
                } else {
                    "refused\n"
                };
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = status;
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        };
        let server =
            Service::spawn(|listener, shutdown| serve_http1(listener, shutdown, handler)).await;
        Self { server, answers }
    }

    fn answer(&self, path: &str, status: StatusCode, headers: &[(&'static str, &'static str)]) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, headers.to_vec()));
    }
}

#[tokio::test]
async fn playlists_are_served_through_an_origin_outage_longer_than_their_max_age() {
    let origin = SwitchableOrigin::start().await;
    // What kinema's origin sends on playlists (max-age is manifest_max_age).
    for path in [PLAYLIST, "/v/hot/master.m3u8"] {
        origin.answer(
            path,
            StatusCode::OK,
            &[("cache-control", "public, max-age=1")],
        );
    }
    let edge = Edge::start(kinema_edge::Config {
        origin: vec![origin.server.url()],
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    })
    .await;
    for path in [PLAYLIST, "/v/hot/master.m3u8"] {
        let (status, _, _) = get(edge.address, path, &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    origin.server.stop().await;
    // Players keep asking through the outage; past the playlists' max-age
    // they are answered from the stale copies.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut stale = 0;
        for path in [PLAYLIST, "/v/hot/master.m3u8"] {
            let (status, headers, body) = get(edge.address, path, &[]).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{path} failed in the outage: {headers:?}"
            );
            assert!(body.starts_with(b"#EXTM3U"));
            if cache_status(&headers).contains("stale-if-error") {
                stale += 1;
            }
        }
        if stale == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(edge.metric("kinema_edge_stale_if_error_total").await >= 2);
    edge.stop().await;
}

#[tokio::test]
async fn an_admission_refusal_with_retry_after_is_passed_through_never_answered_stale() {
    const MASTER: &str = "/v/hot/master.m3u8";
    let origin = SwitchableOrigin::start().await;
    // Stored, and stale at once: every request asks the origin again.
    origin.answer(
        MASTER,
        StatusCode::OK,
        &[("cache-control", "public, max-age=0")],
    );
    let edge = Edge::start(kinema_edge::Config {
        origin: vec![origin.server.url()],
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    })
    .await;
    let (status, headers, _) = get(edge.address, MASTER, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cache_status(&headers).contains("stored"), "{headers:?}");

    // The origin's admission refuses new sessions.
    origin.answer(
        MASTER,
        StatusCode::SERVICE_UNAVAILABLE,
        &[("cache-control", "no-store"), ("retry-after", "4")],
    );
    for _ in 0..3 {
        let (status, headers, body) = get(edge.address, MASTER, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}");
        assert_eq!(headers["retry-after"], "4");
        assert_eq!(&body[..], b"refused\n");
        let status = cache_status(&headers);
        assert!(
            status.contains("fwd-status=503") && !status.contains("stale-if-error"),
            "{headers:?}"
        );
    }
    // Admitted again: the session starts.
    origin.answer(
        MASTER,
        StatusCode::OK,
        &[("cache-control", "public, max-age=0")],
    );
    let (status, _, body) = get(edge.address, MASTER, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(b"#EXTM3U"));

    // A 503 without Retry-After is an origin failure like any other: the
    // stale copy answers within the grace.
    origin.answer(MASTER, StatusCode::SERVICE_UNAVAILABLE, &[]);
    let (status, headers, _) = get(edge.address, MASTER, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        cache_status(&headers).contains("stale-if-error"),
        "{headers:?}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn the_grace_never_serves_a_signed_copy_an_edge_without_keys_cannot_verify() {
    let origin = SwitchableOrigin::start().await;
    // A signed copy, fresh as long as its token (the origin caps max-age
    // at the seconds the token has left), and an unsigned one alike.
    let signed = "/s/token/v/hot/master.m3u8";
    origin.answer(
        signed,
        StatusCode::OK,
        &[("cache-control", "public, max-age=1")],
    );
    origin.answer(
        "/v/hot/master.m3u8",
        StatusCode::OK,
        &[("cache-control", "public, max-age=1")],
    );
    let edge = Edge::start(kinema_edge::Config {
        origin: vec![origin.server.url()],
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    })
    .await;
    for path in [signed, "/v/hot/master.m3u8"] {
        let (status, _, _) = get(edge.address, path, &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    origin.server.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, headers, _) = get(edge.address, signed, &[]).await;
        assert!(
            !cache_status(&headers).contains("stale-if-error"),
            "an expired signed copy was served: {headers:?}"
        );
        if status == StatusCode::BAD_GATEWAY {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The unsigned copy is stale by now and still served.
    let (status, headers, _) = get(edge.address, "/v/hot/master.m3u8", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        cache_status(&headers).contains("stale-if-error"),
        "{headers:?}"
    );
    edge.stop().await;
}
