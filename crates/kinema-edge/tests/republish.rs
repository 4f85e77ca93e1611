//! A video id reused for other content, through the edge in front of the
//! real origin. Segments were `immutable` for a year at URLs without a
//! generation: deleting a video and uploading another under the same id left
//! the edge serving the old init and segments beside the new playlists, two
//! videos mixed in one stream. Every publish is now a generation whose URLs
//! are its own; the stable URLs revalidate.

mod common;
#[path = "common/library.rs"]
mod library;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Edge, Service, get};
use http::StatusCode;
use kinema_core::{AccessPolicy, Manifest, VideoId};
use kinema_store::StoreOptions;
use library::{Clip, open, open_with, publish_clip};

const ID: &str = "reused";

/// The real origin over `library`, telling caches to keep playlists (and
/// every stable URL) one second, and noticing store changes made behind its
/// back within a fifth of one.
async fn origin(library: &Path) -> Service<kinema_origin::Error> {
    let mut config = kinema_origin::Config::new(library);
    config.web_root = PathBuf::from("/nonexistent/kinema-web");
    config.access_log = false;
    config.prefetch = false;
    config.manifest_max_age = Duration::from_secs(1);
    config.manifest_refresh = Duration::from_millis(200);
    Service::spawn(|listener, shutdown| kinema_origin::run(config, listener, shutdown)).await
}

async fn edge(origin: &Service<kinema_origin::Error>) -> Edge {
    Edge::start(kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments: 0,
        ..kinema_edge::Config::default()
    })
    .await
}

/// What the store holds for a file of `manifest`'s generation: what a
/// viewer of that generation must be sent.
fn stored(library: &Path, manifest: &Manifest, path: &str) -> Vec<u8> {
    let key = kinema_store::layout::object_key(
        &manifest.id,
        manifest.generation,
        &kinema_core::ObjectPath::new(path).unwrap(),
    );
    std::fs::read(library.join(key)).unwrap()
}

/// The variant URI of the master playlist (the fixture has one).
fn variant(master: &[u8]) -> String {
    std::str::from_utf8(master)
        .unwrap()
        .lines()
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .unwrap()
        .to_string()
}

async fn fetch(edge: SocketAddr, path: &str) -> Bytes {
    let (status, headers, body) = get(edge, path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{path}: {headers:?}");
    body
}

/// A player's start through the edge: the master at its stable URL, then
/// the media playlist, init and first segment it points to, each checked
/// against what the store holds for `manifest`'s generation.
async fn play(edge: SocketAddr, library: &Path, manifest: &Manifest) {
    let master = fetch(edge, &format!("/v/{ID}/master.m3u8")).await;
    assert_eq!(master, stored(library, manifest, "master.m3u8"));
    let pinned = format!("g{}/v180/index.m3u8", manifest.generation);
    assert_eq!(variant(&master), pinned);
    let media = fetch(edge, &format!("/v/{ID}/{pinned}")).await;
    assert_eq!(media, stored(library, manifest, "v180/index.m3u8"));
    for file in ["v180/init.mp4", "v180/1.m4s"] {
        let body = fetch(edge, &format!("/v/{ID}/g{}/{file}", manifest.generation)).await;
        assert_eq!(body, stored(library, manifest, file), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_deleted_and_uploaded_again_under_its_id_is_never_mixed_with_the_old_one() {
    let library = tempfile::tempdir().unwrap();
    let store = open(library.path()).await;
    let first = publish_clip(&*store, ID, AccessPolicy::Public, Clip::Test).await;
    let origin = origin(library.path()).await;
    let edge = edge(&origin).await;

    play(edge.address, library.path(), &first).await;
    // The old generation-less media URLs (the web UI's, and players given
    // a path by hand) keep working, at the current generation.
    let stable_init = format!("/v/{ID}/v180/init.mp4");
    assert_eq!(
        fetch(edge.address, &stable_init).await,
        stored(library.path(), &first, "v180/init.mp4")
    );

    let files = ["master.m3u8", "v180/init.mp4", "v180/1.m4s"];
    let first_files = files.map(|file| stored(library.path(), &first, file));
    store.unpublish(&VideoId::new(ID).unwrap()).await.unwrap();
    let second = publish_clip(&*store, ID, AccessPolicy::Public, Clip::Bars).await;
    assert!(second.generation > first.generation);
    for (file, first_bytes) in files.iter().zip(&first_files) {
        assert_ne!(
            first_bytes,
            &stored(library.path(), &second, file),
            "the two videos must differ in {file} for this test to mean anything"
        );
    }

    // Past the playlists' max-age (1 s) the edge asks the origin again, and
    // everything a player follows is the new video's; the stable init URL
    // too, which was cached for a year before.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let master = fetch(edge.address, &format!("/v/{ID}/master.m3u8")).await;
        let init = fetch(edge.address, &stable_init).await;
        if master == stored(library.path(), &second, "master.m3u8")
            && init == stored(library.path(), &second, "v180/init.mp4")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge still serves the deleted video's master or init"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    play(edge.address, library.path(), &second).await;

    edge.stop().await;
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_generation_stays_servable_for_its_grace_and_is_gone_after() {
    let library = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(3);
    let store = open_with(
        library.path(),
        StoreOptions {
            retired_grace: grace,
        },
    )
    .await;
    let old = publish_clip(&*store, ID, AccessPolicy::Public, Clip::Test).await;
    let origin = origin(library.path()).await;
    let edge = edge(&origin).await;
    play(edge.address, library.path(), &old).await;

    // Replaced (no unpublish): a player that loaded the old playlists goes
    // on fetching the old generation's segments, at their own URLs.
    let new = publish_clip(&*store, ID, AccessPolicy::Public, Clip::Bars).await;
    let old_segment = |n: u32| format!("/v/{ID}/g{}/v180/{n}.m4s", old.generation);
    assert_eq!(
        fetch(edge.address, &old_segment(2)).await,
        stored(library.path(), &old, "v180/2.m4s")
    );
    let direct = get(origin.address, &old_segment(3), &[]).await;
    assert_eq!(direct.0, StatusCode::OK);
    assert_eq!(direct.2, stored(library.path(), &old, "v180/3.m4s"));

    // Past the grace (counted from the new generation), collection (at the
    // next publish, unpublish or start) deletes it, and the origin stops
    // serving it; the new generation plays on.
    let grace_ends = new.generation + grace.as_millis() as u64;
    let now = kinema_store::layout::unix_millis(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(grace_ends.saturating_sub(now) + 50)).await;
    let collected = store.collect_retired().await.unwrap();
    assert_eq!(collected.len(), 1, "{collected:?}");
    assert_eq!(collected[0].generation, old.generation);
    assert!(
        !library
            .path()
            .join(
                kinema_store::layout::generation_prefix(&old.id, old.generation)
                    .trim_end_matches('/')
            )
            .exists()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(origin.address, &old_segment(3), &[]).await.0 != StatusCode::NOT_FOUND {
        assert!(
            Instant::now() < deadline,
            "a collected generation is still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, _) = get(edge.address, &old_segment(4), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    play(edge.address, library.path(), &new).await;

    edge.stop().await;
    origin.stop().await;
}
