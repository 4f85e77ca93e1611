//! Republishing a video as a new generation of the same media on both
//! backends (a local directory, and S3 through a real s3s-fs on loopback):
//! the files not replaced are copied inside the store, the replaced ones
//! written, the current manifest last; a replacement that disagrees with
//! its manifest entry, an entry the old generation does not list, or a
//! generation not newer than the current one changes nothing.

mod common;

use bytes::Bytes;
use common::*;
use kinema_core::{AccessPolicy, FileEntry, Manifest};
use kinema_store::{LocalStore, Store, StoreError};
use sha2::{Digest, Sha256};

const SEGMENT: &[u8] = b"segment bytes that a republish must not change";

fn entry(path: &str, bytes: &[u8]) -> FileEntry {
    FileEntry {
        path: object(path),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    }
}

/// `manifest` as generation `generation`, with `replaced` (path, bytes)
/// swapped into its file list and the access policy `access`.
fn next(
    manifest: &Manifest,
    generation: u64,
    access: AccessPolicy,
    replaced: &[(&str, &[u8])],
) -> (Manifest, Vec<(kinema_core::ObjectPath, Bytes)>) {
    let mut next = manifest.clone();
    next.generation = generation;
    next.access = access;
    for (path, bytes) in replaced {
        let file = next
            .files
            .iter_mut()
            .find(|file| file.path.as_str() == *path)
            .unwrap();
        *file = entry(path, bytes);
    }
    let contents = replaced
        .iter()
        .map(|(path, bytes)| (object(path), Bytes::copy_from_slice(bytes)))
        .collect();
    (next, contents)
}

/// Publishes `clip`, republishes it signed with a new master playlist, and
/// checks what is refused; returns the two generations.
async fn republish_and_refusals(store: &dyn Store, scratch: &std::path::Path) -> (u64, u64) {
    let clip = id("clip");
    let first = now_ms();
    let old_master = format!("#EXTM3U\ng{first}/v1/index.m3u8\n");
    let staged = stage(
        scratch,
        &[
            ("master.m3u8", old_master.as_bytes()),
            ("v1/index.m3u8", b"#EXTM3U\n1.m4s\n"),
            ("v1/1.m4s", SEGMENT),
        ],
    );
    let manifest = manifest_for("clip", first, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();

    let second = first + 1;
    let new_master = format!("#EXTM3U\ng{second}/v1/index.m3u8\n");
    let (signed, replaced) = next(
        &manifest,
        second,
        AccessPolicy::Signed,
        &[("master.m3u8", new_master.as_bytes())],
    );

    // Refused, changing nothing: a replacement unlike its entry...
    let wrong = vec![(object("master.m3u8"), Bytes::from_static(b"#EXTM3U\n"))];
    assert!(matches!(
        store.republish(&signed, first, &wrong).await,
        Err(StoreError::StagedFileMismatch { path, .. }) if path == "master.m3u8"
    ));
    // ...an entry changed without a replacement...
    let (mut changed, _) = next(&manifest, second, AccessPolicy::Signed, &[]);
    for file in &mut changed.files {
        if file.path.as_str() == "v1/1.m4s" {
            *file = entry("v1/1.m4s", b"other bytes");
        }
    }
    assert!(matches!(
        store.republish(&changed, first, &[]).await,
        Err(StoreError::StagedFileMismatch { path, .. }) if path == "v1/1.m4s"
    ));
    // ...and a generation not newer than the current one.
    let (stale, stale_replaced) = next(&manifest, first, AccessPolicy::Signed, &[]);
    assert!(matches!(
        store.republish(&stale, first, &stale_replaced).await,
        Err(StoreError::StaleGeneration { .. })
    ));
    assert_eq!(store.manifest(&clip).await.unwrap(), manifest);
    assert_eq!(store.generations(&clip).await.unwrap(), vec![first]);

    store.republish(&signed, first, &replaced).await.unwrap();
    let current = store.manifest(&clip).await.unwrap();
    assert_eq!(current, signed);
    assert_eq!(current.access, AccessPolicy::Signed);
    assert_eq!(store.generations(&clip).await.unwrap(), vec![first, second]);
    let read = |generation, path: &'static str| {
        let clip = clip.clone();
        async move {
            store
                .get(&clip, generation, &object(path))
                .await
                .unwrap()
                .bytes
        }
    };
    assert_eq!(read(second, "v1/1.m4s").await, SEGMENT);
    assert_eq!(
        read(second, "v1/index.m3u8").await,
        &b"#EXTM3U\n1.m4s\n"[..]
    );
    assert_eq!(read(second, "master.m3u8").await, new_master.as_bytes());
    // The old generation stays readable for its grace period, unchanged.
    assert_eq!(read(first, "master.m3u8").await, old_master.as_bytes());
    assert_eq!(read(first, "v1/1.m4s").await, SEGMENT);
    assert_eq!(
        store.manifest_of_generation(&clip, first).await.unwrap(),
        manifest
    );
    (first, second)
}

/// With `v1/1.m4s` of generation `from` gone from the store, a republish
/// from it is refused as a missing object (not an outage) and changes
/// nothing.
async fn a_missing_file_is_not_found(store: &dyn Store, from: u64) {
    let clip = id("clip");
    let current = store.manifest(&clip).await.unwrap();
    let (next_manifest, replaced) = next(&current, from + 1, AccessPolicy::Public, &[]);
    let refused = store.republish(&next_manifest, from, &replaced).await;
    assert!(
        matches!(&refused, Err(StoreError::ObjectNotFound { path, .. }) if path.as_str() == "v1/1.m4s"),
        "{refused:?}"
    );
    assert_eq!(store.manifest(&clip).await.unwrap(), current);
}

#[tokio::test]
async fn republish_on_a_local_directory_links_the_files() {
    use std::os::unix::fs::MetadataExt;
    let library = tempfile::tempdir().unwrap();
    let store = LocalStore::open(library.path()).unwrap();
    let scratch = store.staging_root();
    let (first, second) = republish_and_refusals(&store, &scratch).await;
    let inode = |generation: u64, path: &str| {
        std::fs::metadata(
            library
                .path()
                .join(format!("videos/clip/g{generation}/{path}")),
        )
        .unwrap()
        .ino()
    };
    assert_eq!(inode(first, "v1/1.m4s"), inode(second, "v1/1.m4s"));
    assert_ne!(inode(first, "master.m3u8"), inode(second, "master.m3u8"));
    let staging: Vec<_> = std::fs::read_dir(store.staging_root())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(staging.is_empty(), "nothing left in staging: {staging:?}");
    std::fs::remove_file(
        library
            .path()
            .join(format!("videos/clip/g{second}/v1/1.m4s")),
    )
    .unwrap();
    a_missing_file_is_not_found(&store, second).await;
}

#[tokio::test]
async fn republish_on_s3_copies_inside_the_store() {
    let (server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    let (first, second) = republish_and_refusals(&store, scratch.path()).await;
    let keys = stored_keys(&server);
    for generation in [first, second] {
        for path in ["manifest.json", "master.m3u8", "v1/index.m3u8", "v1/1.m4s"] {
            let key = format!("videos/clip/g{generation}/{path}");
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
    }
    let segment = server
        .bucket_dir(BUCKET)
        .join(PREFIX)
        .join(format!("videos/clip/g{second}/v1/1.m4s"));
    std::fs::remove_file(&segment).unwrap();
    a_missing_file_is_not_found(&store, second).await;
}
