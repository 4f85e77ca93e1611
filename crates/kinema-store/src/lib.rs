//! Where published videos live.
//!
//! [`Store`] is the one interface the servers and the ingest pipeline use to
//! read and publish videos. Its shape fits both a local directory and an
//! S3-style object store: whole and ranged reads, `head`, listing, and a
//! publish that makes a video visible in one step by writing its manifest
//! last — no rename of published objects is ever needed by callers.
//!
//! Every publish is a new *generation* of its video, stored apart from the
//! others ([`layout`] says where, for every backend), so a file once
//! published under a generation never changes; a replaced generation stays
//! readable for a grace period ([`StoreOptions::retired_grace`]).
//!
//! This crate is not a cache and knows nothing of HTTP.

pub mod layout;
mod local;
pub mod metadata;
mod open;
pub mod s3;

use std::fmt::Debug;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kinema_core::{FileEntry, MANIFEST_FILE, Manifest, ManifestError, ObjectPath, VideoId};
use sha2::{Digest, Sha256};

pub use local::LocalStore;
pub use metadata::VideoMetadata;
pub use open::{Library, StoreConfig, open, open_job_objects, open_with};
pub use s3::S3Store;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("video {0} does not exist")]
    VideoNotFound(VideoId),
    #[error("{id}/{path} does not exist")]
    ObjectNotFound { id: VideoId, path: ObjectPath },
    #[error("bytes {start}..{end} are outside {path}, which has {size} bytes")]
    RangeOutOfBounds {
        path: ObjectPath,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("manifest of video {id} is invalid: {source}")]
    BadManifest {
        id: VideoId,
        #[source]
        source: ManifestError,
    },
    #[error("video {id} has no generation {generation} (replaced long enough ago, or never)")]
    GenerationNotFound { id: VideoId, generation: u64 },
    #[error(
        "video {id} is already at generation {current}, not older than {generation}; publish a newer generation"
    )]
    StaleGeneration {
        id: VideoId,
        generation: u64,
        current: u64,
    },
    #[error("staged file {path} does not match the manifest: {detail}")]
    StagedFileMismatch { path: String, detail: String },
    #[error("metadata of video {id} is invalid: {detail}")]
    BadMetadata { id: VideoId, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The object store failed a request after its retries, or could not be
    /// reached: the store is unavailable, and the same call may succeed later.
    #[error("object store {operation} {key}: {source}")]
    Remote {
        operation: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// An object written from a stream passed its limit; nothing of it was kept.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// The store cannot be opened as configured; `setting` names what to fix.
    #[error("{setting}: {message}")]
    Config { setting: String, message: String },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the store itself is unreachable or failing (an object
    /// store down, timing out or refusing): worth a 503 and a retry, not a
    /// 404 or a 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Remote { .. })
    }

    /// True when the error means "no such video or file" (HTTP 404), as
    /// opposed to a failure of the store itself.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::VideoNotFound(_)
                | StoreError::ObjectNotFound { .. }
                | StoreError::GenerationNotFound { .. }
        )
    }
}

/// A whole file, as [`Store::get`] reads it.
#[derive(Debug)]
pub struct StoredFile {
    pub bytes: Bytes,
    /// The published file `bytes` were read from, still open, when the store
    /// keeps files on a local filesystem (a remote store has none). Published
    /// files are never written again, so it holds `bytes` for as long as it
    /// is open (even once unpublished), and the kernel can send it from its
    /// page cache.
    pub file: Option<std::fs::File>,
    /// `file`'s modification time as it was before `bytes` were read, so a
    /// caller can tell whether the file was written since (during the read
    /// or after it).
    pub modified: Option<std::time::SystemTime>,
}

/// What `head` tells about an object without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
}

/// Settings every backend shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a replaced generation stays readable after the generation
    /// that replaced it began; must exceed the playlists' `max-age` plus a
    /// viewing session, so no player that loaded the old playlists meets a
    /// missing file.
    pub retired_grace: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retired_grace: layout::DEFAULT_RETIRED_GRACE,
        }
    }
}

/// A generation deleted by [`Store::collect_retired`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedGeneration {
    pub id: VideoId,
    pub generation: u64,
}

/// Every read names a generation: a file, once published under one, never
/// changes, so whatever is read from `(id, generation, path)` may be cached
/// forever. Where each lives is [`layout`]'s, the same for every backend.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Ids of every published video (those whose current manifest exists).
    async fn list_videos(&self) -> Result<Vec<VideoId>, StoreError>;

    /// The parsed, validated manifest of a video's current generation
    /// (`VideoNotFound` when it has none).
    async fn manifest(&self, id: &VideoId) -> Result<Manifest, StoreError>;

    /// The generations of a video present in the store, ascending:
    /// current, retired and unfinished alike (empty when there are none).
    /// One listing, so a server can tell a made-up generation number from
    /// one worth reading without a read per number.
    async fn generations(&self, id: &VideoId) -> Result<Vec<u64>, StoreError>;

    /// The manifest of one generation, current or retired but not yet
    /// collected (`GenerationNotFound` otherwise).
    async fn manifest_of_generation(
        &self,
        id: &VideoId,
        generation: u64,
    ) -> Result<Manifest, StoreError>;

    /// The whole content of one file of a generation.
    async fn get(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<StoredFile, StoreError>;

    /// Bytes `range` of one file of a generation; the range must lie inside
    /// the file.
    async fn get_range(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> Result<Bytes, StoreError>;

    async fn head(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<ObjectMeta, StoreError>;

    /// Publishes generation `manifest.generation` of a video from files
    /// assembled under `staged_dir` (a local directory laid out as the
    /// generation), checking each against the manifest's sizes. The files and
    /// the generation's manifest come first and the video's current manifest
    /// last, so readers see the old generation or the whole new one. A
    /// published video is replaced: its old generation is retired (kept for
    /// the grace period). Refused with `StaleGeneration` unless the
    /// generation is newer than the current one. `staged_dir` is consumed.
    /// Retired generations of this video past their grace are collected.
    async fn publish(&self, manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError>;

    /// Publishes `manifest`, a newer generation of a published video whose
    /// files are generation `from`'s but for `replaced` (path, new content):
    /// the others are copied inside the store (hard links in a local
    /// directory, server-side copies on S3), so a change that must not
    /// reuse the old URLs, such as the access policy, uploads no media.
    /// Every replaced content must match its manifest entry, every other
    /// entry `from`'s entry of the same path ([`check_republish`]); then as
    /// [`Store::publish`]: the current manifest last, `from` retired. A
    /// store that keeps no files of its own (a test double) refuses.
    async fn republish(
        &self,
        manifest: &Manifest,
        from: u64,
        replaced: &[(ObjectPath, Bytes)],
    ) -> Result<(), StoreError> {
        let _ = (from, replaced);
        Err(StoreError::Config {
            setting: "store".into(),
            message: format!("this store cannot republish {}", manifest.id),
        })
    }

    /// Removes a video at once: its current manifest first (it is gone from
    /// then on), then every generation, retired ones included.
    async fn unpublish(&self, id: &VideoId) -> Result<(), StoreError>;

    /// Deletes, across the library, every retired generation past its grace
    /// and what publishes that never finished left behind, as
    /// [`layout::collectable_generations`] decides. Run at start; publish
    /// does it for its own video, and unpublish removes every generation.
    async fn collect_retired(&self) -> Result<Vec<CollectedGeneration>, StoreError>;

    /// The editable metadata of a published video ([`metadata`]), empty
    /// when none was set; `VideoNotFound` when the video is not published.
    /// A store that keeps none (a test double) has none.
    async fn metadata(&self, id: &VideoId) -> Result<VideoMetadata, StoreError> {
        self.manifest(id).await?;
        Ok(VideoMetadata::default())
    }

    /// Replaces the editable metadata of a published video in one write
    /// (`VideoNotFound` when it is not published), after checking its
    /// bounds (`BadMetadata`). Its media and manifest are untouched.
    async fn set_metadata(&self, id: &VideoId, metadata: &VideoMetadata) -> Result<(), StoreError> {
        let _ = metadata;
        Err(StoreError::Config {
            setting: "store".into(),
            message: format!("this store keeps no editable metadata for {id}"),
        })
    }
}

/// Checks `metadata` before a backend writes it.
pub(crate) fn checked_metadata(
    id: &VideoId,
    metadata: &VideoMetadata,
) -> Result<Vec<u8>, StoreError> {
    metadata.check().map_err(|detail| StoreError::BadMetadata {
        id: id.clone(),
        detail,
    })?;
    Ok(metadata.to_json())
}

/// Parses a stored metadata object.
pub(crate) fn parse_metadata(id: &VideoId, bytes: &[u8]) -> Result<VideoMetadata, StoreError> {
    VideoMetadata::from_json(bytes).map_err(|detail| StoreError::BadMetadata {
        id: id.clone(),
        detail,
    })
}

/// Runs [`Store::collect_retired`] once, logging each generation it deleted;
/// a failure is logged and left for the next run. For the periodic and
/// start-up collections of the servers and the CLI.
pub async fn collect_retired_logged(store: &dyn Store) {
    match store.collect_retired().await {
        Ok(collected) => {
            for gone in collected {
                tracing::info!(video = %gone.id, generation = gone.generation,
                    "deleted a retired generation past its grace");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot delete retired generations; the next collection tries again")
        }
    }
}

/// Whether `manifest` may be published over `current` (the store's current
/// manifest of the video, as read): only a newer generation replaces one,
/// and an unreadable current manifest (a video from before generations)
/// is not replaced blindly: its error says what to do. The one rule every
/// backend applies before writing anything.
pub(crate) fn check_replaces(
    manifest: &Manifest,
    current: Result<Manifest, StoreError>,
) -> Result<(), StoreError> {
    match current {
        Ok(current) if current.generation >= manifest.generation => {
            Err(StoreError::StaleGeneration {
                id: manifest.id.clone(),
                generation: manifest.generation,
                current: current.generation,
            })
        }
        Ok(_) | Err(StoreError::VideoNotFound(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

/// Whether `manifest` may be republished from `from` (generation `from`'s
/// manifest, as read) with `replaced`: the same video, every replaced path
/// listed once with the size and SHA-256 of its new content, and every other
/// entry exactly `from`'s entry of that path, so the copies need no check of
/// their own. The one rule every backend applies before copying anything.
pub fn check_republish(
    manifest: &Manifest,
    from: &Manifest,
    replaced: &[(ObjectPath, Bytes)],
) -> Result<(), StoreError> {
    let mismatch = |path: &ObjectPath, detail: String| StoreError::StagedFileMismatch {
        path: path.to_string(),
        detail,
    };
    if manifest.id != from.id {
        return Err(StoreError::Config {
            setting: "republish".into(),
            message: format!("{} cannot be republished from {}", manifest.id, from.id),
        });
    }
    for (index, (path, bytes)) in replaced.iter().enumerate() {
        if replaced[..index].iter().any(|(earlier, _)| earlier == path) {
            return Err(mismatch(path, "replaced twice".into()));
        }
        let Some(entry) = manifest.file(path) else {
            return Err(mismatch(path, "replaced but not in the manifest".into()));
        };
        let sha256 = hex::encode(Sha256::digest(bytes));
        if entry.size != bytes.len() as u64 || entry.sha256 != sha256 {
            return Err(mismatch(
                path,
                format!(
                    "new content of {} bytes with SHA-256 {sha256}, the manifest says {} bytes, {}",
                    bytes.len(),
                    entry.size,
                    entry.sha256
                ),
            ));
        }
    }
    for entry in &manifest.files {
        if replaced.iter().any(|(path, _)| path == &entry.path) {
            continue;
        }
        if from.file(&entry.path) != Some(entry) {
            return Err(mismatch(
                &entry.path,
                format!(
                    "not replaced, and not as generation {} lists it",
                    from.generation
                ),
            ));
        }
    }
    Ok(())
}

/// Size and SHA-256 of every file under `dir` (recursively), as manifest
/// entries sorted by path. Used by the publisher to describe a staged video;
/// runs on the blocking pool. A manifest already present is skipped.
pub async fn describe_files(dir: &Path) -> Result<Vec<FileEntry>, StoreError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut entries = Vec::new();
        describe_dir(&dir, &dir, &mut entries)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    })
    .await
    .map_err(|join| StoreError::io(PathBuf::new(), std::io::Error::other(join)))?
}

fn describe_dir(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> Result<(), StoreError> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in read_dir {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StoreError::io(&path, e))?;
        if file_type.is_dir() {
            describe_dir(root, &path, out)?;
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map_err(|e| StoreError::io(&path, std::io::Error::other(e)))?
            .to_string_lossy()
            .into_owned();
        if relative == MANIFEST_FILE {
            continue;
        }
        if !file_type.is_file() {
            return Err(StoreError::StagedFileMismatch {
                path: relative,
                detail: "not a regular file".into(),
            });
        }
        let object_path =
            ObjectPath::new(relative.clone()).map_err(|e| StoreError::StagedFileMismatch {
                path: relative.clone(),
                detail: e.to_string(),
            })?;
        let (size, sha256) = checksum_file(&path)?;
        out.push(FileEntry {
            path: object_path,
            size,
            sha256,
        });
    }
    Ok(())
}

/// Size and lowercase-hex SHA-256 of one file (blocking).
pub fn checksum_file(path: &Path) -> Result<(u64, String), StoreError> {
    let mut file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| StoreError::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}
