//! Publishing a generation to S3: every file, checked against the manifest's
//! size and SHA-256 as it is read, then the generation's manifest copy, then
//! the current manifest last.
//!
//! Files up to [`MULTIPART_THRESHOLD`] go in one PUT; larger ones as a
//! multipart upload of [`PART_SIZE`] parts, [`PART_CONCURRENCY`] in flight,
//! so neither a whole large file nor more than a few parts are ever held in
//! memory. A file whose bytes disagree with the manifest is never completed
//! (its multipart upload is aborted, or its PUT never sent), and a failed
//! publish deletes what it had uploaded, best effort; what a crash leaves is
//! collected later.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt;
use kinema_core::{FileEntry, Manifest};
use object_store::path::Path as ObjectKey;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use super::S3Store;
use crate::StoreError;
use crate::layout;

/// Files above this size are sent as multipart uploads.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one part of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one file uploaded at once.
const PART_CONCURRENCY: usize = 4;
/// Files uploaded at once: segments are small, and one request at a time
/// would leave the link idle for every round trip.
const FILE_CONCURRENCY: usize = 8;

pub(super) async fn publish(
    store: &S3Store,
    manifest: &Manifest,
    staged_dir: &Path,
) -> Result<(), StoreError> {
    let json = manifest
        .to_json()
        .map_err(|source| StoreError::BadManifest {
            id: manifest.id.clone(),
            source,
        })?;
    let id = &manifest.id;
    let generation = manifest.generation;
    crate::check_replaces(manifest, store.current_manifest(id).await)?;
    check_generation_unwritten(store, manifest).await?;
    check_sizes(manifest, staged_dir).await?;

    let uploaded = futures::stream::iter(manifest.files.iter().map(Ok))
        .try_for_each_concurrent(FILE_CONCURRENCY, |entry| {
            let local = staged_dir.join(entry.path.as_str());
            let key = store.key(&layout::object_key(id, generation, &entry.path));
            async move { upload_file(store, entry, local, key).await }
        })
        .await;
    let finished = match uploaded {
        Ok(()) => write_manifests(store, manifest, json).await,
        Err(error) => Err(error),
    };
    if let Err(error) = finished {
        // Nothing of it is visible (no current manifest names it); free the
        // space now rather than at the next collection.
        let prefix = layout::generation_prefix(id, generation);
        if let Err(cleanup) = super::collect::delete_prefix(store, &prefix).await {
            tracing::warn!(%id, generation, error = %cleanup, "cannot delete what a failed publish uploaded; collection will");
        }
        return Err(error);
    }
    let staged = staged_dir.to_path_buf();
    if let Err(error) = tokio::fs::remove_dir_all(&staged).await {
        tracing::warn!(path = %staged.display(), %error, "published, but cannot remove the staged directory");
    }
    Ok(())
}

/// A generation is written once: what a crashed publish of the same
/// generation left is never overwritten with other bytes.
pub(super) async fn check_generation_unwritten(
    store: &S3Store,
    manifest: &Manifest,
) -> Result<(), StoreError> {
    let (id, generation) = (&manifest.id, manifest.generation);
    if !store
        .list_all(&layout::generation_prefix(id, generation))
        .await?
        .is_empty()
    {
        return Err(StoreError::StaleGeneration {
            id: id.clone(),
            generation,
            current: generation,
        });
    }
    Ok(())
}

/// The generation's manifest copy, then the current manifest: the video is
/// this generation from the last PUT on.
pub(super) async fn write_manifests(
    store: &S3Store,
    manifest: &Manifest,
    json: Vec<u8>,
) -> Result<(), StoreError> {
    let json = Bytes::from(json);
    let copy = store.key(&layout::generation_manifest_key(
        &manifest.id,
        manifest.generation,
    ));
    let current = store.key(&layout::current_manifest_key(&manifest.id));
    for key in [copy, current] {
        store
            .client
            .put(&key, PutPayload::from(json.clone()))
            .await
            .map_err(|error| store.remote("PUT", &key, error))?;
    }
    Ok(())
}

fn mismatch(entry: &FileEntry, detail: impl Into<String>) -> StoreError {
    StoreError::StagedFileMismatch {
        path: entry.path.to_string(),
        detail: detail.into(),
    }
}

/// Every listed file is a regular file of the listed size: checked before
/// anything is uploaded, so a staging mistake costs no upload.
async fn check_sizes(manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
    let (files, staged_dir) = (manifest.files.clone(), staged_dir.to_path_buf());
    blocking(move || {
        for entry in &files {
            let path = staged_dir.join(entry.path.as_str());
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| mismatch(entry, e.to_string()))?;
            if !meta.is_file() || meta.len() != entry.size {
                return Err(mismatch(
                    entry,
                    format!(
                        "expected a regular file of {} bytes, found {} bytes",
                        entry.size,
                        meta.len()
                    ),
                ));
            }
        }
        Ok(())
    })
    .await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::io(PathBuf::new(), std::io::Error::other(join)))?
}

fn open_staged(path: &Path) -> Result<std::fs::File, StoreError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

/// Reads up to `limit` bytes of `file` into the hash and a buffer.
fn read_chunk(
    file: &mut std::fs::File,
    hasher: &mut Sha256,
    limit: usize,
    path: &Path,
) -> Result<Bytes, StoreError> {
    let mut buffer = Vec::with_capacity(limit);
    file.by_ref()
        .take(limit as u64)
        .read_to_end(&mut buffer)
        .map_err(|e| StoreError::io(path, e))?;
    hasher.update(&buffer);
    Ok(Bytes::from(buffer))
}

/// The check that makes what was uploaded what the manifest says.
fn verify(entry: &FileEntry, size: u64, hasher: Sha256) -> Result<(), StoreError> {
    let sha256 = hex::encode(hasher.finalize());
    if size != entry.size {
        return Err(mismatch(
            entry,
            format!("{size} bytes read, the manifest says {}", entry.size),
        ));
    }
    if sha256 != entry.sha256 {
        return Err(mismatch(
            entry,
            format!("SHA-256 {sha256}, the manifest says {}", entry.sha256),
        ));
    }
    Ok(())
}

async fn upload_file(
    store: &S3Store,
    entry: &FileEntry,
    local: PathBuf,
    key: ObjectKey,
) -> Result<(), StoreError> {
    if entry.size <= MULTIPART_THRESHOLD {
        let limit = usize::try_from(entry.size)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let checked = entry.clone();
        let bytes = blocking(move || {
            let mut file = open_staged(&local)?;
            let mut hasher = Sha256::new();
            // One byte more than listed, so a file that grew is caught.
            let bytes = read_chunk(&mut file, &mut hasher, limit, &local)?;
            verify(&checked, bytes.len() as u64, hasher)?;
            Ok(bytes)
        })
        .await?;
        store
            .client
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|error| store.remote("PUT", &key, error))?;
        return Ok(());
    }
    let upload = store
        .client
        .put_multipart(&key)
        .await
        .map_err(|error| store.remote("PUT (multipart)", &key, error))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    match send_parts(store, &mut writer, entry, local, &key).await {
        Ok(()) => {
            writer
                .finish()
                .await
                .map_err(|error| store.remote("PUT (complete multipart)", &key, error))?;
            Ok(())
        }
        Err(error) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%key, error = %abort, "cannot abort a multipart upload");
            }
            Err(error)
        }
    }
}

/// Streams the file into `writer` part by part, hashing as it reads, and
/// checks the whole against the manifest before the upload may complete.
async fn send_parts(
    store: &S3Store,
    writer: &mut WriteMultipart,
    entry: &FileEntry,
    local: PathBuf,
    key: &ObjectKey,
) -> Result<(), StoreError> {
    let path = local.clone();
    let mut state = Some(blocking(move || Ok((open_staged(&path)?, Sha256::new()))).await?);
    let mut size = 0u64;
    loop {
        writer
            .wait_for_capacity(PART_CONCURRENCY)
            .await
            .map_err(|error| store.remote("PUT (part)", key, error))?;
        let (mut file, mut hasher) = state.take().expect("the file is put back after each read");
        let path = local.clone();
        let (file, hasher, chunk) = blocking(move || {
            let chunk = read_chunk(&mut file, &mut hasher, PART_SIZE, &path)?;
            Ok((file, hasher, chunk))
        })
        .await?;
        if chunk.is_empty() {
            return verify(entry, size, hasher);
        }
        size += chunk.len() as u64;
        if size > entry.size {
            return Err(mismatch(
                entry,
                format!("longer than the {} bytes the manifest says", entry.size),
            ));
        }
        writer.put(chunk);
        state = Some((file, hasher));
    }
}
