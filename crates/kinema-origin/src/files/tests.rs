//! The file cache's unit tests.

use super::*;
use crate::catalog::Addressing;

fn sample(n: usize) -> Bytes {
    (0..n).map(|i| (i * 31 + i / 256) as u8).collect()
}

async fn content_of(bytes: Bytes) -> Content {
    let id = VideoId::new("clip").unwrap();
    let path = ObjectPath::new("v1/1.m4s").unwrap();
    let sha256 = sha256_of(&bytes);
    let stored = StoredFile {
        bytes,
        file: None,
        modified: None,
    };
    verified_content(stored, &id, &path, sha256, true)
        .await
        .expect("the content matches its own checksum")
}

/// Counts events at WARN or ERROR, on the thread it is the default of.
#[derive(Debug, Default)]
struct WarningCounter(std::sync::atomic::AtomicUsize);

impl tracing::Subscriber for WarningCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A missing segment was warned about by the prefetch of every request
/// for the segment before it; the request for it reports it instead.
#[tokio::test]
async fn a_missing_next_segment_is_not_warned_about_on_every_request_before_it() {
    let root = tempfile::tempdir().unwrap();
    let store = kinema_store::open(&kinema_store::StoreConfig::directory(root.path()))
        .await
        .unwrap();
    // Staged on the library's file system, as ingest's workspace is.
    let staged = root.path().join("staged-clip");
    std::fs::create_dir_all(staged.join("v1")).unwrap();
    std::fs::write(staged.join("v1/1.m4s"), sample(1000)).unwrap();
    std::fs::write(staged.join("v1/2.m4s"), sample(2000)).unwrap();
    let manifest = kinema_core::Manifest {
        generation: 1,
        format_version: kinema_core::MANIFEST_FORMAT_VERSION,
        id: VideoId::new("clip").unwrap(),
        title: "t".into(),
        duration_seconds: 2.0,
        segment_duration_seconds: 1.0,
        published_at_unix: 1,
        access: kinema_core::AccessPolicy::Public,
        renditions: vec![],
        files: kinema_store::describe_files(&staged).await.unwrap(),
    };
    store.publish(&manifest, &staged).await.unwrap();
    std::fs::remove_file(root.path().join("videos/clip/g1/v1/2.m4s")).unwrap();
    let video = Arc::new(Video::from_manifest(
        &manifest,
        Duration::from_secs(1),
        Addressing::Generation,
    ));
    let metrics = Arc::new(Metrics::default());
    let files = FileCache::new(
        store,
        1 << 20,
        1 << 20,
        Duration::from_secs(60),
        metrics.clone(),
        DescriptorBudget::new(100),
        None,
    );
    let warnings = Arc::new(WarningCounter::default());
    let _default = tracing::subscriber::set_default(warnings.clone());
    let first = &video.files[video.file_index("v1/1.m4s").unwrap()];
    for _ in 0..5 {
        files.get(&video, first).await.unwrap();
        files.prefetch_after(&video, first);
        // The prefetch runs on this thread's runtime: let it finish.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }
    files.settle().await;
    assert_eq!(warnings.0.load(Relaxed), 0);
    assert!(metrics.store_reads.load(Relaxed) >= 2, "no prefetch ran");
}

/// Each cached segment kept its published file open: a library of many
/// cached segments could take every descriptor new connections need.
#[tokio::test]
async fn cached_files_keep_no_more_descriptors_than_their_budget() {
    let root = tempfile::tempdir().unwrap();
    let store = kinema_store::open(&kinema_store::StoreConfig::directory(root.path()))
        .await
        .unwrap();
    // Staged on the library's file system, as ingest's workspace is.
    let staged = root.path().join("staged-clip");
    std::fs::create_dir_all(staged.join("v1")).unwrap();
    for n in 1..=3 {
        let content = sample(SHARED_FILE_MIN + n * 1000);
        std::fs::write(staged.join(format!("v1/{n}.m4s")), content).unwrap();
    }
    let manifest = kinema_core::Manifest {
        generation: 1,
        format_version: kinema_core::MANIFEST_FORMAT_VERSION,
        id: VideoId::new("clip").unwrap(),
        title: "t".into(),
        duration_seconds: 3.0,
        segment_duration_seconds: 1.0,
        published_at_unix: 1,
        access: kinema_core::AccessPolicy::Public,
        renditions: vec![],
        files: kinema_store::describe_files(&staged).await.unwrap(),
    };
    store.publish(&manifest, &staged).await.unwrap();
    let video = Video::from_manifest(&manifest, Duration::from_secs(1), Addressing::Generation);
    let budget = DescriptorBudget::new(1);
    let files = FileCache::new(
        store,
        1 << 20,
        1 << 20,
        Duration::from_secs(60),
        Arc::new(Metrics::default()),
        budget.clone(),
        None,
    );
    let mut with_descriptor = 0;
    for file in &video.files {
        let content = files.get(&video, file).await.unwrap();
        assert_eq!(content.bytes.len() as u64, file.size);
        with_descriptor += usize::from(content.shared_file.is_some());
    }
    assert_eq!(with_descriptor, 1);
    assert_eq!(budget.held(), 1);
    for file in &video.files {
        files.cache.invalidate(&file.key).await;
    }
    // The cache lets go of what it removed once its bookkeeping runs.
    files.settle().await;
    assert_eq!(budget.held(), 0);
}

#[tokio::test]
async fn content_that_does_not_match_its_checksum_is_never_cached() {
    let id = VideoId::new("clip").unwrap();
    let path = ObjectPath::new("v1/1.m4s").unwrap();
    for size in [100, SHARED_FILE_MIN - 1, SHARED_FILE_MIN + 1000] {
        let bytes = sample(size);
        let sha256 = sha256_of(&bytes);
        let mut flipped = bytes.to_vec();
        flipped[size / 2] ^= 1;
        let stored = StoredFile {
            bytes: Bytes::from(flipped),
            file: None,
            modified: None,
        };
        assert!(
            verified_content(stored, &id, &path, sha256, true)
                .await
                .is_none(),
            "{size} bytes"
        );
    }
}

#[tokio::test]
async fn large_files_are_cached_as_shared_files_and_sliced_exactly() {
    let bytes = sample(SHARED_FILE_MIN + 1000);
    let content = content_of(bytes.clone()).await;
    assert!(content.shared_file.is_some());
    assert_eq!(&content.bytes, &bytes);
    match respond::Content::range(content.held(), 10..66_000) {
        ResponseBody::File(slice) => {
            assert_eq!(slice.range(), 10..66_000);
            assert_eq!(slice.bytes(), bytes.slice(10..66_000));
        }
        other => panic!("a large file's body is {other:?}"),
    }
}

#[tokio::test]
async fn small_files_stay_bytes() {
    let bytes = sample(SHARED_FILE_MIN - 1);
    let content = content_of(bytes.clone()).await;
    assert!(content.shared_file.is_none());
    match respond::Content::range(content.held(), 5..600) {
        ResponseBody::Full(body) => assert_eq!(body, bytes.slice(5..600)),
        other => panic!("a small file's body is {other:?}"),
    }
}
