//! The local-directory backend.
//!
//! Layout under the library root:
//!
//! ```text
//! videos/{id}/manifest.json   the video exists iff this exists
//! videos/{id}/...             the files the manifest lists
//! staging/                    videos being assembled (same file system, so
//!                             publishing is one rename)
//! trash/                      unpublished videos awaiting deletion
//! ```
//!
//! Publishing writes the manifest into the staged directory, fsyncs every
//! file and directory, and renames the directory into `videos/`: one atomic
//! step. Reads never follow symbolic links, so a link planted in the library
//! cannot expose a file outside it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use kinema_core::{MANIFEST_FILE, Manifest, ObjectPath, VideoId};

use crate::{ObjectMeta, Store, StoreError, StoredFile};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::io(PathBuf::new(), std::io::Error::other(join)))?
}

impl LocalStore {
    /// Opens (creating if needed) a library rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in ["videos", "staging", "trash"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory for assembling videos before publish. It is on the same
    /// file system as `videos/`, so publishing from here is a rename.
    pub fn staging_root(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn video_dir(&self, id: &VideoId) -> PathBuf {
        self.root.join("videos").join(id.as_str())
    }

    /// Opens a file of a video for reading without following symbolic links
    /// in any component below the library's `videos/` directory.
    fn open_object(&self, id: &VideoId, path: &ObjectPath) -> Result<std::fs::File, StoreError> {
        let video_dir = self.video_dir(id);
        let mut current = video_dir.clone();
        let components: Vec<&str> = path.as_str().split('/').collect();
        let (file_name, directories) = components.split_last().expect("object paths are non-empty");
        for component in std::iter::once(&"").chain(directories.iter()) {
            if !component.is_empty() {
                current.push(component);
            }
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(self.not_found(id, path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(if current == video_dir {
                        StoreError::VideoNotFound(id.clone())
                    } else {
                        self.not_found(id, path)
                    });
                }
                Err(e) => return Err(StoreError::io(&current, e)),
            }
        }
        current.push(file_name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&current);
        match file {
            Ok(file) => {
                let meta = file.metadata().map_err(|e| StoreError::io(&current, e))?;
                if !meta.is_file() {
                    return Err(self.not_found(id, path));
                }
                Ok(file)
            }
            // ELOOP is what O_NOFOLLOW answers for a symbolic link.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                Err(self.not_found(id, path))
            }
            Err(e) => Err(StoreError::io(&current, e)),
        }
    }

    fn not_found(&self, id: &VideoId, path: &ObjectPath) -> StoreError {
        StoreError::ObjectNotFound {
            id: id.clone(),
            path: path.clone(),
        }
    }
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

/// Reads a video's manifest without following a symbolic link, neither
/// the video's directory nor the manifest itself: either is reported as
/// not found, so a link planted in the library publishes nothing.
fn read_manifest(video_dir: &Path, path: &Path) -> std::io::Result<Vec<u8>> {
    let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
    if !std::fs::symlink_metadata(video_dir)?.is_dir() {
        return Err(not_found());
    }
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        // ELOOP is what O_NOFOLLOW answers for a symbolic link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_found()),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(not_found());
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
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
        let videos = self.root.join("videos");
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
        let video_dir = self.video_dir(id);
        let id = id.clone();
        blocking(move || {
            let path = video_dir.join(MANIFEST_FILE);
            let bytes = match read_manifest(&video_dir, &path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::VideoNotFound(id));
                }
                Err(e) => return Err(StoreError::io(&path, e)),
            };
            Manifest::from_json(&bytes).map_err(|source| StoreError::BadManifest { id, source })
        })
        .await
    }

    async fn get(&self, id: &VideoId, path: &ObjectPath) -> Result<StoredFile, StoreError> {
        let (store, id, path) = (self.clone(), id.clone(), path.clone());
        blocking(move || {
            let mut file = store.open_object(&id, &path)?;
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
        path: &ObjectPath,
        range: Range<u64>,
    ) -> Result<Bytes, StoreError> {
        let (store, id, path) = (self.clone(), id.clone(), path.clone());
        blocking(move || {
            let mut file = store.open_object(&id, &path)?;
            read_range(&mut file, &path, Some(range))
        })
        .await
    }

    async fn head(&self, id: &VideoId, path: &ObjectPath) -> Result<ObjectMeta, StoreError> {
        let (store, id, path) = (self.clone(), id.clone(), path.clone());
        blocking(move || {
            let file = store.open_object(&id, &path)?;
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
        let manifest = manifest.clone();
        let staged_dir = staged_dir.to_path_buf();
        let target = self.video_dir(&manifest.id);
        let videos = self.root.join("videos");
        blocking(move || {
            for entry in &manifest.files {
                let path = staged_dir.join(entry.path.as_str());
                let meta = std::fs::symlink_metadata(&path).map_err(|e| {
                    StoreError::StagedFileMismatch {
                        path: entry.path.to_string(),
                        detail: e.to_string(),
                    }
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
            let manifest_tmp = staged_dir.join(".manifest.json.tmp");
            let manifest_path = staged_dir.join(MANIFEST_FILE);
            let mut file = std::fs::File::create(&manifest_tmp)
                .map_err(|e| StoreError::io(&manifest_tmp, e))?;
            file.write_all(&json)
                .map_err(|e| StoreError::io(&manifest_tmp, e))?;
            drop(file);
            std::fs::rename(&manifest_tmp, &manifest_path)
                .map_err(|e| StoreError::io(&manifest_path, e))?;
            fsync_tree(&staged_dir)?;
            if target.exists() {
                return Err(StoreError::AlreadyPublished(manifest.id.clone()));
            }
            // rename(2) of a directory onto a missing name is atomic: readers
            // see either no video or the whole video with its manifest.
            std::fs::rename(&staged_dir, &target).map_err(|e| StoreError::io(&target, e))?;
            fsync_dir(&videos)
        })
        .await
    }

    async fn unpublish(&self, id: &VideoId) -> Result<(), StoreError> {
        let source = self.video_dir(id);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let trash = self.root.join("trash").join(format!("{id}.{nanos}"));
        let videos = self.root.join("videos");
        let id = id.clone();
        blocking(move || {
            match std::fs::rename(&source, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::VideoNotFound(id));
                }
                Err(e) => return Err(StoreError::io(&source, e)),
            }
            fsync_dir(&videos)?;
            std::fs::remove_dir_all(&trash).map_err(|e| StoreError::io(&trash, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe_files;
    use kinema_core::{AccessPolicy, MANIFEST_FORMAT_VERSION};

    fn id(name: &str) -> VideoId {
        VideoId::new(name).unwrap()
    }

    fn object(path: &str) -> ObjectPath {
        ObjectPath::new(path).unwrap()
    }

    async fn publish_sample(store: &LocalStore, name: &str) -> Manifest {
        let staged = store.staging_root().join(format!("job-{name}"));
        std::fs::create_dir_all(staged.join("v1")).unwrap();
        std::fs::write(staged.join("master.m3u8"), b"#EXTM3U\n").unwrap();
        std::fs::write(staged.join("v1/1.m4s"), b"0123456789").unwrap();
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id(name),
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

    #[tokio::test]
    async fn publish_then_read_whole_and_ranges() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open(root.path()).unwrap();
        let manifest = publish_sample(&store, "clip").await;
        assert_eq!(manifest.files.len(), 2);
        assert_eq!(store.list_videos().await.unwrap(), vec![id("clip")]);
        assert_eq!(store.manifest(&id("clip")).await.unwrap(), manifest);
        let segment = object("v1/1.m4s");
        let whole = store.get(&id("clip"), &segment).await.unwrap();
        assert_eq!(&whole.bytes[..], b"0123456789");
        assert_eq!(
            &store.get_range(&id("clip"), &segment, 2..5).await.unwrap()[..],
            b"234"
        );
        assert_eq!(store.head(&id("clip"), &segment).await.unwrap().size, 10);
        assert!(matches!(
            store.get_range(&id("clip"), &segment, 5..11).await,
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
    async fn publish_refuses_mismatched_staged_files_and_duplicates() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open(root.path()).unwrap();
        let mut manifest = publish_sample(&store, "clip").await;
        let staged = store.staging_root().join("again");
        std::fs::create_dir_all(staged.join("v1")).unwrap();
        std::fs::write(staged.join("master.m3u8"), b"#EXTM3U\n").unwrap();
        std::fs::write(staged.join("v1/1.m4s"), b"short").unwrap();
        assert!(matches!(
            store.publish(&manifest, &staged).await,
            Err(StoreError::StagedFileMismatch { .. })
        ));
        std::fs::write(staged.join("v1/1.m4s"), b"0123456789").unwrap();
        assert!(matches!(
            store.publish(&manifest, &staged).await,
            Err(StoreError::AlreadyPublished(_))
        ));
        manifest.id = id("other");
        store.publish(&manifest, &staged).await.unwrap();
        assert_eq!(
            store.list_videos().await.unwrap(),
            vec![id("clip"), id("other")]
        );
    }

    #[tokio::test]
    async fn unpublish_removes_the_whole_video() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open(root.path()).unwrap();
        publish_sample(&store, "clip").await;
        store.unpublish(&id("clip")).await.unwrap();
        assert!(store.list_videos().await.unwrap().is_empty());
        assert!(
            store
                .get(&id("clip"), &object("v1/1.m4s"))
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
                    .get(&id(name), &object("v1/1.m4s"))
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
        let video = root.path().join("videos/clip");
        std::os::unix::fs::symlink(outside.path().join("secret"), video.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), video.join("dir")).unwrap();
        for path in ["link", "dir/secret"] {
            let err = store.get(&id("clip"), &object(path)).await.unwrap_err();
            assert!(err.is_not_found(), "{path}: {err}");
        }
    }
}
