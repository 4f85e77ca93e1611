//! `HEAD` on the admin API's read routes answers as `GET` does, without the
//! body (it was 405).

mod common;

use std::time::SystemTime;

use common::*;
use http::{Method, StatusCode};
use kinema_auth::{AdminTokens, Scope};

#[tokio::test]
async fn head_of_the_video_list_is_get_without_the_body() {
    let library = Library::new().await;
    let files = tempfile::tempdir().unwrap();
    let mut tokens = AdminTokens::empty();
    let secret = tokens
        .issue("reader", Scope::Read, SystemTime::now())
        .unwrap();
    tokens.save(&files.path().join("tokens.toml")).unwrap();
    let mut config = config(&library);
    config.tokens = files.path().join("tokens.toml");
    let server = Server::start(config).await;
    let authorization = format!("Bearer {secret}");
    for protocol in PROTOCOLS {
        let headers = [("authorization", authorization.as_str())];
        let got = send(&server, protocol, Method::GET, "/api/videos", &headers).await;
        assert_eq!(got.status, StatusCode::OK, "{protocol:?}");
        for target in ["/api/videos", "/api/videos/clip"] {
            let head = send(&server, protocol, Method::HEAD, target, &headers).await;
            assert_eq!(head.status, StatusCode::OK, "{protocol:?} {target}");
            assert_eq!(head.header("content-type"), "application/json");
            assert!(head.body.is_empty(), "{protocol:?} {target}");
        }
    }
    server.stop().await.unwrap();
}
