//! Access control over real HTTP: signed videos behind `/s/{token}/`, the
//! 401/403 matrix of the admin API, `POST /api/tokens`, and HTTPS with
//! ffmpeg and curl as the clients.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, Claims, KeyRing, Scope, TokenScope};
use kinema_core::{AccessPolicy, Manifest, VideoId};
use tokio::net::TcpStream;

const SIGNED: &str = "secret";

/// A library with the public fixture `clip` and the same files published
/// as `secret` with the signed policy, plus a key ring and admin tokens.
struct Protected {
    library: Library,
    files: tempfile::TempDir,
    ring: KeyRing,
    secrets: Vec<(Scope, String)>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Protected {
    async fn new() -> Self {
        let library = Library::new().await;
        let public = library.manifest().await;
        let staged = library.staging("stage-secret");
        copy_dir(&fixture_template().join("video"), &staged);
        let manifest = Manifest {
            id: VideoId::new(SIGNED).unwrap(),
            access: AccessPolicy::Signed,
            ..public
        };
        library.store.publish(&manifest, &staged).await.unwrap();

        let files = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&files.path().join("keys.toml")).unwrap();
        let mut tokens = AdminTokens::empty();
        let secrets = [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .map(|scope| {
                let secret = tokens
                    .issue(scope.as_str(), scope, SystemTime::now())
                    .unwrap();
                (scope, secret)
            })
            .collect();
        tokens.save(&files.path().join("tokens.toml")).unwrap();
        Self {
            library,
            files,
            ring,
            secrets,
        }
    }

    fn config(&self) -> kinema_origin::Config {
        let mut config = config(&self.library);
        config.keys = self.files.path().join("keys.toml");
        config.tokens = self.files.path().join("tokens.toml");
        config
    }

    fn secret(&self, scope: Scope) -> &str {
        &self
            .secrets
            .iter()
            .find(|(candidate, _)| *candidate == scope)
            .unwrap()
            .1
    }

    fn token(&self, video: &str, expires_in: i64) -> String {
        let now = SystemTime::now();
        let expires = if expires_in >= 0 {
            now + Duration::from_secs(expires_in as u64)
        } else {
            now - Duration::from_secs(expires_in.unsigned_abs())
        };
        let claims = Claims::new(TokenScope::video(&VideoId::new(video).unwrap()), expires);
        kinema_auth::sign(&self.ring, &claims).unwrap()
    }
}

/// One HTTP/1.1 request with a body on a fresh connection.
async fn call(
    server: &Server,
    method: Method,
    target: &str,
    authorization: Option<&str>,
    body: &str,
) -> Reply {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "origin.test");
    if let Some(secret) = authorization {
        request = request.header("authorization", format!("Bearer {secret}"));
    }
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn assert_refused(reply: &Reply, reason: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.header("kinema-auth-error"), reason);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
        serde_json::json!({ "error": reason })
    );
}

#[tokio::test]
async fn signed_videos_need_a_valid_token_for_every_file() {
    let protected = Protected::new().await;
    let server = Server::start(protected.config()).await;
    let files = [
        "master.m3u8",
        "manifest.mpd",
        "v180/index.m3u8",
        "v180/init.mp4",
        "v180/1.m4s",
        "thumbs/poster.jpg",
    ];
    let token = protected.token(SIGNED, 600);
    let generation = protected.library.manifest().await.generation;
    for protocol in PROTOCOLS {
        for file in files {
            let bare = get(&server, protocol, &format!("/v/{SIGNED}/{file}")).await;
            assert_refused(&bare, "missing_token");
            let signed = get(&server, protocol, &format!("/s/{token}/v/{SIGNED}/{file}")).await;
            assert_eq!(signed.status, StatusCode::OK, "{file}");
            assert_eq!(signed.body.as_ref(), protected.library.read(file));
            // The video's token covers its generation's URLs, which the
            // playlists point to; they are no more open without one.
            let pinned = format!("v/{SIGNED}/g{generation}/{file}");
            assert_refused(
                &get(&server, protocol, &format!("/{pinned}")).await,
                "missing_token",
            );
            let signed = get(&server, protocol, &format!("/s/{token}/{pinned}")).await;
            assert_eq!(signed.status, StatusCode::OK, "{pinned}");
            assert_eq!(signed.body.as_ref(), protected.library.read(file));
        }
        // Public videos stay public, and open through a token of their own.
        let public = get(&server, protocol, "/v/clip/master.m3u8").await;
        assert_eq!(public.status, StatusCode::OK);
        let clip_token = protected.token("clip", 600);
        let through = get(
            &server,
            protocol,
            &format!("/s/{clip_token}/v/clip/master.m3u8"),
        )
        .await;
        assert_eq!(through.status, StatusCode::OK);
    }
    server.stop().await.unwrap();
}

/// Signed responses were `public, max-age=31536000, immutable`: a cache
/// that cannot verify tokens kept them a year past the token's expiry.
#[tokio::test]
async fn signed_responses_are_fresh_no_longer_than_their_token() {
    let protected = Protected::new().await;
    let server = Server::start(protected.config()).await;
    let token = protected.token(SIGNED, 600);
    for protocol in PROTOCOLS {
        for file in [
            "master.m3u8",
            "v180/index.m3u8",
            "v180/init.mp4",
            "v180/1.m4s",
        ] {
            let target = format!("/s/{token}/v/{SIGNED}/{file}");
            let reply = get(&server, protocol, &target).await;
            assert_eq!(reply.status, StatusCode::OK, "{file}");
            let cache_control = reply.header("cache-control").to_string();
            let max_age: u64 = cache_control
                .split(", ")
                .find_map(|directive| directive.strip_prefix("max-age="))
                .unwrap()
                .parse()
                .unwrap();
            assert!(max_age <= 600, "{file}: {cache_control}");
            // A revalidation is capped the same way.
            let etag = reply.header("etag").to_string();
            let revalidated = send(
                &server,
                protocol,
                Method::GET,
                &target,
                &[("if-none-match", &etag)],
            )
            .await;
            assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
            assert_eq!(revalidated.header("cache-control"), cache_control);
        }
        // The same files unsigned keep their year at the generation's URL.
        let generation = protected.library.manifest().await.generation;
        let public = get(
            &server,
            protocol,
            &format!("/v/clip/g{generation}/v180/1.m4s"),
        )
        .await;
        assert_eq!(
            public.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn every_refusal_has_its_reason() {
    let protected = Protected::new().await;
    let server = Server::start(protected.config()).await;
    let token = protected.token(SIGNED, 600);
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let clip_token = protected.token("clip", 600);
    let mut stranger = KeyRing::empty();
    stranger.add_new_key(SystemTime::now());
    let foreign = kinema_auth::sign(
        &stranger,
        &Claims::new(
            TokenScope::video(&VideoId::new(SIGNED).unwrap()),
            SystemTime::now() + Duration::from_secs(600),
        ),
    )
    .unwrap();
    let elsewhere = kinema_auth::sign(
        &protected.ring,
        &Claims::new(
            TokenScope::video(&VideoId::new(SIGNED).unwrap()),
            SystemTime::now() + Duration::from_secs(600),
        )
        .client("192.0.2.0/24".parse().unwrap()),
    )
    .unwrap();
    let cases = [
        (
            format!("/s/{tampered}/v/{SIGNED}/master.m3u8"),
            "bad_signature",
        ),
        (
            format!(
                "/s/{}/v/{SIGNED}/master.m3u8",
                protected.token(SIGNED, -3600)
            ),
            "expired",
        ),
        (
            format!("/s/{foreign}/v/{SIGNED}/master.m3u8"),
            "unknown_key",
        ),
        (
            format!("/s/{elsewhere}/v/{SIGNED}/master.m3u8"),
            "address_mismatch",
        ),
        (
            format!("/s/not-a-token/v/{SIGNED}/master.m3u8"),
            "malformed",
        ),
        // A token for `clip` never opens `secret`, however the path is dressed.
        (
            format!("/s/{clip_token}/v/{SIGNED}/master.m3u8"),
            "out_of_scope",
        ),
        (
            format!("/s/{clip_token}/v/clip/../{SIGNED}/master.m3u8"),
            "out_of_scope",
        ),
        (
            format!("/s/{clip_token}/v/clip/%2e%2e/{SIGNED}/master.m3u8"),
            "out_of_scope",
        ),
        (
            format!("/s/{clip_token}/v/clip/..%2f{SIGNED}/master.m3u8"),
            "out_of_scope",
        ),
        (
            format!("/s/{clip_token}/v/clip//master.m3u8"),
            "out_of_scope",
        ),
        (
            format!("/s/{clip_token}/v/clip/./master.m3u8"),
            "out_of_scope",
        ),
    ];
    for (target, reason) in &cases {
        for protocol in PROTOCOLS {
            let reply = get(&server, protocol, target).await;
            assert_refused(&reply, reason);
        }
    }
    // Also as raw bytes, where no client library could tidy the path.
    let (status, response) = raw_http1(
        &server,
        format!("/s/{clip_token}/v/clip/../{SIGNED}/v180/1.m4s").as_bytes(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&response).contains("out_of_scope"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn admin_api_401_403_matrix() {
    let protected = Protected::new().await;
    let server = Server::start(protected.config()).await;
    let routes = [
        (Method::GET, "/api/videos", ""),
        (Method::GET, "/api/jobs", ""),
        (Method::POST, "/api/videos", "{}"),
        (Method::DELETE, "/api/videos/clip", ""),
        (Method::POST, "/api/tokens", r#"{"video": "secret"}"#),
    ];
    let unknown = "kinema_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (method, route, body) in &routes {
        for authorization in [None, Some(unknown)] {
            let reply = call(&server, method.clone(), route, authorization, body).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {route}");
            assert_eq!(reply.header("www-authenticate"), "Bearer");
            // No detail about why.
            assert_eq!(reply.body.as_ref(), br#"{"error":"unauthorized"}"#);
        }
        for scope in [Scope::Read, Scope::Write, Scope::Admin] {
            let reply = call(
                &server,
                method.clone(),
                route,
                Some(protected.secret(scope)),
                body,
            )
            .await;
            let reading = method == Method::GET;
            if scope == Scope::Read && !reading {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{scope} {method} {route}"
                );
                assert_eq!(
                    reply.header("www-authenticate"),
                    "Bearer error=\"insufficient_scope\""
                );
            } else {
                assert!(
                    reply.status != StatusCode::UNAUTHORIZED
                        && reply.status != StatusCode::FORBIDDEN,
                    "{scope} {method} {route}: {reply:?}"
                );
            }
        }
    }
    // Health and media never need a bearer token.
    assert_eq!(
        get(&server, Protocol::Http1, "/healthz").await.status,
        StatusCode::OK
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn minted_urls_play_and_tokens_reload_on_sighup() {
    let protected = Protected::new().await;
    let server = Server::start(protected.config()).await;
    let reply = call(
        &server,
        Method::POST,
        "/api/tokens",
        Some(protected.secret(Scope::Write)),
        r#"{"video": "secret", "ttl": "5m"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let minted: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let path = minted["path"].as_str().unwrap();
    assert_eq!(
        minted["url"].as_str().unwrap(),
        format!("http://origin.test{path}")
    );
    let playlist = get(&server, Protocol::Http2, path).await;
    assert_eq!(playlist.status, StatusCode::OK);
    assert_eq!(
        playlist.body.as_ref(),
        protected.library.read("master.m3u8")
    );

    // A token made after the server started works once SIGHUP reloads.
    let tokens_path = protected.files.path().join("tokens.toml");
    let mut tokens = AdminTokens::load(&tokens_path).unwrap();
    let late = tokens
        .issue("late", Scope::Read, SystemTime::now())
        .unwrap();
    tokens.save(&tokens_path).unwrap();
    let before = call(&server, Method::GET, "/api/videos", Some(&late), "").await;
    assert_eq!(before.status, StatusCode::UNAUTHORIZED);
    let status = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually("the new admin token to be accepted", async || {
        call(&server, Method::GET, "/api/videos", Some(&late), "")
            .await
            .status
            != StatusCode::UNAUTHORIZED
    })
    .await;
    server.stop().await.unwrap();
}

fn write_certificate(directory: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = directory.join("cert.pem");
    let key = directory.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// ffmpeg (its HLS demuxer) run off the reactor; true when it decoded.
async fn ffmpeg_decodes(url: String) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-i", &url, "-map", "0", "-f", "null", "-"])
            .output()
            .expect("ffmpeg is installed (scripts/install-deps)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn ffmpeg_decodes_a_signed_video_over_tls_only_with_its_token() {
    let protected = Protected::new().await;
    let (cert, key) = write_certificate(protected.files.path());
    let mut config = protected.config();
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    config.hsts = true;
    let server = Server::start(config).await;
    let port = server.addr.port();
    let token = protected.token(SIGNED, 600);

    let (decoded, log) = ffmpeg_decodes(format!(
        "https://127.0.0.1:{port}/s/{token}/v/{SIGNED}/master.m3u8"
    ))
    .await;
    assert!(decoded, "ffmpeg failed with the token: {log}");
    let (decoded, log) =
        ffmpeg_decodes(format!("https://127.0.0.1:{port}/v/{SIGNED}/master.m3u8")).await;
    assert!(!decoded, "ffmpeg decoded without a token");
    assert!(log.contains("403"), "{log}");

    // curl: ALPN picks h2 or http/1.1; HSTS on every TLS response.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let cert = cert.clone();
        let url = format!("https://localhost:{port}/s/{token}/v/{SIGNED}/v180/init.mp4");
        let resolve = format!("localhost:{port}:127.0.0.1");
        let output = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["--silent", "--show-error", "--max-time", "20", flag])
                .arg("--cacert")
                .arg(&cert)
                .args([
                    "--resolve",
                    &resolve,
                    "--dump-header",
                    "-",
                    "--output",
                    "/dev/null",
                ])
                .args(["--write-out", "version=%{http_version}"])
                .arg(url)
                .output()
                .expect("curl is installed")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.ends_with(&format!("version={version}")), "{stdout}");
        assert!(stdout.contains(" 200"), "{stdout}");
        assert!(
            stdout.contains("strict-transport-security: max-age=31536000"),
            "{stdout}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tls_settings_that_contradict_are_errors() {
    let protected = Protected::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = protected.config();
    config.hsts = true;
    let error = kinema_origin::run(config, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("hsts"), "{error}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = protected.config();
    config.tls_cert = Some(protected.files.path().join("missing.pem"));
    let error = kinema_origin::run(config, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("tls_key"), "{error}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = protected.config();
    config.tls_cert = Some(protected.files.path().join("missing.pem"));
    config.tls_key = Some(protected.files.path().join("missing.pem"));
    let error = kinema_origin::run(config, listener, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing.pem"), "{error}");
}
