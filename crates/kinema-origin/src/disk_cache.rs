//! The origin's disk tier, for a store with no local files (S3): every file
//! the memory cache loads from the store is also kept in a local directory,
//! so it is fetched from the store once, and after the memory cache let it
//! go (or after a restart) it is read from local disk and sent by
//! `sendfile` from there, as a local library's files are.
//!
//! It is kinema-http's [`DiskTier`] (the edge's too): one file per content
//! under its SHA-256, LRU eviction to `disk_cache_size`, atomic writes, a
//! rescan at start. A file is read back only if it still matches the
//! manifest's SHA-256 (a disk can rot; the memory cache holds only checked
//! content), and one that does not is removed and read from the store
//! again. A file evicted while the memory cache still sends from it stays
//! on disk, unlinked, until that entry goes (at most the memory cache's
//! size beyond the budget). What this is not: a cache of manifests (the catalogue reads them
//! from the store) or of files too large for the memory cache (those are
//! streamed from the store).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use kinema_core::{ObjectPath, VideoId};
use kinema_http::SharedFile;
use kinema_http::disk_tier::{DiskTier, DiskTierEvents, Find, Metadata};
use serde::{Deserialize, Serialize};

use crate::files::{Content, SHARED_FILE_MIN, sha256_of};

/// What the origin's files start with (the edge's differ).
const MAGIC: [u8; 8] = *b"KNMORIG1";

/// Which published file a content was first loaded for: for whoever looks
/// into the directory; the content itself is named by its SHA-256.
#[derive(Debug, Serialize, Deserialize)]
struct FileOrigin {
    video: String,
    generation: u64,
    path: String,
}

impl Metadata for FileOrigin {
    /// One file per content: nothing to choose among.
    type Indexed = ();

    fn indexed(&self) {}
}

/// What the disk tier did, for `/metrics`.
#[derive(Debug, Default)]
pub struct DiskCacheCounts {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    pub evictions: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

impl DiskTierEvents for DiskCacheCounts {
    fn holding(&self, files: u64, bytes: u64) {
        self.files.store(files, Relaxed);
        self.bytes.store(bytes, Relaxed);
    }

    fn written(&self) {
        self.writes.fetch_add(1, Relaxed);
    }

    fn evicted(&self, files: u64) {
        self.evictions.fetch_add(files, Relaxed);
    }
}

/// The disk tier under the memory cache; cloning shares it.
#[derive(Debug, Clone)]
pub struct DiskCache {
    tier: Arc<DiskTier<FileOrigin>>,
    counts: Arc<DiskCacheCounts>,
}

impl DiskCache {
    /// Opens (creating it if needed) the disk tier in `dir`, holding at
    /// most `capacity` bytes, and indexes what a previous run left there.
    pub async fn open(dir: &Path, capacity: u64) -> io::Result<Self> {
        let dir = dir.to_path_buf();
        let counts = Arc::new(DiskCacheCounts::default());
        let events = counts.clone();
        let tier =
            tokio::task::spawn_blocking(move || DiskTier::open(&dir, MAGIC, capacity, events))
                .await
                .map_err(io::Error::other)??;
        Ok(Self {
            tier: Arc::new(tier),
            counts,
        })
    }

    pub fn counts(&self) -> Arc<DiskCacheCounts> {
        self.counts.clone()
    }

    /// The content of `sha256`, `size` bytes, if the tier holds it intact:
    /// from [`SHARED_FILE_MIN`] bytes on (and with `may_keep_descriptor`)
    /// as a [`SharedFile`] of the tier's file, sent by `sendfile`.
    pub(crate) async fn read(
        &self,
        sha256: [u8; 32],
        size: u64,
        may_keep_descriptor: bool,
    ) -> Option<Content> {
        let tier = self.tier.clone();
        let read = tokio::task::spawn_blocking(move || {
            let key = hex::encode(sha256);
            let Find::Found(id) = tier.find(&key, |_| true) else {
                return None;
            };
            let file = match tier.read(&id) {
                Ok(file) => file,
                Err(error) => {
                    tracing::warn!(%key, %error, "disk cache read failed; reading the store");
                    return None;
                }
            };
            if file.body.len() as u64 != size || sha256_of(&file.body) != sha256 {
                tracing::warn!(%key, "a disk cache file does not match its checksum; removing it and reading the store");
                tier.remove(&id);
                return None;
            }
            if file.body.len() < SHARED_FILE_MIN || !may_keep_descriptor {
                return Some(Content::new(file.body, None));
            }
            let body = file.body.clone();
            Some(
                match SharedFile::from_file_at(file.file, file.body_offset, body, file.modified) {
                    Ok(shared) => Content::new(shared.bytes().clone(), Some(shared)),
                    Err(error) => {
                        tracing::warn!(%key, %error, "cannot send a disk cache file by sendfile; caching its bytes");
                        Content::new(file.body, None)
                    }
                },
            )
        })
        .await
        .ok()
        .flatten();
        let counter = if read.is_some() {
            &self.counts.hits
        } else {
            &self.counts.misses
        };
        counter.fetch_add(1, Relaxed);
        read
    }

    /// Checks `bytes`, read from the store for `path` of `id`, against
    /// `sha256`; if they match, keeps them in the tier and returns them as
    /// the content to cache (a large one sent from the tier's file); `None`
    /// if they do not match. A failed write still serves the content, from
    /// memory.
    pub(crate) async fn verify_and_keep(
        &self,
        bytes: Bytes,
        sha256: [u8; 32],
        (id, generation, path): (&VideoId, u64, &ObjectPath),
        may_keep_descriptor: bool,
    ) -> Option<Content> {
        let tier = self.tier.clone();
        let origin = FileOrigin {
            video: id.to_string(),
            generation,
            path: path.to_string(),
        };
        // Hashing and writing: off the reactor.
        let kept = tokio::task::spawn_blocking(move || {
            if sha256_of(&bytes) != sha256 {
                return None;
            }
            let key = hex::encode(sha256);
            let large = bytes.len() >= SHARED_FILE_MIN && may_keep_descriptor;
            let written = match tier.write(&key, &origin, &bytes) {
                Ok(written) => written,
                Err(error) => {
                    tracing::warn!(%key, %error, "cannot write to the disk cache; serving from memory");
                    None
                }
            };
            if !large {
                return Some(Content::new(bytes, None));
            }
            let shared = match written {
                Some(written) => {
                    SharedFile::from_file_at(written.file, written.body_offset, bytes.clone(), None)
                }
                // Larger than the whole tier: a memory file, as without one.
                None => SharedFile::from_bytes(&bytes),
            };
            Some(match shared {
                Ok(shared) => Content::new(shared.bytes().clone(), Some(shared)),
                Err(error) => {
                    tracing::warn!(%key, %error, "cannot send a cached file by sendfile; caching its bytes");
                    Content::new(bytes, None)
                }
            })
        })
        .await;
        match kept {
            Ok(kept) => kept,
            // The task panicked: nothing was verified, nothing is cached.
            Err(error) => {
                tracing::error!(video = %id, %path, %error, "checksum task failed");
                None
            }
        }
    }
}
