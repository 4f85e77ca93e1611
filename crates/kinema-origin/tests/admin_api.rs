//! The admin endpoints the web UI's admin pages use, over real HTTP:
//! `PATCH /api/videos/{id}` (title, description; seen by the catalogue),
//! `/api/admin-tokens` and `/api/keys`, each with its refusals.

mod common;

use std::time::SystemTime;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, KeyRing, Scope};
use serde_json::{Value, json};
use tokio::net::TcpStream;

struct Admin {
    server: Server,
    admin: String,
    writer: String,
    reader: String,
    files: tempfile::TempDir,
    _library: Library,
}

impl Admin {
    async fn start() -> Self {
        let library = Library::new().await;
        let files = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&files.path().join("keys.toml")).unwrap();
        let mut tokens = AdminTokens::empty();
        let now = SystemTime::now();
        let admin = tokens.issue("root", Scope::Admin, now).unwrap();
        let writer = tokens.issue("uploader", Scope::Write, now).unwrap();
        let reader = tokens.issue("dashboard", Scope::Read, now).unwrap();
        tokens.save(&files.path().join("tokens.toml")).unwrap();
        let mut config = config(&library);
        config.keys = files.path().join("keys.toml");
        config.tokens = files.path().join("tokens.toml");
        let server = Server::start(config).await;
        Self {
            server,
            admin,
            writer,
            reader,
            files,
            _library: library,
        }
    }

    /// One request with `token` (none when empty) and a body.
    async fn call(
        &self,
        method: Method,
        target: &str,
        token: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let stream = TcpStream::connect(self.server.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header("host", "origin.test")
            .header("content-type", "application/json");
        if !token.is_empty() {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }
}

#[tokio::test]
async fn title_and_description_are_edited_without_republishing() {
    let api = Admin::start().await;
    // The catalogue's index holds the video before the edit: it must learn
    // of the edit, well before its periodic re-read (30 s) would.
    let (_, page) = api.call(Method::GET, "/api/catalogue", "", b"").await;
    assert_eq!(page["videos"][0]["title"], "Test clip", "{page}");
    let edit = json!({"title": "A better title", "description": "Shot at dawn.\nTwo lines."});
    let body = edit.to_string();
    let (status, edited) = api
        .call(
            Method::PATCH,
            "/api/videos/clip",
            &api.writer,
            body.as_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    let generation = edited["generation"].clone();
    assert_eq!(
        edited,
        json!({"id": "clip", "title": "A better title", "description": "Shot at dawn.\nTwo lines.",
            "access": "public", "generation": generation})
    );
    assert!(generation.as_u64().is_some(), "{edited}");
    let (status, video) = api
        .call(Method::GET, "/api/videos/clip", &api.reader, b"")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(video["title"], "A better title");
    assert_eq!(video["description"], "Shot at dawn.\nTwo lines.");
    assert_eq!(
        video["manifest"]["title"], "Test clip",
        "the media are as published"
    );
    let (_, list) = api.call(Method::GET, "/api/videos", &api.reader, b"").await;
    assert_eq!(list["videos"][0]["title"], "A better title");

    // The public catalogue shows the edit within its refresh.
    eventually("the catalogue shows the edited title", async || {
        let (_, page) = api.call(Method::GET, "/api/catalogue", "", b"").await;
        page["videos"][0]["title"] == "A better title"
            && page["videos"][0]["description"] == "Shot at dawn.\nTwo lines."
    })
    .await;
    let (_, found) = api
        .call(Method::GET, "/api/catalogue?q=better", "", b"")
        .await;
    assert_eq!(found["total"], 1, "search matches the edited title");

    // Only the description: the title stays.
    let (status, edited) = api
        .call(
            Method::PATCH,
            "/api/videos/clip",
            &api.admin,
            br#"{"description": ""}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(edited["title"], "A better title");
    assert_eq!(edited["description"], "");
    api.server.stop().await.unwrap();
}

#[tokio::test]
async fn edits_out_of_bounds_or_unauthorised_are_refused() {
    let api = Admin::start().await;
    let long_title = json!({ "title": "t".repeat(201) }).to_string();
    let long_description = json!({ "description": "d".repeat(5_001) }).to_string();
    let huge = vec![b' '; 70_000];
    for (token, target, body, status, says) in [
        (
            api.writer.as_str(),
            "/api/videos/clip",
            long_title.as_bytes(),
            StatusCode::BAD_REQUEST,
            "the title is longer than 200 characters",
        ),
        (
            &api.writer,
            "/api/videos/clip",
            long_description.as_bytes(),
            StatusCode::BAD_REQUEST,
            "the description is longer than 5000 characters",
        ),
        (
            &api.writer,
            "/api/videos/clip",
            br#"{"title": "   "}"#,
            StatusCode::BAD_REQUEST,
            "the title is empty",
        ),
        (
            &api.writer,
            "/api/videos/clip",
            br#"{"owner": "me"}"#,
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            &api.writer,
            "/api/videos/clip",
            b"{}",
            StatusCode::BAD_REQUEST,
            "nothing to change",
        ),
        (
            &api.writer,
            "/api/videos/clip",
            b"title=x",
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            &api.writer,
            "/api/videos/clip",
            &huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 65536 bytes",
        ),
        (
            &api.writer,
            "/api/videos/no-such-video",
            br#"{"title": "x"}"#,
            StatusCode::NOT_FOUND,
            "video no-such-video does not exist",
        ),
        (
            &api.reader,
            "/api/videos/clip",
            br#"{"title": "x"}"#,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        ),
        (
            "",
            "/api/videos/clip",
            br#"{"title": "x"}"#,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ] {
        let (got, answer) = api.call(Method::PATCH, target, token, body).await;
        assert_eq!(got, status, "{answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    let (_, video) = api
        .call(Method::GET, "/api/videos/clip", &api.reader, b"")
        .await;
    assert_eq!(video["title"], "Test clip", "nothing was changed");
    api.server.stop().await.unwrap();
}

#[tokio::test]
async fn admin_tokens_are_listed_created_and_revoked() {
    let api = Admin::start().await;
    let (status, listed) = api
        .call(Method::GET, "/api/admin-tokens", &api.admin, b"")
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|token| token["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "uploader", "dashboard"]);
    assert_eq!(listed["tokens"][0]["scope"], "admin");
    assert!(
        !listed.to_string().contains("hash") && !listed.to_string().contains(&api.admin),
        "{listed}"
    );

    let (status, created) = api
        .call(
            Method::POST,
            "/api/admin-tokens?name=ci-bot&scope=write",
            &api.admin,
            b"",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["token"]["name"], "ci-bot");
    assert_eq!(created["token"]["scope"], "write");
    let secret = created["secret"].as_str().unwrap().to_string();
    // Served at once, and saved where `kinema tokens` reads it.
    let (status, _) = api.call(Method::GET, "/api/videos", &secret, b"").await;
    assert_eq!(status, StatusCode::OK);
    let saved = AdminTokens::load(&api.files.path().join("tokens.toml")).unwrap();
    assert!(saved.tokens().iter().any(|token| token.name == "ci-bot"));

    for (target, token, status, says) in [
        (
            "/api/admin-tokens?name=ci-bot&scope=read",
            api.admin.as_str(),
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            "/api/admin-tokens?name=has%20space&scope=read",
            &api.admin,
            StatusCode::BAD_REQUEST,
            "name:",
        ),
        (
            "/api/admin-tokens?name=x&scope=root",
            &api.admin,
            StatusCode::BAD_REQUEST,
            "not one of read, write, admin",
        ),
        (
            "/api/admin-tokens?scope=read",
            &api.admin,
            StatusCode::BAD_REQUEST,
            "name is missing",
        ),
        (
            "/api/admin-tokens?name=x&scope=read&owner=me",
            &api.admin,
            StatusCode::BAD_REQUEST,
            "unknown parameter",
        ),
        (
            "/api/admin-tokens?name=x&scope=admin",
            &api.writer,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        ),
        (
            "/api/admin-tokens?name=x&scope=admin",
            "",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ] {
        let (got, answer) = api.call(Method::POST, target, token, b"").await;
        assert_eq!(got, status, "{target}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    let (status, _) = api
        .call(Method::GET, "/api/admin-tokens", &api.writer, b"")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "listing needs admin too");

    let (status, _) = api
        .call(Method::DELETE, "/api/admin-tokens/ci-bot", &api.admin, b"")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Method::GET, "/api/videos", &secret, b"").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
    let (status, answer) = api
        .call(Method::DELETE, "/api/admin-tokens/ci-bot", &api.admin, b"")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = api
        .call(Method::DELETE, "/api/admin-tokens/root", &api.admin, b"")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("last admin token")
    );
    let (status, _) = api.call(Method::GET, "/api/videos", &api.admin, b"").await;
    assert_eq!(status, StatusCode::OK, "the last admin token still works");
    let (status, _) = api
        .call(Method::PUT, "/api/admin-tokens", &api.admin, b"")
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    api.server.stop().await.unwrap();
}

#[tokio::test]
async fn signing_keys_are_listed_created_and_retired_without_their_secrets() {
    let api = Admin::start().await;
    let ring_path = api.files.path().join("keys.toml");
    let first = KeyRing::load(&ring_path).unwrap().keys()[0]
        .id()
        .as_str()
        .to_string();
    let (status, listed) = api.call(Method::GET, "/api/keys", &api.admin, b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["keys"][0]["id"], first.as_str());
    assert_eq!(listed["keys"][0]["retired"], false);
    assert_eq!(listed["keys"][0]["signing"], true);
    let fields: Vec<&String> = listed["keys"][0].as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["created_at", "created_at_unix", "id", "retired", "signing"],
        "no secret"
    );
    let ring_text = std::fs::read_to_string(&ring_path).unwrap();

    let (status, created) = api.call(Method::POST, "/api/keys", &api.admin, b"").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let second = created["key"]["id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(created["key"].as_object().unwrap().len(), 5, "{created}");
    assert!(
        !created.to_string().contains("secret"),
        "{created} / {ring_text}"
    );

    let (status, retired) = api
        .call(
            Method::POST,
            &format!("/api/keys/{first}/retire"),
            &api.admin,
            b"",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    assert_eq!(retired["key"]["retired"], true);
    let ring = KeyRing::load(&ring_path).unwrap();
    assert!(
        ring.keys()
            .iter()
            .any(|key| key.id().as_str() == first && key.is_retired())
    );
    assert_eq!(ring.signing_key().unwrap().id().as_str(), second);
    let (_, listed) = api.call(Method::GET, "/api/keys", &api.admin, b"").await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);

    for (method, target, token, status) in [
        (
            Method::POST,
            "/api/keys/nope/retire",
            api.admin.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/keys",
            &api.writer,
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, "/api/keys", &api.reader, StatusCode::FORBIDDEN),
        (Method::GET, "/api/keys", "", StatusCode::UNAUTHORIZED),
        (
            Method::DELETE,
            "/api/keys",
            &api.admin,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "/api/keys/x/rotate",
            &api.admin,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (got, answer) = api.call(method.clone(), target, token, b"").await;
        assert_eq!(got, status, "{method} {target}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    api.server.stop().await.unwrap();
}

/// A 3 s clip, encoded by ffmpeg.
fn clip() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=3"])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn an_upload_carries_its_description_to_the_published_video() {
    let api = Admin::start().await;
    let (status, refused) = api
        .call(
            Method::POST,
            &format!("/api/videos?id=described&description={}", "d".repeat(5_001)),
            &api.writer,
            b"not read",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(
        refused["error"],
        "description: the description is longer than 5000 characters"
    );
    let (status, refused) = api
        .call(
            Method::POST,
            "/api/videos?id=described&title=Two%0Alines",
            &api.writer,
            b"not read",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{refused}"
    );

    let (status, accepted) = api
        .call(
            Method::POST,
            "/api/videos?id=described&title=Described&description=Shot+in+one+take.",
            &api.writer,
            &clip(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job = accepted["job"]["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, video) = api
            .call(Method::GET, "/api/videos/described", &api.reader, b"")
            .await;
        if video["description"] == "Shot in one take." {
            assert_eq!(video["title"], "Described");
            break;
        }
        let (_, answer) = api
            .call(Method::GET, &format!("/api/jobs/{job}"), &api.reader, b"")
            .await;
        assert!(
            !["failed", "cancelled"].contains(&answer["job"]["state"].as_str().unwrap_or("")),
            "{answer}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no description within 120 s: {video} {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    api.server.stop().await.unwrap();
}
