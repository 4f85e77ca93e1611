//! An origin built from parts a test hands it (`OriginParts::new`): the
//! store, the ingest workspace and the clock that decides whether a signed
//! URL's token is still good, moved here instead of slept through.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, Claims, KeyRing, TokenScope};
use kinema_core::VideoId;
use kinema_http::Clock;
use kinema_origin::OriginParts;
use kinema_store::StoreConfig;
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 GET on a fresh connection: status and the refusal header.
async fn fetch(address: std::net::SocketAddr, target: &str) -> (StatusCode, Option<String>) {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(target)
        .header("host", "origin.test")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let refusal = response
        .headers()
        .get(kinema_auth::REFUSAL_HEADER)
        .map(|value| value.to_str().unwrap().to_string());
    let status = response.status();
    response.into_body().collect().await.unwrap();
    (status, refusal)
}

#[tokio::test]
async fn a_token_expires_by_the_clock_the_origin_is_given() {
    let library = Library::new().await;
    let files = tempfile::tempdir().unwrap();
    let started = SystemTime::now();
    let mut ring = KeyRing::empty();
    ring.add_new_key(started);
    ring.save(&files.path().join("keys.toml")).unwrap();
    AdminTokens::empty()
        .save(&files.path().join("tokens.toml"))
        .unwrap();
    let mut config = config(&library);
    config.keys = files.path().join("keys.toml");
    config.tokens = files.path().join("tokens.toml");

    let now = Arc::new(Mutex::new(started));
    let clock = Clock::from_fn({
        let now = now.clone();
        move || *now.lock().unwrap()
    });
    let store = kinema_store::open(&StoreConfig::directory(library.dir.path()))
        .await
        .unwrap();
    let workspace = kinema_media::Workspace::open(files.path().join("ingest")).unwrap();
    let parts = OriginParts::new(&config, store, workspace, clock);
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

    let claims = Claims::new(
        TokenScope::video(&VideoId::new("clip").unwrap()),
        started + Duration::from_secs(60),
    );
    let token = kinema_auth::sign(&ring, &claims).unwrap();
    let target = format!("/s/{token}/v/clip/master.m3u8");
    assert_eq!(fetch(address, &target).await, (StatusCode::OK, None));
    *now.lock().unwrap() += Duration::from_secs(3600);
    assert_eq!(
        fetch(address, &target).await,
        (StatusCode::FORBIDDEN, Some("expired".to_string()))
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
