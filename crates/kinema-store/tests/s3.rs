//! The S3 backend against a real S3-protocol server (s3s-fs on loopback):
//! publish, reads, listing, generations, multipart uploads, and failed
//! publishes and their leftovers.

mod common;

use std::time::Duration;

use common::*;
use kinema_store::s3::S3Config;
use kinema_store::{S3Store, Store, StoreError, StoreOptions};

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
    // Read before and after the republish: the second read is conditional
    // on the first one's ETag, and must see the change.
    assert_eq!(store.manifest(&id("clip")).await.unwrap(), old);
    assert_eq!(store.manifest(&id("clip")).await.unwrap(), old);
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
    assert_eq!(
        store.generations(&id("clip")).await.unwrap(),
        [first, first + 1]
    );
    assert!(store.generations(&id("other")).await.unwrap().is_empty());
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
