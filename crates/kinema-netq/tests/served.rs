//! A real listener feeding a [`NetworkQuality`]: `TCP_INFO` samples after
//! large responses, and the CMCD a player sends, land in the viewer's
//! prefix (loopback's 127.0.0.0/24), and the gossiped summary lists it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kinema_http::tcp_info::TcpInfoSampling;
use kinema_http::{ConnectionInfo, Handler, RequestBody, ResponseBody, ServerConfig, ServerStats};
use kinema_netq::{AggregatorConfig, ClientPrefix, Cmcd, NetworkQuality, Summary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY_BYTES: usize = 2 << 20;

/// Serves a segment of [`BODY_BYTES`], recording the CMCD each request
/// carries, as an edge would.
struct Segments {
    quality: Arc<NetworkQuality>,
    body: Bytes,
}

impl Handler for Segments {
    async fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> http::Response<ResponseBody> {
        let cmcd = Cmcd::from_request(request.uri().query(), request.headers());
        if !cmcd.is_empty() {
            self.quality.record_cmcd(connection.peer.ip(), &cmcd);
        }
        http::Response::new(ResponseBody::Full(self.body.clone()))
    }
}

async fn get(client: &mut TcpStream, target: &str) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nCMCD-Status: bs\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        received.extend_from_slice(&chunk[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
            && received.len() >= end + 4 + BODY_BYTES
        {
            return;
        }
    }
}

#[tokio::test]
async fn a_served_viewer_is_measured_in_its_prefix() {
    let quality = Arc::new(NetworkQuality::new(AggregatorConfig::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sampling = TcpInfoSampling::new(quality.clone(), 1 << 20, 1);
    let server = tokio::spawn(kinema_http::serve_sampled(
        listener,
        Arc::new(Segments {
            quality: quality.clone(),
            body: Bytes::from(vec![1u8; BODY_BYTES]),
        }),
        ServerConfig::default(),
        None,
        Arc::new(ServerStats::default()),
        Some(sampling.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let viewer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut client = connect_receiver_limited(address).await;
    // hls.js's form: mtp 48100 kbit/s, 8.2 s of buffer; the header adds a
    // starvation.
    let target = "/seg.m4s?CMCD=bl%3D8200%2Cmtp%3D48100%2Cot%3Dv%2Csf%3Dh";
    // Until a TCP sample is in (an application-limited one is dropped,
    // and one may land just after the client read the last byte: the loop
    // then downloads again), at most 20 downloads or 60 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut downloads = 0;
    while quality
        .estimate(viewer)
        .is_none_or(|estimate| estimate.rtt_inflation_ms.is_none())
    {
        assert!(
            downloads < 20,
            "no network-limited TCP sample in 20 downloads: {:?}",
            sampling.counts()
        );
        downloads += 1;
        tokio::time::timeout_at(deadline, get(&mut client, target))
            .await
            .expect("downloads took over 60 s");
    }
    // The summary lists prefixes with two samples' weight or more: one TCP
    // sample and at least one CMCD report.
    let estimate = quality.estimate(viewer).unwrap();
    assert!(estimate.throughput_bps.unwrap() > 0.0, "{estimate:?}");
    assert!(estimate.rtt_inflation_ms.is_some(), "{estimate:?}");
    // Every CMCD report said starved (the header).
    assert_eq!(estimate.starvation_share, Some(1.0));
    let summary = Summary::parse(&quality.summary().to_string());
    let loopback: ClientPrefix = "127.0.0.0/24".parse().unwrap();
    assert!(summary.figures_for(loopback).is_some(), "{summary:?}");
    assert_eq!(quality.prefixes(), 1);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A connection whose receive window (64 KiB), not the server's sending,
/// limits the download, as a real path's capacity would: over loopback a
/// receiver that drains at once leaves a sender application-limited more
/// often, and the listener rightly drops those samples.
async fn connect_receiver_limited(address: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(address).await.unwrap()
}
