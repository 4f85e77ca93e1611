//! The edge in front of the real origin (`kinema_origin::run`, what
//! `kinema serve` runs) serving a real CMAF video made by ffmpeg: a player's
//! walk (master → media playlist → init → segments) through the edge, a
//! second pass all hits, segments immutable, a seek on an uncached segment,
//! and a signed video whose differently signed URLs share one cache entry.
//! Token expiry and address-bound tokens through the edge are in
//! `signed_behind_edge.rs`.

mod common;
#[path = "common/library.rs"]
mod library;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{Edge, Service, cache_status, get};
use http::{HeaderMap, StatusCode};
use kinema_auth::keyring::KeyRing;
use kinema_auth::{Claims, TokenScope};
use kinema_core::{AccessPolicy, VideoId};
use library::{open, publish};

/// The URIs a playlist names (tags' `URI="…"` and plain lines), resolved
/// against the playlist's directory (RFC 3986 §5.2; all are relative).
fn playlist_uris(base: &str, playlist: &str) -> Vec<String> {
    let directory = &base[..base.rfind('/').unwrap() + 1];
    playlist
        .lines()
        .filter_map(|line| {
            if let Some(start) = line.find("URI=\"") {
                let rest = &line[start + 5..];
                Some(rest[..rest.find('"').unwrap()].to_string())
            } else if !line.is_empty() && !line.starts_with('#') {
                Some(line.to_string())
            } else {
                None
            }
        })
        .map(|uri| format!("{directory}{uri}"))
        .collect()
}

/// Walks a video as a player does: master, media playlist, init, segments.
/// Returns every path with its response.
async fn play(edge: SocketAddr, master: &str) -> Vec<(String, StatusCode, HeaderMap, Bytes)> {
    let mut fetched = Vec::new();
    let mut queue = vec![master.to_string()];
    while let Some(path) = queue.pop() {
        let (status, headers, body) = get(edge, &path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {headers:?}");
        if path.ends_with(".m3u8") {
            let uris = playlist_uris(&path, std::str::from_utf8(&body).unwrap());
            queue.extend(uris.into_iter().rev());
        }
        fetched.push((path, status, headers, body));
    }
    fetched
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cmaf_video_through_the_edge_then_all_hits_and_signed_urls_share() {
    let library = tempfile::tempdir().unwrap();
    let store = open(library.path()).await;
    let clip = publish(&*store, "clip", AccessPolicy::Public).await;
    publish(&*store, "secret", AccessPolicy::Signed).await;
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    let keys = library.path().join("keys.toml");
    ring.save(&keys).unwrap();

    let mut origin_config = kinema_origin::Config::new(library.path());
    origin_config.web_root = PathBuf::from("/nonexistent/kinema-web");
    origin_config.access_log = false;
    origin_config.prefetch = false;
    origin_config.keys = keys.clone();
    let origin: Service<kinema_origin::Error> =
        Service::spawn(|listener, shutdown| kinema_origin::run(origin_config, listener, shutdown))
            .await;
    let edge = Edge::start(kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments: 0,
        keys: Some(keys),
        ..kinema_edge::Config::default()
    })
    .await;

    // First pass: every object is a miss, fetched once and stored.
    let first = play(edge.address, "/v/clip/master.m3u8").await;
    let paths: Vec<&str> = first.iter().map(|(path, ..)| path.as_str()).collect();
    // The master at its stable URL leads into the generation.
    let generation = clip.generation;
    assert_eq!(
        paths,
        [
            "/v/clip/master.m3u8".to_string(),
            format!("/v/clip/g{generation}/v180/index.m3u8"),
            format!("/v/clip/g{generation}/v180/init.mp4"),
            format!("/v/clip/g{generation}/v180/1.m4s"),
            format!("/v/clip/g{generation}/v180/2.m4s"),
            format!("/v/clip/g{generation}/v180/3.m4s"),
            format!("/v/clip/g{generation}/v180/4.m4s"),
        ]
    );
    for (path, _, headers, body) in &first {
        let file = path.strip_prefix("/v/clip/").unwrap();
        let file = match file {
            "master.m3u8" => format!("g{generation}/master.m3u8"),
            pinned => pinned.to_string(),
        };
        let on_disk = std::fs::read(library.path().join("videos/clip").join(file)).unwrap();
        assert_eq!(body.as_ref(), on_disk, "{path}");
        let status = cache_status(headers);
        assert!(
            status.contains("fwd=uri-miss") && status.contains("stored"),
            "{path}: {status}"
        );
        if !path.ends_with(".m3u8") {
            // The origin marks media immutable; the edge passes that on.
            let cache_control = headers["cache-control"].to_str().unwrap();
            assert!(
                cache_control.contains("immutable"),
                "{path}: {cache_control}"
            );
        }
    }
    let origin_requests = edge.metric("kinema_edge_origin_requests_total").await;
    assert_eq!(origin_requests, 7);

    // Second pass: all hits, same bytes, no origin request.
    let second = play(edge.address, "/v/clip/master.m3u8").await;
    for ((path, _, _, first_body), (_, _, headers, body)) in first.iter().zip(&second) {
        assert_eq!(body, first_body, "{path}");
        assert!(
            cache_status(headers).contains("hit"),
            "{path}: {}",
            cache_status(headers)
        );
        assert!(headers.contains_key("age"), "{path}");
    }
    assert_eq!(
        edge.metric("kinema_edge_origin_requests_total").await,
        origin_requests
    );

    // A seek into a segment not yet at the edge: the real origin answers
    // the slice request with a 206 that holds the whole (small) segment,
    // which is stored whole.
    let clip2 = publish(&*store, "clip2", AccessPolicy::Public).await;
    let pinned = format!("g{}/v180/2.m4s", clip2.generation);
    let segment = std::fs::read(library.path().join("videos/clip2").join(&pinned)).unwrap();
    let seek = format!("/v/clip2/{pinned}");
    let (status, headers, body) = get(edge.address, &seek, &[("range", "bytes=100-199")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.as_ref(), &segment[100..200]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 100-199/{}", segment.len())
    );
    // The range was answered as soon as its bytes arrived, so the whole
    // segment is either stored already (a hit) or still filling, in which
    // case this request joins that one fill (collapsed): never a second
    // origin request.
    let (status, headers, body) = get(edge.address, &seek, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_ref(), segment);
    let status_line = cache_status(&headers);
    assert!(
        status_line.contains("hit") || status_line.contains("collapsed"),
        "{headers:?}"
    );

    // A signed video: two viewers' tokens, one cache entry per file.
    let sign = |session: &str| {
        let claims = Claims::new(
            TokenScope::video(&VideoId::new("secret").unwrap()),
            SystemTime::now() + Duration::from_secs(3600),
        )
        .session(session)
        .unwrap();
        kinema_auth::sign(&ring, &claims).unwrap()
    };
    let (viewer_one, viewer_two) = (sign("viewer-1"), sign("viewer-2"));
    assert_ne!(viewer_one, viewer_two);
    let (status, _, _) = get(edge.address, "/v/secret/master.m3u8", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let before = edge.metric("kinema_edge_origin_requests_total").await;
    let walk_one = play(
        edge.address,
        &format!("/s/{viewer_one}/v/secret/master.m3u8"),
    )
    .await;
    assert_eq!(walk_one.len(), 7);
    for (path, _, headers, _) in &walk_one {
        assert!(
            cache_status(headers).contains("fwd=uri-miss"),
            "{path}: {}",
            cache_status(headers)
        );
    }
    let after_one = edge.metric("kinema_edge_origin_requests_total").await;
    assert_eq!(after_one - before, 7);
    // The second viewer's walk: the relative URIs carry their own token,
    // and every file is the first viewer's cached copy.
    let walk_two = play(
        edge.address,
        &format!("/s/{viewer_two}/v/secret/master.m3u8"),
    )
    .await;
    for ((path, _, headers, body), (_, _, _, first_body)) in walk_two.iter().zip(&walk_one) {
        assert!(path.contains(&viewer_two), "{path}");
        assert!(
            cache_status(headers).contains("hit"),
            "{path}: {}",
            cache_status(headers)
        );
        assert_eq!(body, first_body, "{path}");
    }
    assert_eq!(
        edge.metric("kinema_edge_origin_requests_total").await,
        after_one
    );

    edge.stop().await;
    origin.stop().await;
}
