//! The listener's defences and lifecycle over real TCP: slowloris, idle
//! keep-alive timeout, the connection limit, and graceful drain.

mod common;

use std::time::Duration;

use common::{ResponseReader, TestServer, quick_config};
use kinema_http::ServerConfig;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_client_dribbling_its_headers_is_closed() {
    let server = TestServer::start(ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..quick_config()
    })
    .await;
    let stream = server.connect().await;
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = ResponseReader::new(read_half);
    // One header byte every 50 ms for up to 20 s: far longer than the
    // header-read timeout, so only the server can end this.
    let dribble = async {
        write_half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        for _ in 0..400 {
            if write_half.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    tokio::select! {
        closed = reader.closed() => assert!(closed, "server sent data instead of closing"),
        cut_off = dribble => assert!(cut_off, "the server kept a dribbling client for 20 s"),
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start(ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..quick_config()
    })
    .await;
    let mut reader = ResponseReader::new(server.connect().await);
    reader
        .stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(reader.read(false).await.unwrap().status, 200);
    assert!(reader.closed().await);
    server
        .wait_for_stats("no open connections", |stats| {
            stats.snapshot().open_connections == 0
        })
        .await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_and_counted() {
    let server = TestServer::start(ServerConfig {
        max_connections: 2,
        ..quick_config()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut reader = ResponseReader::new(server.connect().await);
        reader
            .stream
            .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(reader.read(false).await.unwrap().status, 200);
        open.push(reader);
    }
    let mut third = ResponseReader::new(server.connect().await);
    let _ = third
        .stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert!(third.closed().await, "the third connection was served");
    let stats = server.stats.snapshot();
    assert_eq!(stats.refused_over_limit, 1);
    assert_eq!(stats.open_connections, 2);

    // Closing one makes room again.
    drop(open.pop());
    server
        .wait_for_stats("one connection open", |stats| {
            stats.snapshot().open_connections == 1
        })
        .await;
    let mut fourth = ResponseReader::new(server.connect().await);
    fourth
        .stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(fourth.read(false).await.unwrap().body, b"hello");
}

#[tokio::test]
async fn drain_lets_an_in_flight_stream_finish_and_closes_idle_connections() {
    let mut server = TestServer::start(quick_config()).await;

    // An idle keep-alive connection, after one request.
    let mut idle = ResponseReader::new(server.connect().await);
    idle.stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(idle.read(false).await.unwrap().status, 200);

    // A slow response in flight: its first chunk is out, the rest waits.
    let mut busy = ResponseReader::new(server.connect().await);
    busy.stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    server.handler.slow_started.notified().await;

    server.begin_shutdown();
    assert!(idle.closed().await, "the idle connection survived shutdown");
    // No new connections once draining.
    server
        .wait_for_stats("idle connection closed", |stats| {
            stats.snapshot().open_connections == 1
        })
        .await;
    let refused = match tokio::net::TcpStream::connect(server.addr).await {
        Err(_) => true,
        Ok(stream) => ResponseReader::new(stream).closed().await,
    };
    assert!(refused, "a new connection was accepted while draining");

    server.handler.release.notify_one();
    let response = busy.read(false).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"first,last");
    // Its head went out before the drain began; the connection closes after.
    assert!(busy.closed().await);
    server.finished().await.unwrap();
}

#[tokio::test]
async fn drain_gives_up_on_a_stream_past_the_deadline() {
    let mut server = TestServer::start(ServerConfig {
        drain_timeout: Duration::from_millis(200),
        ..quick_config()
    })
    .await;
    let mut busy = ResponseReader::new(server.connect().await);
    busy.stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    server.handler.slow_started.notified().await;
    server.begin_shutdown();
    // Never released: serve returns anyway, and the client sees the
    // connection end mid-body.
    server.finished().await.unwrap();
    assert!(busy.read(false).await.is_err());
}

/// Under a light load every connection is packed onto the first serving
/// thread (the others stay asleep, costing no wake-ups), and a connection
/// keeps its thread from one request to the next.
#[tokio::test]
async fn a_light_load_is_packed_onto_the_first_thread() {
    let server = TestServer::start(ServerConfig {
        threads: 3,
        ..quick_config()
    })
    .await;
    let mut readers = Vec::new();
    for _ in 0..6 {
        readers.push(ResponseReader::new(server.connect().await));
    }
    for round in 0..3 {
        for reader in &mut readers {
            reader
                .stream
                .write_all(b"GET /thread HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let response = reader.read(false).await.unwrap();
            assert_eq!(response.status, 200);
            let thread = String::from_utf8(response.body.clone()).unwrap();
            assert_eq!(thread, "kinema-http-0", "round {round}");
        }
    }
}

/// Keep-alive clients that each sent a request and went quiet filled every
/// slot and locked new viewers out until their idle timeout; near the cap
/// the idle ones now make room, as nginx reuses idle keep-alive
/// connections when it runs out of worker_connections.
#[tokio::test]
async fn idle_keep_alive_connections_near_the_cap_make_room_for_new_clients() {
    let server = TestServer::start(ServerConfig {
        max_connections: 40,
        idle_timeout: Duration::from_secs(600),
        ..quick_config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut reader = ResponseReader::new(server.connect().await);
        if reader
            .stream
            .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .is_ok()
            && reader.read(false).await.is_ok()
        {
            idle.push(reader);
        }
    }
    // A new client is served (within the deadline; without shedding it
    // would wait out the idle timeout of ten minutes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut reader = ResponseReader::new(server.connect().await);
        let sent = reader
            .stream
            .write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            .await;
        if sent.is_ok()
            && let Ok(response) = reader.read(false).await
        {
            assert_eq!(response.body, b"hello");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a new client stayed locked out: {:?}",
            server.stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Room was made by closing idle connections (towards 3/4 of the cap).
    let open = server.stats.snapshot().open_connections;
    assert!(open < 40, "{open} connections open");
    drop(idle);
}
