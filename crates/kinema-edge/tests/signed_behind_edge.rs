//! Signed URLs through `kinema edge` in front of the real origin: a copy
//! stored by an edge without the key ring ends with its token, an edge with
//! the key ring still shares one copy between tokens, and a token bound to
//! a client address works through an edge the origin trusts — and only for
//! that client, whatever a spoofer writes into `Forwarded` or
//! `X-Forwarded-For`.

mod common;
#[path = "common/library.rs"]
mod library;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{Edge, Service, cache_status, get};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kinema_auth::keyring::KeyRing;
use kinema_auth::{Claims, TokenScope};
use kinema_core::{AccessPolicy, VideoId};
use library::{open, publish};
use tokio::net::TcpSocket;

struct Setup {
    _library: tempfile::TempDir,
    /// Where the video's segments are, as its playlists name them:
    /// `/v/secret/g{N}/v180/`.
    segments: String,
    ring: KeyRing,
    keys: PathBuf,
    origin: Service<kinema_origin::Error>,
}

/// The real origin over a library with the signed video `secret`, no clock
/// skew allowance (so a token's expiry is exact), trusting `trusted`.
async fn origin(trusted: &[&str]) -> Setup {
    let library = tempfile::tempdir().unwrap();
    let store = open(library.path()).await;
    let secret = publish(&*store, "secret", AccessPolicy::Signed).await;
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    let keys = library.path().join("keys.toml");
    ring.save(&keys).unwrap();
    let mut config = kinema_origin::Config::new(library.path());
    config.web_root = PathBuf::from("/nonexistent/kinema-web");
    config.access_log = false;
    config.prefetch = false;
    config.keys = keys.clone();
    config.auth_skew = Duration::ZERO;
    config.trusted_proxies = kinema_origin::TrustedProxies::parse(trusted).unwrap();
    let origin =
        Service::spawn(|listener, shutdown| kinema_origin::run(config, listener, shutdown)).await;
    Setup {
        _library: library,
        segments: format!("/v/secret/g{}/v180/", secret.generation),
        ring,
        keys,
        origin,
    }
}

impl Setup {
    async fn edge(&self, with_keys: bool) -> Edge {
        Edge::start(kinema_edge::Config {
            origin: vec![self.origin.url()],
            prefetch_segments: 0,
            keys: with_keys.then(|| self.keys.clone()),
            token_skew: Duration::ZERO,
            ..kinema_edge::Config::default()
        })
        .await
    }

    fn token(&self, valid_for: Duration, client: Option<&str>) -> String {
        let mut claims = Claims::new(
            TokenScope::video(&VideoId::new("secret").unwrap()),
            SystemTime::now() + valid_for,
        );
        if let Some(client) = client {
            claims = claims.client(client.parse().unwrap());
        }
        kinema_auth::sign(&self.ring, &claims).unwrap()
    }
}

fn max_age(headers: &HeaderMap) -> u64 {
    let cache_control = headers["cache-control"].to_str().unwrap();
    cache_control
        .split(',')
        .find_map(|directive| directive.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("no max-age in {cache_control}"))
        .parse()
        .unwrap()
}

/// GETs `path` until the answer is `status`, or fails after 30 s.
async fn until_status(edge: SocketAddr, path: &str, status: StatusCode) -> HeaderMap {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (got, headers, _) = get(edge, path, &[]).await;
        if got == status {
            return headers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {got} ({}), never {status}",
            cache_status(&headers)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One GET from the local address `from` (127.0.0.x) with extra headers.
async fn get_from(
    from: &str,
    server: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get(path).header("host", "kinema.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    body.collect().await.unwrap();
    (parts.status, parts.headers)
}

/// The signed copy used to be `public, max-age=31536000, immutable`: an
/// edge without the key ring kept serving it under the token URL for a
/// year after the token expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_edge_stops_serving_a_signed_copy_when_its_token_expires() {
    let setup = origin(&[]).await;
    let edge = setup.edge(false).await;
    // Long enough that a loaded machine still fetches it in time; the
    // test waits it out.
    let token = setup.token(Duration::from_secs(8), None);
    let path = format!("/s/{token}{}1.m4s", setup.segments);

    let (status, headers, _) = get(edge.address, &path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert!(cache_status(&headers).contains("stored"), "{headers:?}");
    assert!(max_age(&headers) <= 8, "{headers:?}");
    let headers = until_status(edge.address, &path, StatusCode::FORBIDDEN).await;
    assert_eq!(headers["kinema-auth-error"], "expired");
    // Gone for good: the stored copy never answers again.
    let (status, _, _) = get(edge.address, &path, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    edge.stop().await;
    setup.origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_keys_shares_signed_copies_across_token_lifetimes() {
    let setup = origin(&[]).await;
    let edge = setup.edge(true).await;
    let short = setup.token(Duration::from_secs(8), None);
    let long = setup.token(Duration::from_secs(3600), None);
    let file = &format!("{}2.m4s", setup.segments);

    let (status, headers, body) = get(edge.address, &format!("/s/{short}{file}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert!(max_age(&headers) <= 8, "{headers:?}");
    let fetched = edge.metric("kinema_edge_origin_requests_total").await;
    // Another viewer's token is answered from the same copy.
    let (status, headers, shared) = get(edge.address, &format!("/s/{long}{file}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shared, body);
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(
        edge.metric("kinema_edge_origin_requests_total").await,
        fetched
    );
    // The short token expires at the edge, which verifies it itself; the
    // long one keeps the copy, revalidated under its own token.
    until_status(
        edge.address,
        &format!("/s/{short}{file}"),
        StatusCode::FORBIDDEN,
    )
    .await;
    let (status, headers, after) = get(edge.address, &format!("/s/{long}{file}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert_eq!(after, body);
    assert!(max_age(&headers) > 3000, "{headers:?}");

    edge.stop().await;
    setup.origin.stop().await;
}

/// A token bound to the viewer's address used to fail through any edge
/// (`address_mismatch`: the origin checked the edge's address and ignored
/// `Forwarded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_bound_token_works_through_a_trusted_edge_and_not_for_a_spoofer() {
    let setup = origin(&["127.0.0.1"]).await;
    let viewer = "127.0.0.2";
    let spoofer = "127.0.0.3";
    let token = setup.token(Duration::from_secs(600), Some("127.0.0.2/32"));
    let forged = [
        ("forwarded", "for=127.0.0.2"),
        ("x-forwarded-for", "127.0.0.2"),
    ];
    for with_keys in [false, true] {
        let edge = setup.edge(with_keys).await;
        // Every request names a file not yet at the edge, so the origin
        // decides (the keyless edge cannot check an address itself).
        let segment = |n: u32| format!("/s/{token}{}{n}.m4s", setup.segments);
        let (status, headers) = get_from(viewer, edge.address, &segment(1), &[]).await;
        assert_eq!(status, StatusCode::OK, "keys {with_keys}: {headers:?}");
        // The viewer's own forwarding headers change nothing.
        let (status, headers) = get_from(viewer, edge.address, &segment(2), &forged).await;
        assert_eq!(status, StatusCode::OK, "keys {with_keys}: {headers:?}");
        let (status, headers) = get_from(spoofer, edge.address, &segment(3), &forged).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "keys {with_keys}: {headers:?}"
        );
        assert_eq!(headers["kinema-auth-error"], "address_mismatch");
        let (status, headers) = get_from(spoofer, edge.address, &segment(4), &[]).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "keys {with_keys}: {headers:?}"
        );
        edge.stop().await;
    }
    // Straight to the origin: only the viewer; a spoofer is not a trusted
    // proxy, so what it forwards is not read.
    let origin = setup.origin.address;
    let master = format!("/s/{token}/v/secret/master.m3u8");
    let (status, _) = get_from(viewer, origin, &master, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers) = get_from(spoofer, origin, &master, &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["kinema-auth-error"], "address_mismatch");
    setup.origin.stop().await;
}

/// An edge with keys answered every token from the copy the first token
/// filled, with that token's freshness: a keyless cache below it kept a
/// short-lived token's URL as long as the long-lived token allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_cache_below_an_edge_with_keys_ends_with_each_token() {
    let setup = origin(&[]).await;
    let parent = setup.edge(true).await;
    let child = Edge::start(kinema_edge::Config {
        origin: vec![parent.url()],
        prefetch_segments: 0,
        token_skew: Duration::ZERO,
        ..kinema_edge::Config::default()
    })
    .await;
    let long = setup.token(Duration::from_secs(3600), None);
    let file = &format!("{}3.m4s", setup.segments);

    let (status, headers, _) = get(parent.address, &format!("/s/{long}{file}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert!(max_age(&headers) > 3000, "{headers:?}");
    // The parent answers the short token from the long one's copy, with
    // the short token's freshness, which is what the child keeps.
    let short = setup.token(Duration::from_secs(8), None);
    let short_path = format!("/s/{short}{file}");
    let (status, headers, _) = get(child.address, &short_path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert!(max_age(&headers) <= 8, "{headers:?}");
    assert!(cache_status(&headers).contains("stored"), "{headers:?}");
    let headers = until_status(child.address, &short_path, StatusCode::FORBIDDEN).await;
    assert_eq!(headers["kinema-auth-error"], "expired");
    let (status, _, _) = get(child.address, &format!("/s/{long}{file}"), &[]).await;
    assert_eq!(status, StatusCode::OK);

    child.stop().await;
    parent.stop().await;
    setup.origin.stop().await;
}

/// Prefetches went to the origin without the client's address, so the
/// next segment of an address-bound token was refused and never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_keys_prefetches_for_an_address_bound_token() {
    let setup = origin(&["127.0.0.1"]).await;
    let edge = Edge::start(kinema_edge::Config {
        origin: vec![setup.origin.url()],
        prefetch_segments: 1,
        keys: Some(setup.keys.clone()),
        token_skew: Duration::ZERO,
        ..kinema_edge::Config::default()
    })
    .await;
    let token = setup.token(Duration::from_secs(600), Some("127.0.0.2/32"));
    let (status, headers) = get_from(
        "127.0.0.2",
        edge.address,
        &format!("/s/{token}{}1.m4s", setup.segments),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    // Segment 1 and the prefetched segment 2.
    edge.wait_metric("kinema_edge_stored_total", 2).await;
    let (status, headers) = get_from(
        "127.0.0.2",
        edge.address,
        &format!("/s/{token}{}2.m4s", setup.segments),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    edge.stop().await;
    setup.origin.stop().await;
}
