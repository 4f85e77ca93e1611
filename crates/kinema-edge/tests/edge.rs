//! The edge over real HTTP on loopback, in front of a small scriptable
//! origin (hyper) that counts the requests it receives: freshness and
//! validation, Vary, no-store/private, 304 merging, Age, only-if-cached,
//! CDN-Cache-Control, coalescing, stale-if-error, 502/504, purge,
//! invalidation, ranges, restart of the disk tier and signed URLs.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::scripted::{Origin, ok};
use common::{Edge, cache_status, get, request};
use http::{Method, StatusCode};
use tokio::net::TcpListener;

fn config(origin: &Origin) -> kinema_edge::Config {
    kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments: 0,
        purge_token: Some("secret".into()),
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    }
}

#[tokio::test]
async fn fresh_responses_are_hits_with_age_and_cache_status() {
    let origin = Origin::start(|_, _| {
        ok(
            &[("cache-control", "max-age=600"), ("age", "10")],
            "segment",
        )
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    let (status, headers, body) = get(edge.address, "/v/a/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"segment");
    assert_eq!(
        cache_status(&headers),
        "kinema; fwd=uri-miss; fwd-status=200; stored"
    );
    assert!(headers["via"].to_str().unwrap().contains("kinema"));
    let (status, headers, body) = get(edge.address, "/v/a/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"segment");
    assert!(
        cache_status(&headers).starts_with("kinema; hit; ttl="),
        "{headers:?}"
    );
    let age: u64 = headers["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 10, "age {age} lost the origin's Age");
    assert_eq!(origin.count("/v/a/1.m4s"), 1);
    // HEAD is answered from the stored GET.
    let (status, headers, body) = request(edge.address, "HEAD", "/v/a/1.m4s", &[], b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], "7");
    assert!(body.is_empty());
    assert_eq!(origin.count("/v/a/1.m4s"), 1);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn no_store_private_and_authorization_are_never_stored() {
    let origin = Origin::start(|request, _| match request.uri().path() {
        "/no-store" => ok(&[("cache-control", "no-store, max-age=600")], "a"),
        "/private" => ok(&[("cache-control", "private, max-age=600")], "b"),
        "/cookie" => ok(
            &[("cache-control", "max-age=600"), ("set-cookie", "s=1")],
            "c",
        ),
        _ => ok(&[("cache-control", "max-age=600")], "d"),
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    for path in ["/no-store", "/private", "/cookie"] {
        for _ in 0..2 {
            let (status, headers, _) = get(edge.address, path, &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                !cache_status(&headers).contains("stored"),
                "{path}: {headers:?}"
            );
        }
        assert_eq!(origin.count(path), 2, "{path} was stored");
    }
    for _ in 0..2 {
        get(edge.address, "/auth", &[("authorization", "Bearer x")]).await;
    }
    assert_eq!(origin.count("/auth"), 2);
    // A request no-store is not stored either.
    get(edge.address, "/req", &[("cache-control", "no-store")]).await;
    get(edge.address, "/req", &[]).await;
    assert_eq!(origin.count("/req"), 2);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn stale_responses_are_revalidated_and_304_headers_merged() {
    let origin = Origin::start(|request, nth| {
        if request
            .headers()
            .get("if-none-match")
            .is_some_and(|tag| tag == "\"v1\"")
        {
            return (
                StatusCode::NOT_MODIFIED,
                vec![
                    ("etag", "\"v1\"".into()),
                    ("cache-control", "max-age=600".into()),
                    ("x-version", format!("{nth}")),
                ],
                Bytes::new(),
            );
        }
        ok(
            &[
                ("cache-control", "max-age=0"),
                ("etag", "\"v1\""),
                ("x-version", "1"),
                ("content-type", "text/plain"),
            ],
            "body-v1",
        )
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    get(edge.address, "/p", &[]).await;
    let (status, headers, body) = get(edge.address, "/p", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"body-v1");
    assert_eq!(headers["x-version"], "2", "304 fields not merged");
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(
        cache_status(&headers),
        "kinema; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(origin.last_headers("/p")["if-none-match"], "\"v1\"");
    // Freshened to max-age=600 by the 304: now a hit.
    let (_, headers, _) = get(edge.address, "/p", &[]).await;
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(origin.count("/p"), 2);
    // Client conditionals are answered by the edge.
    let (status, _, body) = get(edge.address, "/p", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    // A request no-cache forces validation (fwd=request).
    let (_, headers, _) = get(edge.address, "/p", &[("cache-control", "no-cache")]).await;
    assert!(
        cache_status(&headers).contains("fwd=request"),
        "{headers:?}"
    );
    assert_eq!(origin.count("/p"), 3);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn vary_keeps_one_response_per_nominated_header_value() {
    let origin = Origin::start(|request, _| {
        let language = request
            .headers()
            .get("accept-language")
            .map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
        let body: &'static str = Box::leak(format!("lang={language}").into_boxed_str());
        ok(
            &[
                ("cache-control", "max-age=600"),
                ("vary", "Accept-Language"),
            ],
            body,
        )
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    let (_, _, body) = get(edge.address, "/v", &[("accept-language", "en")]).await;
    assert_eq!(&body[..], b"lang=en");
    let (_, headers, body) = get(edge.address, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(&body[..], b"lang=fr");
    assert!(
        cache_status(&headers).contains("fwd=vary-miss"),
        "{headers:?}"
    );
    let (_, headers, body) = get(edge.address, "/v", &[("accept-language", "en")]).await;
    assert_eq!(&body[..], b"lang=en");
    assert!(cache_status(&headers).contains("hit"));
    assert_eq!(origin.count("/v"), 2);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn only_if_cached_and_cdn_cache_control_precedence() {
    let origin = Origin::start(|_, _| {
        ok(
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600"),
            ],
            "targeted",
        )
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    let (status, _, _) = get(edge.address, "/c", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(origin.count("/c"), 0);
    get(edge.address, "/c", &[]).await;
    let (status, headers, body) =
        get(edge.address, "/c", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"targeted");
    assert!(cache_status(&headers).contains("hit"));
    assert_eq!(origin.count("/c"), 1);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn two_hundred_concurrent_misses_make_one_origin_request() {
    let segment: Bytes = (0..1_500_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let body = segment.clone();
    let origin = Origin::start(move |_, _| {
        (
            StatusCode::OK,
            vec![("cache-control", "max-age=600".into())],
            body.clone(),
        )
    })
    .await;
    origin.hold();
    let edge = Edge::start(config(&origin)).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let address = edge.address;
        requests.spawn(async move { get(address, "/v/a/720p/7.m4s", &[]).await });
    }
    // Every request is waiting on the one fill before the origin answers.
    edge.wait_metric("kinema_edge_coalesced_waiters_total", 199)
        .await;
    origin.release();
    let mut collapsed = 0;
    while let Some(result) = requests.join_next().await {
        let (status, headers, body) = result.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, segment);
        if cache_status(&headers).contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(origin.count("/v/a/720p/7.m4s"), 1);
    assert_eq!(collapsed, 199);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_is_down_and_502_otherwise() {
    let origin = Origin::start(|request, _| match request.uri().path() {
        "/sie" => ok(
            &[
                ("cache-control", "max-age=0, stale-if-error=3600"),
                ("etag", "\"a\""),
            ],
            "old",
        ),
        "/must" => ok(
            &[(
                "cache-control",
                "max-age=0, stale-if-error=3600, must-revalidate",
            )],
            "old",
        ),
        _ => ok(&[("cache-control", "max-age=0")], "old"),
    })
    .await;
    // Without the default grace, so that only stale-if-error allows stale.
    let edge = Edge::start(kinema_edge::Config {
        stale_grace: Duration::ZERO,
        ..config(&origin)
    })
    .await;
    for path in ["/sie", "/must", "/plain"] {
        get(edge.address, path, &[]).await;
    }
    origin.kill().await;
    let (status, headers, body) = get(edge.address, "/sie", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"old");
    assert!(
        cache_status(&headers).contains("stale-if-error"),
        "{headers:?}"
    );
    let (status, _, _) = get(edge.address, "/must", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let (status, headers, _) = get(edge.address, "/plain", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(cache_status(&headers).contains("origin-unreachable"));
    let (status, _, _) = get(edge.address, "/never-seen", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    edge.stop().await;
}

#[tokio::test]
async fn a_silent_origin_gives_504_and_a_5xx_gives_stale() {
    let origin = Origin::start(|request, nth| match (request.uri().path(), nth) {
        ("/flaky", 1) => ok(&[("cache-control", "max-age=0, stale-if-error=60")], "good"),
        ("/flaky", _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            vec![],
            Bytes::from_static(b"down"),
        ),
        _ => ok(&[], "late"),
    })
    .await;
    let mut config = config(&origin);
    config.origin_timeout = Duration::from_millis(300);
    let edge = Edge::start(config).await;
    get(edge.address, "/flaky", &[]).await;
    let (status, _, body) = get(edge.address, "/flaky", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"good");
    origin.hold();
    let (status, headers, _) = get(edge.address, "/slow", &[]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(cache_status(&headers).contains("origin-timeout"));
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn purge_hard_soft_and_prefix() {
    let origin = Origin::start(|_, nth| {
        let body: &'static str = Box::leak(format!("v{nth}").into_boxed_str());
        ok(
            &[
                ("cache-control", "max-age=600, stale-while-revalidate=600"),
                ("etag", "\"x\""),
            ],
            body,
        )
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    for path in ["/v/a/1.m4s", "/v/a/2.m4s", "/v/b/1.m4s"] {
        get(edge.address, path, &[]).await;
    }
    // Unauthorised purges are refused.
    let (status, _, _) = request(edge.address, "PURGE", "/v/a/1.m4s", &[], b"").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bearer = [("authorization", "Bearer secret")];
    // Hard purge of one URL: the next request goes to the origin.
    let (status, _, body) = request(edge.address, "PURGE", "/v/a/1.m4s", &bearer, b"").await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (_, _, body) = get(edge.address, "/v/a/1.m4s", &[]).await;
    assert_eq!(&body[..], b"v2");
    // Soft purge of a prefix: served stale (stale-while-revalidate) while
    // revalidated in the background.
    let purge = br#"{"url": "/v/a/", "prefix": true, "soft": true}"#;
    let (status, _, body) = request(edge.address, "POST", "/_kinema/purge", &bearer, purge).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert!(
        String::from_utf8_lossy(&body).contains("\"purged\":2"),
        "{body:?}"
    );
    let (_, headers, body) = get(edge.address, "/v/a/2.m4s", &[]).await;
    assert_eq!(&body[..], b"v1");
    assert!(
        cache_status(&headers).contains("stale-while-revalidate"),
        "{headers:?}"
    );
    // Hard prefix purge leaves other videos alone.
    let purge = br#"{"url": "/v/a/", "prefix": true}"#;
    request(edge.address, "POST", "/_kinema/purge", &bearer, purge).await;
    let (_, headers, _) = get(edge.address, "/v/b/1.m4s", &[]).await;
    assert!(cache_status(&headers).contains("hit"));
    let (_, headers, _) = get(edge.address, "/v/a/1.m4s", &[]).await;
    assert!(cache_status(&headers).contains("uri-miss"), "{headers:?}");
    let (status, _, _) = request(
        edge.address,
        "POST",
        "/_kinema/purge",
        &bearer,
        b"{\"uri\": 1}",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_target_and_location() {
    let origin = Origin::start(|request, _| {
        if request.method() == Method::POST {
            return (
                StatusCode::CREATED,
                vec![("location", "/items/2".into())],
                Bytes::new(),
            );
        }
        ok(&[("cache-control", "max-age=600")], "item")
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    get(edge.address, "/items/1", &[]).await;
    get(edge.address, "/items/2", &[]).await;
    let (status, headers, _) = request(edge.address, "POST", "/items/1", &[], b"data").await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(cache_status(&headers).contains("fwd=bypass"));
    get(edge.address, "/items/1", &[]).await;
    get(edge.address, "/items/2", &[]).await;
    assert_eq!(origin.count("/items/1"), 3);
    assert_eq!(origin.count("/items/2"), 2);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn ranges_are_served_from_the_cached_object() {
    let origin = Origin::start(|_, _| {
        ok(
            &[("cache-control", "max-age=600"), ("etag", "\"r\"")],
            "0123456789",
        )
    })
    .await;
    let edge = Edge::start(config(&origin)).await;
    // A range on a miss asks the origin for the aligned slice it starts in,
    // not waiting for the whole object; this origin ignores ranges and answers 200, which is the
    // whole object: stored, and the range cut from it.
    let (status, headers, body) = get(edge.address, "/r", &[("range", "bytes=2-5")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], b"2345");
    assert_eq!(headers["content-range"], "bytes 2-5/10");
    assert_eq!(origin.last_headers("/r")["range"], "bytes=0-4194303");
    let (status, _, body) = get(edge.address, "/r", &[("range", "bytes=-3")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&body[..], b"789");
    let (status, headers, _) = get(edge.address, "/r", &[("range", "bytes=50-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], "bytes */10");
    assert_eq!(origin.count("/r"), 1);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn the_disk_tier_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let origin =
        Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "kept on disk")).await;
    let mut config = config(&origin);
    config.cache_disk = Some(format!("{}:64MiB", dir.path().display()));
    let edge = Edge::start(config.clone()).await;
    get(edge.address, "/v/a/init.mp4", &[]).await;
    // The second use admits it to disk.
    get(edge.address, "/v/a/init.mp4", &[]).await;
    edge.wait_metric("kinema_edge_disk_objects", 1).await;
    edge.stop().await;
    origin.kill().await;

    let edge = Edge::start(config).await;
    let (status, headers, body) = get(edge.address, "/v/a/init.mp4", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"kept on disk");
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(
        edge.metric("kinema_edge_hits_total{tier=\"disk\"}").await,
        1
    );
    edge.stop().await;
}

#[tokio::test]
async fn differently_signed_urls_share_one_cache_entry() {
    use kinema_auth::keyring::KeyRing;
    use std::time::SystemTime;
    let dir = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    let keys = dir.path().join("keys.toml");
    ring.save(&keys).unwrap();
    let sign = |session: &str| {
        let claims = kinema_auth::Claims::new(
            kinema_auth::TokenScope::new("/v/abc/").unwrap(),
            SystemTime::now() + Duration::from_secs(3600),
        )
        .session(session)
        .unwrap();
        kinema_auth::sign(&ring, &claims).unwrap()
    };
    let origin =
        Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "signed segment")).await;
    let mut config = config(&origin);
    config.keys = Some(keys);
    let edge = Edge::start(config).await;
    let (first, second) = (sign("viewer-1"), sign("viewer-2"));
    assert_ne!(first, second);
    let (status, _, _) = get(edge.address, &format!("/s/{first}/v/abc/360p/1.m4s"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) =
        get(edge.address, &format!("/s/{second}/v/abc/360p/1.m4s"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"signed segment");
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    // A bad token is refused at the edge; an unsigned request does not get
    // the signed copy.
    let (status, headers, _) =
        get(edge.address, &format!("/s/{first}x/v/abc/360p/1.m4s"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.contains_key(kinema_auth::REFUSAL_HEADER));
    let (status, headers, _) =
        get(edge.address, &format!("/s/{first}/v/other/360p/1.m4s"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers[kinema_auth::REFUSAL_HEADER], "out_of_scope");
    let (_, headers, _) = get(edge.address, "/v/abc/360p/1.m4s", &[]).await;
    assert!(cache_status(&headers).contains("uri-miss"));
    let signed_fetches: usize = origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, uri, _)| uri.starts_with("/s/"))
        .count();
    assert_eq!(signed_fetches, 1);
    edge.stop().await;
    origin.kill().await;
}

#[tokio::test]
async fn segments_are_prefetched_and_failed_origins_retried_on_the_next() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "seg")).await;
    let mut config = config(&origin);
    config.origin = vec![dead_url, origin.url()];
    config.prefetch_segments = 2;
    let edge = Edge::start(config).await;
    for _ in 0..2 {
        let (status, _, _) = get(edge.address, "/v/a/360p/5.m4s", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    edge.wait_metric("kinema_edge_prefetches_total", 2).await;
    edge.wait_metric("kinema_edge_stored_total", 3).await;
    let (_, headers, _) = get(edge.address, "/v/a/360p/7.m4s", &[]).await;
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(origin.count("/v/a/360p/6.m4s"), 1);
    let counts: HashMap<&str, usize> = ["/v/a/360p/5.m4s", "/v/a/360p/7.m4s"]
        .into_iter()
        .map(|path| (path, origin.count(path)))
        .collect();
    assert_eq!(counts["/v/a/360p/5.m4s"], 1);
    assert_eq!(counts["/v/a/360p/7.m4s"], 1);
    edge.stop().await;
    origin.kill().await;
}

/// The edge judges freshness by the clock its parts give it, so a test moves
/// time instead of sleeping: a response fresh for a minute is a hit until
/// that clock has passed the minute, then it is revalidated.
#[tokio::test]
async fn freshness_follows_the_clock_the_edge_is_given() {
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=60")], "segment")).await;
    let config = config(&origin);
    let now = Arc::new(Mutex::new(std::time::SystemTime::now()));
    let mut parts = kinema_edge::EdgeParts::open(&config).await.unwrap();
    parts.clock = kinema_http::Clock::from_fn({
        let now = now.clone();
        move || *now.lock().unwrap()
    });
    let edge =
        Edge::spawn(|listener, shutdown| kinema_edge::run_with(config, parts, listener, shutdown))
            .await;
    get(edge.address, "/v/a/1.m4s", &[]).await;
    *now.lock().unwrap() += Duration::from_secs(59);
    let (_, headers, _) = get(edge.address, "/v/a/1.m4s", &[]).await;
    assert!(
        cache_status(&headers).starts_with("kinema; hit; ttl="),
        "{headers:?}"
    );
    assert_eq!(origin.count("/v/a/1.m4s"), 1);
    *now.lock().unwrap() += Duration::from_secs(2);
    let (status, headers, body) = get(edge.address, "/v/a/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"segment");
    assert!(
        cache_status(&headers).starts_with("kinema; fwd=stale"),
        "{headers:?}"
    );
    assert_eq!(origin.count("/v/a/1.m4s"), 2);
    edge.stop().await;
    origin.kill().await;
}
