//! The S3 backend against a real S3-protocol server (s3s-fs on loopback):
//! publish, reads, listing, multipart uploads, failed publishes and their
//! leftovers, misconfiguration at open, and a store that goes down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kinema_core::{AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, ObjectPath, VideoId};
use kinema_store::s3::{S3Config, S3Credentials, S3Location};
use kinema_store::{S3Store, Store, StoreError, StoreOptions, describe_files, layout};
use kinema_test_support::S3Server;

const BUCKET: &str = "media";
const PREFIX: &str = "kinema/lib";

fn id(name: &str) -> VideoId {
    VideoId::new(name).unwrap()
}

fn object(path: &str) -> ObjectPath {
    ObjectPath::new(path).unwrap()
}

fn config(server: &S3Server, library: &str) -> S3Config {
    S3Config {
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        credentials: Some(S3Credentials::new(
            server.access_key(),
            server.secret_key(),
            None,
        )),
        ..S3Config::new(S3Location::parse(library).unwrap())
    }
}

/// A server with the bucket, and a store on `s3://media/kinema/lib`.
async fn start() -> (S3Server, S3Store) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let store = S3Store::open(
        config(&server, &format!("s3://{BUCKET}/{PREFIX}")),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    (server, store)
}

fn now_ms() -> u64 {
    layout::unix_millis(std::time::SystemTime::now())
}

/// Stages `files` (path, bytes) in a new directory under `root`.
fn stage(root: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let staged = tempfile::Builder::new()
        .prefix("staged-")
        .tempdir_in(root)
        .unwrap()
        .keep();
    for (path, bytes) in files {
        let path = staged.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    staged
}

async fn manifest_for(name: &str, generation: u64, staged: &Path) -> Manifest {
    Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id(name),
        generation,
        title: name.into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 4.0,
        published_at_unix: 1,
        access: AccessPolicy::Public,
        renditions: vec![],
        files: describe_files(staged).await.unwrap(),
    }
}

/// Deterministic bytes that no part boundary can hide a shift in.
fn pattern(length: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every object file s3s-fs holds for the library, relative to its prefix
/// (s3s-fs keeps one file per key under the bucket's directory).
fn stored_keys(server: &S3Server) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let base = server.bucket_dir(BUCKET).join(PREFIX);
    let mut keys = Vec::new();
    walk(&base, &base, &mut keys);
    keys.retain(|key| key.starts_with("videos/"));
    keys.sort();
    keys
}

#[tokio::test]
async fn publish_read_list_and_unpublish() {
    let (server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    assert!(store.list_videos().await.unwrap().is_empty());
    let staged = stage(
        scratch.path(),
        &[("master.m3u8", b"#EXTM3U\n"), ("v1/1.m4s", b"0123456789")],
    );
    let generation = now_ms();
    let manifest = manifest_for("clip", generation, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();
    assert!(!staged.exists(), "the staged directory is consumed");

    assert_eq!(store.list_videos().await.unwrap(), vec![id("clip")]);
    assert_eq!(store.manifest(&id("clip")).await.unwrap(), manifest);
    assert_eq!(
        store
            .manifest_of_generation(&id("clip"), generation)
            .await
            .unwrap(),
        manifest
    );
    let segment = object("v1/1.m4s");
    let whole = store.get(&id("clip"), generation, &segment).await.unwrap();
    assert_eq!(&whole.bytes[..], b"0123456789");
    assert!(whole.file.is_none(), "an object store has no local file");
    assert_eq!(
        &store
            .get_range(&id("clip"), generation, &segment, 2..5)
            .await
            .unwrap()[..],
        b"234"
    );
    assert_eq!(
        &store
            .get_range(&id("clip"), generation, &segment, 9..10)
            .await
            .unwrap()[..],
        b"9"
    );
    assert!(
        store
            .get_range(&id("clip"), generation, &segment, 4..4)
            .await
            .unwrap()
            .is_empty()
    );
    for outside in [5..11, 10..12, 11..11] {
        let error = store
            .get_range(&id("clip"), generation, &segment, outside.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::RangeOutOfBounds { size: 10, .. }),
            "{outside:?}: {error}"
        );
    }
    assert_eq!(
        store
            .head(&id("clip"), generation, &segment)
            .await
            .unwrap()
            .size,
        10
    );
    assert!(
        store
            .get(&id("clip"), generation, &object("v1/2.m4s"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .manifest_of_generation(&id("clip"), generation + 1)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // The keys are the shared layout's, under the library's prefix.
    let g = format!("g{generation}");
    assert_eq!(
        stored_keys(&server),
        vec![
            format!("videos/clip/{g}/manifest.json"),
            format!("videos/clip/{g}/master.m3u8"),
            format!("videos/clip/{g}/v1/1.m4s"),
            "videos/clip/manifest.json".to_string(),
        ]
    );

    store.unpublish(&id("clip")).await.unwrap();
    assert!(store.list_videos().await.unwrap().is_empty());
    assert!(matches!(
        store.manifest(&id("clip")).await,
        Err(StoreError::VideoNotFound(_))
    ));
    assert!(
        store
            .get(&id("clip"), generation, &segment)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(matches!(
        store.unpublish(&id("clip")).await,
        Err(StoreError::VideoNotFound(_))
    ));
    assert!(
        stored_keys(&server).is_empty(),
        "{:?}",
        stored_keys(&server)
    );
}

#[tokio::test]
async fn a_republish_is_a_new_generation_and_older_ones_are_refused() {
    let (_server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    let first = now_ms();
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"old bytes")]);
    let old = manifest_for("clip", first, &staged).await;
    store.publish(&old, &staged).await.unwrap();
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"new")]);
    let new = manifest_for("clip", first + 1, &staged).await;
    store.publish(&new, &staged).await.unwrap();

    assert_eq!(store.manifest(&id("clip")).await.unwrap(), new);
    // The replaced generation stays readable for its grace.
    let segment = object("v1/1.m4s");
    assert_eq!(
        &store.get(&id("clip"), first, &segment).await.unwrap().bytes[..],
        b"old bytes"
    );
    assert_eq!(
        &store
            .get(&id("clip"), first + 1, &segment)
            .await
            .unwrap()
            .bytes[..],
        b"new"
    );
    for stale in [first, first + 1] {
        let staged = stage(scratch.path(), &[("v1/1.m4s", b"again")]);
        let manifest = manifest_for("clip", stale, &staged).await;
        assert!(matches!(
            store.publish(&manifest, &staged).await,
            Err(StoreError::StaleGeneration { .. })
        ));
    }
    assert!(store.collect_retired().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_larger_than_the_multipart_threshold_round_trips_byte_exact() {
    let (_server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    // Above the 16 MiB threshold, and not a whole number of 8 MiB parts.
    let large = pattern(kinema_store::s3::MULTIPART_THRESHOLD as usize * 2 + 12_345);
    let staged = stage(
        scratch.path(),
        &[("download.mp4", &large), ("master.m3u8", b"#EXTM3U\n")],
    );
    let generation = now_ms();
    let manifest = manifest_for("film", generation, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();

    let path = object("download.mp4");
    let read = store.get(&id("film"), generation, &path).await.unwrap();
    assert_eq!(read.bytes.len(), large.len());
    assert!(
        read.bytes[..] == large[..],
        "the large file came back changed"
    );
    let part = 8 * 1024 * 1024;
    let across = (part - 100) as u64..(part + 100) as u64;
    assert_eq!(
        &store
            .get_range(&id("film"), generation, &path, across.clone())
            .await
            .unwrap()[..],
        &large[across.start as usize..across.end as usize]
    );
    assert_eq!(
        store
            .head(&id("film"), generation, &path)
            .await
            .unwrap()
            .size,
        large.len() as u64
    );
}

#[tokio::test]
async fn a_publish_failing_midway_leaves_nothing_listed_and_collection_removes_leftovers() {
    let (server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    let large = pattern(kinema_store::s3::MULTIPART_THRESHOLD as usize + 4096);
    for corrupt in ["v1/9.m4s", "download.mp4"] {
        let staged = stage(
            scratch.path(),
            &[
                ("master.m3u8", b"#EXTM3U\n"),
                ("v1/1.m4s", b"0123456789"),
                ("v1/9.m4s", b"abcdefghij"),
                ("download.mp4", &large),
            ],
        );
        let manifest = manifest_for("clip", now_ms(), &staged).await;
        // Same size, other bytes: only the checksum can tell.
        let path = staged.join(corrupt);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();

        let error = store.publish(&manifest, &staged).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::StagedFileMismatch { path, .. } if path == corrupt),
            "{error}"
        );
        assert!(store.list_videos().await.unwrap().is_empty());
        assert!(matches!(
            store.manifest(&id("clip")).await,
            Err(StoreError::VideoNotFound(_))
        ));
        // What it had uploaded is gone already.
        assert!(
            stored_keys(&server).is_empty(),
            "{:?}",
            stored_keys(&server)
        );
    }

    // A crash leaves objects with no current manifest (written here as
    // s3s-fs stores them): never listed, kept while they may be a publish
    // in progress, deleted by collection once quiet.
    let crashed = server
        .bucket_dir(BUCKET)
        .join(PREFIX)
        .join("videos/crashed/g5/v1");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(crashed.join("1.m4s"), b"half a video").unwrap();
    assert!(store.list_videos().await.unwrap().is_empty());
    assert!(store.collect_retired().await.unwrap().is_empty());
    assert_eq!(stored_keys(&server), vec!["videos/crashed/g5/v1/1.m4s"]);

    let eager = S3Store::open(
        S3Config {
            unfinished_quiet: Duration::ZERO,
            ..config(&server, &format!("s3://{BUCKET}/{PREFIX}"))
        },
        StoreOptions {
            retired_grace: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    let collected = eager.collect_retired().await.unwrap();
    assert_eq!(collected.len(), 1, "{collected:?}");
    assert_eq!(collected[0].id, id("crashed"));
    assert_eq!(collected[0].generation, 5);
    assert!(
        stored_keys(&server).is_empty(),
        "{:?}",
        stored_keys(&server)
    );
}

fn config_error(error: StoreError) -> (String, String) {
    match error {
        StoreError::Config { setting, message } => (setting, message),
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[tokio::test]
async fn wrong_credentials_missing_bucket_and_no_server_are_named_at_open() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let library = format!("s3://{BUCKET}/{PREFIX}");

    let wrong_secret = S3Config {
        credentials: Some(S3Credentials::new(
            server.access_key(),
            "not-the-secret",
            None,
        )),
        ..config(&server, &library)
    };
    let (setting, message) = config_error(
        S3Store::open(wrong_secret, StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert!(
        setting.contains("AWS_SECRET_ACCESS_KEY"),
        "{setting}: {message}"
    );
    let unknown_key = S3Config {
        credentials: Some(S3Credentials::new("nobody", server.secret_key(), None)),
        ..config(&server, &library)
    };
    let (setting, message) = config_error(
        S3Store::open(unknown_key, StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert!(
        setting.contains("AWS_ACCESS_KEY_ID"),
        "{setting}: {message}"
    );

    let (setting, message) = config_error(
        S3Store::open(config(&server, "s3://absent/lib"), StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(setting, "library", "{message}");
    assert!(message.contains("\"absent\""), "{message}");

    let mut stopped = S3Server::start();
    let down = config(&stopped, &library);
    stopped.stop();
    let endpoint = down.endpoint.clone().unwrap();
    let (setting, message) = config_error(
        S3Store::open(down, StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(setting, "s3_endpoint", "{message}");
    assert!(message.contains(&endpoint), "{message}");
}

#[tokio::test]
async fn every_call_fails_within_bounded_time_when_the_server_is_down() {
    let (mut server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"0123456789")]);
    let generation = now_ms();
    let manifest = manifest_for("clip", generation, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();
    server.stop();

    let segment = object("v1/1.m4s");
    let clip = id("clip");
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"0123456789")]);
    let newer = manifest_for("clip", generation + 1, &staged).await;
    // Generous: the point is that each call ends, with an error, not how fast.
    let bounded = Duration::from_secs(120);
    let calls = async {
        vec![
            ("list", store.list_videos().await.map(drop)),
            ("manifest", store.manifest(&clip).await.map(drop)),
            (
                "get",
                store.get(&clip, generation, &segment).await.map(drop),
            ),
            (
                "get_range",
                store
                    .get_range(&clip, generation, &segment, 0..4)
                    .await
                    .map(drop),
            ),
            (
                "head",
                store.head(&clip, generation, &segment).await.map(drop),
            ),
            ("publish", store.publish(&newer, &staged).await),
            ("unpublish", store.unpublish(&clip).await),
            ("collect", store.collect_retired().await.map(drop)),
        ]
    };
    let outcomes: Vec<(&str, Result<(), StoreError>)> = tokio::time::timeout(bounded, calls)
        .await
        .expect("store calls must fail, not hang, while the object store is down");
    for (call, outcome) in outcomes {
        let error = outcome.expect_err(call);
        assert!(error.is_unavailable(), "{call}: {error}");
    }
}

/// Copies `from` to `to` until either ends, or, once `stalled` is set,
/// stops copying and holds both open forever.
async fn relay_until_stalled(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let stall = async {
            let _ = stalled.wait_for(|stall| *stall).await;
        };
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = stall => break,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) if to.write_all(&buffer[..n]).await.is_err() => return,
            Ok(_) => {}
        }
    }
    // Stalled: say nothing, close nothing.
    std::future::pending::<()>().await;
    drop((from, to));
}

/// A TCP relay to `upstream` that, once the returned flag is set, stops
/// relaying on every connection (open ones included) while holding them
/// open: a store that accepts requests and never answers.
async fn stalling_relay(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stall, stalled) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let stalled = stalled.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    relay_until_stalled(client_read, server_write, stalled.clone()),
                    relay_until_stalled(server_read, client_write, stalled),
                );
            });
        }
    });
    (address, stall)
}

#[tokio::test]
async fn every_call_fails_within_bounded_time_when_the_server_stops_answering() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let upstream = server
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (relay, stall) = stalling_relay(upstream).await;
    // Short bounds, so the test is quick; the defaults bound the same way.
    let timeouts = kinema_store::s3::S3Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(1),
        request: Duration::from_secs(5),
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
    };
    let store = S3Store::open(
        S3Config {
            endpoint: Some(format!("http://{relay}")),
            timeouts,
            ..config(&server, &format!("s3://{BUCKET}/{PREFIX}"))
        },
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"0123456789")]);
    let generation = now_ms();
    let manifest = manifest_for("clip", generation, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();
    stall.send(true).unwrap();

    let clip = id("clip");
    let segment = object("v1/1.m4s");
    let calls = async {
        vec![
            ("list", store.list_videos().await.map(drop)),
            ("manifest", store.manifest(&clip).await.map(drop)),
            (
                "get",
                store.get(&clip, generation, &segment).await.map(drop),
            ),
            (
                "get_range",
                store
                    .get_range(&clip, generation, &segment, 0..4)
                    .await
                    .map(drop),
            ),
        ]
    };
    let outcomes: Vec<(&str, Result<(), StoreError>)> =
        tokio::time::timeout(Duration::from_secs(120), calls)
            .await
            .expect("store calls must fail, not hang, while the object store stalls");
    for (call, outcome) in outcomes {
        let error = outcome.expect_err(call);
        assert!(error.is_unavailable(), "{call}: {error}");
    }
}
