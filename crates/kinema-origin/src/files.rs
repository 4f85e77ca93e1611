//! File contents on the hot path: a byte-weighted memory cache of whole
//! files, prefetch of the next segment, and chunked streaming of files too
//! large to cache.
//!
//! Every viewer of a cached file is handed the same content (a reference
//! count, no copy). A large file (a segment) is also held as a
//! [`SharedFile`]: its published file, kept open (or, from a store with no
//! local files, a sealed memfd), which the connection layer sends by
//! `sendfile` on plain-TCP HTTP/1.1, so the kernel does not copy it into the
//! socket either; HTTP/2, TLS and multipart ranges use the content as
//! `Bytes`. A small file (a playlist) stays plain `Bytes`: for it a file
//! descriptor costs more than the copy it would save. Concurrent misses for one file wait on one
//! store read (moka's per-key coalescing). Disk reads go through the store,
//! whose local backend runs them on the blocking pool, so the reactor never
//! waits on a disk. A file whose size on disk differs from its manifest
//! entry is refused, never served: the manifest is the contract, and a
//! truncated or replaced file would hand players corrupt media.
//!
//! Integrity: a file enters the cache only once its bytes match the
//! manifest's SHA-256 (a strong ETag and an edge's year-long cache promise
//! exactly those bytes); one that does not is refused with 500 and counted,
//! never cached, so the content key can never map to corrupt bytes and an
//! intact copy of the same content in another video is never shadowed. A
//! published file written after it was loaded is no longer sent by
//! `sendfile` (see [`SharedFile`]): the verified copy in memory is sent
//! instead, over both protocols. Files too large to cache are streamed as
//! they are read, so they cannot be checked before the status is sent:
//! the background [`FileCache::scrub`] re-verifies the whole library at a
//! bounded rate, and a file it finds corrupt is refused from then on.
//!
//! A store with no local files (S3) gets a disk tier under the memory cache
//! ([`DiskCache`]): a miss looks there before it reads the store, what it
//! reads from the store is kept there, and a large file found there is sent
//! by `sendfile` from the tier's file, as a local library's would be.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use kinema_core::{ObjectPath, VideoId};
use kinema_http::respond::{self, Held, Part};
use kinema_http::{ResponseBody, SharedFile};
use kinema_store::{Store, StoreError, StoredFile};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, ContentKey, FileInfo, Video};
use crate::disk_cache::DiskCache;
use crate::metrics::Metrics;

mod scrub;

/// Size of each read when streaming an uncached file. Small enough that
/// what a client which stops reading pins (a chunk or two per stream, see
/// the connection layer's HTTP/2 limits) stays small.
const STREAM_CHUNK: u64 = 128 * 1024;
/// Reads in flight per streamed response: one being sent while the next is
/// read, so disk and network work in parallel.
const STREAM_READ_AHEAD: usize = 2;
/// Bookkeeping bytes charged per cache entry besides its content.
const ENTRY_OVERHEAD: u32 = 160;
/// Files at least this large are cached as a [`SharedFile`] and sent by
/// `sendfile`; smaller ones as `Bytes`, sent with their head in one `writev`
/// (`sendfile` costs a second system call per response, a shared file a
/// file descriptor per file).
pub(crate) const SHARED_FILE_MIN: usize = 64 * 1024;

/// Why a listed file could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileError {
    #[error("{id}/{path} has {actual} bytes on disk but the manifest lists {expected}")]
    SizeMismatch {
        id: VideoId,
        path: ObjectPath,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{id}/{path} does not match the SHA-256 its manifest lists (corrupt on disk); repair the file or republish the video"
    )]
    ChecksumMismatch {
        id: VideoId,
        generation: u64,
        path: ObjectPath,
    },
    #[error(
        "{id}/{path} was found corrupt by the scrub (its SHA-256 differs from the manifest's); repair the file or republish the video"
    )]
    FoundCorrupt { id: VideoId, path: ObjectPath },
    #[error("{0}")]
    Store(Arc<StoreError>),
}

/// A cached file's content, as the request path uses it.
#[derive(Debug, Clone)]
pub struct Content {
    /// The whole content (for a shared file, the same bytes it holds).
    bytes: Bytes,
    /// Present for large files: what `bytes` maps, sendable by `sendfile`.
    shared_file: Option<SharedFile>,
}

impl Content {
    pub(crate) fn new(bytes: Bytes, shared_file: Option<SharedFile>) -> Self {
        Self { bytes, shared_file }
    }

    /// The content as the responder slices it: the shared file, when there
    /// is one, is what a whole or single-range body is sent from.
    pub fn held(&self) -> Held<'_> {
        Held {
            bytes: &self.bytes,
            file: self.shared_file.as_ref(),
        }
    }
}

/// An uncached file as the responder's [`Content`]: its ranges are read
/// from the store as the body is sent ([`FileCache::stream`]).
#[derive(Debug)]
pub struct Streamed<'a> {
    files: &'a FileCache,
    video: &'a Video,
    file: &'a FileInfo,
}

impl respond::Content for Streamed<'_> {
    fn range(self, range: Range<u64>) -> ResponseBody {
        self.parts(vec![Part::Range(range)])
    }

    fn parts(self, parts: Vec<Part>) -> ResponseBody {
        ResponseBody::Stream(self.files.stream(self.video, self.file, parts))
    }
}

#[derive(Debug)]
struct CachedFile {
    content: Content,
    /// Set when a prefetch loaded the file and no request has used it yet.
    prefetched: AtomicBool,
    /// Held while the entry keeps a file descriptor (its shared file).
    _descriptor: Option<DescriptorSlot>,
}

/// How many file descriptors cache entries may keep open (their shared
/// files): a bounded share of the open-file limit, so a library of many
/// cached segments cannot take the descriptors new connections need. An
/// entry over the budget is cached as plain bytes (written from memory
/// rather than by `sendfile`).
#[derive(Debug)]
pub struct DescriptorBudget {
    held: AtomicUsize,
    max: usize,
}

impl DescriptorBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
        })
    }

    fn try_take(self: &Arc<Self>) -> Option<DescriptorSlot> {
        self.held
            .fetch_update(Relaxed, Relaxed, |held| {
                (held < self.max).then_some(held + 1)
            })
            .ok()
            .map(|_| DescriptorSlot(self.clone()))
    }

    /// Descriptors held by cache entries now.
    pub fn held(&self) -> u64 {
        self.held.load(Relaxed) as u64
    }
}

/// One descriptor of a [`DescriptorBudget`], given back on drop.
#[derive(Debug)]
struct DescriptorSlot(Arc<DescriptorBudget>);

impl Drop for DescriptorSlot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Relaxed);
    }
}

/// Files of a video, by video, generation and path.
type FileName = (VideoId, u64, ObjectPath);

#[derive(Debug, Clone)]
pub struct FileCache {
    cache: moka::future::Cache<ContentKey, Arc<CachedFile>>,
    store: Arc<dyn Store>,
    max_cached_file_size: u64,
    metrics: Arc<Metrics>,
    /// Files the scrub last found not matching their checksum: refused
    /// until a later pass finds them intact. At most one entry per file in
    /// the library.
    corrupt: Arc<Mutex<HashSet<FileName>>>,
    descriptors: Arc<DescriptorBudget>,
    /// Under the memory cache, for a store with no local files: where a
    /// miss looks before it reads the store, and what it read is kept.
    disk: Option<DiskCache>,
}

impl FileCache {
    pub fn new(
        store: Arc<dyn Store>,
        capacity_bytes: u64,
        max_cached_file_size: u64,
        inactive: Duration,
        metrics: Arc<Metrics>,
        descriptors: Arc<DescriptorBudget>,
        disk: Option<DiskCache>,
    ) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity_bytes)
            // An entry holds its published file open: one nobody asks for
            // (an unpublished video's, say) must not keep its disk space.
            .time_to_idle(inactive)
            .weigher(|_key: &ContentKey, file: &Arc<CachedFile>| {
                u32::try_from(file.content.bytes.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .build();
        Self {
            cache,
            store,
            // A file that is larger than the whole cache could never stay in
            // it, so it is streamed from the store; with a disk tier it is
            // still loaded whole (from local disk once the store was read)
            // and sent by `sendfile` from the tier's file, rather than read
            // from a remote store on every request.
            max_cached_file_size: match disk {
                Some(_) => max_cached_file_size,
                None => max_cached_file_size.min(capacity_bytes),
            },
            metrics,
            corrupt: Arc::default(),
            descriptors,
            disk,
        }
    }

    /// True when the file is served from memory; false when it is streamed.
    pub fn is_cacheable(&self, file: &FileInfo) -> bool {
        file.size <= self.max_cached_file_size
    }

    /// The whole content of a cacheable file, from memory or (once, however
    /// many ask at the same time) from the store.
    pub async fn get(&self, video: &Video, file: &FileInfo) -> Result<Content, FileError> {
        if let Some(hit) = self.cache.get(&file.key).await {
            self.metrics.cache_hits.fetch_add(1, Relaxed);
            self.note_use(&hit);
            return Ok(hit.content.clone());
        }
        self.metrics.cache_misses.fetch_add(1, Relaxed);
        let mut retried = false;
        loop {
            // Boxed: the miss path's future is large, and keeping it out of
            // line keeps every request's future (moved into a box per request
            // by the connection layer) small.
            let loaded = Box::pin(self.cache.try_get_with(
                file.key,
                load(
                    self.clone(),
                    video.id.clone(),
                    video.generation,
                    file.path.clone(),
                    file.size,
                    file.sha256,
                    false,
                ),
            ))
            .await;
            match loaded {
                Ok(loaded) => {
                    // A request that waited on a prefetch's read was still
                    // helped by it.
                    self.note_use(&loaded);
                    return Ok(loaded.content.clone());
                }
                // Concurrent misses for one content share one read, which
                // may have been another video's (or generation's) corrupt
                // copy: this one's own copy may be intact, so read it rather
                // than share the other's failure.
                Err(error)
                    if !retried
                        && matches!(&*error, FileError::ChecksumMismatch { id, generation, .. }
                            if *id != video.id || *generation != video.generation) =>
                {
                    retried = true;
                }
                Err(error) => return Err((*error).clone()),
            }
        }
    }

    fn note_use(&self, file: &CachedFile) {
        // Load before swap: the common case (not prefetched) then writes
        // nothing to the shared cache line.
        if file.prefetched.load(Relaxed) && file.prefetched.swap(false, Relaxed) {
            self.metrics.prefetch_hits.fetch_add(1, Relaxed);
        }
    }

    /// After a request for `file`, loads the next segment of its rendition
    /// into the cache in the background, unless it is there already or too
    /// large to cache.
    pub fn prefetch_after(&self, video: &Arc<Video>, file: &FileInfo) {
        let Some(next_index) = file.next_segment else {
            return;
        };
        let next = &video.files[next_index];
        if !self.is_cacheable(next) || self.cache.contains_key(&next.key) {
            return;
        }
        let this = self.clone();
        let video = video.clone();
        tokio::spawn(async move {
            let next = &video.files[next_index];
            let entry = this
                .cache
                .entry(next.key)
                .or_try_insert_with(load(
                    this.clone(),
                    video.id.clone(),
                    video.generation,
                    next.path.clone(),
                    next.size,
                    next.sha256,
                    true,
                ))
                .await;
            match entry {
                Ok(entry) if entry.is_fresh() => {
                    this.metrics.prefetches.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                // Not a warning: the request for that file itself reports
                // why it cannot be served, while a failed prefetch would
                // otherwise be logged again on every request near it.
                Err(error) => {
                    tracing::debug!(video = %video.id, path = %next.path, %error, "prefetch failed");
                }
            }
        });
    }

    fn is_known_corrupt(&self, video: &Video, path: &ObjectPath) -> bool {
        let corrupt = self.corrupt.lock().unwrap_or_else(PoisonError::into_inner);
        // Cloning the names only when there is anything to find.
        !corrupt.is_empty() && corrupt.contains(&(video.id.clone(), video.generation, path.clone()))
    }

    /// Files the scrub last found corrupt.
    pub fn corrupt_files(&self) -> u64 {
        self.corrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64
    }

    /// Checks that an uncached file still has its listed size before a
    /// streamed response commits to a status and `Content-Length`.
    /// Also refuses a file the scrub found corrupt.
    pub async fn check_size(&self, video: &Video, file: &FileInfo) -> Result<(), FileError> {
        if self.is_known_corrupt(video, &file.path) {
            return Err(FileError::FoundCorrupt {
                id: video.id.clone(),
                path: file.path.clone(),
            });
        }
        let meta = self
            .store
            .head(&video.id, video.generation, &file.path)
            .await
            .map_err(|error| self.store_error(error))?;
        if meta.size != file.size {
            self.metrics.size_mismatches.fetch_add(1, Relaxed);
            return Err(FileError::SizeMismatch {
                id: video.id.clone(),
                path: file.path.clone(),
                expected: file.size,
                actual: meta.size,
            });
        }
        Ok(())
    }

    fn store_error(&self, error: StoreError) -> FileError {
        self.metrics.store_errors.fetch_add(1, Relaxed);
        FileError::Store(Arc::new(error))
    }

    /// An uncached file as the responder's content, streamed from the store.
    pub fn streamed<'a>(&'a self, video: &'a Video, file: &'a FileInfo) -> Streamed<'a> {
        Streamed {
            files: self,
            video,
            file,
        }
    }

    /// A body that sends `pieces` in order, reading file ranges from the
    /// store in chunks with a little read-ahead. A read error ends the
    /// stream with an error, so the client sees a truncated response rather
    /// than a complete wrong one.
    pub fn stream(
        &self,
        video: &Video,
        file: &FileInfo,
        pieces: Vec<Part>,
    ) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        self.metrics.streamed_files.fetch_add(1, Relaxed);
        let store = self.store.clone();
        let id = video.id.clone();
        let generation = video.generation;
        let path = file.path.clone();
        let jobs = pieces
            .into_iter()
            .flat_map(|piece| -> Box<dyn Iterator<Item = Part> + Send> {
                match piece {
                    Part::Literal(bytes) => Box::new(std::iter::once(Part::Literal(bytes))),
                    Part::Range(range) => {
                        Box::new((range.start..range.end).step_by(STREAM_CHUNK as usize).map(
                            move |start| Part::Range(start..(start + STREAM_CHUNK).min(range.end)),
                        ))
                    }
                }
            });
        futures::stream::iter(jobs)
            .map(move |job| {
                let (store, id, path) = (store.clone(), id.clone(), path.clone());
                async move {
                    match job {
                        Part::Literal(bytes) => Ok(bytes),
                        Part::Range(range) => store
                            .get_range(&id, generation, &path, range)
                            .await
                            .map_err(std::io::Error::other),
                    }
                }
            })
            .buffered(STREAM_READ_AHEAD)
            .boxed()
    }

    /// Applies the inactive expiry every half of it (10 ms to 30 s), also
    /// while no request touches the cache (its bookkeeping otherwise runs
    /// only on use), so an idle server closes the files of what nobody
    /// watches. Runs until the task is aborted.
    pub fn expire_inactive(&self) -> tokio::task::JoinHandle<()> {
        const LONGEST: Duration = Duration::from_secs(30);
        let inactive = self.cache.policy().time_to_idle().unwrap_or(LONGEST);
        let every = (inactive / 2).clamp(Duration::from_millis(10), LONGEST);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                this.settle().await;
            }
        })
    }

    /// Applies pending bookkeeping, so the size and count are current.
    pub async fn settle(&self) {
        self.cache.run_pending_tasks().await;
    }

    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// Reads a whole file and checks it against the manifest's size and
/// SHA-256: only what matches is ever cached. With a disk tier, the file is
/// looked for there first, and what is read from the store is kept there.
async fn load(
    cache: FileCache,
    id: VideoId,
    generation: u64,
    path: ObjectPath,
    expected: u64,
    sha256: [u8; 32],
    prefetched: bool,
) -> Result<Arc<CachedFile>, FileError> {
    let FileCache {
        store,
        metrics,
        descriptors,
        disk,
        ..
    } = cache;
    let descriptor = if expected >= SHARED_FILE_MIN as u64 {
        descriptors.try_take()
    } else {
        None
    };
    let may_keep_descriptor = descriptor.is_some();
    let cached = |content: Content| {
        Arc::new(CachedFile {
            _descriptor: descriptor.filter(|_| content.shared_file.is_some()),
            content,
            prefetched: AtomicBool::new(prefetched),
        })
    };
    if let Some(disk) = &disk
        && let Some(content) = disk.read(sha256, expected, may_keep_descriptor).await
    {
        return Ok(cached(content));
    }
    metrics.store_reads.fetch_add(1, Relaxed);
    let stored = store.get(&id, generation, &path).await.map_err(|error| {
        metrics.store_errors.fetch_add(1, Relaxed);
        FileError::Store(Arc::new(error))
    })?;
    if stored.bytes.len() as u64 != expected {
        metrics.size_mismatches.fetch_add(1, Relaxed);
        return Err(FileError::SizeMismatch {
            id,
            path,
            expected,
            actual: stored.bytes.len() as u64,
        });
    }
    let content = match &disk {
        Some(disk) => {
            let name = (&id, generation, &path);
            disk.verify_and_keep(stored.bytes, sha256, name, may_keep_descriptor)
                .await
        }
        None => verified_content(stored, &id, &path, sha256, may_keep_descriptor).await,
    };
    let Some(content) = content else {
        metrics.checksum_mismatches.fetch_add(1, Relaxed);
        return Err(FileError::ChecksumMismatch {
            id,
            generation,
            path,
        });
    };
    Ok(cached(content))
}

/// Below this size a file is hashed on the reactor (a playlist: a few
/// microseconds); from it on, on the blocking pool.
const HASH_INLINE_MAX: usize = 16 * 1024;

pub(crate) fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The file's content in the form it is cached in, if its bytes match
/// `sha256`; `None` if they do not. From [`SHARED_FILE_MIN`] bytes on, a
/// shared file (the published file it was read from when the store handed
/// it over, else a memfd copy), plain `Bytes` below or without
/// `may_keep_descriptor`.
async fn verified_content(
    stored: StoredFile,
    id: &VideoId,
    path: &ObjectPath,
    sha256: [u8; 32],
    may_keep_descriptor: bool,
) -> Option<Content> {
    let StoredFile {
        bytes,
        file,
        modified,
    } = stored;
    if bytes.len() < HASH_INLINE_MAX {
        return (sha256_of(&bytes) == sha256).then(|| Content::new(bytes, None));
    }
    // Hashing, a memfd copy, and even asking a published file its length:
    // off the reactor.
    let content = bytes.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        if sha256_of(&content) != sha256 {
            return None;
        }
        if content.len() < SHARED_FILE_MIN || !may_keep_descriptor {
            return Some(Ok(None));
        }
        Some(
            match file {
                Some(file) => SharedFile::from_published_as_of(file, content, modified),
                None => SharedFile::from_bytes(&content),
            }
            .map(Some),
        )
    })
    .await;
    match prepared {
        Ok(None) => None,
        Ok(Some(Ok(None))) => Some(Content::new(bytes, None)),
        // Its bytes: for a memfd its mapping, so the bytes read are freed.
        Ok(Some(Ok(Some(shared_file)))) => {
            Some(Content::new(shared_file.bytes().clone(), Some(shared_file)))
        }
        // Out of file descriptors or memory for a memfd: the file is still
        // served, from the bytes read (without sendfile).
        Ok(Some(Err(error))) => {
            tracing::warn!(video = %id, %path, %error, "cannot send a cached file by sendfile; caching its bytes");
            Some(Content::new(bytes, None))
        }
        // The task panicked: nothing was verified, nothing is cached.
        Err(error) => {
            tracing::error!(video = %id, %path, %error, "checksum task failed");
            None
        }
    }
}

#[cfg(test)]
mod tests;
