//! The library scrub: every published file re-read at a bounded rate and
//! checked against its manifest's SHA-256, pass after pass, so a file
//! corrupted on disk after it was published is found even if it is only
//! ever streamed (never cached, so never checked on loading).

use std::sync::PoisonError;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::*;

impl FileCache {
    /// Re-reads every published file at most `bytes_per_second` and checks
    /// it against its manifest's SHA-256, pass after pass, until the task is
    /// aborted. A file that fails is logged, counted, refused from then on
    /// if it is streamed, and dropped from the cache (whose copy may be
    /// sent from that file's pages) so the next request reads and checks
    /// it again; one that passes again (repaired) is served again.
    pub fn scrub(&self, catalog: Catalog, bytes_per_second: u64) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut throttle = Throttle::new(bytes_per_second);
            loop {
                let started = Instant::now();
                let found = this.scrub_pass(&catalog, &mut throttle).await;
                this.metrics.scrub_passes.fetch_add(1, Relaxed);
                tracing::info!(
                    files = found.files,
                    bytes = found.bytes,
                    corrupt = found.corrupt,
                    unreadable = found.unreadable,
                    seconds = started.elapsed().as_secs(),
                    "library scrub pass finished"
                );
                // A small library is not re-read in a tight loop.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    async fn scrub_pass(&self, catalog: &Catalog, throttle: &mut Throttle) -> ScrubFound {
        let mut found = ScrubFound::default();
        let ids = match self.store.list_videos().await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "scrub cannot list the library");
                return found;
            }
        };
        for id in ids {
            // Unpublished since the listing, or an unreadable manifest
            // (which requests report): nothing to check.
            let Ok(video) = catalog.video(id.as_str()).await else {
                continue;
            };
            for file in &video.files {
                match self.verify(&video, file, throttle).await {
                    Ok(intact) => {
                        found.files += 1;
                        found.bytes += file.size;
                        self.note_scrubbed(&video, file, intact).await;
                        if !intact {
                            found.corrupt += 1;
                        }
                    }
                    Err(error) if error.is_not_found() => {}
                    Err(error) => {
                        found.unreadable += 1;
                        tracing::warn!(video = %video.id, path = %file.path, %error, "scrub cannot read a file");
                    }
                }
            }
        }
        found
    }

    /// Reads one file in chunks, paced by `throttle`, and says whether it
    /// matches its size and checksum.
    async fn verify(
        &self,
        video: &Video,
        file: &FileInfo,
        throttle: &mut Throttle,
    ) -> Result<bool, StoreError> {
        let (id, generation) = (&video.id, video.generation);
        let size = self.store.head(id, generation, &file.path).await?.size;
        if size != file.size {
            return Ok(false);
        }
        let mut hasher = Sha256::new();
        let mut offset = 0;
        while offset < size {
            let end = (offset + SCRUB_CHUNK).min(size);
            throttle.wait(end - offset).await;
            let chunk = self
                .store
                .get_range(id, generation, &file.path, offset..end)
                .await?;
            self.metrics
                .scrub_bytes
                .fetch_add(chunk.len() as u64, Relaxed);
            // Hashing is CPU work: off the reactor.
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&chunk);
                hasher
            })
            .await
            .map_err(|join| StoreError::Io {
                path: file.path.as_str().into(),
                source: std::io::Error::other(join),
            })?;
            offset = end;
        }
        Ok(<[u8; 32]>::from(hasher.finalize()) == file.sha256)
    }

    async fn note_scrubbed(&self, video: &Video, file: &FileInfo, intact: bool) {
        let id = &video.id;
        let name = (id.clone(), video.generation, file.path.clone());
        if intact {
            let repaired = self
                .corrupt
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
            if repaired {
                tracing::info!(video = %id, path = %file.path, "scrub found a file intact again; serving it");
            }
            return;
        }
        let newly_found = self
            .corrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name);
        if newly_found {
            self.metrics.checksum_mismatches.fetch_add(1, Relaxed);
            tracing::error!(video = %id, path = %file.path, "scrub found a file that does not match its manifest checksum; refusing it until it is repaired or the video republished");
        }
        // The cached copy was verified, but it may be sent from this file's
        // pages: read and check again on the next request.
        self.cache.invalidate(&file.key).await;
    }
}

/// Bytes the scrub reads at a time.
const SCRUB_CHUNK: u64 = 256 * 1024;

/// What one scrub pass found.
#[derive(Debug, Default)]
struct ScrubFound {
    files: u64,
    bytes: u64,
    corrupt: u64,
    unreadable: u64,
}

/// Paces the scrub's reads to a rate, bytes per second.
#[derive(Debug)]
struct Throttle {
    bytes_per_second: u64,
    started: tokio::time::Instant,
    granted: u64,
}

impl Throttle {
    fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            started: tokio::time::Instant::now(),
            granted: 0,
        }
    }

    /// Waits until reading `bytes` more keeps the average under the rate.
    async fn wait(&mut self, bytes: u64) {
        let due = Duration::from_secs_f64(self.granted as f64 / self.bytes_per_second as f64);
        tokio::time::sleep_until(self.started + due).await;
        self.granted += bytes;
    }
}
