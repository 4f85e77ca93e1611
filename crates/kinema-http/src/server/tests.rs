//! Tests of the listener's private parts: config parsing, the size of a
//! connection's task, the load figure, connections moving off a saturated
//! thread, the unsent-bytes limit and the connection cap.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytesize::ByteSize;
use tokio::net::{TcpListener, TcpStream};

use super::connection::{CompactInfo, ConnectionGuard, Protocol, run_connection};
use super::shards::Shards;
use super::*;
use crate::{ConnectionInfo, Handler};

#[test]
fn config_defaults_and_units() {
    let config: ServerConfig = toml::from_str(
        "header_read_timeout = \"2s\"\nmax_header_bytes = \"32KiB\"\nmax_connections = 10\n",
    )
    .unwrap();
    assert_eq!(config.header_read_timeout, Duration::from_secs(2));
    assert_eq!(config.max_header_bytes, ByteSize::kib(32));
    assert_eq!(config.max_connections, 10);
    assert_eq!(config.idle_timeout, ServerConfig::default().idle_timeout);
}

struct Nothing;

impl Handler for Nothing {
    async fn handle(
        &self,
        _request: http::Request<crate::RequestBody>,
        _connection: ConnectionInfo,
    ) -> http::Response<crate::ResponseBody> {
        http::Response::new(crate::ResponseBody::Empty)
    }
}

/// Every open connection costs its task's future, whatever state it is
/// in, so the future must stay small: the handler's future and the
/// body pump are boxed, buffers are on the heap only while in use.
#[tokio::test]
async fn a_connection_task_stays_small() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, peer) = listener.accept().await.unwrap();
    let shared = Arc::new(Shared::new(
        Arc::new(Nothing),
        ServerConfig::default(),
        Arc::new(ServerStats::default()),
        Shards::start(1).unwrap().set().clone(),
        1024,
    ));
    shared
        .stats
        .open_connections
        .fetch_add(1, Ordering::Relaxed);
    let info = CompactInfo::new(peer, peer, false);
    let future = run_connection(ConnectionGuard { shared }, stream, info, Protocol::Sniff);
    let size = std::mem::size_of_val(&future);
    println!("connection future: {size} bytes");
    // With tokio's task header and trailer (~100 B) and its 128 B
    // alignment, a future of at most 280 B keeps the task in 384 B.
    assert!(size <= 280, "a connection future of {size} bytes");
}

/// Keeps the calling thread busy for `duration`.
fn burn(duration: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Answers with the name of the thread that served the request; `/burn`
/// first keeps that thread busy for 30 ms.
struct ThreadName;

impl Handler for ThreadName {
    async fn handle(
        &self,
        request: http::Request<crate::RequestBody>,
        _connection: ConnectionInfo,
    ) -> http::Response<crate::ResponseBody> {
        if request.uri().path() == "/burn" {
            burn(Duration::from_millis(30));
        }
        let name = std::thread::current().name().unwrap_or("").to_string();
        http::Response::new(crate::ResponseBody::Full(name.into()))
    }
}

/// One request on a raw HTTP/1.1 connection: the response body.
async fn get_body(stream: &mut TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .expect("a content-length")
                .parse()
                .unwrap();
            if body.len() >= length {
                return body[..length].to_string();
            }
        }
    }
}

/// Connections arriving together are packed onto the first thread; when
/// it saturates while another thread idles and the machine has idle
/// CPU, some of them move, between two requests, to the idle thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_thread_sheds_connections_to_an_idle_one() {
    shards::tests::force_idle_cpu(1000);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(ThreadName),
        ServerConfig {
            threads: 2,
            ..ServerConfig::default()
        },
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        assert_eq!(get_body(&mut stream, "/").await, "kinema-http-0");
        clients.push(stream);
    }
    // Every connection keeps the first thread busy until one of them is
    // served elsewhere (or 10 s pass).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let one_moved = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut stream| {
            let one_moved = one_moved.clone();
            tokio::spawn(async move {
                let mut threads = Vec::new();
                while tokio::time::Instant::now() < deadline && !one_moved.load(Ordering::Relaxed) {
                    let thread = get_body(&mut stream, "/burn").await;
                    let moved = thread != "kinema-http-0";
                    threads.push(thread);
                    if moved {
                        one_moved.store(true, Ordering::Relaxed);
                    }
                }
                threads
            })
        })
        .collect();
    let mut served_by = Vec::new();
    for task in tasks {
        served_by.push(task.await.unwrap());
    }
    let moved = served_by
        .iter()
        .filter(|threads| threads.last().is_some_and(|t| t == "kinema-http-1"))
        .count();
    assert!(
        moved >= 1,
        "no connection moved to the idle thread in 10 s: {served_by:?}"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Answers with the server's load as the handler sees it; `/burn`
/// first keeps its thread busy for 1.2 s, more than two sample periods.
struct LoadReport(Arc<ServerStats>);

impl Handler for LoadReport {
    async fn handle(
        &self,
        request: http::Request<crate::RequestBody>,
        _connection: ConnectionInfo,
    ) -> http::Response<crate::ResponseBody> {
        if request.uri().path() == "/burn" {
            burn(Duration::from_millis(1200));
        }
        let load = self.0.load().to_string();
        http::Response::new(crate::ResponseBody::Full(load.into()))
    }
}

/// The load is the share of the last sample period the serving thread
/// was awake: about 0 while it waits for requests, 1 at the end of a
/// request that kept it busy for longer than two periods (the last
/// sample then fell wholly inside the busy time).
#[tokio::test]
async fn the_load_is_the_share_of_time_the_serving_threads_are_awake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stats = Arc::new(ServerStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with_stats(
        listener,
        Arc::new(LoadReport(stats.clone())),
        ServerConfig {
            threads: 1,
            ..ServerConfig::default()
        },
        None,
        stats.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut stream = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(shards::SAMPLE_PERIOD * 3).await;
    let idle: f64 = get_body(&mut stream, "/").await.parse().unwrap();
    assert!(idle < 0.5, "an idle server's load is {idle}");
    let busy: f64 = get_body(&mut stream, "/burn").await.parse().unwrap();
    assert!(busy > 0.9, "a saturated server's load is {busy}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The kernel takes both values (an error would be ignored, leaving
/// whatever the socket had).
#[tokio::test]
async fn a_saturated_thread_sends_files_with_the_unsent_limit_lifted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let read = || socket2::SockRef::from(&stream).tcp_notsent_lowat().unwrap();
    set_file_notsent_lowat(&stream, true);
    assert!(read() >= 1 << 30, "{}", read());
    set_file_notsent_lowat(&stream, false);
    assert_eq!(read(), 32 * 1024);
}

#[test]
fn the_connection_cap_leaves_room_for_files() {
    assert_eq!(connection_cap(50_000, 1024), 768);
    assert_eq!(connection_cap(50_000, 256), 192);
    assert_eq!(connection_cap(50_000, 1 << 20), 50_000);
    assert_eq!(connection_cap(100, 1024), 100);
    assert_eq!(connection_cap(50_000, 40), 16);
    assert_eq!(connection_cap(50_000, u64::MAX), 50_000);
}

#[test]
fn config_rejects_unknown_keys() {
    let error = toml::from_str::<ServerConfig>("idle_timout = \"2s\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("idle_timout"), "{error}");
}
