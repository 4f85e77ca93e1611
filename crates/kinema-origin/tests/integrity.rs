//! Bytes that differ from the manifest's checksums are never served: not
//! when a file is damaged before it is read, not when it is written after
//! it was cached, not through another video holding the same content, and
//! not when it is too large to cache (the scrub finds it).

mod common;

use common::*;
use http::StatusCode;

const SEGMENT: &str = "v180/2.m4s";

/// Flips one bit of a published file in place.
fn flip_byte(path: &std::path::Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 1], offset).unwrap();
}

#[tokio::test]
async fn a_byte_flipped_on_disk_is_refused_not_served_under_its_etag() {
    let library = Library::new().await;
    for path in [SEGMENT, "master.m3u8", "v180/init.mp4"] {
        flip_byte(&library.file(path), 10);
    }
    let server = Server::start(config(&library)).await;
    for protocol in PROTOCOLS {
        for path in [SEGMENT, "master.m3u8", "v180/init.mp4"] {
            let reply = get(&server, protocol, &format!("/v/clip/{path}")).await;
            assert_eq!(
                reply.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{protocol:?} {path}"
            );
            assert!(reply.headers.get("etag").is_none(), "{protocol:?} {path}");
            assert_eq!(reply.header("cache-control"), "no-store");
        }
    }
    assert!(metric(&server, "kinema_origin_checksum_mismatches_total").await >= 6.0);
    assert_eq!(metric(&server, "kinema_origin_cache_entries").await, 0.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_written_after_it_was_cached_is_sent_as_checked_over_both_protocols() {
    let library = Library::new().await;
    let original = library.read(SEGMENT);
    // Dated in the past, so the write below changes the modification time
    // even within the clock's granularity.
    std::fs::File::options()
        .write(true)
        .open(library.file(SEGMENT))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    let server = Server::start(config(&library)).await;
    let target = format!("/v/clip/{SEGMENT}");
    assert_eq!(get(&server, Protocol::Http1, &target).await.body, original);
    flip_byte(&library.file(SEGMENT), 100);
    for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Http1] {
        let reply = get(&server, protocol, &target).await;
        assert_eq!(reply.status, StatusCode::OK, "{protocol:?}");
        assert!(
            reply.body == original,
            "{protocol:?} sent the bytes written after the check"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_intact_copy_is_served_when_another_video_s_same_content_is_corrupt() {
    let library = Library::new().await;
    library.publish("twin").await;
    let original = library.read(SEGMENT);
    flip_byte(&library.file(SEGMENT), 50);
    let server = Server::start(config(&library)).await;
    let (clip, twin) = (format!("/v/clip/{SEGMENT}"), format!("/v/twin/{SEGMENT}"));
    for protocol in PROTOCOLS {
        // Both at once, so their misses may share one read of the content.
        let (corrupt, intact) =
            tokio::join!(get(&server, protocol, &clip), get(&server, protocol, &twin),);
        assert_eq!(intact.status, StatusCode::OK, "{protocol:?}");
        assert!(intact.body == original, "{protocol:?}");
        // Once the intact copy is cached, the content is the same bytes
        // whichever video names it; before, the corrupt one is refused.
        assert!(
            corrupt.status == StatusCode::INTERNAL_SERVER_ERROR
                || (corrupt.status == StatusCode::OK && corrupt.body == original),
            "{protocol:?}: {}",
            corrupt.status
        );
    }
    let reply = get(&server, Protocol::Http1, &format!("/v/twin/{SEGMENT}")).await;
    assert!(reply.body == original);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_file_in_a_fresh_cache_is_refused_and_its_intact_twin_served() {
    let library = Library::new().await;
    library.publish("twin").await;
    let original = library.read(SEGMENT);
    flip_byte(&library.file(SEGMENT), 50);
    let server = Server::start(config(&library)).await;
    for protocol in PROTOCOLS {
        let reply = get(&server, protocol, &format!("/v/clip/{SEGMENT}")).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    for protocol in PROTOCOLS {
        let reply = get(&server, protocol, &format!("/v/twin/{SEGMENT}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body == original);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_scrub_finds_a_corrupt_streamed_file_which_is_then_refused_until_repaired() {
    let library = Library::new().await;
    let original = library.read(SEGMENT);
    let mut config = config(&library);
    // Streamed: too large to cache, so only the scrub can check it.
    config.max_cached_file_size = bytesize::ByteSize::kib(8);
    config.scrub_rate = bytesize::ByteSize::mib(64);
    let server = Server::start(config).await;
    let target = format!("/v/clip/{SEGMENT}");
    assert_eq!(get(&server, Protocol::Http1, &target).await.body, original);
    flip_byte(&library.file(SEGMENT), 1000);
    eventually("the scrub to find the corrupt file", async || {
        metric(&server, "kinema_origin_corrupt_files").await == 1.0
    })
    .await;
    assert!(metric(&server, "kinema_origin_checksum_mismatches_total").await >= 1.0);
    for protocol in PROTOCOLS {
        let reply = get(&server, protocol, &target).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{protocol:?}"
        );
    }
    // Other files are untouched.
    assert_eq!(
        get(&server, Protocol::Http1, "/v/clip/v180/3.m4s")
            .await
            .status,
        StatusCode::OK
    );
    std::fs::write(library.file(SEGMENT), &original).unwrap();
    eventually("the scrub to find the file repaired", async || {
        metric(&server, "kinema_origin_corrupt_files").await == 0.0
    })
    .await;
    let reply = get(&server, Protocol::Http2, &target).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body == original);
    assert!(metric(&server, "kinema_origin_scrub_bytes_total").await > 0.0);
    server.stop().await.unwrap();
}
