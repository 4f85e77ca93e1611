//! Admission under a flood of session starts, over real HTTP from several
//! client addresses (loopback 127.0.0.0/8, one /24 per client).

mod common;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kinema_core::Bitrate;
use tokio::net::TcpSocket;

/// The fixture's top rendition: what one session reserves.
const SESSION_BITRATE: u64 = 620_000;

/// Keep-alive HTTP/1.1 from one local address, reconnecting when the
/// server closed the connection.
struct Client {
    from: IpAddr,
    server: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

async fn connect(from: IpAddr, server: SocketAddr) -> SendRequest<Full<Bytes>> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

impl Client {
    async fn connect(from: &str, server: SocketAddr) -> Self {
        let from = from.parse().unwrap();
        Self {
            from,
            server,
            sender: connect(from, server).await,
        }
    }

    async fn get(&mut self, target: &str) -> StatusCode {
        if self.sender.ready().await.is_err() {
            self.sender = connect(self.from, self.server).await;
        }
        let request = Request::get(target)
            .header("host", "origin.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status();
        response.into_body().collect().await.unwrap();
        status
    }
}

/// Every master playlist request used to reserve the video's bit rate for
/// 4 s whether or not a segment followed: 150 of them from one address
/// refused most real viewers, at almost no real egress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_master_playlist_requests_from_one_address_leaves_a_real_viewer_admitted() {
    let library = Library::new().await;
    let mut config = config(&library);
    // Room for two sessions, not three; the load check off, so only the
    // egress arithmetic decides.
    config.max_egress = Some(Bitrate(SESSION_BITRATE * 5 / 2));
    config.max_load = 1.0;
    config.access_log = false;
    config.prefetch = false;
    let server = Server::start(config).await;
    let master = format!("/v/{VIDEO}/master.m3u8");

    let mut flood = Client::connect("127.0.0.1", server.addr).await;
    let mut flood_admitted = 0;
    for _ in 0..150 {
        if flood.get(&master).await == StatusCode::OK {
            flood_admitted += 1;
        }
    }
    assert!(flood_admitted >= 1);

    // A viewer from another network starts and plays.
    let mut viewer = Client::connect("127.0.1.1", server.addr).await;
    assert_eq!(viewer.get(&master).await, StatusCode::OK);
    for file in ["v180/index.m3u8", "v180/init.mp4", "v180/1.m4s"] {
        assert_eq!(
            viewer.get(&format!("/v/{VIDEO}/{file}")).await,
            StatusCode::OK,
            "{file}"
        );
    }

    // Admission still judges room: session starts from many networks at
    // once each reserve, and soon do not fit.
    let mut refused = 0;
    for network in 2..12 {
        let mut other = Client::connect(&format!("127.0.{network}.1"), server.addr).await;
        if other.get(&master).await == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "ten networks' sessions all fit in room for two"
    );
    server.stop().await.unwrap();
}
