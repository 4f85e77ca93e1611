//! A viewer's requests and the player's retry policy around them: one
//! resource fetched with backoff on retryable failures, refused session
//! starts (`503` with `Retry-After` during admission) waited out and
//! counted, errors counted into the report, and the helpers that fetch a
//! media playlist as a track or one init section or segment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::Viewer;
use crate::client::{BodyUse, FetchError, Fetched};
use crate::hls::{self, ByteRange, Playlist};
use crate::presentation::Track;

/// Largest manifest (playlist or MPD) a viewer accepts.
pub(super) const PLAYLIST_LIMIT: usize = 4 * 1024 * 1024;
/// Bounds of the wait after a refused session start, in wall time like
/// `Retry-After` itself. `Retry-After: 0` (or a date already past) still
/// waits the retry policy's first backoff step, so thousands of refused
/// viewers do not spin; a huge value waits a minute and asks again, so one
/// header cannot park a viewer for the rest of the run.
const REFUSAL_WAIT_FLOOR: Duration = Duration::from_millis(500);
const REFUSAL_WAIT_CAP: Duration = Duration::from_secs(60);

/// Where a request stands in the viewing session. The manifest request
/// asks to be admitted: a 503 with `Retry-After` there is the server's
/// admission control, waited out and asked again. Every later request
/// belongs to an admitted session, which the server always serves, so a
/// 503 there is an error like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Admission,
    Admitted,
}

impl Viewer<'_> {
    fn note_error(&mut self, error: &FetchError) {
        self.report.http_errors += 1;
        *self.report.error_kinds.entry(error.kind()).or_default() += 1;
        if self.report.first_error.is_none() {
            self.report.first_error = Some(error.to_string());
        }
        self.shared.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused session start, sent at `sent`.
    fn note_refusal(&mut self, sent: Instant) {
        self.report.refusals += 1;
        self.shared.live.refusals.fetch_add(1, Ordering::Relaxed);
        if self.refused_since.is_none() {
            self.refused_since = Some(sent);
            self.shared
                .live
                .refused_viewers
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends a run of refusals, if any, at `at`: the request that was not
    /// refused went out then (or the viewer ended).
    pub(super) fn end_refusals(&mut self, at: Instant) {
        if let Some(since) = self.refused_since.take() {
            self.report.refused_seconds += self.viewer_seconds(at) - self.viewer_seconds(since);
            self.shared
                .live
                .refused_viewers
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// One resource with the player's retry policy: retryable failures are
    /// tried again after 0.5 s, 1 s, 2 s… of viewer time (capped at 4 s).
    /// In the admission phase, a 503 with `Retry-After` is a refusal
    /// instead: waited out and asked again, as long as the run lasts,
    /// without using up retries.
    pub(super) async fn fetch(
        &mut self,
        url: &Url,
        range: Option<ByteRange>,
        body_use: BodyUse,
        phase: Phase,
    ) -> Result<Fetched, FetchError> {
        let mut attempt = 0u32;
        loop {
            let sent = Instant::now();
            let result = self
                .client
                .get(url, range, body_use, &self.shared.live)
                .await;
            self.count_on_pathway(url, &result);
            if phase == Phase::Admission {
                if let Err(error) = &result
                    && let Some(asked) = error.unavailable_for()
                {
                    self.note_refusal(sent);
                    // Retry-After counts the server's seconds, which are
                    // wall seconds whatever the run's speed.
                    let wait = asked.clamp(REFUSAL_WAIT_FLOOR, REFUSAL_WAIT_CAP);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                self.end_refusals(sent);
            }
            match result {
                Ok(fetched) => {
                    self.report.bytes += fetched.bytes;
                    return Ok(fetched);
                }
                Err(error) => {
                    self.note_error(&error);
                    if !error.is_retryable() || attempt >= self.shared.retries {
                        return Err(error);
                    }
                    // A refused, reset or silent server is left at once
                    // when another pathway can serve (a 5xx is retried
                    // first: the server is there).
                    if phase == Phase::Admitted
                        && matches!(
                            error,
                            FetchError::Transport { .. } | FetchError::Timeout { .. }
                        )
                        && self
                            .steering
                            .as_ref()
                            .is_some_and(|state| state.can_fail_over(self.wall_seconds()))
                    {
                        return Err(error);
                    }
                    attempt += 1;
                    self.report.retries += 1;
                    let backoff = (0.5 * 2f64.powi(attempt as i32 - 1)).min(4.0);
                    tokio::time::sleep(Duration::from_secs_f64(backoff / self.shared.speed)).await;
                }
            }
        }
    }

    /// A media playlist (HLS) as the track it describes.
    pub(super) async fn fetch_media_track(&mut self, url: &Url) -> Result<Track, String> {
        let fetched = self
            .fetch(url, None, BodyUse::Keep(PLAYLIST_LIMIT), Phase::Admitted)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&fetched.body);
        match hls::parse(&text).map_err(|e| format!("{}: {e}", fetched.url))? {
            Playlist::Media(playlist) => Ok(Track::from_media_playlist(playlist, fetched.url)),
            Playlist::Multivariant(_) => Err(format!(
                "{}: expected a media playlist, found a multivariant playlist",
                fetched.url
            )),
        }
    }

    /// Fetches one init section or segment, `uri` relative to its track's
    /// `base`; failures are already counted.
    pub(super) async fn fetch_part(
        &mut self,
        uri: &str,
        base: &Url,
        range: Option<ByteRange>,
    ) -> Result<u64, ()> {
        let url = match self.router.locate(uri, base) {
            Ok(url) => url,
            Err(error) => {
                self.note_error(&error);
                return Err(());
            }
        };
        self.fetch(&url, range, BodyUse::Discard, Phase::Admitted)
            .await
            .map(|fetched| fetched.bytes)
            .map_err(|_| ())
    }
}
