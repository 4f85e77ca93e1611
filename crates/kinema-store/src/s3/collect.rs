//! Deleting what is no longer part of a video: generations replaced longer
//! ago than the grace, and what publishes that never finished left, by the
//! rules of [`layout::collectable_generations`].
//!
//! An object store cannot tell a crashed publish from one still running on
//! another node, so a generation that is not (yet) current also has to have
//! been quiet — nothing written to it — for `unfinished_quiet` before it is
//! deleted.

use std::collections::BTreeMap;
use std::time::SystemTime;

use kinema_core::{MANIFEST_FILE, VideoId};
use object_store::path::Path as ObjectKey;

use super::S3Store;
use crate::layout::{self, VideoKey};
use crate::{CollectedGeneration, StoreError};

/// What a listing found of one generation.
#[derive(Debug, Default)]
struct Listed {
    newest: Option<SystemTime>,
    keys: Vec<ObjectKey>,
}

/// What a listing found of one video.
#[derive(Debug, Default)]
struct ListedVideo {
    has_current_manifest: bool,
    generations: BTreeMap<u64, Listed>,
}

/// Groups a listing (of one video or of the whole library) by video and
/// generation; keys the layout does not know are left alone.
fn group(
    store: &S3Store,
    objects: Vec<object_store::ObjectMeta>,
) -> BTreeMap<VideoId, ListedVideo> {
    let mut videos: BTreeMap<VideoId, ListedVideo> = BTreeMap::new();
    let videos_prefix = format!("{}/", layout::VIDEOS);
    for object in objects {
        let Some(relative) = store.relative(&object.location) else {
            continue;
        };
        let Some((id, rest)) = relative
            .strip_prefix(&videos_prefix)
            .and_then(|within| within.split_once('/'))
        else {
            continue;
        };
        let Ok(id) = VideoId::new(id) else { continue };
        let rest = rest.to_string();
        let video = videos.entry(id).or_default();
        match layout::classify_video_key(&rest) {
            VideoKey::CurrentManifest => video.has_current_manifest = true,
            VideoKey::Generation(generation) => {
                let listed = video.generations.entry(generation).or_default();
                let modified = SystemTime::from(object.last_modified);
                listed.newest = listed.newest.max(Some(modified));
                listed.keys.push(object.location);
            }
            VideoKey::Stray => {}
        }
    }
    videos
}

/// Keys in the order they are deleted: manifest copies first, so no
/// generation's manifest ever names a file already deleted.
fn manifests_first(mut keys: Vec<ObjectKey>) -> Vec<ObjectKey> {
    keys.sort_by_key(|key| key.filename() != Some(MANIFEST_FILE));
    keys
}

async fn collect_listed(
    store: &S3Store,
    id: &VideoId,
    video: ListedVideo,
) -> Result<Vec<CollectedGeneration>, StoreError> {
    // The common case, one current generation and nothing else, costs no
    // request.
    if video.generations.is_empty() || (video.has_current_manifest && video.generations.len() == 1)
    {
        return Ok(Vec::new());
    }
    let current = if video.has_current_manifest {
        match store.current_manifest(id).await {
            Ok(manifest) => Some(manifest.generation),
            // Unpublished since the listing.
            Err(StoreError::VideoNotFound(_)) => None,
            // Unsure what is current: delete nothing.
            Err(error) => {
                tracing::warn!(%id, %error, "not collecting a video whose manifest is unreadable");
                return Ok(Vec::new());
            }
        }
    } else {
        None
    };
    let present: Vec<u64> = video.generations.keys().copied().collect();
    let now = SystemTime::now();
    let collectable = layout::collectable_generations(
        &present,
        current,
        layout::unix_millis(now),
        store.options.retired_grace,
    );
    let mut collected = Vec::new();
    let mut generations = video.generations;
    for generation in collectable {
        let Some(listed) = generations.remove(&generation) else {
            continue;
        };
        let retired = current.is_some_and(|current| generation < current);
        let quiet = listed.newest.is_none_or(|newest| {
            now.duration_since(newest)
                .is_ok_and(|quiet| quiet >= store.unfinished_quiet)
        });
        if !retired && !quiet {
            // Possibly a publish still uploading on another node.
            continue;
        }
        store.delete_keys(manifests_first(listed.keys)).await?;
        tracing::info!(%id, generation, retired, "collected a generation");
        collected.push(CollectedGeneration {
            id: id.clone(),
            generation,
        });
    }
    Ok(collected)
}

/// Collects one video's generations (after each publish).
pub(super) async fn collect_video(
    store: &S3Store,
    id: &VideoId,
) -> Result<Vec<CollectedGeneration>, StoreError> {
    let objects = store.list_all(&layout::video_prefix(id)).await?;
    match group(store, objects).remove(id) {
        Some(video) => collect_listed(store, id, video).await,
        None => Ok(Vec::new()),
    }
}

/// Collects the whole library (at start): one listing of every object.
pub(super) async fn collect_library(
    store: &S3Store,
) -> Result<Vec<CollectedGeneration>, StoreError> {
    let objects = store.list_all(&format!("{}/", layout::VIDEOS)).await?;
    let mut collected = Vec::new();
    for (id, video) in group(store, objects) {
        collected.extend(collect_listed(store, &id, video).await?);
    }
    Ok(collected)
}

/// Deletes every object of a video whose current manifest is already gone.
pub(super) async fn delete_everything_of(store: &S3Store, id: &VideoId) -> Result<(), StoreError> {
    delete_prefix(store, &layout::video_prefix(id)).await
}

/// Deletes every object below a layout prefix, manifest copies first.
pub(super) async fn delete_prefix(store: &S3Store, prefix: &str) -> Result<(), StoreError> {
    let keys = store
        .list_all(prefix)
        .await?
        .into_iter()
        .map(|object| object.location)
        .collect();
    store.delete_keys(manifests_first(keys)).await
}
