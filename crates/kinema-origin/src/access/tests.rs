//! Tests of [`Access`](super::Access): the API's scope matrix, refusals,
//! capped freshness of signed responses, minting, and reloading the ring.

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::Method;
use http::Request;
use kinema_auth::{Claims, Refusal, TokenScope};
use kinema_core::VideoId;
use kinema_http::{ConnectionInfo, RequestBody};

use super::*;

struct Fixture {
    _directory: tempfile::TempDir,
    access: Access,
    secrets: Vec<(Scope, String)>,
}

fn fixture() -> Fixture {
    let directory = tempfile::tempdir().unwrap();
    let keys = directory.path().join("keys.toml");
    let tokens_path = directory.path().join("tokens.toml");
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    ring.save(&keys).unwrap();
    let mut tokens = AdminTokens::empty();
    let secrets = [Scope::Read, Scope::Write, Scope::Admin]
        .into_iter()
        .map(|scope| {
            (
                scope,
                tokens
                    .issue(scope.as_str(), scope, SystemTime::now())
                    .unwrap(),
            )
        })
        .collect();
    tokens.save(&tokens_path).unwrap();
    let access = Access::load(
        &keys,
        &tokens_path,
        Duration::from_secs(30),
        TrustedProxies::default(),
    )
    .unwrap();
    Fixture {
        _directory: directory,
        access,
        secrets,
    }
}

fn headers(authorization: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn connection() -> ConnectionInfo {
    let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
    ConnectionInfo {
        peer: address,
        local: address,
        secure: true,
    }
}

async fn body_json(response: Response<ResponseBody>) -> serde_json::Value {
    match response.into_body() {
        ResponseBody::Full(bytes) => serde_json::from_slice(&bytes).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

#[test]
fn api_scope_matrix() {
    let fixture = fixture();
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
    ];
    for (scope, secret) in &fixture.secrets {
        for method in &methods {
            let result = fixture
                .access
                .authorize_api(method, &headers(Some(&format!("Bearer {secret}"))));
            let needs_write = !(method == Method::GET || method == Method::HEAD);
            match result {
                Ok(granted) => {
                    assert_eq!(granted, *scope);
                    assert!(!needs_write || *scope >= Scope::Write, "{scope} {method}");
                }
                Err(response) => {
                    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{scope} {method}");
                    assert!(needs_write && *scope == Scope::Read, "{scope} {method}");
                }
            }
        }
    }
    for header in [
        None,
        Some("Bearer kinema_nope"),
        Some("Basic abc"),
        Some("Bearer"),
    ] {
        for method in &methods {
            let response = fixture
                .access
                .authorize_api(method, &headers(header))
                .unwrap_err();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
        }
    }
}

#[test]
fn refusals_carry_the_reason_in_header_and_body() {
    let response = refused(Refusal::Expired);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[AUTH_ERROR_HEADER], "expired");
    assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
    match response.body() {
        ResponseBody::Full(bytes) => assert_eq!(&bytes[..], br#"{"error":"expired"}"#),
        other => panic!("{other:?}"),
    }
}

fn capped(cache_control: &str, left: i64) -> String {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let expires_at = if left >= 0 {
        now + Duration::from_secs(left as u64)
    } else {
        now - Duration::from_secs(left.unsigned_abs())
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_str(cache_control).unwrap(),
    );
    cap_freshness_at_expiry(&mut headers, expires_at, now);
    headers[http::header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .to_string()
}

/// The rules are `kinema_auth::cap_cache_control`'s; this checks the
/// header handling around them.
#[test]
fn signed_freshness_ends_with_the_token() {
    let segment = "public, max-age=31536000, immutable";
    assert_eq!(capped(segment, 600), "public, max-age=600, immutable");
    assert_eq!(capped(segment, -5), "public, max-age=0, immutable");
    assert_eq!(capped("no-store", 90), "no-store");
}

#[tokio::test]
async fn minted_urls_verify_for_their_video_only() {
    let fixture = fixture();
    let request = Request::post("/api/tokens")
        .header(http::header::HOST, "video.example:8443")
        .body(RequestBody::from_stream(Box::pin(futures::stream::iter([
            Ok(Bytes::from_static(
                br#"{"video": "clip", "ttl": "10m", "ip": "127.0.0.0/8"}"#,
            )),
        ]))))
        .unwrap();
    let response = fixture.access.mint(request, connection()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    let path = body["path"].as_str().unwrap();
    assert!(path.ends_with("/v/clip/master.m3u8"), "{path}");
    assert_eq!(body["url"], format!("https://video.example:8443{path}"));
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(
        fixture
            .access
            .verify_signed(path, localhost, None, SystemTime::now())
            .map(|s| s.rest),
        Ok("/v/clip/master.m3u8")
    );
    let token = body["token"].as_str().unwrap();
    assert_eq!(
        fixture
            .access
            .verify_signed(
                &format!("/s/{token}/v/other/master.m3u8"),
                localhost,
                None,
                SystemTime::now(),
            )
            .map(|s| s.rest),
        Err(Refusal::OutOfScope)
    );
    assert_eq!(
        fixture
            .access
            .verify_signed(path, "10.0.0.1".parse().unwrap(), None, SystemTime::now())
            .map(|s| s.rest),
        Err(Refusal::AddressMismatch)
    );
}

#[tokio::test]
async fn bad_mint_requests_are_400_with_a_reason() {
    let fixture = fixture();
    for (body, expected) in [
        (r#"{"video": "../x"}"#, "video id"),
        (r#"{"video": "a", "ttl": "400days"}"#, "ttl must be"),
        (r#"{"video": "a", "ip": "nowhere"}"#, "neither an address"),
        (
            r#"{"video": "a", "file": "../../etc/passwd"}"#,
            "object path",
        ),
        (r#"{"vidoe": "a"}"#, "vidoe"),
        ("not json", "not a valid token request"),
    ] {
        let request = Request::post("/api/tokens")
            .body(RequestBody::from_stream(Box::pin(futures::stream::iter([
                Ok(Bytes::from(body)),
            ]))))
            .unwrap();
        let response = fixture.access.mint(request, connection()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let json = body_json(response).await;
        let message = json["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
}

#[test]
fn reload_picks_up_a_rotated_ring() {
    let directory = tempfile::tempdir().unwrap();
    let keys = directory.path().join("keys.toml");
    let tokens = directory.path().join("tokens.toml");
    let access = Access::load(&keys, &tokens, Duration::ZERO, TrustedProxies::default()).unwrap();
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    let claims = Claims::new(
        TokenScope::video(&VideoId::new("a").unwrap()),
        SystemTime::now() + Duration::from_secs(60),
    );
    let token = kinema_auth::sign(&ring, &claims).unwrap();
    let path = format!("/s/{token}/v/a/master.m3u8");
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(
        access
            .verify_signed(&path, localhost, None, SystemTime::now())
            .map(|s| s.rest),
        Err(Refusal::UnknownKey)
    );
    ring.save(&keys).unwrap();
    access.reload().unwrap();
    assert_eq!(
        access
            .verify_signed(&path, localhost, None, SystemTime::now())
            .map(|s| s.rest),
        Ok("/v/a/master.m3u8")
    );
}

#[test]
fn a_node_credential_skips_the_address_check_only_for_its_own_request() {
    let directory = tempfile::tempdir().unwrap();
    let keys = directory.path().join("keys.toml");
    let tokens = directory.path().join("tokens.toml");
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    ring.save(&keys).unwrap();
    let access = Access::load(&keys, &tokens, Duration::ZERO, TrustedProxies::default()).unwrap();
    let claims = Claims::new(
        TokenScope::video(&VideoId::new("a").unwrap()),
        SystemTime::now() + Duration::from_secs(60),
    )
    .client("192.0.2.7/32".parse().unwrap());
    let token = kinema_auth::sign(&ring, &claims).unwrap();
    let path = format!("/s/{token}/v/a/1.m4s");
    let uri: http::Uri = path.parse().unwrap();
    let edge: IpAddr = "127.0.0.2".parse().unwrap();
    let now = SystemTime::now();
    let verify = |headers: &HeaderMap, method: &Method| {
        let vouched = access.vouched(method, &uri, headers, now);
        access
            .verify_signed(&path, edge, vouched.as_ref(), now)
            .map(|signed| signed.rest)
    };
    // The edge is not the viewer the token is bound to.
    assert_eq!(
        verify(&HeaderMap::new(), &Method::GET),
        Err(Refusal::AddressMismatch)
    );
    let credential = kinema_auth::credential(&ring, "GET", &path, now).unwrap();
    let mut vouched = HeaderMap::new();
    vouched.insert(
        kinema_auth::CREDENTIAL_HEADER,
        HeaderValue::from_str(&credential).unwrap(),
    );
    assert_eq!(verify(&vouched, &Method::GET), Ok("/v/a/1.m4s"));
    // Made over GET, it vouches for no other method.
    assert_eq!(
        verify(&vouched, &Method::HEAD),
        Err(Refusal::AddressMismatch)
    );
    // A credential under another key, or made up, is no credential.
    let mut other = KeyRing::empty();
    other.add_new_key(SystemTime::now());
    for forged in [
        kinema_auth::credential(&other, "GET", &path, now).unwrap(),
        "1.x.1.AAAA".to_owned(),
        "yes".to_owned(),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(
            kinema_auth::CREDENTIAL_HEADER,
            HeaderValue::from_str(&forged).unwrap(),
        );
        assert_eq!(
            verify(&headers, &Method::GET),
            Err(Refusal::AddressMismatch),
            "{forged}"
        );
    }
}
