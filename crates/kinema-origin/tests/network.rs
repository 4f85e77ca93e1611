//! The origin's part in measuring viewers' networks (`OriginParts::with_network`):
//! the CMCD a player sends with a media request is recorded for the
//! client's prefix, a request without it adds nothing, and an
//! `X-Forwarded-For` from a peer not among the trusted proxies never picks
//! the prefix.

mod common;

use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, KeyRing};
use kinema_http::Clock;
use kinema_netq::{AggregatorConfig, Measuring};
use kinema_origin::OriginParts;
use kinema_store::StoreConfig;
use tokio::net::{TcpListener, TcpStream};

async fn fetch(
    address: std::net::SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().uri(target).header("host", "origin.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn cmcd_of_media_requests_is_recorded_for_the_client() {
    let library = Library::new().await;
    let files = tempfile::tempdir().unwrap();
    KeyRing::empty()
        .save(&files.path().join("keys.toml"))
        .unwrap();
    AdminTokens::empty()
        .save(&files.path().join("tokens.toml"))
        .unwrap();
    let mut config = config(&library);
    config.keys = files.path().join("keys.toml");
    config.tokens = files.path().join("tokens.toml");
    let store = kinema_store::open(&StoreConfig::directory(library.dir.path()))
        .await
        .unwrap();
    let workspace = kinema_media::Workspace::open(files.path().join("ingest")).unwrap();
    let measuring = Measuring::new(AggregatorConfig::default(), 1 << 20, 1);
    let parts = OriginParts::new(&config, store, workspace, Clock::system())
        .with_network(measuring.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kinema_origin::run_with(
        config,
        parts,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    let master = "/v/clip/master.m3u8";
    assert_eq!(fetch(address, master, &[]).await, StatusCode::OK);
    assert_eq!(measuring.figures().cmcd_reports, 0);
    // dash.js's query form, behind an untrusted X-Forwarded-For.
    let with_cmcd = format!("{master}?CMCD=bl%3D5000%2Cmtp%3D12000%2Cot%3Dm");
    let forged = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(fetch(address, &with_cmcd, &forged).await, StatusCode::OK);
    let figures = measuring.figures();
    assert_eq!((figures.cmcd_reports, figures.prefixes), (1, 1));
    let loopback = measuring
        .quality()
        .estimate("127.0.0.1".parse().unwrap())
        .expect("the peer's prefix is measured");
    assert_eq!(loopback.throughput_bps, Some(12_000_000.0));
    assert!(
        measuring
            .quality()
            .estimate("198.51.100.9".parse().unwrap())
            .is_none()
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
