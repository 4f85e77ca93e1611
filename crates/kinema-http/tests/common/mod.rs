//! Shared by the listener's integration tests: a small handler with one
//! route per behaviour under test, a server started on 127.0.0.1:0, and a
//! raw HTTP/1.1 client that reads responses byte-exactly (so framing errors
//! cannot hide behind a forgiving client library).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use kinema_http::{
    ConnectionInfo, Handler, RequestBody, ResponseBody, ServerConfig, ServerStats, SharedFile,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

/// Routes:
/// - `/small`: "hello"
/// - `/big?n=N`: N bytes of a repeating pattern
/// - `/parts`: three shared buffers
/// - `/file?n=N&from=A&to=B`: bytes A..B (default 0..N) of
///   [`file_content`]`(N)` as a file body (a sealed memfd)
/// - `/published?n=N&evicted=1`: [`file_content`]`(N)` as a file body from
///   a [`published_file`], its pages evicted with `evicted=1`
/// - `/echo`: the request body back, with `x-chunks` and `x-max-chunk`
/// - `/reject`: 403 without reading the body
/// - `/stream`: three chunks of unknown total length
/// - `/declared`: a stream whose length the handler declares
/// - `/slow`: a stream that sends "first", waits for `release`, sends "last"
/// - `/panic`: panics
/// - `/thread`: the name of the thread that served the request
/// - anything else: "{method} {path} {version}"
#[derive(Debug, Default)]
pub struct TestHandler {
    pub slow_started: Notify,
    pub release: Arc<Notify>,
    pub requests: AtomicUsize,
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"0123456789abcdef"[i % 16]).collect()
}

/// Bytes without a short period, so a body sent from a wrong offset cannot
/// match by chance (xorshift; the same for every call).
pub fn file_content(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The value of `key` in a `k=v&k=v` query.
/// [`file_content`]`(n)` as a published file, shared with
/// `SharedFile::from_published`. It is written under Cargo's target
/// directory, on a disk, where the kernel can drop a file's pages (tmpfs
/// cannot). With `evicted`, its pages are written back and dropped from
/// the page cache before it is shared.
pub fn published_file(n: usize, evicted: bool) -> SharedFile {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("segment.m4s");
    let content = file_content(n);
    std::fs::write(&path, &content).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    if evicted {
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
    SharedFile::from_published(file, Bytes::from(content)).unwrap()
}

fn query_number(request: &Request<RequestBody>, key: &str) -> Option<u64> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(body.into()));
    *response.status_mut() = status;
    response
}

impl Handler for TestHandler {
    async fn handle(
        &self,
        request: Request<RequestBody>,
        _connection: ConnectionInfo,
    ) -> Response<ResponseBody> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let path = request.uri().path().to_string();
        match path.as_str() {
            "/small" => text(StatusCode::OK, "hello"),
            "/big" => {
                let n = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("n="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1000);
                text(StatusCode::OK, pattern(n))
            }
            "/parts" => Response::new(ResponseBody::Parts(vec![
                Bytes::from_static(b"one,"),
                Bytes::new(),
                Bytes::from_static(b"two,"),
                Bytes::from_static(b"three"),
            ])),
            "/file" => {
                let n = query_number(&request, "n").unwrap_or(1000);
                let from = query_number(&request, "from").unwrap_or(0);
                let to = query_number(&request, "to").unwrap_or(n);
                let file = SharedFile::from_bytes(&file_content(n as usize)).unwrap();
                Response::new(ResponseBody::File(file.slice(from..to)))
            }
            "/published" => {
                let n = query_number(&request, "n").unwrap_or(1000);
                let evicted = query_number(&request, "evicted") == Some(1);
                let file = published_file(n as usize, evicted);
                Response::new(ResponseBody::File(file.slice(0..n)))
            }
            "/echo" => {
                let mut body = request.into_body();
                let mut collected = Vec::new();
                let mut chunks = 0;
                let mut max_chunk = 0;
                while let Some(chunk) = body.next().await {
                    match chunk {
                        Ok(chunk) => {
                            chunks += 1;
                            max_chunk = max_chunk.max(chunk.len());
                            collected.extend_from_slice(&chunk);
                        }
                        Err(error) => {
                            return text(StatusCode::BAD_REQUEST, format!("body error: {error}"));
                        }
                    }
                }
                let mut response = text(StatusCode::OK, collected);
                response
                    .headers_mut()
                    .insert("x-chunks", chunks.to_string().parse().unwrap());
                response
                    .headers_mut()
                    .insert("x-max-chunk", max_chunk.to_string().parse().unwrap());
                response
            }
            "/reject" => text(StatusCode::FORBIDDEN, "no uploads here"),
            "/stream" => Response::new(ResponseBody::Stream(
                futures::stream::iter([
                    Ok(Bytes::from_static(b"alpha,")),
                    Ok(Bytes::from_static(b"beta,")),
                    Ok(Bytes::from_static(b"gamma")),
                ])
                .boxed(),
            )),
            "/declared" => {
                let mut response = Response::new(ResponseBody::Stream(
                    futures::stream::iter([
                        Ok(Bytes::from_static(b"12345")),
                        Ok(Bytes::from_static(b"67890")),
                    ])
                    .boxed(),
                ));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(10));
                response
            }
            "/slow" => {
                self.slow_started.notify_one();
                let release = self.release.clone();
                let stream = futures::stream::once(async { Ok(Bytes::from_static(b"first,")) })
                    .chain(futures::stream::once(async move {
                        release.notified().await;
                        Ok(Bytes::from_static(b"last"))
                    }));
                Response::new(ResponseBody::Stream(stream.boxed()))
            }
            "/panic" => panic!("the test handler was asked to panic"),
            "/thread" => text(
                StatusCode::OK,
                std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_string(),
            ),
            _ => text(
                StatusCode::OK,
                format!("{} {} {:?}", request.method(), path, request.version()),
            ),
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    pub handler: Arc<TestHandler>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with_tls(config, None).await
    }

    pub async fn start_with_tls(
        config: ServerConfig,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ServerStats::default());
        let handler = Arc::new(TestHandler::default());
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(kinema_http::serve_with_stats(
            listener,
            handler.clone(),
            config,
            tls,
            stats.clone(),
            async {
                let _ = shutdown_rx.await;
            },
        ));
        Self {
            addr,
            stats,
            handler,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits (bounded) for `serve` to return after a shutdown.
    pub async fn finished(&mut self) -> io::Result<()> {
        let task = self.task.take().expect("finished called twice");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("serve did not return within 30 s of shutdown")
            .expect("serve panicked")
    }

    /// Polls a condition on the stats until it holds (10 s deadline).
    pub async fn wait_for_stats(&self, what: &str, check: impl Fn(&ServerStats) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check(&self.stats) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stats never reached: {what} ({:?})",
                self.stats.snapshot()
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct WireResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WireResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads HTTP/1.1 responses from a stream, keeping bytes that belong to the
/// next one.
pub struct ResponseReader<S> {
    pub stream: S,
    buffer: Vec<u8>,
}

impl<S: AsyncRead + Unpin> ResponseReader<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response within 20 s"))??;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buffer.len() < n {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = self.buffer[..at].to_vec();
                self.buffer.drain(..at + 2);
                return Ok(line);
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads one response; `head_request` says the body is absent whatever
    /// the headers say.
    pub async fn read(&mut self, head_request: bool) -> io::Result<WireResponse> {
        let status_line = String::from_utf8(self.line().await?).unwrap();
        let mut words = status_line.splitn(3, ' ');
        assert_eq!(
            words.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = words.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = String::from_utf8(self.line().await?).unwrap();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line without colon");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut response = WireResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(response);
        }
        if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size_line = String::from_utf8(self.line().await?).unwrap();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap(), 16)
                    .expect("chunk size");
                if size == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.need(size + 2).await?;
                response.body.extend_from_slice(&self.buffer[..size]);
                assert_eq!(&self.buffer[size..size + 2], b"\r\n");
                self.buffer.drain(..size + 2);
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap();
            self.need(length).await?;
            response.body = self.buffer.drain(..length).collect();
        } else {
            // Delimited by the connection's end.
            while self.fill().await? > 0 {}
            response.body = std::mem::take(&mut self.buffer);
        }
        Ok(response)
    }

    /// True when the peer closes (EOF or reset) within 20 s with nothing
    /// more to read.
    pub async fn closed(&mut self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        match self.fill().await {
            Ok(n) => n == 0,
            Err(error) => error.kind() != io::ErrorKind::TimedOut,
        }
    }
}

/// Sends `request` on a new connection and reads one response.
pub async fn exchange(server: &TestServer, request: &[u8]) -> WireResponse {
    let mut stream = server.connect().await;
    stream.write_all(request).await.unwrap();
    let head = request.starts_with(b"HEAD ");
    ResponseReader::new(stream).read(head).await.unwrap()
}

pub fn quick_config() -> ServerConfig {
    ServerConfig {
        drain_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    }
}
