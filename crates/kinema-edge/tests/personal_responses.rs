//! Responses only their requester reads (private, Set-Cookie, too large to
//! store…) stream through the edge paced by the client: the edge holds a
//! bounded amount of such a body whatever its size, the body arrives whole
//! and intact, and a body the origin breaks reaches the client broken.
//! The origin here generates its bodies on the fly and counts what it
//! managed to hand to its connection.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Edge, Service, cache_status, get, send, serve_http1};
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

const LARGE: u64 = 256 * 1024 * 1024;
/// What the origin may get ahead of a client that stopped reading: the
/// socket buffers of two loopback connections and a few frames in hyper,
/// far from the whole body.
const AHEAD_BOUND: u64 = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// The body bytes repeat with this period, so any offset can be checked.
const PERIOD: usize = 251;

/// Body bytes `[offset, offset + length)`: byte `i` is `i % PERIOD`.
fn pattern_at(pattern: &Bytes, offset: u64, length: usize) -> Bytes {
    let start = (offset % PERIOD as u64) as usize;
    pattern.slice(start..start + length)
}

fn pattern() -> Bytes {
    (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

type OriginBody = StreamBody<BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

/// A body of `length` pattern bytes made as the connection asks for them,
/// counting them in `written`; with `break_at`, the stream fails there.
fn generated(
    length: u64,
    break_at: Option<u64>,
    written: Arc<AtomicU64>,
) -> BoxStream<'static, Result<Frame<Bytes>, std::io::Error>> {
    let pattern = pattern();
    stream::unfold(0u64, move |offset| {
        let pattern = pattern.clone();
        let written = written.clone();
        async move {
            if break_at.is_some_and(|at| offset >= at) {
                return Some((Err(std::io::Error::other("origin broke")), u64::MAX));
            }
            if offset >= length {
                return None;
            }
            let size = CHUNK.min((length - offset) as usize);
            written.fetch_add(size as u64, Ordering::SeqCst);
            Some((
                Ok(Frame::data(pattern_at(&pattern, offset, size))),
                offset + size as u64,
            ))
        }
    })
    .boxed()
}

/// The origin: `/large` (private, 256 MiB), `/cookie` (Set-Cookie, a
/// little over 1 MiB), `/broken` (private, chunked, breaks after 1 MiB),
/// `/broken-length` (private, declares 4 MiB, breaks after 1 MiB); only
/// `/large` is counted in `written`.
struct Origin {
    server: Service<Infallible>,
    written: Arc<AtomicU64>,
}

impl Origin {
    async fn start() -> Self {
        let written = Arc::new(AtomicU64::new(0));
        let handler = {
            let written = written.clone();
            move |request: Request<Incoming>| {
                let written = written.clone();
                async move {
                    // (fields, body length, where it breaks, Content-Length sent)
                    let (fields, length, break_at, declared): (&[(&str, &str)], u64, _, _) =
                        match request.uri().path() {
                            "/large" => (&[("cache-control", "private")], LARGE, None, true),
                            "/cookie" => (
                                &[("cache-control", "max-age=600"), ("set-cookie", "s=1")],
                                (1 << 20) + 17,
                                None,
                                true,
                            ),
                            "/broken" => (
                                &[("cache-control", "private")],
                                4 << 20,
                                Some(1 << 20),
                                false,
                            ),
                            "/broken-length" => (
                                &[("cache-control", "private")],
                                4 << 20,
                                Some(1 << 20),
                                true,
                            ),
                            // The edge's health checks.
                            _ => (&[], 0, None, true),
                        };
                    // Only the large body's bytes are counted.
                    let written = if request.uri().path() == "/large" {
                        written
                    } else {
                        Arc::default()
                    };
                    let mut response: Response<OriginBody> =
                        Response::new(StreamBody::new(generated(length, break_at, written)));
                    for (name, value) in fields {
                        response.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    if declared {
                        response
                            .headers_mut()
                            .insert("content-length", length.into());
                    }
                    response
                }
            }
        };
        let server =
            Service::spawn(|listener, shutdown| serve_http1(listener, shutdown, handler)).await;
        Self { server, written }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

fn config(origin: &Origin) -> kinema_edge::Config {
    kinema_edge::Config {
        origin: vec![origin.server.url()],
        prefetch_segments: 0,
        origin_timeout: Duration::from_secs(10),
        ..kinema_edge::Config::default()
    }
}

/// Reads `body` until at least `until` bytes (or its end), checking every
/// byte against the pattern from `offset`; the new offset.
async fn read_checked(body: &mut Incoming, pattern: &Bytes, mut offset: u64, until: u64) -> u64 {
    while offset < until {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        for piece in data.chunks(CHUNK) {
            assert!(
                piece == pattern_at(pattern, offset, piece.len()),
                "wrong bytes at offset {offset}"
            );
            offset += piece.len() as u64;
        }
    }
    offset
}

/// Waits until the origin has written nothing new for a while (it is held
/// back) or has written more than `bound` (it is not); what it wrote.
async fn written_when_settled(origin: &Origin, bound: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = origin.written();
    let mut unchanged = 0;
    while unchanged < 20 && last <= bound {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the origin never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = origin.written();
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
    last
}

#[tokio::test]
async fn a_large_private_download_is_paced_by_its_slow_client() {
    let origin = Origin::start().await;
    let edge = Edge::start(config(&origin)).await;
    let pattern = pattern();

    let response = send(edge.address, "GET", "/large", &[], b"").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], LARGE.to_string());
    assert_eq!(
        cache_status(response.headers()),
        "kinema; fwd=uri-miss; fwd-status=200; detail=private"
    );
    let mut body = response.into_body();
    let mut offset = read_checked(&mut body, &pattern, 0, 1 << 20).await;

    // The client stops reading: the edge must stop reading the origin
    // rather than keep the rest of the object for it.
    let written = written_when_settled(&origin, AHEAD_BOUND).await;
    assert!(
        written < AHEAD_BOUND,
        "the origin wrote {written} bytes for a client that read {offset}"
    );

    // The client resumes: every byte arrives, in order, intact.
    offset = read_checked(&mut body, &pattern, offset, u64::MAX).await;
    assert_eq!(offset, LARGE);
    assert_eq!(origin.written(), LARGE);
    assert!(edge.metric("kinema_edge_origin_bytes_total").await >= LARGE);
    edge.stop().await;
    origin.server.stop().await;
}

#[tokio::test]
async fn a_personal_response_arrives_whole_and_its_key_is_then_passed() {
    let origin = Origin::start().await;
    let edge = Edge::start(config(&origin)).await;
    let pattern = pattern();
    let length = (1 << 20) + 17;
    let expected = |offset: u64, length: usize| -> Bytes {
        let mut bytes = Vec::with_capacity(length);
        for piece in 0..length.div_ceil(CHUNK) {
            let start = piece * CHUNK;
            let size = CHUNK.min(length - start);
            bytes.extend_from_slice(&pattern_at(&pattern, offset + start as u64, size));
        }
        Bytes::from(bytes)
    };

    let (status, headers, body) = get(edge.address, "/cookie", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cache_status(&headers),
        "kinema; fwd=uri-miss; fwd-status=200; detail=set-cookie"
    );
    assert_eq!(headers["set-cookie"], "s=1");
    assert_eq!(body, expected(0, length));

    // Hit-for-pass: the next request streams straight from the origin.
    let (status, headers, body) = get(edge.address, "/cookie", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        cache_status(&headers).contains("detail=hit-for-pass"),
        "{headers:?}"
    );
    assert_eq!(body, expected(0, length));

    // A range of a personal response on a miss is cut from its stream.
    let response = send(
        edge.address,
        "GET",
        "/cookie?range",
        &[("range", "bytes=70000-70099")],
        b"",
    )
    .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 70000-70099/{length}")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, expected(70000, 100));

    // Several ranges would need the whole body buffered: the whole
    // response is sent instead (RFC 9110 §14.2 lets a server ignore Range).
    let (status, _, body) = get(
        edge.address,
        "/cookie?ranges",
        &[("range", "bytes=0-9,100-109")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, expected(0, length));
    edge.stop().await;
    origin.server.stop().await;
}

#[tokio::test]
async fn a_personal_body_the_origin_breaks_is_an_error_to_the_client() {
    let origin = Origin::start().await;
    let edge = Edge::start(config(&origin)).await;
    for path in ["/broken", "/broken-length"] {
        let response = send(edge.address, "GET", path, &[], b"").await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.into_body().collect().await;
        assert!(
            body.is_err(),
            "{path}: a broken origin body ended as a complete response"
        );
    }
    assert!(edge.metric("kinema_edge_origin_errors_total").await >= 2);
    edge.stop().await;
    origin.server.stop().await;
}
