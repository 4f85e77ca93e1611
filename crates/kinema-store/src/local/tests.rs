//! The local backend's tests: publish, replace, collect, unpublish, and
//! links planted in the library.

use super::*;
use crate::describe_files;
use kinema_core::{AccessPolicy, MANIFEST_FORMAT_VERSION};

fn id(name: &str) -> VideoId {
    VideoId::new(name).unwrap()
}

fn object(path: &str) -> ObjectPath {
    ObjectPath::new(path).unwrap()
}

fn stage(store: &LocalStore, name: &str, segment: &[u8]) -> PathBuf {
    let staged = store.staging_root().join(format!("job-{name}"));
    std::fs::create_dir_all(staged.join("v1")).unwrap();
    std::fs::write(staged.join("master.m3u8"), b"#EXTM3U\n").unwrap();
    std::fs::write(staged.join("v1/1.m4s"), segment).unwrap();
    staged
}

async fn publish_generation(
    store: &LocalStore,
    name: &str,
    generation: u64,
    segment: &[u8],
) -> Manifest {
    let staged = stage(store, name, segment);
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id(name),
        generation,
        title: name.into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 4.0,
        published_at_unix: 1,
        access: AccessPolicy::Public,
        renditions: vec![],
        files: describe_files(&staged).await.unwrap(),
    };
    store.publish(&manifest, &staged).await.unwrap();
    manifest
}

async fn publish_sample(store: &LocalStore, name: &str) -> Manifest {
    publish_generation(store, name, 1, b"0123456789").await
}

fn now_ms() -> u64 {
    layout::unix_millis(SystemTime::now())
}

#[tokio::test]
async fn publish_then_read_whole_and_ranges() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    let manifest = publish_sample(&store, "clip").await;
    assert_eq!(manifest.files.len(), 2);
    assert_eq!(store.list_videos().await.unwrap(), vec![id("clip")]);
    assert_eq!(store.manifest(&id("clip")).await.unwrap(), manifest);
    let segment = object("v1/1.m4s");
    let whole = store.get(&id("clip"), 1, &segment).await.unwrap();
    assert_eq!(&whole.bytes[..], b"0123456789");
    assert_eq!(
        &store
            .get_range(&id("clip"), 1, &segment, 2..5)
            .await
            .unwrap()[..],
        b"234"
    );
    assert_eq!(store.head(&id("clip"), 1, &segment).await.unwrap().size, 10);
    assert!(matches!(
        store.get_range(&id("clip"), 1, &segment, 5..11).await,
        Err(StoreError::RangeOutOfBounds { size: 10, .. })
    ));
    // The open file the whole read came from holds the same bytes, even
    // once the video is unpublished.
    let file = whole.file.expect("a local store hands over the open file");
    store.unpublish(&id("clip")).await.unwrap();
    let mut from_file = [0; 10];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut from_file, 0).unwrap();
    assert_eq!(&from_file, b"0123456789");
}

#[tokio::test]
async fn staged_video_is_invisible_until_published() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    std::fs::create_dir_all(store.staging_root().join("job-x/v1")).unwrap();
    assert!(store.list_videos().await.unwrap().is_empty());
    // A directory in videos/ without a manifest is not a video either.
    std::fs::create_dir_all(root.path().join("videos/half")).unwrap();
    assert!(store.list_videos().await.unwrap().is_empty());
    assert!(matches!(
        store.manifest(&id("half")).await,
        Err(StoreError::VideoNotFound(_))
    ));
}

#[tokio::test]
async fn generations_lists_the_generation_directories_only() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    assert!(store.generations(&id("clip")).await.unwrap().is_empty());
    // Recent, so the older one is retired within its grace, not collected.
    let first = crate::layout::unix_millis(std::time::SystemTime::now());
    publish_generation(&store, "clip", first, b"0123456789").await;
    publish_generation(&store, "clip", first + 5, b"0123456789").await;
    let video = root.path().join("videos/clip");
    std::fs::create_dir(video.join("gx")).unwrap();
    std::fs::create_dir(video.join("g07")).unwrap();
    std::fs::write(video.join("g9"), b"a file, not a generation").unwrap();
    assert_eq!(
        store.generations(&id("clip")).await.unwrap(),
        [first, first + 5]
    );
}

#[tokio::test]
async fn publish_refuses_mismatched_staged_files_and_older_generations() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    let mut manifest = publish_generation(&store, "clip", 5, b"0123456789").await;
    let staged = stage(&store, "again", b"short");
    assert!(matches!(
        store.publish(&manifest, &staged).await,
        Err(StoreError::StagedFileMismatch { .. })
    ));
    std::fs::write(staged.join("v1/1.m4s"), b"0123456789").unwrap();
    for generation in [4, 5] {
        manifest.generation = generation;
        assert!(matches!(
            store.publish(&manifest, &staged).await,
            Err(StoreError::StaleGeneration { current: 5, .. })
        ));
    }
    manifest.id = id("other");
    store.publish(&manifest, &staged).await.unwrap();
    assert_eq!(
        store.list_videos().await.unwrap(),
        vec![id("clip"), id("other")]
    );
    assert!(root.path().join("videos/clip/g5/v1/1.m4s").is_file());
    assert!(root.path().join("videos/clip/g5/manifest.json").is_file());
}

#[tokio::test]
async fn a_republish_replaces_and_keeps_the_old_generation_readable() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    let old_generation = now_ms();
    let old = publish_generation(&store, "clip", old_generation, b"old bytes!").await;
    let new = publish_generation(&store, "clip", old_generation + 1, b"new").await;
    assert_eq!(store.manifest(&id("clip")).await.unwrap(), new);
    assert_eq!(
        store
            .manifest_of_generation(&id("clip"), old_generation)
            .await
            .unwrap(),
        old
    );
    let segment = object("v1/1.m4s");
    let clip = id("clip");
    let read = |generation| store.get(&clip, generation, &segment);
    assert_eq!(
        &read(old_generation).await.unwrap().bytes[..],
        b"old bytes!"
    );
    assert_eq!(&read(old_generation + 1).await.unwrap().bytes[..], b"new");
    assert!(matches!(
        read(7).await,
        Err(StoreError::GenerationNotFound { generation: 7, .. })
    ));
    assert!(matches!(
        store.manifest_of_generation(&id("clip"), 7).await,
        Err(StoreError::GenerationNotFound { generation: 7, .. })
    ));
    // Within the grace, nothing goes, at start or later.
    assert!(store.collect_retired().await.unwrap().is_empty());
    assert!(read(old_generation).await.is_ok());
}

#[tokio::test]
async fn a_retired_generation_goes_after_its_grace() {
    let root = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        retired_grace: std::time::Duration::from_secs(3600),
    };
    let store = LocalStore::open_with(root.path(), options).unwrap();
    // g1 was replaced by g2 long ago (Unix time 2 ms), g2 by g3 just now.
    publish_generation(&store, "clip", 1, b"one").await;
    publish_generation(&store, "clip", 2, b"two").await;
    // Publishing g2 already collected g1 (retired at 2 ms, an hour is
    // long past).
    assert!(!root.path().join("videos/clip/g1").exists());
    let third = now_ms();
    publish_generation(&store, "clip", third, b"three").await;
    assert!(root.path().join("videos/clip/g2").exists());
    // A store with a shorter grace collects g2 at start.
    let short = LocalStore::open_with(
        root.path(),
        StoreOptions {
            retired_grace: std::time::Duration::ZERO,
        },
    )
    .unwrap();
    assert_eq!(
        short.collect_retired().await.unwrap(),
        vec![CollectedGeneration {
            id: id("clip"),
            generation: 2
        }]
    );
    assert!(matches!(
        short.get(&id("clip"), 2, &object("v1/1.m4s")).await,
        Err(StoreError::GenerationNotFound { .. })
    ));
    assert_eq!(
        &short
            .get(&id("clip"), third, &object("v1/1.m4s"))
            .await
            .unwrap()
            .bytes[..],
        b"three"
    );
}

#[tokio::test]
async fn a_publish_that_cannot_write_the_current_manifest_leaves_no_generation() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    // A directory where the current manifest goes: renaming onto it fails,
    // as a full disk would fail the write.
    std::fs::create_dir_all(root.path().join("videos/clip/manifest.json")).unwrap();
    let staged = stage(&store, "clip", b"0123456789");
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id("clip"),
        generation: 3,
        title: "clip".into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 4.0,
        published_at_unix: 1,
        access: AccessPolicy::Public,
        renditions: vec![],
        files: describe_files(&staged).await.unwrap(),
    };
    let error = store.publish(&manifest, &staged).await.unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error}");
    let mut left: Vec<String> = std::fs::read_dir(root.path().join("videos/clip"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["manifest.json"]);
    assert!(store.list_videos().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unfinished_publish_is_not_the_video() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    publish_sample(&store, "clip").await;
    // A generation directory whose top manifest was never written (a
    // crash between the two renames).
    let staged = stage(&store, "crashed", b"crashed");
    std::fs::rename(&staged, root.path().join("videos/clip/g9")).unwrap();
    assert_eq!(store.manifest(&id("clip")).await.unwrap().generation, 1);
    assert!(store.collect_retired().await.unwrap().is_empty());
    assert!(root.path().join("videos/clip/g9").exists());
}

#[tokio::test]
async fn a_video_from_before_generations_says_to_ingest_again() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    let video = root.path().join("videos/old");
    std::fs::create_dir_all(&video).unwrap();
    std::fs::write(
        video.join("manifest.json"),
        br#"{"format_version": 1, "id": "old"}"#,
    )
    .unwrap();
    let error = store.manifest(&id("old")).await.unwrap_err();
    assert!(error.to_string().contains("ingest it again"), "{error}");
    // It is not replaced over, but it can be unpublished.
    let mut manifest = publish_sample(&store, "clip").await;
    manifest.id = id("old");
    let staged = stage(&store, "old", b"0123456789");
    assert!(matches!(
        store.publish(&manifest, &staged).await,
        Err(StoreError::BadManifest { .. })
    ));
    store.unpublish(&id("old")).await.unwrap();
    store.publish(&manifest, &staged).await.unwrap();
}

#[tokio::test]
async fn unpublish_removes_the_whole_video() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    publish_sample(&store, "clip").await;
    publish_generation(&store, "clip", now_ms(), b"newer").await;
    store.unpublish(&id("clip")).await.unwrap();
    assert!(store.list_videos().await.unwrap().is_empty());
    assert!(!root.path().join("videos/clip").exists());
    assert!(
        store
            .get(&id("clip"), 1, &object("v1/1.m4s"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(matches!(
        store.unpublish(&id("clip")).await,
        Err(StoreError::VideoNotFound(_))
    ));
}

#[tokio::test]
async fn a_linked_manifest_or_video_directory_is_not_a_video() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    publish_sample(&store, "clip").await;
    let videos = root.path().join("videos");
    // A directory whose manifest is a link to a real video's manifest.
    std::fs::create_dir(videos.join("linked-manifest")).unwrap();
    std::os::unix::fs::symlink(
        videos.join("clip/manifest.json"),
        videos.join("linked-manifest/manifest.json"),
    )
    .unwrap();
    // A video directory that is a link to a real video.
    std::os::unix::fs::symlink(videos.join("clip"), videos.join("linked-dir")).unwrap();
    assert_eq!(store.list_videos().await.unwrap(), vec![id("clip")]);
    for name in ["linked-manifest", "linked-dir"] {
        assert!(
            matches!(
                store.manifest(&id(name)).await,
                Err(StoreError::VideoNotFound(_))
            ),
            "{name}"
        );
        assert!(
            store
                .get(&id(name), 1, &object("v1/1.m4s"))
                .await
                .unwrap_err()
                .is_not_found(),
            "{name}"
        );
    }
    assert!(store.manifest(&id("clip")).await.is_ok());
}

#[tokio::test]
async fn symlinks_in_the_library_are_never_followed() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let store = LocalStore::open(root.path()).unwrap();
    publish_sample(&store, "clip").await;
    let video = root.path().join("videos/clip/g1");
    std::os::unix::fs::symlink(outside.path().join("secret"), video.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), video.join("dir")).unwrap();
    for path in ["link", "dir/secret"] {
        let err = store.get(&id("clip"), 1, &object(path)).await.unwrap_err();
        assert!(err.is_not_found(), "{path}: {err}");
    }
    // A generation directory that is a link is no generation.
    std::os::unix::fs::symlink(&video, root.path().join("videos/clip/g2")).unwrap();
    let err = store
        .get(&id("clip"), 2, &object("v1/1.m4s"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::GenerationNotFound { .. }),
        "{err}"
    );
    let err = store
        .manifest_of_generation(&id("clip"), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::GenerationNotFound { .. }),
        "{err}"
    );
}

/// An ingest workspace may sit on another disk than the library: its
/// staged directory cannot be renamed into place, so it is copied first,
/// and the video still appears whole with the bytes staged.
#[tokio::test]
async fn a_video_staged_on_another_file_system_publishes() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    // /dev/shm is a tmpfs on Linux, apart from the disk /tmp lives on.
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    let device = |path: &Path| std::fs::metadata(path).unwrap().dev();
    assert_ne!(
        device(root.path()),
        device(elsewhere.path()),
        "this test needs /dev/shm and the temporary directory on two file systems"
    );
    let store = LocalStore::open(root.path()).unwrap();
    let staged = elsewhere.path().join("job-far");
    std::fs::create_dir_all(staged.join("v1")).unwrap();
    std::fs::write(staged.join("master.m3u8"), b"#EXTM3U\n").unwrap();
    std::fs::write(staged.join("v1/1.m4s"), b"far away").unwrap();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id("far"),
        generation: 7,
        title: "far".into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 4.0,
        published_at_unix: 1,
        access: AccessPolicy::Public,
        renditions: vec![],
        files: describe_files(&staged).await.unwrap(),
    };
    store.publish(&manifest, &staged).await.unwrap();

    let segment = store.get(&id("far"), 7, &object("v1/1.m4s")).await.unwrap();
    assert_eq!(&segment.bytes[..], b"far away");
    assert_eq!(store.list_videos().await.unwrap(), vec![id("far")]);
    assert!(!staged.exists(), "the staged directory was not consumed");
    let leftovers: Vec<_> = std::fs::read_dir(store.staging_root()).unwrap().collect();
    assert!(leftovers.is_empty(), "copy left in staging: {leftovers:?}");
}
