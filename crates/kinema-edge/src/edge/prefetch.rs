//! Playlist-aware segment prefetch: after segment n of a rendition, the
//! next few are fetched into the cache so the player's next requests hit.

use super::*;

impl Edge {
    /// Remembers where a finished media playlist stored under `key` ends
    /// (playlists only: a segment's bytes are never scanned). Called as a
    /// fill stores or freshens a response and on a disk-tier hit, never on
    /// a memory hit.
    pub(super) fn learn_playlist(&self, key: &str, body: &Bytes) {
        let path = key.split('?').next().unwrap_or(key);
        if !path.ends_with(".m3u8") {
            return;
        }
        if let Some(last) = crate::playlist::last_segment(body) {
            self.segment_ends
                .insert(crate::playlist::directory(key).to_string(), last);
        }
    }

    /// Whether a successful answer to `request` may be followed by a
    /// prefetch, asked before the request's phases run: when the memory
    /// tier has room, or holds the requested object already (a hit).
    ///
    /// A tier without room keeps a new segment only if its admission
    /// prefers it to what it would evict, and it turns away those of
    /// videos watched once. After a miss there, the next segments of the
    /// same video would most likely be fetched only to be turned away, then
    /// fetched again when the viewer asks: two or three origin fetches for
    /// one segment. So such a tier prefetches only after a hit, for a video
    /// whose segments it keeps. Asked before the phases, since a fill may
    /// have stored the object by the time its answer is filtered.
    pub(super) fn may_prefetch(&self, request: &RequestContext) -> bool {
        self.settings.prefetch_segments > 0
            && (self.store.has_room() || self.store.memory_contains(&request.key))
    }

    /// Playlist-aware prefetch: after segment n of a rendition, fetch the
    /// next few into the cache so the player's next requests are hits.
    pub(super) fn prefetch_after(self: Arc<Self>, request: &RequestContext, client: IpAddr) {
        if self.settings.prefetch_segments == 0 {
            return;
        }
        // Never the client's query: a prefetch carrying `?cb=…` would let
        // every one-off key cost further origin fetches.
        let Some((prefix, number, _)) = key::segment_number(&request.path_and_query) else {
            return;
        };
        // A finished playlist seen here tells where the video ends.
        let last = self
            .segment_ends
            .get(crate::playlist::directory(&request.key));
        for next in 1..=u64::from(self.settings.prefetch_segments) {
            let Some(number) = number.checked_add(next) else {
                return;
            };
            if last.is_some_and(|last| number > last) {
                return;
            }
            let path = format!("{prefix}{number}.m4s");
            let Ok((key, _)) = self.request_key(&path, client, None) else {
                return;
            };
            if self.pass_keys.contains_key(&key)
                || self.store.memory_has(&key, &HeaderMap::new())
                || self
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&key)
            {
                continue;
            }
            let Ok(permit) = self.prefetch_slots.clone().try_acquire_owned() else {
                return;
            };
            let edge = self.clone();
            tokio::spawn(async move {
                // The disk tier may hold it; only a real miss is fetched.
                if !matches!(
                    edge.store.lookup(&key, &HeaderMap::new()).await,
                    Lookup::Hit(..)
                ) {
                    Metrics::bump(&edge.metrics.prefetches);
                    let request = RequestContext {
                        method: Method::GET,
                        path_and_query: path,
                        headers: HeaderMap::new(),
                        key: key.clone(),
                        directives: Directives::default(),
                        // On behalf of the client whose request it follows:
                        // its token may be bound to that client's address.
                        client: Some(client),
                        token_expiry: None,
                    };
                    let job = FillJob::Whole {
                        candidate: None,
                        prefetch: true,
                    };
                    if let Joined::Leader(fill) | Joined::Waiter(fill) =
                        edge.join(&key, &request, job)
                    {
                        let _ = fill.whole_body().await;
                    }
                }
                drop(permit);
            });
        }
    }
}
