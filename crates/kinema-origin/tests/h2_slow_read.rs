//! HTTP/2 clients that open many streams for a large (streamed) file and
//! never read: the origin's memory stays bounded, and a connection kept
//! alive only by PINGs is closed.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use kinema_core::{Manifest, VideoId};
use tokio::net::TcpStream;

const BIG_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Publishes a video `big` whose `big.mp4` is too large to cache.
async fn publish_big(library: &Library) {
    let staged = library.staging("stage-big");
    std::fs::create_dir_all(&staged).unwrap();
    let content: Vec<u8> = (0..BIG_FILE_BYTES)
        .map(|i| (i * 131 + i / 4096) as u8)
        .collect();
    std::fs::write(staged.join("big.mp4"), content).unwrap();
    let manifest = Manifest {
        id: VideoId::new("big").unwrap(),
        files: kinema_store::describe_files(&staged).await.unwrap(),
        ..library.manifest().await
    };
    library.store.publish(&manifest, &staged).await.unwrap();
}

/// Resident memory of this process (the origin runs in it), bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// An HTTP/2 connection whose window is 1 byte and which never reads a
/// body: its driver keeps answering PINGs and settings.
async fn stalled_client(
    server: &Server,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1)
        .initial_connection_window_size(65_535)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    (client, tokio::spawn(connection))
}

#[tokio::test]
async fn many_unread_http2_streams_of_a_large_file_pin_little_memory() {
    let library = Library::new().await;
    publish_big(&library).await;
    let mut config = config(&library);
    config.access_log = false;
    config.max_cached_file_size = bytesize::ByteSize::mib(1);
    let server = Server::start(config).await;
    // Warm up: the first requests' allocations are not what is measured.
    get(&server, Protocol::Http2, "/v/big/big.mp4").await;
    let before = resident_bytes();
    let mut clients = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..8 {
        let (mut client, driver) = stalled_client(&server).await;
        for _ in 0..64 {
            client = client.ready().await.unwrap();
            let request = http::Request::get("http://origin.test/v/big/big.mp4")
                .body(())
                .unwrap();
            let (response, _) = client.send_request(request, true).unwrap();
            responses.push(response);
        }
        clients.push((client, driver));
    }
    // Let every stream get as far as it will: the heads that can be sent
    // arrive, and the origin reads whatever it reads ahead.
    let waits = responses
        .iter_mut()
        .map(|response| tokio::time::timeout(Duration::from_secs(2), response));
    let answered = futures::future::join_all(waits)
        .await
        .into_iter()
        .filter(|answer| matches!(answer, Ok(Ok(_))))
        .count();
    assert!(answered >= 8, "only {answered} streams were answered");
    let grown = resident_bytes().saturating_sub(before);
    println!(
        "{answered} streams answered; resident memory grew by {} KiB",
        grown / 1024
    );
    // 512 streams of an 8 MiB file: read ahead 1 MB each, this was ~500 MB.
    assert!(
        grown < 64 * 1024 * 1024,
        "resident memory grew by {} MiB",
        grown / (1024 * 1024)
    );
    drop(responses);
    drop(clients);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_http2_connection_kept_alive_only_by_pings_is_closed() {
    let library = Library::new().await;
    publish_big(&library).await;
    let mut config = config(&library);
    config.max_cached_file_size = bytesize::ByteSize::mib(1);
    config.idle_timeout = Duration::from_millis(300);
    config.write_timeout = Duration::from_millis(300);
    let server = Server::start(config).await;
    let (mut client, driver) = stalled_client(&server).await;
    client = client.ready().await.unwrap();
    let request = http::Request::get("http://origin.test/v/big/big.mp4")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let _response = response.await;
    // The client's driver answers every PING; only the origin can end this.
    let closed = tokio::time::timeout(Duration::from_secs(20), driver).await;
    assert!(closed.is_ok(), "the stalled connection was kept open");
    drop(client);
    server.stop().await.unwrap();
}
