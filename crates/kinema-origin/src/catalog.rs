//! The published videos as the origin knows them: each video's manifest,
//! read from the store, turned into a table from request path to
//! [`FileInfo`] with every constant response header rendered once.
//!
//! Every video is seen two ways ([`Addressing`]): at its stable URLs
//! (`/v/{id}/{path}`, the current generation, revalidated like a playlist,
//! since what they name changes when the video is replaced) and at its
//! generation's URLs (`/v/{id}/g{N}/{path}`, which name one content forever,
//! so media is `immutable`). A retired generation (replaced, in its grace
//! period) is read on demand from its own manifest.
//!
//! A video is held for `manifest_refresh` and then read again, so an
//! unpublished video stops being served and a republished one is picked up
//! without a restart; absence is remembered for the same time, so a flood of
//! requests for unknown ids costs one store read per id per period. This is
//! not the file cache: file contents live in [`crate::files`], keyed by
//! checksum, so a refresh that finds the same files keeps them cached.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use kinema_core::{Manifest, VideoId};
use kinema_store::{Store, StoreError};

mod retired;
mod video;

use retired::{Listing, MAX_RETIRED};
pub use video::{Addressing, ContentKey, FileInfo, Video};

/// Why a video could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    BadId(#[from] kinema_core::PathError),
    #[error("video not found")]
    NotFound,
    #[error("cannot read the manifest: {0}")]
    Store(Arc<StoreError>),
}

/// The current generation of a video, seen both ways.
#[derive(Debug)]
struct Published {
    stable: Arc<Video>,
    pinned: Arc<Video>,
}

impl Published {
    fn new(manifest: &Manifest, manifest_max_age: Duration) -> Self {
        let view =
            |addressing| Arc::new(Video::from_manifest(manifest, manifest_max_age, addressing));
        Self {
            stable: view(Addressing::Stable),
            pinned: view(Addressing::Generation),
        }
    }
}

/// What the hot path keeps of one id: the video (or its absence) and until
/// when that answer may be given without asking the store again.
#[derive(Debug, Clone)]
struct Known {
    video: Option<Arc<Published>>,
    fresh_until: Instant,
}

/// Most ids remembered on the hot path; a scan of random ids empties the
/// table rather than growing it without bound.
const MAX_KNOWN: usize = 100_000;
/// Published videos held in memory for a short time.
///
/// Two layers: `known`, a plain map behind a read-mostly lock that answers
/// almost every request with one hash lookup (the lock is never held across
/// an `.await`), and `loads`, a moka cache that coalesces concurrent reads of
/// one manifest. Each layer keeps an answer for half of `refresh`, so what a
/// request sees is never older than `refresh`. Retired generations, asked
/// for only by players that began before a republish, live in `retired`
/// (coalesced and held the same way); a generation number is read only
/// when the video's listing of generations (`listings`, one store listing
/// per video, held the same way) holds it, so made-up numbers cost no read.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
    manifest_max_age: Duration,
    keep_for: Duration,
    known: Arc<RwLock<HashMap<Box<str>, Known>>>,
    loads: moka::future::Cache<String, Option<Arc<Published>>>,
    retired: moka::future::Cache<(VideoId, u64), Option<Arc<Video>>>,
    listings: moka::future::Cache<VideoId, Arc<Listing>>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, refresh: Duration, manifest_max_age: Duration) -> Self {
        let keep_for = refresh / 2;
        let loads = moka::future::Cache::builder()
            .max_capacity(MAX_KNOWN as u64)
            .time_to_live(keep_for.max(Duration::from_millis(1)))
            .build();
        let retired = moka::future::Cache::builder()
            .max_capacity(MAX_RETIRED)
            .time_to_live(keep_for.max(Duration::from_millis(1)))
            .support_invalidation_closures()
            .build();
        let listings = moka::future::Cache::builder()
            .max_capacity(MAX_RETIRED)
            .time_to_live(keep_for.max(Duration::from_millis(1)))
            .build();
        Self {
            store,
            manifest_max_age,
            keep_for,
            known: Arc::new(RwLock::new(HashMap::new())),
            loads,
            retired,
            listings,
        }
    }

    /// The published video `id` at its stable URLs (its current
    /// generation). A hit costs a hash lookup on the borrowed id; only a miss
    /// validates it and reads the store, and concurrent misses for one id
    /// share one read.
    pub async fn video(&self, id: &str) -> Result<Arc<Video>, LookupError> {
        Ok(self.published(id).await?.stable.clone())
    }

    /// Generation `generation` of video `id`, at its generation's URLs: the
    /// current one from the same table as [`Catalog::video`], a retired one
    /// (still in the store) from its own manifest.
    pub async fn generation(&self, id: &str, generation: u64) -> Result<Arc<Video>, LookupError> {
        // No current manifest means the video is unpublished, which removed
        // every generation: the error stands.
        let published = self.published(id).await?;
        if published.pinned.generation == generation {
            return Ok(published.pinned.clone());
        }
        // Boxed to keep the hot path's future small (see files.rs).
        Box::pin(self.load_retired(id, generation)).await
    }

    async fn published(&self, id: &str) -> Result<Arc<Published>, LookupError> {
        let now = Instant::now();
        {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = known.get(id)
                && entry.fresh_until > now
            {
                return entry.video.clone().ok_or(LookupError::NotFound);
            }
        }
        // Boxed to keep the hit path's future small (see files.rs).
        Box::pin(self.load(id, now)).await
    }

    async fn load(&self, id: &str, now: Instant) -> Result<Arc<Published>, LookupError> {
        let video_id = VideoId::new(id)?;
        let store = self.store.clone();
        let max_age = self.manifest_max_age;
        let loaded = self
            .loads
            .try_get_with(id.to_owned(), async move {
                match store.manifest(&video_id).await {
                    Ok(manifest) => Ok(Some(Arc::new(Published::new(&manifest, max_age)))),
                    Err(error) if error.is_not_found() => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(error) if error.is_unavailable() => {
                return self.last_known_while_unavailable(id, now, error);
            }
            Err(error) => return Err(LookupError::Store(error)),
        };
        {
            let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(
                id.into(),
                Known {
                    video: loaded.clone(),
                    fresh_until: now + self.keep_for,
                },
            );
        }
        loaded.ok_or(LookupError::NotFound)
    }

    /// The store is unavailable (an object store down or timing out): what
    /// was last read of `id` is answered on, and kept another `keep_for`, so
    /// the store is asked again once per refresh, not on every request.
    /// A generation's files never change, so the worst this serves is the
    /// generation a publish made meanwhile replaced; with nothing known of
    /// `id`, the error stands (a 503).
    fn last_known_while_unavailable(
        &self,
        id: &str,
        now: Instant,
        error: Arc<StoreError>,
    ) -> Result<Arc<Published>, LookupError> {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = known.get_mut(id) else {
            return Err(LookupError::Store(error));
        };
        entry.fresh_until = now + self.keep_for;
        tracing::warn!(video = id, %error, "the store is unavailable; answering from the manifest last read");
        entry.video.clone().ok_or(LookupError::NotFound)
    }

    /// Forgets what is known of `id`, so the next request reads its manifest
    /// again (called after a publish or unpublish in this process).
    pub async fn invalidate(&self, id: &VideoId) {
        self.known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id.as_str());
        self.loads.invalidate(id.as_str()).await;
        let id = id.clone();
        // Fails only when the cache was built without closures; it was not.
        self.listings.invalidate(&id).await;
        let _ = self
            .retired
            .invalidate_entries_if(move |(video, _), _| *video == id);
    }

    /// The ids whose manifest (or absence) is held now, for a purge
    /// (at most `MAX_KNOWN`).
    pub fn known_ids(&self) -> Vec<String> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        known.keys().map(|id| id.to_string()).collect()
    }

    /// Deletes the retired generations past their grace from the store now
    /// (at start) and every `every` after, so a video that is never
    /// published again does not keep its old generations for good (a
    /// publish collects its own video's). Runs until the task is aborted.
    pub fn collect_retired(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                kinema_store::collect_retired_logged(store.as_ref()).await;
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Applies pending bookkeeping of the load caches.
    pub async fn settle(&self) {
        self.loads.run_pending_tasks().await;
        self.retired.run_pending_tasks().await;
        self.listings.run_pending_tasks().await;
    }

    /// Videos (published ones, not remembered absences) held in memory.
    pub fn videos_loaded(&self) -> u64 {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        known.values().filter(|entry| entry.video.is_some()).count() as u64
    }
}
