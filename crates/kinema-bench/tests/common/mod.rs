//! Test fixtures: a synthetic ladder published into a temporary library,
//! a small HTTP/1.1 server over that library that can inject faults
//! (a pause in the middle of one response body, a missing file, a
//! redirect, a 503 refusal, sudden death), which a well-behaved server like `kinema
//! serve` never would, and the quiet run every test starts its viewers with.
//!
//! The server reads through the `Store` trait, so it serves exactly the
//! published files; it is deliberately minimal (no ranges, no caching):
//! the faults, not the serving, are what it is for.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kinema_bench::synthetic::{SyntheticVideo, publish};
use kinema_bench::{BenchConfig, RunReport, run};
use kinema_core::{ObjectPath, VideoId};
use kinema_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The ladder every test plays: 0.3 to 6 Mbit/s.
pub const LADDER: [u64; 5] = [300_000, 800_000, 1_500_000, 3_000_000, 6_000_000];

pub struct Library {
    pub dir: tempfile::TempDir,
    /// The library directory, opened as `kinema serve` opens it.
    pub store: Arc<dyn Store>,
}

/// Publishes the test ladder as video `clip`: `segments` segments of
/// `segment_seconds` each.
pub async fn library(segment_seconds: f64, segments: u32) -> Library {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = kinema_store::open(&StoreConfig::directory(dir.path()))
        .await
        .expect("library opens");
    let video = SyntheticVideo {
        id: VideoId::new("clip").unwrap(),
        bitrates: LADDER.to_vec(),
        segment_seconds,
        segments,
    };
    publish(store.as_ref(), &dir.path().join("staging"), &video)
        .await
        .expect("synthetic video publishes");
    Library { dir, store }
}

/// Every default for `url` but the progress line, which would only
/// clutter the test output.
pub fn config(url: String) -> BenchConfig {
    BenchConfig {
        progress: false,
        ..BenchConfig::new(url)
    }
}

/// Runs `config` to its deadline (nothing shuts it down early); the run
/// itself must succeed, whatever its viewers met.
pub async fn play(config: BenchConfig) -> RunReport {
    run(config, std::future::pending()).await.unwrap()
}

/// Faults the test server injects.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Path (after `/v/clip/`) whose body stalls halfway, once, for this long.
    pub pause: Option<(String, Duration)>,
    /// Path (after `/v/clip/`) answered with 404 although it exists.
    pub missing: Option<String>,
    /// Requests answered with 503, as admission control does.
    pub refusal: Option<Refusal>,
    /// After serving this many segments (`.m4s`), the server dies as a
    /// SIGKILLed one does: the request that finds it dead gets no answer,
    /// every open connection is reset and the listener is closed.
    pub die_after_segments: Option<u32>,
}

/// Which requests of one path the server refuses with 503, and how.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Path after `/v/clip/`.
    pub path: String,
    /// The first this many requests of it are refused…
    pub first: u32,
    /// …and once this many were served, every later one (a full server).
    pub after_serving: Option<u32>,
    /// The `Retry-After` value sent; `None` sends none.
    pub retry_after: Option<String>,
}

pub struct TestServer {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Cancelled when the server died (see [`Faults::die_after_segments`]).
    pub died: CancellationToken,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn status(code: StatusCode) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

struct State {
    store: Arc<dyn Store>,
    faults: Faults,
    paused_once: AtomicBool,
    /// Requests of the refusal's path so far, and how many were served.
    refusal_requests: AtomicU32,
    refusal_served: AtomicU32,
    segments_served: AtomicU32,
    died: CancellationToken,
}

impl State {
    /// Whether this request of `file` is refused, counting it.
    fn refuses(&self, file: &str) -> Option<&Refusal> {
        let refusal = self.faults.refusal.as_ref().filter(|r| r.path == file)?;
        let request = self.refusal_requests.fetch_add(1, Ordering::SeqCst);
        if request < refusal.first {
            return Some(refusal);
        }
        // Serve only while under the limit, in one step: viewers racing
        // for the last place must not both get it.
        let limit = refusal.after_serving.unwrap_or(u32::MAX);
        let served =
            self.refusal_served
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |served| {
                    (served < limit).then_some(served + 1)
                });
        served.is_err().then_some(refusal)
    }
}

async fn handle(state: Arc<State>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    // `/redirect/...` answers 302 to `/v/...`, to exercise redirects.
    if let Some(rest) = path.strip_prefix("/redirect/") {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", format!("/v/{rest}"))
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
    }
    let Some(rest) = path.strip_prefix("/v/") else {
        return status(StatusCode::NOT_FOUND);
    };
    let Some((id, file)) = rest.split_once('/') else {
        return status(StatusCode::NOT_FOUND);
    };
    let Ok(id) = VideoId::new(id) else {
        return status(StatusCode::NOT_FOUND);
    };
    // `g{N}/…` is generation N's file (what playlists point to); any other
    // path, the current generation's, as the origin answers.
    let pinned = file.split_once('/').and_then(|(first, rest)| {
        kinema_store::layout::parse_generation_dir(first).map(|generation| (generation, rest))
    });
    let (generation, file) = match pinned {
        Some(pinned) => pinned,
        None => match state.store.manifest(&id).await {
            Ok(manifest) => (manifest.generation, file),
            Err(_) => return status(StatusCode::NOT_FOUND),
        },
    };
    let Ok(object) = ObjectPath::new(file) else {
        return status(StatusCode::NOT_FOUND);
    };
    if let Some(limit) = state.faults.die_after_segments
        && file.ends_with(".m4s")
        && state.segments_served.fetch_add(1, Ordering::SeqCst) >= limit
    {
        state.died.cancel();
        // Never answered: the connection is reset under it.
        std::future::pending::<()>().await;
    }
    if state.faults.missing.as_deref() == Some(file) {
        return status(StatusCode::NOT_FOUND);
    }
    if let Some(refusal) = state.refuses(file) {
        let mut response = Response::builder().status(StatusCode::SERVICE_UNAVAILABLE);
        if let Some(retry_after) = &refusal.retry_after {
            response = response.header("retry-after", retry_after);
        }
        return response
            .body(Full::new(Bytes::from_static(b"at capacity\n")).boxed())
            .unwrap();
    }
    let content = match state.store.get(&id, generation, &object).await {
        Ok(stored) => stored.bytes,
        Err(error) if error.is_not_found() => return status(StatusCode::NOT_FOUND),
        Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let length = content.len();
    let pause = match &state.faults.pause {
        Some((target, pause))
            if target == file && !state.paused_once.swap(true, Ordering::SeqCst) =>
        {
            Some(*pause)
        }
        _ => None,
    };
    let body = match pause {
        None => Full::new(content).boxed(),
        Some(pause) => {
            // Half the body, a pause, then the rest: a server that hangs
            // mid-response, as a stalled disk or an overloaded origin does.
            let half = length / 2;
            let first = content.slice(..half);
            let second = content.slice(half..);
            let stream = futures::stream::unfold(0u8, move |step| {
                let (first, second) = (first.clone(), second.clone());
                async move {
                    match step {
                        0 => Some((Ok::<_, Infallible>(Frame::data(first)), 1)),
                        1 => {
                            tokio::time::sleep(pause).await;
                            Some((Ok(Frame::data(second)), 2))
                        }
                        _ => None,
                    }
                }
            });
            BodyExt::boxed(StreamBody::new(stream))
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-length", length)
        .body(body)
        .unwrap()
}

/// Starts the server on 127.0.0.1:0; it stops when the handle is dropped.
pub async fn serve(library: &Library, faults: Faults) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = Arc::new(State {
        store: library.store.clone(),
        faults,
        paused_once: AtomicBool::new(false),
        refusal_requests: AtomicU32::new(0),
        refusal_served: AtomicU32::new(0),
        segments_served: AtomicU32::new(0),
        died: CancellationToken::new(),
    });
    let died = state.died.clone();
    let state_died = died.clone();
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut stopped => return,
                () = died.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
            };
            let state = state.clone();
            let died = died.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(state, request).await) }
                });
                let connection =
                    http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                // Dropping the connection closes its socket mid-request.
                tokio::select! {
                    _ = connection => {}
                    () = died.cancelled() => {}
                }
            });
        }
    });
    TestServer {
        address,
        stop: Some(stop),
        died: state_died,
    }
}
