//! Large objects cached in slices, over real HTTP on loopback, in
//! front of an origin that honours `Range` (RFC 9110 §14) on a generated
//! 40 MB object and records every range it is asked for: a seek fetches
//! only the slices it covers, a full GET is assembled from slices (checked
//! by SHA-256), concurrent seeks coalesce, and an ETag change in the middle
//! of an object never mixes two versions in one response.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use bytesize::ByteSize;
use common::{Edge, Service, cache_status, get, send, serve_http1};
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use kinema_http::range::{self, RangeRequest};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

const LENGTH: usize = 40_000_000;
const SLICE: u64 = 1024 * 1024;

/// The object's bytes in version 1 or 2: pseudo-random, so a byte from the
/// wrong place or version shows.
fn object(version: u8) -> Bytes {
    static VERSIONS: OnceLock<[Bytes; 2]> = OnceLock::new();
    let generate = |seed: u64| {
        let mut state = seed;
        let mut bytes = Vec::with_capacity(LENGTH);
        while bytes.len() < LENGTH {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        bytes.truncate(LENGTH);
        Bytes::from(bytes)
    };
    VERSIONS.get_or_init(|| [generate(0x9e37_79b9), generate(0x7f4a_7c15)])
        [usize::from(version - 1)]
    .clone()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Default)]
struct OriginState {
    version: u8,
    /// The `Range` of every request for the object (`None`: no range).
    ranges: Vec<Option<String>>,
    held: bool,
    /// Answers to range requests are sent chunked, and the terminating
    /// chunk waits for this to clear: every byte of the range is out,
    /// the origin's body has not ended.
    ends_held: bool,
    /// Like `ends_held`, but the last [`TAIL`] bytes of the range wait
    /// too: a client wanting less than the range has its bytes, the
    /// slice's fill is still in flight.
    tails_held: bool,
}

const TAIL: usize = 4096;

/// An origin serving `/movie.mp4` with ranges, ETag `"vN"`.
struct RangeOrigin {
    server: Service<Infallible>,
    state: Arc<Mutex<OriginState>>,
    opened: Arc<Notify>,
}

impl RangeOrigin {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(OriginState {
            version: 1,
            ..OriginState::default()
        }));
        let opened = Arc::new(Notify::new());
        let handler = {
            let state = state.clone();
            let opened = opened.clone();
            move |request| answer(state.clone(), opened.clone(), request)
        };
        let server =
            Service::spawn(|listener, shutdown| serve_http1(listener, shutdown, handler)).await;
        Self {
            server,
            state,
            opened,
        }
    }

    /// An edge in front of this origin that slices objects over 2 MiB.
    async fn edge(&self) -> Edge {
        Edge::start(kinema_edge::Config {
            origin: vec![self.server.url()],
            prefetch_segments: 0,
            slice_size: ByteSize::b(SLICE),
            slice_threshold: ByteSize::mib(2),
            origin_timeout: Duration::from_secs(10),
            ..kinema_edge::Config::default()
        })
        .await
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().ranges.clone()
    }

    fn set_version(&self, version: u8) {
        self.state.lock().unwrap().version = version;
    }

    fn hold(&self) {
        self.state.lock().unwrap().held = true;
    }

    fn release(&self) {
        self.state.lock().unwrap().held = false;
        self.opened.notify_waiters();
    }

    fn hold_body_ends(&self) {
        self.state.lock().unwrap().ends_held = true;
    }

    fn release_body_ends(&self) {
        self.state.lock().unwrap().ends_held = false;
        self.opened.notify_waiters();
    }

    fn hold_tails(&self) {
        self.state.lock().unwrap().tails_held = true;
    }

    fn release_tails(&self) {
        self.state.lock().unwrap().tails_held = false;
        self.opened.notify_waiters();
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

async fn answer(
    state: Arc<Mutex<OriginState>>,
    opened: Arc<Notify>,
    request: Request<Incoming>,
) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    if request.uri().path() != "/movie.mp4" {
        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
        if request.uri().path() != "/healthz" {
            *response.status_mut() = StatusCode::NOT_FOUND;
        }
        return response;
    }
    let range_header = request.headers().get("range").cloned();
    state.lock().unwrap().ranges.push(
        range_header
            .as_ref()
            .map(|value| value.to_str().unwrap().to_string()),
    );
    loop {
        let notified = opened.notified();
        if !state.lock().unwrap().held {
            break;
        }
        notified.await;
    }
    let version = state.lock().unwrap().version;
    let whole = object(version);
    let wanted = range_header.map_or(RangeRequest::Full, |value| {
        range::parse(value.as_bytes(), LENGTH as u64)
    });
    let (status, body, content_range) = match wanted {
        RangeRequest::Single(range) => (
            StatusCode::PARTIAL_CONTENT,
            whole.slice(range.start as usize..range.end as usize),
            Some(range::content_range(&range, LENGTH as u64)),
        ),
        RangeRequest::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Bytes::new(),
            Some(range::unsatisfied_content_range(LENGTH as u64)),
        ),
        _ => (StatusCode::OK, whole, None),
    };
    let (ends_held, tails_held) = {
        let state = state.lock().unwrap();
        (state.ends_held, state.tails_held)
    };
    let body = if status == StatusCode::PARTIAL_CONTENT && (ends_held || tails_held) {
        // No size hint: hyper sends it chunked. What is held waits for
        // its release.
        let split = if tails_held {
            body.len().saturating_sub(TAIL)
        } else {
            body.len()
        };
        let (sent, held) = (body.slice(..split), body.slice(split..));
        let released = async move {
            loop {
                let notified = opened.notified();
                {
                    let state = state.lock().unwrap();
                    if !state.ends_held && !state.tails_held {
                        break;
                    }
                }
                notified.await;
            }
            (!held.is_empty()).then(|| Ok(Frame::data(held)))
        };
        let frames = futures::stream::once(async move { Ok(Frame::data(sent)) })
            .chain(futures::stream::once(released).filter_map(|frame| async { frame }));
        StreamBody::new(frames).boxed_unsync()
    } else {
        Full::new(body).boxed_unsync()
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("etag", format!("\"v{version}\"").parse().unwrap());
    headers.insert("cache-control", "max-age=3600".parse().unwrap());
    headers.insert("content-type", "video/mp4".parse().unwrap());
    headers.insert("accept-ranges", "bytes".parse().unwrap());
    if let Some(content_range) = content_range {
        headers.insert("content-range", content_range.parse().unwrap());
    }
    response
}

fn slice_range(index: u64) -> Option<String> {
    Some(format!(
        "bytes={}-{}",
        index * SLICE,
        (index + 1) * SLICE - 1
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_into_a_large_object_fetches_only_the_covering_slices() {
    let origin = RangeOrigin::start().await;
    let edge = origin.edge().await;
    let whole = object(1);

    // 20,000,000 lies in slice 19 (19,922,944 ..= 20,971,519).
    let (status, headers, body) = get(
        edge.address,
        "/movie.mp4",
        &[("range", "bytes=20000000-20099999")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers["content-range"], "bytes 20000000-20099999/40000000");
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(body, whole.slice(20_000_000..20_100_000));
    assert!(
        cache_status(&headers).contains("fwd=uri-miss"),
        "{headers:?}"
    );
    assert_eq!(origin.ranges(), vec![slice_range(19)]);

    // Again: a hit, or, while slice 19 is still filling (the range was sent
    // as soon as its bytes arrived), a join of that one fill. Across a
    // slice boundary: only the next slice is fetched.
    let (_, headers, body) = get(
        edge.address,
        "/movie.mp4",
        &[("range", "bytes=20000000-20099999")],
    )
    .await;
    let status_line = cache_status(&headers);
    assert!(
        status_line.contains("hit") || status_line.contains("collapsed"),
        "{headers:?}"
    );
    assert_eq!(body, whole.slice(20_000_000..20_100_000));
    let (status, headers, body) = get(
        edge.address,
        "/movie.mp4",
        &[("range", "bytes=20900000-21000000")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers["content-length"], "100001");
    assert_eq!(body, whole.slice(20_900_000..21_000_001));
    assert_eq!(origin.ranges(), vec![slice_range(19), slice_range(20)]);

    // The last (short) slice and a suffix range.
    let (status, headers, body) =
        get(edge.address, "/movie.mp4", &[("range", "bytes=-1000")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers["content-range"], "bytes 39999000-39999999/40000000");
    assert_eq!(body, whole.slice(39_999_000..));
    assert_eq!(
        origin.ranges().last().unwrap(),
        &Some(format!("bytes={}-{}", 38 * SLICE, 39 * SLICE - 1))
    );
    // Beyond the end: 416 without asking the origin again.
    let requests = origin.ranges().len();
    let (status, headers, _) =
        get(edge.address, "/movie.mp4", &[("range", "bytes=50000000-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], "bytes */40000000");
    assert!(origin.ranges().len() <= requests + 1);
    assert!(origin.ranges().iter().all(Option::is_some));
    assert!(edge.metric("kinema_edge_slice_fills_total").await >= 3);
    edge.stop().await;
    origin.stop().await;
}

/// A client that has a whole slice in its response may rely on it being
/// stored: the edge used to store a slice only once the origin's body
/// ended, after its last byte had reached the client, so the client's next
/// request could miss (an `only-if-cached` one got 504; under load, so did
/// `only_if_cached_and_cdn_cache_control_precedence` in `tests/edge.rs`).
/// Holding the end of the origin's chunked body keeps that window open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_is_stored_before_its_last_byte_reaches_the_client() {
    let origin = RangeOrigin::start().await;
    origin.hold_body_ends();
    let edge = origin.edge().await;
    let whole = object(1);
    let first_slice = slice_range(0).unwrap();

    let (status, headers, body) = get(edge.address, "/movie.mp4", &[("range", &first_slice)]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, whole.slice(..SLICE as usize));
    assert!(
        cache_status(&headers).contains("fwd=uri-miss"),
        "{headers:?}"
    );
    // The origin's body for slice 0 has not ended yet.
    let (status, headers, body) = get(
        edge.address,
        "/movie.mp4",
        &[("range", &first_slice), ("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{headers:?}");
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(body, whole.slice(..SLICE as usize));
    assert_eq!(origin.ranges()[0], slice_range(0));
    origin.release_body_ends();
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_get_is_assembled_from_slices_and_then_served_from_them() {
    let origin = RangeOrigin::start().await;
    let edge = origin.edge().await;
    let whole = object(1);

    let (status, headers, body) = get(edge.address, "/movie.mp4", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], LENGTH.to_string());
    assert_eq!(body.len(), LENGTH);
    assert_eq!(sha256(&body), sha256(&whole));
    // The first GET showed the size (its body abandoned); then every slice
    // was asked for once.
    let ranges = origin.ranges();
    assert_eq!(ranges[0], None);
    let mut slices: Vec<Option<String>> = ranges[1..].to_vec();
    slices.sort();
    let mut expected: Vec<Option<String>> = (0..38).map(slice_range).collect();
    expected.push(Some(format!("bytes={}-{}", 38 * SLICE, 39 * SLICE - 1)));
    expected.sort();
    assert_eq!(slices, expected);

    // Everything is now a hit: full, HEAD, and several ranges at once.
    let (status, headers, body) = get(edge.address, "/movie.mp4", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(sha256(&body), sha256(&whole));
    let head = send(edge.address, "HEAD", "/movie.mp4", &[], b"").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], LENGTH.to_string());
    let (status, headers, body) = get(
        edge.address,
        "/movie.mp4",
        &[("range", "bytes=0-9,39999990-")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let content_type = headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("multipart/byteranges; boundary="));
    assert_eq!(headers["content-length"], body.len().to_string());
    let text = body.to_vec();
    let contains = |needle: &[u8]| text.windows(needle.len()).any(|window| window == needle);
    assert!(contains(&whole[..10]));
    assert!(contains(&whole[39_999_990..]));
    assert!(contains(b"Content-Range: bytes 39999990-39999999/40000000"));
    // A conditional request is answered from the slices' validators.
    let (status, _, _) = get(edge.address, "/movie.mp4", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(origin.ranges().len(), ranges.len());
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_seeks_into_one_region_make_one_origin_request() {
    let origin = RangeOrigin::start().await;
    let edge = origin.edge().await;
    let whole = object(1);
    origin.hold();
    let seekers: Vec<_> = (0..20)
        .map(|n| {
            let address = edge.address;
            let start = 10 * SLICE + 1000 * n;
            tokio::spawn(async move {
                let range = format!("bytes={start}-{}", start + 9999);
                let (status, _, body) = get(address, "/movie.mp4", &[("range", &range)]).await;
                (status, start, body)
            })
        })
        .collect();
    // Every seeker waits on the one fill before the origin answers.
    edge.wait_metric("kinema_edge_coalesced_waiters_total", 19)
        .await;
    origin.release();
    for seeker in seekers {
        let (status, start, body) = seeker.await.unwrap();
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, whole.slice(start as usize..start as usize + 10_000));
    }
    assert_eq!(origin.ranges(), vec![slice_range(10)]);
    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etag_change_mid_object_never_mixes_versions() {
    let origin = RangeOrigin::start().await;
    let edge = origin.edge().await;
    let (first, second) = (object(1), object(2));

    // A full GET read slowly; the object changes at the origin after its
    // first 2 MB. Slices fetched after that are of version 2, so the
    // response must stop (truncated), never splice them in.
    let response = send(edge.address, "GET", "/movie.mp4", &[], b"").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let mut changed = false;
    let mut failed = false;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received.extend_from_slice(&data);
                }
                if !changed && received.len() >= 2_000_000 {
                    origin.set_version(2);
                    changed = true;
                }
            }
            Some(Err(_)) => {
                failed = true;
                break;
            }
            None => break,
        }
    }
    assert!(changed);
    assert!(failed, "the response should be cut short");
    assert!(received.len() < LENGTH);
    assert!(
        received[..] == first[..received.len()],
        "the truncated body must be a prefix of version 1"
    );
    assert!(edge.metric("kinema_edge_slice_version_changes_total").await >= 1);

    // The next full GET is all version 2.
    let (status, headers, body) = get(edge.address, "/movie.mp4", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], "\"v2\"");
    assert_eq!(sha256(&body), sha256(&second));

    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_after_the_object_changed_drops_the_old_slices() {
    let origin = RangeOrigin::start().await;
    let edge = origin.edge().await;
    let (first, second) = (object(1), object(2));
    let seek = |start: usize| {
        let range = format!("bytes={start}-{}", start + 99);
        async move { get(edge.address, "/movie.mp4", &[("range", &range)]).await }
    };
    let (_, headers, body) = seek(1_000_000).await;
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(body, first.slice(1_000_000..1_000_100));

    // The origin publishes version 2; a seek elsewhere fetches a slice of
    // it, so the stored slice of version 1 is dropped…
    origin.set_version(2);
    let (_, headers, body) = seek(30_000_000).await;
    assert_eq!(headers["etag"], "\"v2\"");
    assert_eq!(body, second.slice(30_000_000..30_000_100));
    // … and the first region is fetched again, as version 2.
    let (_, headers, body) = seek(1_000_000).await;
    assert_eq!(headers["etag"], "\"v2\"");
    assert_eq!(body, second.slice(1_000_000..1_000_100));
    assert_eq!(
        origin.ranges(),
        vec![slice_range(0), slice_range(28), slice_range(0)]
    );
    edge.stop().await;
    origin.stop().await;
}

/// A seek that finds a slice fill begun before the object changed at the
/// origin asks the origin again rather than join it, and that fill stores
/// nothing when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_does_not_join_a_fill_begun_before_the_object_changed() {
    let origin = RangeOrigin::start().await;
    origin.hold_tails();
    let edge = origin.edge().await;
    let (first, second) = (object(1), object(2));
    let seek = |start: usize, extra: &'static [(&'static str, &'static str)]| {
        let range = format!("bytes={start}-{}", start + 99);
        async move {
            let mut headers = vec![("range", range.as_str())];
            headers.extend_from_slice(extra);
            get(edge.address, "/movie.mp4", &headers).await
        }
    };
    // Version 1's slice 0: the client has its bytes, the fill is still
    // waiting for the end of the slice.
    let (_, headers, body) = seek(1_000_000, &[]).await;
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(body, first.slice(1_000_000..1_000_100));
    // Version 2 is published and seen elsewhere in the object.
    origin.set_version(2);
    let (_, headers, body) = seek(30_000_000, &[]).await;
    assert_eq!(headers["etag"], "\"v2\"");
    assert_eq!(body, second.slice(30_000_000..30_000_100));
    // Back in the first region, the old fill is not joined: version 2.
    let (_, headers, body) = seek(1_000_000, &[]).await;
    assert_eq!(headers["etag"], "\"v2\"");
    assert_eq!(body, second.slice(1_000_000..1_000_100));
    assert_eq!(
        origin.ranges(),
        vec![slice_range(0), slice_range(28), slice_range(0)]
    );
    // Every fill ends, the abandoned one included (three whole slices).
    origin.release_tails();
    edge.wait_metric("kinema_edge_origin_bytes_total", 3 * SLICE)
        .await;
    // What is stored of slice 0 is version 2's.
    let (status, headers, body) = seek(1_000_000, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{headers:?}");
    assert_eq!(headers["etag"], "\"v2\"");
    assert_eq!(body, second.slice(1_000_000..1_000_100));
    assert_eq!(origin.ranges().len(), 3);
    edge.stop().await;
    origin.stop().await;
}
