//! HTTP/1.1 over real TCP: framing, persistence, pipelining, bodies in both
//! directions, and error statuses for malformed requests.

mod common;

use std::time::Duration;

use common::{ResponseReader, TestServer, exchange, pattern, quick_config};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    for _ in 0..3 {
        reader
            .stream
            .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = reader.read(false).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello");
        assert_eq!(response.header("content-length"), Some("5"));
        assert!(response.header("date").is_some_and(|d| d.ends_with("GMT")));
        assert_eq!(response.header("connection"), None);
    }
    let stats = server.stats.snapshot();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.requests, 3);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    // All three in one write, the last one split across a second write.
    reader
        .stream
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /big?n=70000 HTTP/1.1\r\nHost: t\r\n\r\nGET /thr",
        )
        .await
        .unwrap();
    reader
        .stream
        .write_all(b"ee HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reader.read(false).await.unwrap().body, b"GET /one HTTP/1.1");
    assert_eq!(reader.read(false).await.unwrap().body, pattern(70000));
    assert_eq!(
        reader.read(false).await.unwrap().body,
        b"GET /three HTTP/1.1"
    );
}

#[tokio::test]
async fn head_sends_the_headers_of_get_without_a_body() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(
            b"HEAD /big?n=1234 HTTP/1.1\r\nHost: t\r\n\r\nGET /small HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let head = reader.read(true).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1234"));
    // Had any body byte been sent, this would not parse as the next response.
    let next = reader.read(false).await.unwrap();
    assert_eq!(next.body, b"hello");
}

#[tokio::test]
async fn http_1_0_closes_by_default_and_keeps_alive_on_request() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(b"GET /small HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let response = reader.read(false).await.unwrap();
    assert_eq!(response.body, b"hello");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closed().await);

    let mut reader = ResponseReader::new(server.connect().await);
    for _ in 0..2 {
        reader
            .stream
            .write_all(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let response = reader.read(false).await.unwrap();
        assert_eq!(response.body, b"GET /x HTTP/1.0");
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = reader.read(false).await.unwrap();
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closed().await);
}

#[tokio::test]
async fn streamed_response_is_chunked_for_1_1_and_close_delimited_for_1_0() {
    let server = TestServer::start(quick_config()).await;
    let response = exchange(&server, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body, b"alpha,beta,gamma");

    let response = exchange(&server, b"GET /stream HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, b"alpha,beta,gamma");

    // A stream of declared length goes out raw, and the connection stays.
    let mut reader = ResponseReader::new(server.connect().await);
    for _ in 0..2 {
        reader
            .stream
            .write_all(b"GET /declared HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = reader.read(false).await.unwrap();
        assert_eq!(response.header("transfer-encoding"), None);
        assert_eq!(response.header("content-length"), Some("10"));
        assert_eq!(response.body, b"1234567890");
    }

    let response = exchange(&server, b"GET /parts HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(response.header("content-length"), Some("13"));
    assert_eq!(response.body, b"one,two,three");
}

#[tokio::test]
async fn chunked_request_body_reaches_the_handler() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n\
              GET /after HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let response = reader.read(false).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"Wikipedia in \r\n\r\nchunks.");
    // The body's end was found exactly: the next request parses.
    assert_eq!(
        reader.read(false).await.unwrap().body,
        b"GET /after HTTP/1.1"
    );
}

#[tokio::test]
async fn large_upload_is_streamed_in_bounded_chunks() {
    let server = TestServer::start(quick_config()).await;
    let size = 8 * 1024 * 1024;
    let body = pattern(size);
    let mut stream = server.connect().await;
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n");
    let (read_half, mut write_half) = stream.split();
    let writer = async {
        write_half.write_all(head.as_bytes()).await.unwrap();
        write_half.write_all(&body).await.unwrap();
    };
    let mut reader = ResponseReader::new(read_half);
    let (_, response) = tokio::join!(writer, reader.read(false));
    let response = response.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), size);
    if let Some(at) = response.body.iter().zip(&body).position(|(a, b)| a != b) {
        panic!(
            "bodies differ from byte {at}: got {:?}, sent {:?}",
            String::from_utf8_lossy(&response.body[at..at + 40]),
            String::from_utf8_lossy(&body[at..at + 40])
        );
    }
    let chunks: usize = response.header("x-chunks").unwrap().parse().unwrap();
    let max_chunk: usize = response.header("x-max-chunk").unwrap().parse().unwrap();
    assert!(chunks > 1, "body arrived in {chunks} chunk(s)");
    assert!(max_chunk <= 64 * 1024, "a chunk of {max_chunk} bytes");
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_handler_reads() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = reader.read(false).await.unwrap();
    assert_eq!(interim.status, 100);
    reader.stream.write_all(b"hello").await.unwrap();
    let response = reader.read(false).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello");
}

#[tokio::test]
async fn expect_100_continue_is_not_sent_when_the_handler_refuses() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(
            b"POST /reject HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let response = reader.read(false).await.unwrap();
    assert_eq!(response.status, 403);
    // The unread body leaves the connection unusable, so it closes.
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closed().await);
}

async fn status_of(server: &TestServer, request: &[u8]) -> (u16, bool) {
    let mut reader = ResponseReader::new(server.connect().await);
    reader.stream.write_all(request).await.unwrap();
    let response = reader.read(false).await.unwrap();
    assert_eq!(response.header("connection"), Some("close"));
    (response.status, reader.closed().await)
}

#[tokio::test]
async fn malformed_requests_get_400_and_close() {
    let server = TestServer::start(quick_config()).await;
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
    ] {
        let (status, closed) = status_of(&server, request).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(request));
        assert!(closed);
    }
}

#[tokio::test]
async fn oversized_heads_get_414_and_431() {
    let server = TestServer::start(quick_config()).await;
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000));
    assert_eq!(
        status_of(&server, long_target.as_bytes()).await,
        (414, true)
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    assert_eq!(status_of(&server, big_header.as_bytes()).await, (431, true));
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n");
    assert_eq!(
        status_of(&server, many_headers.as_bytes()).await,
        (431, true)
    );
}

#[tokio::test]
async fn unknown_transfer_coding_gets_501() {
    let server = TestServer::start(quick_config()).await;
    let request = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(status_of(&server, request).await, (501, true));
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_server_keeps_serving() {
    let server = TestServer::start(quick_config()).await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\nGET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reader.read(false).await.unwrap().status, 500);
    // The same connection and new ones go on working.
    assert_eq!(reader.read(false).await.unwrap().body, b"hello");
    let response = exchange(&server, b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(response.body, b"hello");
}

#[tokio::test]
async fn curl_speaks_to_it() {
    let server = TestServer::start(quick_config()).await;
    let url = format!("http://{}/big?n=300000", server.addr);
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl")
            .args(["-sS", "--fail", "-o", "-", &url, &url])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut expected = pattern(300000);
    expected.extend(pattern(300000));
    assert!(output.stdout == expected);
    // curl reused the connection for its second URL.
    assert_eq!(server.stats.snapshot().accepted, 1);
}
