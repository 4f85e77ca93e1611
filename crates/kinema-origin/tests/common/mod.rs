//! Test support: a fixture library of real CMAF files made with ffmpeg, an
//! origin started on port 0, and a small HTTP client (hyper, HTTP/1.1 or
//! HTTP/2 with prior knowledge) that sends request targets exactly as
//! written — no URL normalisation, so traversal attempts reach the server.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinema_core::{
    AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, Rendition, RenditionKind, VideoId,
};
use kinema_store::{Store, StoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const VIDEO: &str = "clip";
pub const PUBLISHED_AT: u64 = 1_700_000_000;

/// The fixture video's files, made once per build of the tests and reused by
/// every test process (nextest runs each test in its own process, so a
/// process-local cache would run ffmpeg once per test).
pub fn fixture_template() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kinema-origin-fixture-v1");
    if dir.join("complete").exists() {
        return dir;
    }
    let work = tempfile::Builder::new()
        .prefix("kinema-origin-fixture-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let video = work.path().join("video");
    std::fs::create_dir_all(video.join("v180")).unwrap();
    std::fs::create_dir_all(video.join("thumbs")).unwrap();
    // A 4 s 320x180 clip cut into 1 s CMAF segments by ffmpeg's DASH muxer.
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x180:rate=25", "-t", "4"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-f", "dash", "-seg_duration", "1", "-use_template", "1"])
        .args(["-use_timeline", "0", "-hls_playlist", "1"])
        .args([
            "-init_seg_name",
            "init.mp4",
            "-media_seg_name",
            "$Number$.m4s",
        ])
        .arg(video.join("v180/manifest.mpd")));
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x180:rate=25", "-frames:v", "1"])
        .arg(video.join("thumbs/poster.jpg")));
    let mpd = std::fs::read_to_string(video.join("v180/manifest.mpd"))
        .unwrap()
        .replace(
            "initialization=\"init.mp4\"",
            "initialization=\"v180/init.mp4\"",
        )
        .replace("media=\"$Number$.m4s\"", "media=\"v180/$Number$.m4s\"");
    std::fs::write(video.join("manifest.mpd"), mpd).unwrap();
    for leftover in ["manifest.mpd", "master.m3u8", "media_0.m3u8"] {
        std::fs::remove_file(video.join("v180").join(leftover)).unwrap();
    }
    std::fs::write(
        video.join("master.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-STREAM-INF:BANDWIDTH=700000,AVERAGE-BANDWIDTH=620000,RESOLUTION=320x180,CODECS=\"avc1.42c00c\",FRAME-RATE=25\n\
         v180/index.m3u8\n",
    )
    .unwrap();
    let mut media = String::from(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:1\n\
         #EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI=\"init.mp4\"\n",
    );
    for n in 1..=4 {
        media.push_str(&format!("#EXTINF:1.000,\n{n}.m4s\n"));
    }
    media.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(video.join("v180/index.m3u8"), media).unwrap();
    std::fs::write(
        video.join("thumbs/thumbs.vtt"),
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nposter.jpg\n",
    )
    .unwrap();
    std::fs::write(work.path().join("complete"), b"").unwrap();
    // Another test process may have finished first; either copy is good.
    let staged = work.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    dir
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .expect("ffmpeg must be installed (scripts/install-deps)");
    assert!(status.success(), "{command:?} failed: {status}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A library with the fixture video published as `id`.
pub struct Library {
    pub dir: tempfile::TempDir,
    /// The library directory, opened as `kinema serve` opens it.
    pub store: Arc<dyn Store>,
}

impl Library {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = kinema_store::open(&StoreConfig::directory(dir.path()))
            .await
            .unwrap();
        let library = Self { dir, store };
        library.publish(VIDEO).await;
        library
    }

    pub async fn publish(&self, id: &str) -> Manifest {
        publish_fixture(
            self.store.as_ref(),
            &self.staging(&format!("stage-{id}")),
            id,
        )
        .await
    }

    /// A directory to assemble a video in, on the library's file system.
    pub fn staging(&self, name: &str) -> PathBuf {
        self.dir.path().join("staging").join(name)
    }

    /// Where a file of the fixture video's current generation lives on disk.
    pub fn file(&self, path: &str) -> PathBuf {
        let id = VideoId::new(VIDEO).unwrap();
        let current = std::fs::read(
            self.dir
                .path()
                .join(kinema_store::layout::current_manifest_key(&id)),
        )
        .unwrap();
        let generation = Manifest::from_json(&current).unwrap().generation;
        self.dir.path().join(kinema_store::layout::object_key(
            &id,
            generation,
            &kinema_core::ObjectPath::new(path).unwrap(),
        ))
    }

    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.file(path)).unwrap()
    }

    pub async fn manifest(&self) -> Manifest {
        self.store
            .manifest(&VideoId::new(VIDEO).unwrap())
            .await
            .unwrap()
    }
}

/// Publishes the fixture video as `id` to `store`, staged in `staged` (a
/// directory on the library's file system for a local store, anywhere for
/// S3).
pub async fn publish_fixture(store: &dyn Store, staged: &Path, id: &str) -> Manifest {
    copy_dir(&fixture_template().join("video"), staged);
    let files = kinema_store::describe_files(staged).await.unwrap();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: VideoId::new(id).unwrap(),
        generation: next_generation(),
        title: "Test clip".into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 1.0,
        published_at_unix: PUBLISHED_AT,
        access: AccessPolicy::Public,
        renditions: vec![Rendition {
            id: "v180".into(),
            kind: RenditionKind::Video,
            codecs: "avc1.42c00c".into(),
            width: Some(320),
            height: Some(180),
            frame_rate: Some(25.0),
            bitrate: 620_000,
            peak_bitrate: 700_000,
            segments: 4,
        }],
        files,
    };
    store.publish(&manifest, staged).await.unwrap();
    manifest
}

/// A generation newer than any this process made before: publishing again
/// in the same millisecond must still replace.
pub fn next_generation() -> u64 {
    static LAST: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut last = LAST.lock().unwrap();
    *last = kinema_store::layout::unix_millis(std::time::SystemTime::now()).max(*last + 1);
    *last
}

/// An origin running on `127.0.0.1:0`, stopped on drop or by [`stop`].
pub struct Server {
    pub addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), kinema_origin::Error>>>,
}

impl Server {
    pub async fn start(config: kinema_origin::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        // The listener is bound before the task starts, so connections made
        // right away wait in the accept queue: no readiness race.
        let task = tokio::spawn(kinema_origin::run(config, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// An origin of `parts` a test built (`OriginParts::new` or
    /// `with_disk_cache`), rather than the ones `config` opens.
    pub async fn start_with(
        config: kinema_origin::Config,
        parts: kinema_origin::OriginParts,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kinema_origin::run_with(
            config,
            parts,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) -> Result<(), kinema_origin::Error> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

/// The defaults for tests: no web UI, access log on (it is exercised).
pub fn config(library: &Library) -> kinema_origin::Config {
    let mut config = kinema_origin::Config::new(library.dir.path());
    config.web_root = PathBuf::from("/nonexistent/kinema-web");
    config
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

pub const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

/// Sends one request on a fresh connection.
pub async fn send(
    server: &Server,
    protocol: Protocol,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut request = Request::builder().method(method);
    request = match protocol {
        Protocol::Http1 => request.uri(target).header("host", "origin.test"),
        Protocol::Http2 => request.uri(format!("http://origin.test{target}")),
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
        Protocol::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(server: &Server, protocol: Protocol, target: &str) -> Reply {
    send(server, protocol, Method::GET, target, &[]).await
}

/// Sends raw bytes as an HTTP/1.1 request and returns the status code and
/// the whole response; for request targets no URI type would accept.
pub async fn raw_http1(server: &Server, target: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let status = std::str::from_utf8(&response[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, response)
}

/// Polls `check` until it holds or 10 s pass (for effects that happen in
/// the background, such as prefetch or a manifest refresh).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The value of one metric sample line in `/metrics`.
pub async fn metric(server: &Server, sample: &str) -> f64 {
    let text = get(server, Protocol::Http1, "/metrics").await.body;
    let text = std::str::from_utf8(&text).unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|value| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}
