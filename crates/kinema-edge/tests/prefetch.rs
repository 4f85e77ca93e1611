//! Playlist-aware prefetch over real HTTP: after segment n the edge fetches
//! the next few, but never past the last segment of the media playlist it
//! served, and never keeps an error a prefetch got (no client asked for
//! it: a 404 past a video's end stored by a prefetch would answer the
//! client who asks later, after the video is extended or replaced).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::scripted::{Origin, Reply, ok};
use common::{Edge, cache_status, get};
use http::StatusCode;

/// A VOD media playlist of three segments.
const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4.000000,\n1.m4s\n#EXTINF:4.000000,\n2.m4s\n#EXTINF:4.000000,\n3.m4s\n#EXT-X-ENDLIST\n";

/// An origin of one video with segments 1 to 3 behind `PLAYLIST`; any
/// other segment is a 404 a cache may keep for a minute.
async fn origin() -> Origin {
    Origin::start(|request, _| {
        let path = request.uri().path();
        let cacheable = [("cache-control", "max-age=60")];
        if path.ends_with("/index.m3u8") {
            return ok(&cacheable, PLAYLIST);
        }
        if ["/1.m4s", "/2.m4s", "/3.m4s"]
            .iter()
            .any(|segment| path.ends_with(segment))
        {
            return ok(&cacheable, "segment");
        }
        not_found()
    })
    .await
}

fn not_found() -> Reply {
    (
        StatusCode::NOT_FOUND,
        vec![("cache-control", "max-age=60".to_string())],
        Bytes::from_static(b"no such segment"),
    )
}

fn config(origin: &Origin, prefetch_segments: u32) -> kinema_edge::Config {
    kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments,
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    }
}

/// The edge fetched segments 4 and 5 of a three-segment video after
/// segment 3 was served, and stored the origin's 404s.
#[tokio::test]
async fn prefetch_stops_at_the_playlists_last_segment() {
    let origin = origin().await;
    let edge = Edge::start(config(&origin, 2)).await;
    let (status, _, _) = get(edge.address, "/v/a/360p/index.m3u8", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // The last segment: nothing after it to prefetch.
    let (status, _, _) = get(edge.address, "/v/a/360p/3.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // The first: segment 2 is prefetched (3 is stored already).
    let (status, _, _) = get(edge.address, "/v/a/360p/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    edge.wait_metric("kinema_edge_prefetches_total", 1).await;
    let (_, headers, _) = get(edge.address, "/v/a/360p/2.m4s", &[]).await;
    assert!(
        cache_status(&headers).contains("hit") || cache_status(&headers).contains("collapsed"),
        "{headers:?}"
    );
    assert_eq!(origin.count("/v/a/360p/2.m4s"), 1);
    assert_eq!(origin.count("/v/a/360p/4.m4s"), 0);
    assert_eq!(origin.count("/v/a/360p/5.m4s"), 0);
    assert_eq!(edge.metric("kinema_edge_prefetches_total").await, 1);
    edge.stop().await;
    origin.kill().await;
}

/// Without the playlist the edge cannot know where the video ends: it
/// prefetches, but a prefetch answered 404 leaves nothing stored.
#[tokio::test]
async fn a_prefetch_answered_with_an_error_is_not_stored() {
    let origin = origin().await;
    let edge = Edge::start(config(&origin, 1)).await;
    let (status, _, _) = get(edge.address, "/v/a/360p/3.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    edge.wait_metric("kinema_edge_prefetch_errors_total", 1)
        .await;
    assert_eq!(origin.count("/v/a/360p/4.m4s"), 1);
    let (status, headers, _) = get(
        edge.address,
        "/v/a/360p/4.m4s",
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{headers:?}");
    assert_eq!(
        cache_status(&headers),
        "kinema; detail=only-if-cached",
        "{headers:?}"
    );
    edge.stop().await;
    origin.kill().await;
}

/// A playlist the disk tier kept across a restart was never filled by the
/// new process: found on disk, it still tells where the video ends.
#[tokio::test]
async fn a_playlist_found_on_disk_after_a_restart_still_bounds_prefetch() {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin().await;
    let mut config = config(&origin, 2);
    config.cache_disk = Some(format!("{}:64MiB", dir.path().display()));
    let edge = Edge::start(config.clone()).await;
    // The second use admits it to disk.
    for _ in 0..2 {
        let (status, _, _) = get(edge.address, "/v/a/360p/index.m3u8", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    edge.wait_metric("kinema_edge_disk_objects", 1).await;
    edge.stop().await;

    let edge = Edge::start(config).await;
    let (_, headers, _) = get(edge.address, "/v/a/360p/index.m3u8", &[]).await;
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    let (status, _, _) = get(edge.address, "/v/a/360p/3.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(edge.address, "/v/a/360p/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // Segment 2 only: 3 is stored, and nothing comes after it.
    edge.wait_metric("kinema_edge_prefetches_total", 1).await;
    let (status, _, _) = get(edge.address, "/v/a/360p/2.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(origin.count("/v/a/360p/4.m4s"), 0);
    assert_eq!(origin.count("/v/a/360p/5.m4s"), 0);
    assert_eq!(edge.metric("kinema_edge_prefetches_total").await, 1);
    edge.stop().await;
    origin.kill().await;
}

/// An origin whose segments (`…/N.m4s`) and other files (`/filler/N`) are
/// 100,000 bytes each: ten fill 1 MiB past seven eighths.
async fn origin_of_large_objects() -> Origin {
    Origin::start(|_, _| {
        (
            StatusCode::OK,
            vec![("cache-control", "max-age=60".to_string())],
            Bytes::from(vec![b'x'; 100_000]),
        )
    })
    .await
}

/// A memory tier without room turns away the segments of a video watched
/// once: after a miss there the edge prefetches nothing (the next segment
/// would be fetched only to be turned away, then fetched again when asked
/// for); after a hit it still does, and with room it prefetches after a
/// miss as always.
#[tokio::test]
async fn a_full_memory_tier_prefetches_after_a_hit_and_not_after_a_miss() {
    let origin = origin_of_large_objects().await;
    let edge = Edge::start(kinema_edge::Config {
        cache_memory: bytesize::ByteSize::mib(1),
        ..config(&origin, 1)
    })
    .await;
    // Room to spare: a miss prefetches the next segment.
    let (status, _, _) = get(edge.address, "/v/a/360p/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    edge.wait_metric("kinema_edge_prefetches_total", 1).await;
    wait_for(|| origin.count("/v/a/360p/2.m4s") == 1).await;
    // Eight more objects that are no segments (nothing prefetched after
    // them): ten of 100 KB, past 7/8 of the 1 MiB tier.
    for n in 0..8 {
        let (status, _, _) = get(edge.address, &format!("/filler/{n}"), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let held = edge.metric("kinema_edge_memory_bytes").await;
    assert!(held >= 917_504, "{held} bytes held");
    // No room: a miss of another video prefetches nothing…
    let (_, headers, _) = get(edge.address, "/v/b/360p/1.m4s", &[]).await;
    assert!(cache_status(&headers).contains("fwd="), "{headers:?}");
    // … while a hit does.
    let (_, headers, _) = get(edge.address, "/v/a/360p/2.m4s", &[]).await;
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    edge.wait_metric("kinema_edge_prefetches_total", 2).await;
    wait_for(|| origin.count("/v/a/360p/3.m4s") == 1).await;
    assert_eq!(origin.count("/v/b/360p/2.m4s"), 0);
    assert_eq!(edge.metric("kinema_edge_prefetches_total").await, 2);
    edge.stop().await;
    origin.kill().await;
}

/// Polls `done` until it holds, for at most 20 s.
async fn wait_for(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
