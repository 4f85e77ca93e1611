//! A viewer's presentation: the manifest fetched (waiting out refusals
//! until admitted) and read into its ladder, audio tracks and content
//! steering pathways, the rung nearest a pinned bit rate, and a rung's HLS
//! media playlists loaded on first use.

use crate::client::BodyUse;
use crate::presentation::{self, TrackSource};
use crate::steering::SteeringState;

use super::Viewer;
use super::requests::{PLAYLIST_LIMIT, Phase};

impl Viewer<'_> {
    /// Fetches the manifest, waiting out refusals until admitted, and
    /// reads the ladder from it.
    pub(super) async fn load_presentation(&mut self) -> Result<(), String> {
        let url = self.router.base().clone();
        let fetched = self
            .fetch(&url, None, BodyUse::Keep(PLAYLIST_LIMIT), Phase::Admission)
            .await
            .map_err(|e| e.to_string())?;
        self.report.admitted = true;
        let presentation = presentation::parse(
            fetched.content_type.as_deref(),
            &fetched.body,
            &fetched.url,
            &self.router,
        )
        .map_err(|e| format!("{}: {e}", fetched.url))?;
        self.router.update(fetched.url);
        if let Some(warning) = presentation.steering_warning {
            self.steering_warning(warning);
        }
        self.rungs = presentation.renditions;
        self.audio = presentation.audio;
        if let Some(steered) = presentation.steering {
            let known = steered.sets.iter().map(|set| set.id.clone()).collect();
            let state = SteeringState::new(
                presentation.format,
                steered.server,
                known,
                steered.initial.as_deref(),
            );
            self.sets = steered.sets;
            // The presentation's own ladder is the initial pathway's copy.
            if let Some(set) = self.sets.iter_mut().find(|set| set.id == state.current()) {
                set.renditions.clear();
                set.audio.clear();
            }
            self.report.steered = true;
            self.steering = Some(state);
        }
        Ok(())
    }

    /// The rung closest (in ratio) to a pinned bit rate.
    pub(super) fn pinned_rung(&self, bits: u64) -> usize {
        let distance = |bandwidth: u64| {
            ((bandwidth.max(1) as f64) / (bits.max(1) as f64))
                .ln()
                .abs()
        };
        (0..self.rungs.len())
            .min_by(|a, b| {
                distance(self.rungs[*a].bandwidth).total_cmp(&distance(self.rungs[*b].bandwidth))
            })
            .unwrap_or(0)
    }

    /// Loads the rung's track and its audio track, if not yet loaded.
    pub(super) async fn ensure_rung_loaded(&mut self, rung: usize) -> Result<(), String> {
        if let TrackSource::Playlist(url) = &self.rungs[rung].media {
            let url = url.clone();
            let track = self.fetch_media_track(&url).await?;
            self.rungs[rung].media = TrackSource::Loaded(track);
        }
        if let Some(audio) = self.rungs[rung].audio
            && let TrackSource::Playlist(url) = &self.audio[audio]
        {
            let url = url.clone();
            let track = self.fetch_media_track(&url).await?;
            self.audio[audio] = TrackSource::Loaded(track);
        }
        Ok(())
    }
}
