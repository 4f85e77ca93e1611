//! The local-directory backend.
//!
//! Layout under the library root ([`crate::layout`] holds the rules every
//! backend shares):
//!
//! ```text
//! videos/{id}/manifest.json         the current generation's manifest; the
//!                                   video exists iff this exists
//! videos/{id}/g{N}/manifest.json    generation N's copy of its manifest
//! videos/{id}/g{N}/...              the files generation N's manifest lists
//! staging/                          videos being assembled (same file
//!                                   system, so publishing is one rename)
//! trash/                            unpublished videos and collected
//!                                   generations awaiting deletion
//! ```
//!
//! Publishing writes the generation's manifest into the staged directory,
//! fsyncs every file and directory, renames the directory into place as
//! `videos/{id}/g{N}`, then replaces `videos/{id}/manifest.json` by a temp
//! file, fsync and rename: readers see the old generation or the whole new
//! one. Reads never follow symbolic links, so a link planted in the library
//! cannot expose a file outside it. Publishes, unpublishes and collection
//! of this store are serialised by one lock, so they never race over a
//! video's directory.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use kinema_core::{MANIFEST_FILE, Manifest, ObjectPath, VideoId};

use crate::layout;
use crate::{
    CollectedGeneration, ObjectMeta, Store, StoreError, StoreOptions, StoredFile, VideoMetadata,
};

mod collect;
mod publish;
mod read;
mod republish;

use collect::empty_trash;
use publish::{fsync_dir, write_file_atomically};
use read::{OpenFailure, open_no_follow, read_range};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    options: StoreOptions,
    /// Held (on the blocking pool, never across an `.await`) by whatever
    /// changes `videos/`.
    writing: Arc<Mutex<()>>,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::io(PathBuf::new(), std::io::Error::other(join)))?
}
impl LocalStore {
    /// Opens (creating if needed) a library rooted at `root`, with the
    /// default options.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(root, StoreOptions::default())
    }

    /// Opens (creating if needed) a library rooted at `root`.
    pub fn open_with(root: impl Into<PathBuf>, options: StoreOptions) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in [layout::VIDEOS, "staging", "trash"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(Self {
            root,
            options,
            writing: Arc::new(Mutex::new(())),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory for assembling videos before publish. It is on the same
    /// file system as `videos/`, so publishing from here is a rename.
    pub fn staging_root(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn videos(&self) -> PathBuf {
        self.root.join(layout::VIDEOS)
    }

    /// The path of a layout key (directory keys end in `/`, paths do not).
    fn local_path(&self, key: &str) -> PathBuf {
        self.root.join(key.trim_end_matches('/'))
    }

    fn video_dir(&self, id: &VideoId) -> PathBuf {
        self.local_path(&layout::video_prefix(id))
    }

    fn trash_path(&self, name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        self.root.join("trash").join(format!("{name}.{nanos}"))
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn list_videos(&self) -> Result<Vec<VideoId>, StoreError> {
        let videos = self.videos();
        blocking(move || {
            let mut ids = Vec::new();
            for entry in std::fs::read_dir(&videos).map_err(|e| StoreError::io(&videos, e))? {
                let entry = entry.map_err(|e| StoreError::io(&videos, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Ok(id) = VideoId::new(name) else { continue };
                // Neither a linked directory nor a linked manifest is a
                // video: reads never follow links.
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                if is_dir
                    && std::fs::symlink_metadata(entry.path().join(MANIFEST_FILE))
                        .is_ok_and(|meta| meta.is_file())
                {
                    ids.push(id);
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await
    }

    async fn manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        blocking(move || store.current_manifest(&id)).await
    }

    async fn generations(&self, id: &VideoId) -> Result<Vec<u64>, StoreError> {
        let video_dir = self.video_dir(id);
        blocking(move || {
            let entries = match std::fs::read_dir(&video_dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Vec::new());
                }
                Err(error) => return Err(StoreError::io(&video_dir, error)),
            };
            let mut generations = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&video_dir, e))?;
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                if let Some(generation) = entry
                    .file_name()
                    .to_str()
                    .and_then(layout::parse_generation_dir)
                    && is_dir
                {
                    generations.push(generation);
                }
            }
            generations.sort_unstable();
            Ok(generations)
        })
        .await
    }

    async fn manifest_of_generation(
        &self,
        id: &VideoId,
        generation: u64,
    ) -> Result<Manifest, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        blocking(move || store.generation_manifest(&id, generation)).await
    }

    async fn get(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<StoredFile, StoreError> {
        let (store, id, path) = (self.clone(), id.clone(), path.clone());
        blocking(move || {
            let mut file = store.open_object(&id, generation, &path)?;
            let modified = file.metadata().and_then(|meta| meta.modified()).ok();
            let bytes = read_range(&mut file, &path, None)?;
            Ok(StoredFile {
                bytes,
                file: Some(file),
                modified,
            })
        })
        .await
    }

    async fn get_range(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> Result<Bytes, StoreError> {
        let (store, id, path) = (self.clone(), id.clone(), path.clone());
        blocking(move || {
            let mut file = store.open_object(&id, generation, &path)?;
            read_range(&mut file, &path, Some(range))
        })
        .await
    }

    async fn head(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<ObjectMeta, StoreError> {
        let (store, id, path) = (self.clone(), id.clone(), path.clone());
        blocking(move || {
            let file = store.open_object(&id, generation, &path)?;
            let size = file
                .metadata()
                .map_err(|e| StoreError::io(path.as_str(), e))?
                .len();
            Ok(ObjectMeta { size })
        })
        .await
    }

    async fn publish(&self, manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
        let json = manifest
            .to_json()
            .map_err(|source| StoreError::BadManifest {
                id: manifest.id.clone(),
                source,
            })?;
        let (store, manifest, staged_dir) =
            (self.clone(), manifest.clone(), staged_dir.to_path_buf());
        blocking(move || store.publish_blocking(&manifest, &json, &staged_dir)).await
    }

    async fn republish(
        &self,
        manifest: &Manifest,
        from: u64,
        replaced: &[(ObjectPath, Bytes)],
    ) -> Result<(), StoreError> {
        let json = manifest
            .to_json()
            .map_err(|source| StoreError::BadManifest {
                id: manifest.id.clone(),
                source,
            })?;
        let (store, manifest, replaced) = (self.clone(), manifest.clone(), replaced.to_vec());
        blocking(move || store.republish_blocking(&manifest, &json, from, &replaced)).await
    }

    async fn unpublish(&self, id: &VideoId) -> Result<(), StoreError> {
        let (store, id) = (self.clone(), id.clone());
        blocking(move || {
            let _writing = store
                .writing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !matches!(std::fs::symlink_metadata(store.local_path(&layout::current_manifest_key(&id))), Ok(meta) if meta.is_file())
            {
                return Err(StoreError::VideoNotFound(id));
            }
            // One rename takes the current manifest and every generation out
            // of `videos/` at once.
            let source = store.video_dir(&id);
            let trash = store.trash_path(id.as_str());
            std::fs::rename(&source, &trash).map_err(|e| StoreError::io(&source, e))?;
            fsync_dir(&store.videos())?;
            empty_trash(&trash)
        })
        .await
    }

    async fn metadata(&self, id: &VideoId) -> Result<VideoMetadata, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        blocking(move || {
            store.current_manifest(&id)?;
            let components = [id.as_str(), crate::metadata::METADATA_FILE];
            let mut file = match open_no_follow(&store.videos(), &components) {
                Ok(file) => file,
                Err(OpenFailure::Missing(_)) => return Ok(VideoMetadata::default()),
                Err(OpenFailure::Io(at, e)) => return Err(StoreError::io(at, e)),
            };
            let path = store.local_path(&layout::metadata_key(&id));
            let mut bytes = Vec::new();
            // One byte past the bound, so an oversized object is refused.
            let limit = crate::metadata::MAX_METADATA_BYTES as u64 + 1;
            (&mut file)
                .take(limit)
                .read_to_end(&mut bytes)
                .map_err(|e| StoreError::io(&path, e))?;
            crate::parse_metadata(&id, &bytes)
        })
        .await
    }

    async fn set_metadata(&self, id: &VideoId, metadata: &VideoMetadata) -> Result<(), StoreError> {
        let json = crate::checked_metadata(id, metadata)?;
        let (store, id) = (self.clone(), id.clone());
        blocking(move || {
            // Under the write lock, so an unpublish cannot remove the video
            // between the check and the write and leave a stray object.
            let _writing = store
                .writing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            store.current_manifest(&id)?;
            write_file_atomically(&store.local_path(&layout::metadata_key(&id)), &json)
        })
        .await
    }

    async fn collect_retired(&self) -> Result<Vec<CollectedGeneration>, StoreError> {
        let store = self.clone();
        blocking(move || {
            let _writing = store
                .writing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // What a crash left in the trash goes first.
            let trash = store.root.join("trash");
            for entry in std::fs::read_dir(&trash).map_err(|e| StoreError::io(&trash, e))? {
                let path = entry.map_err(|e| StoreError::io(&trash, e))?.path();
                let removed = match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                    Ok(_) => std::fs::remove_file(&path),
                    Err(e) => Err(e),
                };
                match removed {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StoreError::io(&path, e));
                    }
                    _ => {}
                }
            }
            let videos = store.videos();
            let mut collected = Vec::new();
            for entry in std::fs::read_dir(&videos).map_err(|e| StoreError::io(&videos, e))? {
                let entry = entry.map_err(|e| StoreError::io(&videos, e))?;
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                let id = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| VideoId::new(name).ok());
                if let (true, Some(id)) = (is_dir, id) {
                    collected.extend(store.collect_video(&id)?);
                }
            }
            Ok(collected)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
