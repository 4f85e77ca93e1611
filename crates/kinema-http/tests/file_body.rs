//! File bodies (`ResponseBody::File`: a sealed memfd, or a published file
//! in the page cache) on plain-TCP HTTP/1.1, which sends them by
//! sendfile(2): exact bytes, whole and in ranges, with readers fast and
//! slow, and the framing of the requests around them intact; a published
//! file whose pages the kernel dropped is sent from memory instead, and read
//! back in. HTTP/2 and TLS, which send the bytes in memory instead, are
//! covered in `http2.rs`.

mod common;

use std::time::Duration;

use common::{ResponseReader, TestServer, file_content, published_file, quick_config};
use kinema_http::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A segment-sized body, as `bench/http-throughput.sh` sends.
const SEGMENT: usize = 1_572_864;

/// More than the kernel can buffer on both sides of a loopback connection
/// whose receiver has a small window: the sender's socket buffer fills, so
/// sendfile must stop at EAGAIN (many times) and resume on writability.
fn larger_than_socket_buffers() -> usize {
    let max_send_buffer = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|text| text.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    2 * max_send_buffer + (1 << 20)
}

/// A client whose receive buffer is as small as the kernel allows.
async fn connect_with_small_window(server: &TestServer) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(server.addr).await.unwrap()
}

#[tokio::test]
async fn a_file_body_is_sent_whole_and_in_ranges_on_one_connection() {
    let server = TestServer::start(quick_config()).await;
    let content = file_content(SEGMENT);
    let mut reader = ResponseReader::new(server.connect().await);
    let cases: [(&str, std::ops::Range<usize>); 4] = [
        ("", 0..SEGMENT),
        ("&from=1000&to=700001", 1000..700_001),
        ("&from=1572000", 1_572_000..SEGMENT),
        ("&from=5&to=6", 5..6),
    ];
    for (query, range) in cases {
        let request = format!("GET /file?n={SEGMENT}{query} HTTP/1.1\r\nHost: t\r\n\r\n");
        reader.stream.write_all(request.as_bytes()).await.unwrap();
        let response = reader.read(false).await.unwrap();
        assert_eq!(response.status, 200, "{query}");
        assert_eq!(
            response.header("content-length"),
            Some(range.len().to_string().as_str()),
            "{query}"
        );
        assert!(
            response.body == content[range.clone()],
            "{query}: wrong bytes"
        );
    }
    // The connection still frames requests: nothing extra was sent.
    reader
        .stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reader.read(false).await.unwrap().body, b"hello");
    assert_eq!(server.stats.snapshot().accepted, 1);
}

#[tokio::test]
async fn an_empty_file_slice_sends_only_the_head() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(
            b"GET /file?n=100&from=50&to=50 HTTP/1.1\r\nHost: t\r\n\r\nGET /small HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let empty = reader.read(false).await.unwrap();
    assert_eq!(empty.header("content-length"), Some("0"));
    assert!(empty.body.is_empty());
    assert_eq!(reader.read(false).await.unwrap().body, b"hello");
}

#[tokio::test]
async fn head_of_a_file_body_sends_its_length_and_no_bytes() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(
            b"HEAD /file?n=300000 HTTP/1.1\r\nHost: t\r\n\r\nGET /small HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let head = reader.read(true).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    // Had any body byte been sent, this would not parse as the next response.
    assert_eq!(reader.read(false).await.unwrap().body, b"hello");
}

#[tokio::test]
async fn a_slow_reader_gets_every_byte_of_a_file_body() {
    let server = TestServer::start(quick_config()).await;
    let size = larger_than_socket_buffers();
    let content = file_content(size);
    let mut reader = ResponseReader::new(connect_with_small_window(&server).await);
    // A whole file and then a range, pipelined: the second response must
    // start exactly where the first one's last sendfile ended.
    let from = 12_345;
    let to = size - 6789;
    let requests = format!(
        "GET /file?n={size} HTTP/1.1\r\nHost: t\r\n\r\nGET /file?n={size}&from={from}&to={to} HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    reader.stream.write_all(requests.as_bytes()).await.unwrap();
    let whole = reader.read(false).await.unwrap();
    assert_eq!(whole.body.len(), size);
    assert!(whole.body == content, "whole file: wrong bytes");
    let range = reader.read(false).await.unwrap();
    assert_eq!(range.body.len(), to - from);
    assert!(range.body == content[from..to], "range: wrong bytes");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_file_body_is_dropped() {
    let config = ServerConfig {
        write_timeout: Duration::from_millis(300),
        ..quick_config()
    };
    let server = TestServer::start(config).await;
    let size = larger_than_socket_buffers();
    let mut stream = connect_with_small_window(&server).await;
    let request = format!("GET /file?n={size} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read nothing until the server has given up on the connection.
    server
        .wait_for_stats("the stalled connection closed", |stats| {
            let snapshot = stats.snapshot();
            snapshot.requests == 1 && snapshot.open_connections == 0
        })
        .await;
    let mut received = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received += n,
            Err(_) => panic!("the connection stayed open after the server dropped it"),
        }
    }
    assert!(
        received < size,
        "a dropped connection delivered the whole body ({received} bytes)"
    );
}

#[tokio::test]
async fn a_published_file_is_sent_from_the_page_cache_or_else_from_memory() {
    let server = TestServer::start(quick_config()).await;
    let content = file_content(SEGMENT);
    let mut reader = ResponseReader::new(server.connect().await);
    for query in ["", "&evicted=1", ""] {
        let request = format!("GET /published?n={SEGMENT}{query} HTTP/1.1\r\nHost: t\r\n\r\n");
        reader.stream.write_all(request.as_bytes()).await.unwrap();
        let response = reader.read(false).await.unwrap();
        assert_eq!(response.status, 200, "{query}");
        assert!(response.body == content, "{query}: wrong bytes");
    }
    // Only the evicted one was written from memory.
    assert_eq!(server.stats.snapshot().file_bodies_from_memory, 1);
}

#[tokio::test]
async fn a_published_file_whose_pages_were_dropped_is_not_sent_by_sendfile_until_read_back() {
    let resident = published_file(SEGMENT, false);
    assert!(resident.slice(0..SEGMENT as u64).ready_to_send());

    let evicted = published_file(SEGMENT, true);
    let slice = evicted.slice(1000..700_000);
    assert!(
        !slice.ready_to_send(),
        "the kernel reports a dropped file's pages as cached"
    );
    // That answer asked the kernel to read the file back in the background.
    let mut waited = Duration::ZERO;
    while !slice.ready_to_send() {
        assert!(
            waited < Duration::from_secs(30),
            "the file was not read back in"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert!(evicted.slice(0..SEGMENT as u64).ready_to_send());
    assert!(slice.bytes() == file_content(SEGMENT)[1000..700_000]);
}
