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

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
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

/// Why a path could not be opened without following links.
enum OpenFailure {
    /// The component at this index (0 = the first) is missing, or is not
    /// what it must be (a directory before the last, a regular file last).
    Missing(usize),
    Io(PathBuf, std::io::Error),
}

/// Opens `base/components…` for reading without following a symbolic link in
/// any component: a link is reported as missing, like anything that is not a
/// directory (before the last) or a regular file (the last).
fn open_no_follow(base: &Path, components: &[&str]) -> Result<std::fs::File, OpenFailure> {
    let (file_name, directories) = components
        .split_last()
        .expect("a path to open has at least one component");
    let mut current = base.to_path_buf();
    for (index, directory) in directories.iter().enumerate() {
        current.push(directory);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(OpenFailure::Missing(index)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenFailure::Missing(index));
            }
            Err(e) => return Err(OpenFailure::Io(current, e)),
        }
    }
    current.push(file_name);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&current);
    let last = directories.len();
    match opened {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.is_file() => Ok(file),
            Ok(_) => Err(OpenFailure::Missing(last)),
            Err(e) => Err(OpenFailure::Io(current, e)),
        },
        // ELOOP is what O_NOFOLLOW answers for a symbolic link.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            Err(OpenFailure::Missing(last))
        }
        Err(e) => Err(OpenFailure::Io(current, e)),
    }
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

    /// Opens a file of a generation without following symbolic links in any
    /// component below the library's `videos/` directory.
    fn open_object(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<std::fs::File, StoreError> {
        let generation_dir = layout::generation_dir(generation);
        let mut components = vec![id.as_str(), generation_dir.as_str()];
        components.extend(path.as_str().split('/'));
        open_no_follow(&self.videos(), &components).map_err(|failure| match failure {
            OpenFailure::Missing(0) => StoreError::VideoNotFound(id.clone()),
            OpenFailure::Missing(1) => StoreError::GenerationNotFound {
                id: id.clone(),
                generation,
            },
            OpenFailure::Missing(_) => StoreError::ObjectNotFound {
                id: id.clone(),
                path: path.clone(),
            },
            OpenFailure::Io(at, e) => StoreError::io(at, e),
        })
    }

    /// Reads and parses a manifest below `videos/` (`components` from the
    /// video's id on), following no link: a linked video directory,
    /// generation directory or manifest is missing, so a link planted in the
    /// library publishes nothing. `missing` names the error for a missing
    /// component at that index.
    fn read_manifest(
        &self,
        id: &VideoId,
        components: &[&str],
        missing: impl Fn(usize) -> StoreError,
    ) -> Result<Manifest, StoreError> {
        let mut file =
            open_no_follow(&self.videos(), components).map_err(|failure| match failure {
                OpenFailure::Missing(index) => missing(index),
                OpenFailure::Io(at, e) => StoreError::io(at, e),
            })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(self.videos().join(components.join("/")), e))?;
        Manifest::from_json(&bytes).map_err(|source| StoreError::BadManifest {
            id: id.clone(),
            source,
        })
    }

    fn current_manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        self.read_manifest(id, &[id.as_str(), MANIFEST_FILE], |_| {
            StoreError::VideoNotFound(id.clone())
        })
    }

    fn generation_manifest(&self, id: &VideoId, generation: u64) -> Result<Manifest, StoreError> {
        let generation_dir = layout::generation_dir(generation);
        let manifest = self.read_manifest(
            id,
            &[id.as_str(), generation_dir.as_str(), MANIFEST_FILE],
            |index| match index {
                0 => StoreError::VideoNotFound(id.clone()),
                _ => StoreError::GenerationNotFound {
                    id: id.clone(),
                    generation,
                },
            },
        )?;
        if manifest.generation != generation || &manifest.id != id {
            return Err(StoreError::GenerationNotFound {
                id: id.clone(),
                generation,
            });
        }
        Ok(manifest)
    }

    /// The blocking half of `publish`. A staged directory on another file
    /// system (an ingest workspace on another disk) is copied into the
    /// library's own `staging/` first, since only from there is a
    /// generation's arrival one rename; the copy stands in for it from then
    /// on, and the original is consumed either way.
    fn publish_blocking(
        &self,
        manifest: &Manifest,
        json: &[u8],
        staged_dir: &Path,
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let device = |path: &Path| {
            std::fs::metadata(path)
                .map(|meta| meta.dev())
                .map_err(|e| StoreError::io(path, e))
        };
        if device(staged_dir)? == device(&self.root)? {
            return self.publish_same_fs(manifest, json, staged_dir);
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let copy = self.staging_root().join(format!(
            "copy-{}-{}-{nanos}",
            manifest.id,
            std::process::id()
        ));
        let result =
            copy_tree(staged_dir, &copy).and_then(|()| self.publish_same_fs(manifest, json, &copy));
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&copy);
        }
        let _ = std::fs::remove_dir_all(staged_dir);
        result
    }

    /// Publishes `staged_dir`, which is on the library's file system.
    fn publish_same_fs(
        &self,
        manifest: &Manifest,
        json: &[u8],
        staged_dir: &Path,
    ) -> Result<(), StoreError> {
        check_staged_files(manifest, staged_dir)?;
        write_file_atomically(&staged_dir.join(MANIFEST_FILE), json)?;
        fsync_tree(staged_dir)?;

        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = &manifest.id;
        crate::check_replaces(manifest, self.current_manifest(id))?;
        let video_dir = self.video_dir(id);
        let mut made_video_dir = false;
        match std::fs::symlink_metadata(&video_dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::io(
                    &video_dir,
                    std::io::Error::other("not a directory; remove it"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&video_dir).map_err(|e| StoreError::io(&video_dir, e))?;
                made_video_dir = true;
                fsync_dir(&self.videos())?;
            }
            Err(e) => return Err(StoreError::io(&video_dir, e)),
        }
        let target = self.local_path(&layout::generation_prefix(id, manifest.generation));
        if std::fs::symlink_metadata(&target).is_ok() {
            // Left by a publish of the same generation that crashed before
            // its top manifest: never overwritten, so a cache that saw it
            // cannot see other bytes under the same URL.
            return Err(StoreError::StaleGeneration {
                id: id.clone(),
                generation: manifest.generation,
                current: manifest.generation,
            });
        }
        // rename(2) of a directory onto a missing name is atomic: the
        // generation appears whole with its manifest.
        std::fs::rename(staged_dir, &target).map_err(|e| StoreError::io(&target, e))?;
        // Last: the video now is this generation.
        let current = self.local_path(&layout::current_manifest_key(id));
        if let Err(error) = fsync_dir(&video_dir).and_then(|()| replace_file(&current, json)) {
            // The video stays what it was. The generation nobody can see
            // goes, so a full disk gets its space back, and so does a video
            // directory this publish made.
            let trash = self.trash_path(&format!("{id}.g{}", manifest.generation));
            if std::fs::rename(&target, &trash).is_ok() {
                let _ = empty_trash(&trash);
            }
            if made_video_dir {
                let _ = std::fs::remove_dir(&video_dir);
            }
            return Err(error);
        }
        // Published; only whether the rename is durable yet is in question.
        fsync_dir(&video_dir)?;
        if let Err(error) = self.collect_video(id) {
            tracing::warn!(%id, error = %error, "collecting retired generations failed");
        }
        Ok(())
    }

    /// Deletes the generations of one video that `layout` says may go.
    /// Called with the write lock held.
    fn collect_video(&self, id: &VideoId) -> Result<Vec<CollectedGeneration>, StoreError> {
        let video_dir = self.video_dir(id);
        let current = match self.current_manifest(id) {
            Ok(manifest) => Some(manifest.generation),
            Err(StoreError::VideoNotFound(_)) => None,
            // Unsure what is current: delete nothing.
            Err(_) => return Ok(Vec::new()),
        };
        let entries = match std::fs::read_dir(&video_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&video_dir, e)),
        };
        let mut present = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&video_dir, e))?;
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if let (true, Some(generation)) = (
                is_dir,
                entry
                    .file_name()
                    .to_str()
                    .and_then(layout::parse_generation_dir),
            ) {
                present.push(generation);
            }
        }
        let now = layout::unix_millis(SystemTime::now());
        let mut collected = Vec::new();
        for generation in
            layout::collectable_generations(&present, current, now, self.options.retired_grace)
        {
            let directory = self.local_path(&layout::generation_prefix(id, generation));
            let trash = self.trash_path(&format!("{id}.g{generation}"));
            // Out of `videos/` in one step, so no reader sees a generation
            // half deleted.
            std::fs::rename(&directory, &trash).map_err(|e| StoreError::io(&directory, e))?;
            empty_trash(&trash)?;
            tracing::info!(%id, generation, "collected a retired generation");
            collected.push(CollectedGeneration {
                id: id.clone(),
                generation,
            });
        }
        if !collected.is_empty() {
            fsync_dir(&video_dir)?;
        }
        if current.is_none() {
            // Nothing left of a video nobody publishes: drop its directory
            // (only if empty).
            let _ = std::fs::remove_dir(&video_dir);
        }
        Ok(collected)
    }
}

/// Deletes something moved into `trash/`. Another process's collection
/// may be deleting it too (it empties the trash at start), so what is
/// already gone is not an error.
fn empty_trash(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
        _ => Ok(()),
    }
}

/// Checks the staged files against the manifest's sizes.
fn check_staged_files(manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
    for entry in &manifest.files {
        let path = staged_dir.join(entry.path.as_str());
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| StoreError::StagedFileMismatch {
                path: entry.path.to_string(),
                detail: e.to_string(),
            })?;
        if !meta.is_file() || meta.len() != entry.size {
            return Err(StoreError::StagedFileMismatch {
                path: entry.path.to_string(),
                detail: format!(
                    "expected a regular file of {} bytes, found {} bytes",
                    entry.size,
                    meta.len()
                ),
            });
        }
    }
    Ok(())
}

/// Writes `path` as a whole: a temp file beside it, fsynced, renamed over
/// it, and the directory fsynced, so a crash leaves the old file or the new.
fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace_file(path, bytes)?;
    fsync_dir(path.parent().expect("a file in a directory"))
}

/// Replaces `path` by a temp file beside it, written, fsynced and renamed
/// over it (the directory is not fsynced). An error means `path` is as it
/// was, and the temp file is gone.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let directory = path.parent().expect("a file in a directory");
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temporary = directory.join(format!(".{name}.tmp"));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|e| StoreError::io(&temporary, e))
        .and_then(|()| std::fs::rename(&temporary, path).map_err(|e| StoreError::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Reads `range` of an open object (all of it when `None`).
fn read_range(
    file: &mut std::fs::File,
    path: &ObjectPath,
    range: Option<Range<u64>>,
) -> Result<Bytes, StoreError> {
    let size = file
        .metadata()
        .map_err(|e| StoreError::io(path.as_str(), e))?
        .len();
    let range = range.unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(StoreError::RangeOutOfBounds {
            path: path.clone(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    let length = usize::try_from(range.end - range.start)
        .map_err(|e| StoreError::io(path.as_str(), std::io::Error::other(e)))?;
    let mut buffer = vec![0u8; length];
    file.seek(SeekFrom::Start(range.start))
        .map_err(|e| StoreError::io(path.as_str(), e))?;
    file.read_exact(&mut buffer)
        .map_err(|e| StoreError::io(path.as_str(), e))?;
    Ok(Bytes::from(buffer))
}

/// Copies a staged directory (directories and regular files only; a
/// staged video has nothing else) to `to`, which must not exist.
fn copy_tree(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir(to).map_err(|e| StoreError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| StoreError::io(from, e))? {
        let entry = entry.map_err(|e| StoreError::io(from, e))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let file_type = entry.file_type().map_err(|e| StoreError::io(&source, e))?;
        if file_type.is_dir() {
            copy_tree(&source, &target)?;
        } else if file_type.is_file() {
            std::fs::copy(&source, &target).map_err(|e| StoreError::io(&target, e))?;
        } else {
            return Err(StoreError::StagedFileMismatch {
                path: source.to_string_lossy().into_owned(),
                detail: "not a regular file".into(),
            });
        }
    }
    Ok(())
}

fn fsync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StoreError::io(&path, e))?;
        if file_type.is_dir() {
            fsync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::io(&path, e))?;
        }
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(dir, e))
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
