//! A video's access policy changed by `PATCH /api/videos/{id}` with
//! `{"access": …}`, over real HTTP: the change is a new generation of the
//! same media, and from the answer on neither the new URLs nor the old
//! generation's (which caches may hold as public) play without a token;
//! the reverse opens the new generation to anyone.

mod common;

use std::time::SystemTime;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, KeyRing, Scope};
use kinema_core::AccessPolicy;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// One request with an admin token and a JSON body.
async fn call(
    server: &Server,
    method: Method,
    target: &str,
    token: &str,
    body: &str,
) -> (StatusCode, Value) {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "origin.test")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_policy_change_is_a_new_generation_and_closes_the_old_urls() {
    let library = Library::new().await;
    let files = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    ring.save(&files.path().join("keys.toml")).unwrap();
    let mut tokens = AdminTokens::empty();
    let admin = tokens
        .issue("root", Scope::Admin, SystemTime::now())
        .unwrap();
    tokens.save(&files.path().join("tokens.toml")).unwrap();
    let mut config = config(&library);
    config.keys = files.path().join("keys.toml");
    config.tokens = files.path().join("tokens.toml");
    let server = Server::start(config).await;
    let status_of = async |target: &str| get(&server, Protocol::Http1, target).await.status;

    let first = library.manifest().await;
    let segment = library.read("v180/1.m4s");
    let old_segment = format!("/v/{VIDEO}/g{}/v180/1.m4s", first.generation);
    let stable_segment = format!("/v/{VIDEO}/v180/1.m4s");
    assert_eq!(status_of(&old_segment).await, StatusCode::OK);
    assert_eq!(status_of(&stable_segment).await, StatusCode::OK);
    let listed = get(&server, Protocol::Http1, "/api/catalogue").await;
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(listed["total"], 1, "listed while public: {listed}");

    let (status, edited) = call(
        &server,
        Method::PATCH,
        "/api/videos/clip",
        &admin,
        r#"{"access": "signed"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["access"], "signed");
    assert_eq!(edited["title"], "Test clip");
    let second = library.manifest().await;
    assert_eq!(second.access, AccessPolicy::Signed);
    assert!(second.generation > first.generation);
    assert_eq!(edited["generation"], second.generation);
    assert_eq!(second.files, first.files, "the same media");
    let new_segment = format!("/v/{VIDEO}/g{}/v180/1.m4s", second.generation);

    // No token: the old generation's URL, the new one's and the stable one
    // are all refused at once.
    for target in [
        &old_segment,
        &new_segment,
        &stable_segment,
        &format!("/v/{VIDEO}/master.m3u8"),
    ] {
        assert_eq!(status_of(target).await, StatusCode::FORBIDDEN, "{target}");
    }
    // The public catalogue no longer lists it for anyone not signed in.
    eventually("the catalogue drops the signed video", async || {
        let page = get(&server, Protocol::Http1, "/api/catalogue").await;
        let page: Value = serde_json::from_slice(&page.body).unwrap();
        page["total"] == 0
    })
    .await;
    // With a token, both generations play the same bytes.
    let (status, minted) = call(
        &server,
        Method::POST,
        "/api/tokens",
        &admin,
        r#"{"video": "clip", "ttl": "5m"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let prefix = minted["path"]
        .as_str()
        .unwrap()
        .strip_suffix(&format!("/v/{VIDEO}/master.m3u8"))
        .unwrap()
        .to_string();
    for target in [&old_segment, &new_segment] {
        let reply = get(&server, Protocol::Http1, &format!("{prefix}{target}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{target}");
        assert_eq!(reply.body.as_ref(), segment.as_slice());
    }

    // The same policy again publishes nothing.
    let (status, same) = call(
        &server,
        Method::PATCH,
        "/api/videos/clip",
        &admin,
        r#"{"access": "signed"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["generation"], second.generation);

    // The reverse: the newest generation and the stable URLs play for
    // anyone; the generation published signed stays signed.
    let (status, edited) = call(
        &server,
        Method::PATCH,
        "/api/videos/clip",
        &admin,
        r#"{"access": "public"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    let third = library.manifest().await;
    assert_eq!(third.access, AccessPolicy::Public);
    assert!(third.generation > second.generation);
    let newest_segment = format!("/v/{VIDEO}/g{}/v180/1.m4s", third.generation);
    for target in [&newest_segment, &stable_segment, &old_segment] {
        let reply = get(&server, Protocol::Http1, target).await;
        assert_eq!(reply.status, StatusCode::OK, "{target}");
        assert_eq!(reply.body.as_ref(), segment.as_slice());
    }
    assert_eq!(
        status_of(&new_segment).await,
        StatusCode::FORBIDDEN,
        "published signed"
    );
    eventually("the catalogue lists the public video again", async || {
        let page = get(&server, Protocol::Http1, "/api/catalogue").await;
        let page: Value = serde_json::from_slice(&page.body).unwrap();
        page["total"] == 1 && page["videos"][0]["id"] == VIDEO
    })
    .await;

    // Refused: a policy that is neither, and null.
    for body in [r#"{"access": "private"}"#, r#"{"access": null}"#] {
        let (status, refused) =
            call(&server, Method::PATCH, "/api/videos/clip", &admin, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
        assert!(
            refused["error"].as_str().unwrap().contains("\"access\""),
            "{refused}"
        );
    }
    let (status, _) = call(
        &server,
        Method::PATCH,
        "/api/videos/nothing",
        &admin,
        &json!({"access": "signed"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A file the manifest lists, gone from the store: said so, nothing
    // published.
    std::fs::remove_file(library.file("v180/1.m4s")).unwrap();
    let before = library.manifest().await;
    let (status, refused) = call(
        &server,
        Method::PATCH,
        "/api/videos/clip",
        &admin,
        r#"{"access": "signed"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{refused}");
    assert_eq!(
        refused["error"],
        "video clip is missing its file v180/1.m4s in the store; upload it again"
    );
    assert_eq!(library.manifest().await, before);
    server.stop().await.unwrap();
}
