//! A video's editable metadata (title, description) on both backends: the
//! local directory and S3 (a real s3s-fs on loopback). Written beside the
//! current manifest, read back, refused for a video not published or out
//! of bounds, untouched by a republish, gone with an unpublish.

mod common;

use common::*;
use kinema_store::{LocalStore, Store, StoreError, VideoMetadata};

async fn edit_read_and_unpublish(store: &dyn Store, scratch: &std::path::Path) {
    let clip = id("clip");
    assert!(
        matches!(
            store.metadata(&clip).await,
            Err(StoreError::VideoNotFound(_))
        ),
        "no metadata of a video not published"
    );
    let edited = VideoMetadata {
        title: Some("A better title".into()),
        description: "Two lines\nof description".into(),
        generation: 0,
    };
    assert!(matches!(
        store.set_metadata(&clip, &edited).await,
        Err(StoreError::VideoNotFound(_))
    ));

    let staged = stage(scratch, &[("master.m3u8", b"#EXTM3U\n")]);
    let first = now_ms();
    let manifest = manifest_for("clip", first, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();
    assert_eq!(
        store.metadata(&clip).await.unwrap(),
        VideoMetadata::default()
    );

    let edited = VideoMetadata {
        generation: first,
        ..edited
    };
    store.set_metadata(&clip, &edited).await.unwrap();
    assert_eq!(store.metadata(&clip).await.unwrap(), edited);
    assert_eq!(
        edited.title(&store.manifest(&clip).await.unwrap()),
        "A better title"
    );
    assert_eq!(
        store.manifest(&clip).await.unwrap(),
        manifest,
        "the manifest is untouched"
    );
    assert_eq!(store.list_videos().await.unwrap(), vec![clip.clone()]);

    let too_long = VideoMetadata {
        description: "x".repeat(5_001),
        ..edited.clone()
    };
    match store.set_metadata(&clip, &too_long).await {
        Err(StoreError::BadMetadata { detail, .. }) => {
            assert_eq!(detail, "the description is longer than 5000 characters")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.metadata(&clip).await.unwrap(),
        edited,
        "kept as it was"
    );

    // A newer generation with a title of its own: the edited title no
    // longer applies; the description stays.
    let staged = stage(scratch, &[("master.m3u8", b"#EXTM3U\n#v2\n")]);
    let mut second = manifest_for("clip", first + 1, &staged).await;
    second.title = "Republished".into();
    store.publish(&second, &staged).await.unwrap();
    let kept = store.metadata(&clip).await.unwrap();
    assert_eq!(kept, edited);
    assert_eq!(
        kept.title(&store.manifest(&clip).await.unwrap()),
        "Republished"
    );

    store.unpublish(&clip).await.unwrap();
    let staged = stage(scratch, &[("master.m3u8", b"#EXTM3U\n")]);
    let again = manifest_for("clip", now_ms() + 10, &staged).await;
    store.publish(&again, &staged).await.unwrap();
    assert_eq!(
        store.metadata(&clip).await.unwrap(),
        VideoMetadata::default(),
        "an unpublished video's metadata went with it"
    );
}

#[tokio::test]
async fn metadata_on_a_local_directory() {
    let library = tempfile::tempdir().unwrap();
    let store = LocalStore::open(library.path()).unwrap();
    let scratch = store.staging_root();
    edit_read_and_unpublish(&store, &scratch).await;
    // What was stored is the small object the layout names.
    std::fs::write(
        library.path().join("videos/clip/metadata.json"),
        vec![b' '; 70_000],
    )
    .unwrap();
    assert!(matches!(
        store.metadata(&id("clip")).await,
        Err(StoreError::BadMetadata { .. })
    ));
}

#[tokio::test]
async fn metadata_on_s3() {
    let (server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    edit_read_and_unpublish(&store, scratch.path()).await;
    store
        .set_metadata(
            &id("clip"),
            &VideoMetadata {
                description: "kept".into(),
                ..VideoMetadata::default()
            },
        )
        .await
        .unwrap();
    assert!(
        stored_keys(&server).contains(&"videos/clip/metadata.json".to_string()),
        "{:?}",
        stored_keys(&server)
    );
    store.unpublish(&id("clip")).await.unwrap();
    assert!(
        !stored_keys(&server)
            .iter()
            .any(|key| key.contains("metadata")),
        "{:?}",
        stored_keys(&server)
    );
}
