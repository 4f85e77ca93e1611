//! A viewer's pathways under content steering: the steering manifest's
//! reloads, switching to the pathway its priority puts first, failing over
//! to the next one when a request fails, and counting requests per server.
//! The decisions are `SteeringState`'s; this is the viewer's side of them
//! (its requests, its ladder, its report).

use tokio::time::Instant;
use url::Url;

use super::Viewer;
use crate::client::{BodyUse, FetchError, Fetched};
use crate::steering;

impl Viewer<'_> {
    pub(super) fn steering_warning(&mut self, warning: String) {
        self.report.steering_warnings += 1;
        if self.report.first_steering_warning.is_none() {
            self.report.first_steering_warning = Some(warning);
        }
    }

    /// Counts one request's outcome on the pathway (host:port) it went to.
    pub(super) fn count_on_pathway(&mut self, url: &Url, result: &Result<Fetched, FetchError>) {
        let key = match url.port_or_known_default() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        // Bounded: a viewer talks to a handful of servers; past the bound
        // the rest share one row.
        let key = if self.report.pathways.len() >= steering::MAX_PATHWAYS * 2
            && !self.report.pathways.contains_key(&key)
        {
            "other".to_string()
        } else {
            key
        };
        let counters = self.report.pathways.entry(key.clone()).or_default();
        self.last_pathway = key;
        counters.requests += 1;
        match result {
            Ok(fetched) => counters.bytes += fetched.bytes,
            Err(_) => counters.errors += 1,
        }
    }

    /// Reloads the steering manifest when its TTL (or a retry wait) ran
    /// out, and switches pathway when its priority says so.
    pub(super) async fn reload_steering_if_due(&mut self) {
        let Some(state) = &self.steering else {
            return;
        };
        if !state.reload_due(self.wall_seconds()) {
            return;
        }
        let url = state.request_url(self.estimator.estimate());
        self.report.steering_requests += 1;
        let result = self
            .client
            .get(
                &url,
                None,
                BodyUse::Keep(steering::MAX_MANIFEST_BYTES),
                &self.shared.live,
            )
            .await;
        let now = self.wall_seconds();
        let mut switch = None;
        let mut warning = None;
        let state = self.steering.as_mut().expect("checked above");
        match result {
            Ok(fetched) => match steering::parse_manifest(&fetched.body, &fetched.url) {
                Ok(manifest) => switch = state.apply(manifest, now),
                Err(problem) => {
                    warning = Some(format!("{}: {problem}", fetched.url));
                    state.reload_failed(now, false, None);
                }
            },
            Err(error) => {
                self.report.steering_errors += 1;
                // hls.js: a 410 ends steering, a 429 waits its Retry-After.
                let (gone, wait) = match &error {
                    FetchError::Status { status: 410, .. } => (true, None),
                    FetchError::Status {
                        status: 429,
                        retry_after,
                        ..
                    } => (false, *retry_after),
                    _ => (false, None),
                };
                state.reload_failed(now, gone, wait);
            }
        }
        if let Some(warning) = warning {
            self.steering_warning(warning);
        }
        if let Some(pathway) = switch {
            self.report.pathway_switches_by_steering += 1;
            self.switch_pathway(&pathway);
        }
    }

    /// The current pathway failed (the failed request was sent at
    /// `failed_request`): penalise it and move to the next one in priority.
    /// Returns whether the viewer moved.
    pub(super) fn fail_over(&mut self, failed_request: Instant) -> bool {
        let now = self.wall_seconds();
        let Some(next) = self
            .steering
            .as_mut()
            .and_then(|state| state.fail_current(now))
        else {
            return false;
        };
        self.failover_since.get_or_insert(failed_request);
        self.report.pathway_switches_by_failure += 1;
        self.switch_pathway(&next);
        true
    }

    /// Plays `pathway`'s set from now on, keeping the rung (by
    /// `STABLE-VARIANT-ID`, or the DASH Representation id) and the
    /// position.
    fn switch_pathway(&mut self, pathway: &str) {
        let Some(to) = self.sets.iter().position(|set| set.id == pathway) else {
            return;
        };
        if self.sets[to].renditions.is_empty() {
            // Already playing it.
            return;
        }
        let playing = self
            .current
            .and_then(|rung| self.rungs.get(rung))
            .map(|rendition| rendition.stable_id.clone().unwrap_or(rendition.id.clone()));
        // Put the playing ladder back into its set (keeping what it loaded).
        if let Some(from) = self.sets.iter().position(|set| set.renditions.is_empty()) {
            self.sets[from].renditions = std::mem::take(&mut self.rungs);
            self.sets[from].audio = std::mem::take(&mut self.audio);
        }
        self.rungs = std::mem::take(&mut self.sets[to].renditions);
        self.audio = std::mem::take(&mut self.sets[to].audio);
        if let Some(current) = self.current {
            let same = playing.and_then(|stable| {
                self.rungs
                    .iter()
                    .position(|r| r.stable_id.as_ref().unwrap_or(&r.id) == &stable)
            });
            self.current = Some(same.unwrap_or(current.min(self.rungs.len().saturating_sub(1))));
        }
        // Init sections come from the new server too.
        self.init_loaded = None;
        self.audio_init_loaded = None;
    }
}
