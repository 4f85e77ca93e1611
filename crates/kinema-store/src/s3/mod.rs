//! The S3 backend: a library in any S3-protocol object store (AWS S3, Garage,
//! Ceph RGW, SeaweedFS, R2, s3s-fs in the tests), through `object_store`.
//!
//! The bucket holds exactly [`crate::layout`] under the configured prefix.
//! There is no rename on S3, so a publish uploads every file of the new
//! generation (each checked against the manifest's SHA-256 while it is read
//! and sent with an `x-amz-checksum-sha256` the server verifies), then the
//! generation's manifest copy, then the current manifest last: readers see
//! the old generation or the whole new one. Unpublishing deletes the current
//! manifest first. What a crashed publish left is never listed (it has no
//! current manifest, or is newer than it) and is deleted by
//! [`Store::collect_retired`], run at start.
//!
//! Every request has a connect timeout, a timeout between reads and an
//! overall timeout, and a bounded number of retries with backoff, so a store
//! that is down or stalls fails every call within seconds, never hangs it.
//!
//! Nothing here relies on conditional writes (`If-None-Match`), which not
//! every S3 service honours: two publishes of one id racing is prevented by
//! whoever runs them, not by the store. Reads of a current manifest, which a
//! server repeats every `manifest_refresh` for each video being watched, are
//! conditional on the ETag last read (a `304` then carries no body); a
//! store that ignores the condition answers in full, which is as correct.

mod collect;
mod connect;
mod credentials;
mod job_objects;
mod publish;
mod republish;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use kinema_core::{Manifest, ObjectPath, VideoId};
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectKey;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::layout;
use crate::{CollectedGeneration, ObjectMeta, Store, StoreError, StoreOptions, StoredFile};

pub use connect::S3Location;
pub use credentials::S3Credentials;
pub use job_objects::{JOBS, JobObject, JobObjectVersion, JobObjects, is_valid_job_name};
pub use publish::MULTIPART_THRESHOLD;

/// How many manifests `list_videos` asks for at once.
const LIST_CONCURRENCY: usize = 16;
/// Most current manifests remembered for conditional reads; beyond it the
/// table is emptied (the next read of each is a full one).
const MAX_REMEMBERED_MANIFESTS: usize = 10_000;

/// A current manifest as last read, with its ETag.
#[derive(Debug)]
struct ReadManifest {
    etag: String,
    manifest: Manifest,
}

/// Everything needed to reach one library in an S3-protocol store.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub location: S3Location,
    /// `https://…` or `http://…`; `None`: AWS S3 itself, from the region.
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host
    /// (`bucket.endpoint/key`) addressing; `None`: path style when an
    /// endpoint is given (what self-hosted stores expect), virtual-host for
    /// AWS.
    pub path_style: Option<bool>,
    /// `None`: from the standard AWS environment variables, else the profile
    /// `AWS_PROFILE` (or `default`) of the shared credentials file.
    pub credentials: Option<S3Credentials>,
    /// A generation nothing was written to for this long is no longer taken
    /// for a publish in progress (on this node or another), so collection
    /// may delete it; longer than any publish stalls between two uploads.
    pub unfinished_quiet: Duration,
    pub timeouts: S3Timeouts,
}

impl S3Config {
    /// A library at `location` with every other setting at its default.
    pub fn new(location: S3Location) -> Self {
        Self {
            location,
            endpoint: None,
            region: None,
            path_style: None,
            credentials: None,
            unfinished_quiet: Duration::from_secs(60 * 60),
            timeouts: S3Timeouts::default(),
        }
    }
}

/// Bounds on every request to the object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// Between two reads of a response: a server that stalls fails here.
    pub read: Duration,
    /// For a whole request, body included (a multipart part is 8 MiB).
    pub request: Duration,
    /// Retries of a failed request (with exponential backoff).
    pub max_retries: usize,
    /// No retry starts this long after the first attempt.
    pub retry_timeout: Duration,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        }
    }
}

/// A library in an S3-protocol object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Arc<AmazonS3>,
    /// The bucket's key prefix under which `videos/` lives ("" for the root).
    prefix: String,
    bucket: String,
    options: StoreOptions,
    unfinished_quiet: Duration,
    /// Current manifests by video, for conditional reads.
    manifests: Arc<Mutex<HashMap<VideoId, Arc<ReadManifest>>>>,
}

impl S3Store {
    /// Connects to the store and checks that the bucket exists and the
    /// credentials are accepted (one listing request): a misconfiguration fails here
    /// with [`StoreError::Config`] naming the setting to fix, not on the
    /// first viewer's request.
    pub async fn open(config: S3Config, options: StoreOptions) -> Result<Self, StoreError> {
        let client = connect::build(&config)?;
        let store = Self {
            client: Arc::new(client),
            prefix: config.location.prefix.clone(),
            bucket: config.location.bucket.clone(),
            options,
            unfinished_quiet: config.unfinished_quiet,
            manifests: Arc::default(),
        };
        // The first page of a listing only: one request, whatever the
        // library's size.
        let videos = store.key(layout::VIDEOS);
        if let Some(Err(error)) = store.client.list(Some(&videos)).next().await {
            return Err(connect::explain_open_failure(&config, error));
        }
        Ok(store)
    }

    /// The object key of `key`, a key of [`crate::layout`].
    fn key(&self, key: &str) -> ObjectKey {
        if self.prefix.is_empty() {
            ObjectKey::from(key)
        } else {
            ObjectKey::from(format!("{}/{key}", self.prefix))
        }
    }

    /// `key` relative to the library's root (`None` if outside it).
    fn relative<'a>(&self, key: &'a ObjectKey) -> Option<&'a str> {
        let key = key.as_ref();
        if self.prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    fn remote(
        &self,
        operation: &'static str,
        key: &ObjectKey,
        source: object_store::Error,
    ) -> StoreError {
        StoreError::Remote {
            operation,
            key: format!("s3://{}/{key}", self.bucket),
            source,
        }
    }

    /// The bytes of one object; `Ok(None)` when it does not exist.
    async fn get_object(&self, key: &ObjectKey) -> Result<Option<Bytes>, StoreError> {
        let result = match self.client.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.remote("GET", key, error)),
        };
        match result.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.remote("GET", key, error)),
        }
    }

    /// Whether one object exists.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        match self.client.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(self.remote("HEAD", key, error)),
        }
    }

    fn parse_manifest(&self, id: &VideoId, bytes: &[u8]) -> Result<Manifest, StoreError> {
        Manifest::from_json(bytes).map_err(|source| StoreError::BadManifest {
            id: id.clone(),
            source,
        })
    }

    /// The current manifest, `VideoNotFound` when there is none: read in
    /// full the first time, then only when its ETag changed.
    async fn current_manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        let key = self.key(&layout::current_manifest_key(id));
        let remembered = self.remembered_manifests().get(id).cloned();
        let options = GetOptions {
            if_none_match: remembered.as_ref().map(|read| read.etag.clone()),
            ..GetOptions::default()
        };
        let result = match self.client.get_opts(&key, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotModified { .. }) if let Some(read) = remembered => {
                return Ok(read.manifest.clone());
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.remembered_manifests().remove(id);
                return Err(StoreError::VideoNotFound(id.clone()));
            }
            Err(error) => return Err(self.remote("GET", &key, error)),
        };
        let etag = result.meta.e_tag.clone();
        let bytes = match result.bytes().await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::VideoNotFound(id.clone()));
            }
            Err(error) => return Err(self.remote("GET", &key, error)),
        };
        let manifest = self.parse_manifest(id, &bytes)?;
        let mut remembered = self.remembered_manifests();
        match etag {
            Some(etag) => {
                if remembered.len() >= MAX_REMEMBERED_MANIFESTS {
                    remembered.clear();
                }
                let read = ReadManifest {
                    etag,
                    manifest: manifest.clone(),
                };
                remembered.insert(id.clone(), Arc::new(read));
            }
            None => {
                remembered.remove(id);
            }
        }
        Ok(manifest)
    }

    fn remembered_manifests(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<VideoId, Arc<ReadManifest>>> {
        self.manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes `keys` (in that order, a thousand per request at most).
    async fn delete_keys(&self, keys: Vec<ObjectKey>) -> Result<(), StoreError> {
        let first = keys.first().cloned();
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.client.delete_stream(stream);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    let key = first.clone().unwrap_or_default();
                    return Err(self.remote("DELETE", &key, error));
                }
            }
        }
        Ok(())
    }

    /// Every object below `prefix` (a layout prefix ending in `/`).
    async fn list_all(&self, prefix: &str) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        let key = self.key(prefix.trim_end_matches('/'));
        let mut listing = self.client.list(Some(&key));
        let mut objects = Vec::new();
        while let Some(object) = listing.next().await {
            objects.push(object.map_err(|error| self.remote("LIST", &key, error))?);
        }
        Ok(objects)
    }
}

#[async_trait]
impl Store for S3Store {
    async fn list_videos(&self) -> Result<Vec<VideoId>, StoreError> {
        let videos = self.key(layout::VIDEOS);
        let listing = self
            .client
            .list_with_delimiter(Some(&videos))
            .await
            .map_err(|error| self.remote("LIST", &videos, error))?;
        let candidates: Vec<VideoId> = listing
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename())
            .filter_map(|name| VideoId::new(name).ok())
            .collect();
        // A video prefix without its current manifest is an unfinished
        // publish or an unpublish in progress: not a video.
        let mut checks = futures::stream::iter(candidates.into_iter().map(|id| async move {
            let key = self.key(&layout::current_manifest_key(&id));
            self.exists(&key).await.map(|exists| exists.then_some(id))
        }))
        .buffer_unordered(LIST_CONCURRENCY);
        let mut ids = Vec::new();
        while let Some(checked) = checks.next().await {
            ids.extend(checked?);
        }
        ids.sort();
        Ok(ids)
    }

    async fn manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        self.current_manifest(id).await
    }

    async fn generations(&self, id: &VideoId) -> Result<Vec<u64>, StoreError> {
        let prefix = self.key(layout::video_prefix(id).trim_end_matches('/'));
        let listing = self
            .client
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|error| self.remote("LIST", &prefix, error))?;
        let mut generations: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename())
            .filter_map(layout::parse_generation_dir)
            .collect();
        generations.sort_unstable();
        Ok(generations)
    }

    async fn manifest_of_generation(
        &self,
        id: &VideoId,
        generation: u64,
    ) -> Result<Manifest, StoreError> {
        let not_found = || StoreError::GenerationNotFound {
            id: id.clone(),
            generation,
        };
        let key = self.key(&layout::generation_manifest_key(id, generation));
        let manifest = match self.get_object(&key).await? {
            Some(bytes) => self.parse_manifest(id, &bytes)?,
            None => return Err(not_found()),
        };
        if manifest.generation != generation || &manifest.id != id {
            return Err(not_found());
        }
        Ok(manifest)
    }

    async fn get(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<StoredFile, StoreError> {
        let key = self.key(&layout::object_key(id, generation, path));
        match self.get_object(&key).await? {
            Some(bytes) => Ok(StoredFile {
                bytes,
                file: None,
                modified: None,
            }),
            None => Err(StoreError::ObjectNotFound {
                id: id.clone(),
                path: path.clone(),
            }),
        }
    }

    async fn get_range(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> Result<Bytes, StoreError> {
        let out_of_bounds = |size| StoreError::RangeOutOfBounds {
            path: path.clone(),
            start: range.start,
            end: range.end,
            size,
        };
        // HTTP cannot ask for an empty range: its bounds are checked by size.
        if range.start >= range.end {
            let size = self.head(id, generation, path).await?.size;
            return if range.start > range.end || range.end > size {
                Err(out_of_bounds(size))
            } else {
                Ok(Bytes::new())
            };
        }
        let key = self.key(&layout::object_key(id, generation, path));
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let fetched = match self.client.get_opts(&key, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::ObjectNotFound {
                    id: id.clone(),
                    path: path.clone(),
                });
            }
            Err(error) => {
                // A range starting at or past the end is refused (416); say
                // so with the size, as the local store does.
                return match self.head(id, generation, path).await {
                    Ok(meta) if range.end > meta.size => Err(out_of_bounds(meta.size)),
                    _ => Err(self.remote("GET", &key, error)),
                };
            }
        };
        // A range past the end is cut short by the server: refuse it whole.
        if fetched.range != range {
            return Err(out_of_bounds(fetched.meta.size));
        }
        fetched
            .bytes()
            .await
            .map_err(|error| self.remote("GET", &key, error))
    }

    async fn head(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<ObjectMeta, StoreError> {
        let key = self.key(&layout::object_key(id, generation, path));
        match self.client.head(&key).await {
            Ok(meta) => Ok(ObjectMeta { size: meta.size }),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::ObjectNotFound {
                id: id.clone(),
                path: path.clone(),
            }),
            Err(error) => Err(self.remote("HEAD", &key, error)),
        }
    }

    async fn publish(&self, manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
        publish::publish(self, manifest, staged_dir).await?;
        if let Err(error) = collect::collect_video(self, &manifest.id).await {
            tracing::warn!(id = %manifest.id, %error, "collecting retired generations failed");
        }
        Ok(())
    }

    async fn republish(
        &self,
        manifest: &Manifest,
        from: u64,
        replaced: &[(ObjectPath, Bytes)],
    ) -> Result<(), StoreError> {
        republish::republish(self, manifest, from, replaced).await?;
        if let Err(error) = collect::collect_video(self, &manifest.id).await {
            tracing::warn!(id = %manifest.id, %error, "collecting retired generations failed");
        }
        Ok(())
    }

    async fn unpublish(&self, id: &VideoId) -> Result<(), StoreError> {
        let manifest_key = self.key(&layout::current_manifest_key(id));
        if !self.exists(&manifest_key).await? {
            return Err(StoreError::VideoNotFound(id.clone()));
        }
        // The video is gone once its current manifest is; what follows only
        // frees space, and what it leaves (a failure halfway) has no manifest
        // and is collected later.
        self.delete_keys(vec![manifest_key]).await?;
        collect::delete_everything_of(self, id).await
    }

    async fn collect_retired(&self) -> Result<Vec<CollectedGeneration>, StoreError> {
        collect::collect_library(self).await
    }

    async fn metadata(&self, id: &VideoId) -> Result<crate::VideoMetadata, StoreError> {
        self.current_manifest(id).await?;
        let key = self.key(&layout::metadata_key(id));
        // A HEAD first, so an oversized object is refused unread.
        let size = match self.client.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(crate::VideoMetadata::default()),
            Err(error) => return Err(self.remote("HEAD", &key, error)),
        };
        if size > crate::metadata::MAX_METADATA_BYTES as u64 {
            return Err(StoreError::BadMetadata {
                id: id.clone(),
                detail: format!("{size} bytes, more than a metadata object may have"),
            });
        }
        match self.get_object(&key).await? {
            Some(bytes) => crate::parse_metadata(id, &bytes),
            None => Ok(crate::VideoMetadata::default()),
        }
    }

    /// Checks the video is published, then writes the object. An unpublish
    /// racing the write can leave it behind a video that is gone; it has no
    /// manifest beside it, so nothing reads it, and the next publish of the
    /// id starts a newer generation its title does not apply to.
    async fn set_metadata(
        &self,
        id: &VideoId,
        metadata: &crate::VideoMetadata,
    ) -> Result<(), StoreError> {
        let json = crate::checked_metadata(id, metadata)?;
        self.current_manifest(id).await?;
        let key = self.key(&layout::metadata_key(id));
        self.client
            .put(&key, object_store::PutPayload::from(json))
            .await
            .map_err(|error| self.remote("PUT", &key, error))?;
        Ok(())
    }
}
