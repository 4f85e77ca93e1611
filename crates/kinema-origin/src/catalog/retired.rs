//! Retired generations in the catalogue: a generation a republish replaced,
//! still in the store for its grace period, is read on demand from its own
//! manifest copy, but only once the video's listing of generations (one
//! store listing per video, listed again at most every [`RELIST_AFTER`] when
//! asked for a newer number) holds that number, so made-up generation
//! numbers cost no store read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kinema_core::VideoId;
use kinema_store::StoreError;

use super::{Addressing, Catalog, LookupError, Video};

/// Most retired generations (or absences of one) remembered: a scan of
/// random generation numbers evicts rather than grows.
pub(super) const MAX_RETIRED: u64 = 10_000;
/// A generation newer than every one a video's listing holds may have been
/// published since: the video is listed again, but not sooner than this
/// after its last listing.
const RELIST_AFTER: Duration = Duration::from_millis(500);

/// The generations of one video in the store, as listed at `at`.
#[derive(Debug)]
pub(super) struct Listing {
    generations: Vec<u64>,
    at: Instant,
}
impl Catalog {
    pub(super) async fn load_retired(
        &self,
        id: &str,
        generation: u64,
    ) -> Result<Arc<Video>, LookupError> {
        let video_id = VideoId::new(id)?;
        if !self.listed(&video_id, generation).await? {
            return Err(LookupError::NotFound);
        }
        let store = self.store.clone();
        let max_age = self.manifest_max_age;
        self.retired
            .try_get_with((video_id.clone(), generation), async move {
                match store.manifest_of_generation(&video_id, generation).await {
                    Ok(manifest) => Ok(Some(Arc::new(Video::from_manifest(
                        &manifest,
                        max_age,
                        Addressing::Generation,
                    )))),
                    Err(error) if error.is_not_found() => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await
            .map_err(LookupError::Store)?
            .ok_or(LookupError::NotFound)
    }

    /// Whether the store holds `generation` of `id`, by the video's listing
    /// of generations. One newer than every listed generation may have been
    /// published since the listing (by another process): then the video is
    /// listed again, at most once per [`RELIST_AFTER`]. So a request for a
    /// made-up generation costs no store read, and a flood of them at most
    /// one listing per video per [`RELIST_AFTER`].
    async fn listed(&self, id: &VideoId, generation: u64) -> Result<bool, LookupError> {
        let listing = self.listing(id).await?;
        if listing.generations.binary_search(&generation).is_ok() {
            return Ok(true);
        }
        let newer = listing
            .generations
            .last()
            .is_none_or(|last| generation > *last);
        if !newer || listing.at.elapsed() < RELIST_AFTER {
            return Ok(false);
        }
        self.listings.invalidate(id).await;
        let listing = self.listing(id).await?;
        Ok(listing.generations.binary_search(&generation).is_ok())
    }

    async fn listing(&self, id: &VideoId) -> Result<Arc<Listing>, LookupError> {
        let store = self.store.clone();
        let video_id = id.clone();
        self.listings
            .try_get_with(id.clone(), async move {
                let generations = store.generations(&video_id).await?;
                Ok::<_, StoreError>(Arc::new(Listing {
                    generations,
                    at: Instant::now(),
                }))
            })
            .await
            .map_err(LookupError::Store)
    }
}
