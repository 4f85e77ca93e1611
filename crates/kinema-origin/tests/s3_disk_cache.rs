//! An origin serving a library in a real S3-protocol server (s3s-fs on
//! loopback) through its disk cache: a segment the memory cache cannot hold
//! is read from the store once and from local disk after; an origin
//! restarted over the same disk cache keeps serving what it holds with the
//! store stopped, and answers what it does not with a prompt 503 and
//! `Retry-After`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use common::*;
use http::{Method, StatusCode};
use kinema_http::Clock;
use kinema_origin::{Config, DiskCache, OriginParts};
use kinema_store::s3::{S3Config, S3Credentials, S3Location};
use kinema_store::{S3Store, Store, StoreOptions};
use kinema_test_support::S3Server;

const BUCKET: &str = "media";
const LIBRARY: &str = "s3://media/lib";

/// s3s-fs with the bucket, a store on [`LIBRARY`], and the fixture video
/// published to it.
async fn s3_library(scratch: &Path) -> (S3Server, Arc<dyn Store>) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let config = S3Config {
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        credentials: Some(S3Credentials::new(
            server.access_key(),
            server.secret_key(),
            None,
        )),
        ..S3Config::new(S3Location::parse(LIBRARY).unwrap())
    };
    let store: Arc<dyn Store> = Arc::new(
        S3Store::open(config, StoreOptions::default())
            .await
            .unwrap(),
    );
    publish_fixture(&*store, &scratch.join("staged"), VIDEO).await;
    (server, store)
}

/// An origin over `store` with its disk cache in `disk_dir` and a memory
/// cache too small for a segment, so every segment request misses memory.
async fn origin(store: Arc<dyn Store>, scratch: &Path, disk_dir: &Path) -> Server {
    origin_with(Config::new(LIBRARY), store, scratch, disk_dir).await
}

/// [`origin`] with other settings of `config`.
async fn origin_with(
    mut config: Config,
    store: Arc<dyn Store>,
    scratch: &Path,
    disk_dir: &Path,
) -> Server {
    config.web_root = "/nonexistent/kinema-web".into();
    config.cache_size = ByteSize::kib(1);
    config.disk_cache = Some(disk_dir.to_path_buf());
    // The manifest stays trusted while the store is stopped: what is
    // tested is the files.
    config.manifest_refresh = Duration::from_secs(3600);
    let disk_cache = DiskCache::open(&config.disk_cache_dir(), config.disk_cache_size.as_u64())
        .await
        .unwrap();
    let workspace = kinema_media::Workspace::open(scratch.join("ingest")).unwrap();
    let parts =
        OriginParts::with_disk_cache(&config, store, Some(disk_cache), workspace, Clock::system());
    Server::start_with(config, parts).await
}

/// The fixture's bytes of `path`.
fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixture_template().join("video").join(path)).unwrap()
}

#[tokio::test]
async fn a_segment_is_read_from_s3_once_then_from_the_disk_cache() {
    let scratch = tempfile::tempdir().unwrap();
    let disk_dir = scratch.path().join("kinema-cache");
    let (_server, store) = s3_library(scratch.path()).await;
    let origin = origin(store, scratch.path(), &disk_dir).await;
    let segment = fixture("v180/1.m4s");
    assert!(segment.len() as u64 > ByteSize::kib(1).as_u64());

    let first = get(&origin, Protocol::Http1, "/v/clip/v180/1.m4s").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, segment);
    // The segment and, prefetched, the next one: each read from the store
    // once and kept on disk.
    eventually("two files on disk", async || {
        metric(&origin, "kinema_origin_disk_cache_files").await == 2.0
    })
    .await;
    assert_eq!(
        metric(&origin, "kinema_origin_store_reads_total").await,
        2.0
    );
    assert_eq!(
        metric(&origin, "kinema_origin_disk_cache_hits_total").await,
        0.0
    );

    // Not in memory (it does not fit; the scrape above let the memory cache
    // drop it): from disk, sent by sendfile from the disk cache's file.
    let again = get(&origin, Protocol::Http1, "/v/clip/v180/1.m4s").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, segment);
    assert!(metric(&origin, "kinema_origin_disk_cache_hits_total").await >= 1.0);
    assert_eq!(
        metric(&origin, "kinema_origin_store_reads_total").await,
        2.0
    );
    // As bytes over HTTP/2, and ranges of it over both.
    for protocol in PROTOCOLS {
        let whole = get(&origin, protocol, "/v/clip/v180/1.m4s").await;
        assert_eq!(whole.body, segment, "{protocol:?}");
        let range = send(
            &origin,
            protocol,
            Method::GET,
            "/v/clip/v180/1.m4s",
            &[("range", "bytes=100-1099")],
        )
        .await;
        assert_eq!(range.status, StatusCode::PARTIAL_CONTENT, "{protocol:?}");
        assert_eq!(range.body, segment[100..1100], "{protocol:?}");
    }
    // The prefetched segment 2 comes from disk too (and prefetches 3).
    let prefetched = get(&origin, Protocol::Http1, "/v/clip/v180/2.m4s").await;
    assert_eq!(prefetched.body, fixture("v180/2.m4s"));
    eventually("segment 3 prefetched to disk", async || {
        metric(&origin, "kinema_origin_disk_cache_files").await == 3.0
    })
    .await;
    // Each segment was read from the store once.
    assert_eq!(
        metric(&origin, "kinema_origin_store_reads_total").await,
        3.0
    );
    let bytes = metric(&origin, "kinema_origin_disk_cache_bytes").await;
    assert!(bytes > segment.len() as f64, "{bytes}");

    // Concurrent misses of a file nobody fetched share one store read, and
    // whoever comes after it finds the file on disk.
    let last = fixture("v180/4.m4s");
    let requests = (0..8).map(|_| get(&origin, Protocol::Http1, "/v/clip/v180/4.m4s"));
    for reply in futures::future::join_all(requests).await {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, last);
    }
    assert_eq!(
        metric(&origin, "kinema_origin_store_reads_total").await,
        4.0
    );
    origin.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_origin_serves_its_disk_cache_with_s3_stopped_and_503s_the_rest() {
    let scratch = tempfile::tempdir().unwrap();
    let disk_dir = scratch.path().join("kinema-cache");
    let (mut server, store) = s3_library(scratch.path()).await;
    let first = origin(store.clone(), scratch.path(), &disk_dir).await;
    let segment = fixture("v180/1.m4s");
    assert_eq!(
        get(&first, Protocol::Http1, "/v/clip/v180/1.m4s")
            .await
            .body,
        segment
    );
    eventually("segments 1 and 2 on disk", async || {
        metric(&first, "kinema_origin_disk_cache_files").await == 2.0
    })
    .await;
    first.stop().await.unwrap();

    // A new process's origin over the same directory, which learns the
    // video's manifest while the store is up (the HEAD's file is on disk)...
    let second = origin(store, scratch.path(), &disk_dir).await;
    let head = send(
        &second,
        Protocol::Http1,
        Method::HEAD,
        "/v/clip/v180/1.m4s",
        &[],
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(metric(&second, "kinema_origin_disk_cache_files").await, 2.0);
    // ...then loses the store.
    server.stop();

    let cached = get(&second, Protocol::Http1, "/v/clip/v180/1.m4s").await;
    assert_eq!(cached.status, StatusCode::OK);
    assert_eq!(cached.body, segment);
    assert_eq!(
        metric(&second, "kinema_origin_store_reads_total").await,
        0.0
    );
    assert!(metric(&second, "kinema_origin_disk_cache_hits_total").await >= 1.0);

    // Never fetched: the store is asked, fails, and the answer says so
    // within the store's own bounded retries (the timeout is only the
    // test's guard against a hang).
    let uncached = tokio::time::timeout(
        Duration::from_secs(60),
        get(&second, Protocol::Http1, "/v/clip/v180/4.m4s"),
    )
    .await
    .expect("an uncached file with the store down is answered, not left hanging");
    assert_eq!(uncached.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = uncached.header("retry-after").parse().unwrap();
    assert!(retry_after > 0);
    assert_eq!(uncached.header("cache-control"), "no-store");
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_disk_cache_file_that_no_longer_matches_its_checksum_is_fetched_again() {
    let scratch = tempfile::tempdir().unwrap();
    let disk_dir = scratch.path().join("kinema-cache");
    let (_server, store) = s3_library(scratch.path()).await;
    let mut config = Config::new(LIBRARY);
    config.prefetch = false;
    let origin = origin_with(config, store, scratch.path(), &disk_dir).await;
    let segment = fixture("v180/1.m4s");
    assert_eq!(
        get(&origin, Protocol::Http1, "/v/clip/v180/1.m4s")
            .await
            .body,
        segment
    );
    // Its one file in the disk cache: a byte of the body flips.
    let file = std::fs::read_dir(&disk_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "obj"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();

    // The scrape lets the memory cache drop what it cannot hold.
    assert_eq!(
        metric(&origin, "kinema_origin_store_reads_total").await,
        1.0
    );
    let again = get(&origin, Protocol::Http1, "/v/clip/v180/1.m4s").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, segment);
    assert_eq!(
        metric(&origin, "kinema_origin_store_reads_total").await,
        2.0
    );
    assert_eq!(
        metric(&origin, "kinema_origin_disk_cache_hits_total").await,
        0.0
    );
    // Written again, intact.
    let third = get(&origin, Protocol::Http1, "/v/clip/v180/1.m4s").await;
    assert_eq!(third.body, segment);
    assert_eq!(
        metric(&origin, "kinema_origin_disk_cache_hits_total").await,
        1.0
    );
    origin.stop().await.unwrap();
}
