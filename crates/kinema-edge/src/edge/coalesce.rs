//! Request coalescing: the table of fills in flight, so concurrent misses
//! of one key cost one origin fetch (the fill's task is `origin_fill`'s).
//!
//! A request that came through a kinema node (another edge filling) looks
//! fills up in a slot of its own (`guarded_slot`), where only fills that go
//! to the origins are registered: it never waits for a fill this edge sends
//! to another edge, which might be waiting for this very request.

use super::*;

/// What a fill fetches.
pub(super) enum FillJob {
    /// The whole response, revalidating `candidate` when there is one.
    /// A `prefetch` is asked by no client: an error answering it is not
    /// stored.
    Whole {
        candidate: Option<Arc<StoredResponse>>,
        prefetch: bool,
    },
    /// One slice of `object_key`. A `probe` (a `Range` request on a miss,
    /// size unknown) is also registered under the object's key, so that
    /// requests for the whole object meanwhile wait for it, and it turns
    /// into a fill of the whole object when the origin answers anything but
    /// a `206` (e.g. a `200` from an origin that ignores ranges).
    Slice {
        object_key: String,
        index: u64,
        probe: bool,
        /// A stale copy is stored: do not take its presence for a fresh
        /// one.
        revalidating: bool,
    },
}

pub(super) enum Joined {
    Leader(Arc<Fill>),
    Waiter(Arc<Fill>),
    /// The key was stored meanwhile: look it up again.
    Stored,
}

impl Edge {
    /// Joins the fill in flight for `key`, or starts one.
    pub(super) fn join(
        self: &Arc<Self>,
        key: &str,
        request: &RequestContext,
        job: FillJob,
    ) -> Joined {
        let (also_under, fresh_lookup) = match &job {
            FillJob::Whole { candidate, .. } => (None, candidate.is_none()),
            FillJob::Slice {
                object_key,
                probe,
                revalidating,
                ..
            } => (probe.then(|| object_key.clone()), !revalidating),
        };
        let upstream_request = upstream_request(request);
        let guarded = upstream_request.through_kinema;
        // Slots for this request to look in, and to register a fill under.
        let slot = |key: &str| {
            if guarded {
                guarded_slot(key)
            } else {
                key.to_string()
            }
        };
        let (own, own_also) = (slot(key), also_under.as_deref().map(slot));
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = inflight
            .get(&own)
            .or_else(|| own_also.as_ref().and_then(|other| inflight.get(other)))
            .filter(|fill| fill.joinable())
        {
            return Joined::Waiter(fill.clone());
        }
        // A fill stores before it is sealed (no longer joinable), so a
        // request that missed just before a fill finished sees the stored
        // response here rather than starting a second origin fetch.
        if fresh_lookup && self.store.memory_has(key, &request.headers) {
            return Joined::Stored;
        }
        let fill = Arc::new(Fill::new());
        // Every fill is joinable by viewers; one that goes to the origins
        // also by other edges' requests.
        let to_origins = guarded || !self.upstreams.fills_from_peer(&upstream_request);
        let mut registered = Vec::with_capacity(4);
        for plain in std::iter::once(key).chain(also_under.as_deref()) {
            if to_origins {
                registered.push(guarded_slot(plain));
            }
            // A guarded fill leaves a viewers' fill in flight where it is.
            if !guarded || !inflight.contains_key(plain) {
                registered.push(plain.to_string());
            }
        }
        for slot in &registered {
            inflight.insert(slot.clone(), fill.clone());
        }
        drop(inflight);
        let edge = self.clone();
        let key = key.to_string();
        let request = request.clone();
        let guard = FillGuard(fill.clone());
        tokio::spawn(async move {
            edge.run_fill(&key, &request, job, &guard.0).await;
            let mut inflight = edge.inflight.lock().unwrap_or_else(|p| p.into_inner());
            for registered in &registered {
                if inflight
                    .get(registered)
                    .is_some_and(|other| Arc::ptr_eq(other, &guard.0))
                {
                    inflight.remove(registered);
                }
            }
            drop(inflight);
            drop(guard);
        });
        Joined::Leader(fill)
    }

    /// Takes `fill` out of the coalescing table under every key it is
    /// registered for, and lets it store nothing ([`Fill::abandon`]).
    pub(super) fn abandon_fill(&self, fill: &Arc<Fill>) {
        fill.abandon();
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, registered| !Arc::ptr_eq(registered, fill));
    }
}

/// Where fills a request through a kinema node may join are registered
/// for `key` (a prefix no request target has).
fn guarded_slot(key: &str) -> String {
    format!("\0through-kinema\0{key}")
}
