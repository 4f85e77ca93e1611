//! The cache lookup, the second phase: the memory and disk tiers, whether
//! what they hold may answer the request (freshness, `Vary`, the request's
//! directives), stale serving, and otherwise the coalesced fill the miss
//! joins or starts.

use super::*;

impl Edge {
    /// Looks the request up: a response when a stored one answers it, else
    /// the fill (or slices) to answer from, or a pass.
    pub(super) async fn cache_lookup(self: &Arc<Self>, request: &RequestContext) -> Step {
        let key = &request.key;
        let request_directives = &request.directives;
        let lookup = self.store.lookup(key, &request.headers).await;
        let (candidate, forward) = match lookup {
            Lookup::Hit(stored, tier) => {
                // What this process never filled (the disk tier kept it
                // across a restart) is learnt from as it is found.
                if tier == Tier::Disk && stored.status == StatusCode::OK {
                    self.learn_playlist(key, &stored.body);
                }
                let freshness = stored.freshness(self.clock.now(), &self.settings.rules);
                let response_directives = stored.directives();
                match policy::reuse(request_directives, response_directives, freshness) {
                    reuse @ (Reuse::Fresh | Reuse::StaleAllowedByClient) => {
                        if reuse == Reuse::StaleAllowedByClient {
                            Metrics::bump(&self.metrics.stale_hits);
                        }
                        self.count_hit(tier);
                        return Step::Respond(serve_stored(
                            request,
                            &stored,
                            CacheStatus::hit(freshness.ttl_seconds()),
                            self.clock.now(),
                        ));
                    }
                    Reuse::StaleWhileRevalidate => {
                        Metrics::bump(&self.metrics.stale_hits);
                        self.count_hit(tier);
                        self.refresh_in_background(key, request, stored.clone());
                        let status = CacheStatus::hit(freshness.ttl_seconds())
                            .with_detail(Detail::StaleWhileRevalidate);
                        return Step::Respond(serve_stored(
                            request,
                            &stored,
                            status,
                            self.clock.now(),
                        ));
                    }
                    Reuse::Validate { forced_by_request } => (
                        Some(stored),
                        if forced_by_request {
                            ForwardReason::Request
                        } else {
                            ForwardReason::Stale
                        },
                    ),
                }
            }
            Lookup::VaryMiss => (None, ForwardReason::VaryMiss),
            Lookup::UriMiss => (None, ForwardReason::UriMiss),
        };
        if candidate.is_none() && forward == ForwardReason::UriMiss && self.slicing() {
            if let Some(version) = self.sliced_objects.get(key) {
                return Step::Slices(SliceStart {
                    known: Some((*version).clone()),
                    first: None,
                });
            }
            // A seek into an object never seen: fetch only the slice it
            // starts in, which also tells the object's size.
            if request.method == Method::GET
                && request.headers.contains_key(header::RANGE)
                && !self.unsliceable.contains_key(key)
            {
                return Step::Slices(SliceStart {
                    known: None,
                    first: None,
                });
            }
        }
        // RFC 9111 §5.2.1.7: only-if-cached and nothing usable → 504.
        if request_directives.has("only-if-cached") {
            return Step::Respond(not_in_cache());
        }
        Metrics::bump(&self.metrics.misses);
        let job = FillJob::Whole {
            candidate: candidate.clone(),
            prefetch: false,
        };
        let (fill, waiter) = match self.join(key, request, job) {
            // Stored meanwhile: look again.
            Joined::Stored => return Step::Lookup,
            Joined::Leader(fill) => (fill, false),
            Joined::Waiter(fill) => {
                Metrics::bump(&self.metrics.coalesced_waiters);
                (fill, true)
            }
        };
        Step::FromFill(FillAnswer {
            fill,
            waiter,
            candidate,
            forward,
        })
    }

    pub(super) fn count_hit(&self, tier: Tier) {
        match tier {
            Tier::Memory => Metrics::bump(&self.metrics.hits_memory),
            Tier::Disk => Metrics::bump(&self.metrics.hits_disk),
        }
    }

    /// Whether large objects are answered from slices at all.
    pub(super) fn slicing(&self) -> bool {
        self.settings.slice_threshold > 0
    }

    /// Serves the stale candidate when the origin failed, if
    /// stale-if-error or the grace allow it.
    pub(super) fn stale_on_error(
        &self,
        request: &RequestContext,
        candidate: Option<&Arc<StoredResponse>>,
    ) -> Option<Response<ResponseBody>> {
        let stored = candidate?;
        let now = self.clock.now();
        let freshness = stored.freshness(now, &self.settings.rules);
        // The grace is the edge's own extension; a signed copy the edge
        // cannot verify is fresh only as long as its token (the origin caps
        // it), so the grace would serve it past its token's expiry.
        let grace = if key::is_unverified_signed(&request.key) {
            Duration::ZERO
        } else {
            self.settings.stale_grace
        };
        if !policy::stale_on_error_allowed(
            &request.directives,
            stored.directives(),
            freshness,
            grace,
        ) {
            return None;
        }
        Metrics::bump(&self.metrics.stale_if_error);
        let mut status =
            CacheStatus::forward(ForwardReason::Stale).with_detail(Detail::StaleIfError);
        status.ttl = Some(freshness.ttl_seconds());
        Some(serve_stored(request, stored, status, now))
    }

    /// RFC 5861 §3: refresh a stale response in the background while it is
    /// served; joins a fill already in flight instead of starting another.
    fn refresh_in_background(
        self: &Arc<Self>,
        key: &str,
        request: &RequestContext,
        stored: Arc<StoredResponse>,
    ) {
        let _ = self.join(
            key,
            request,
            FillJob::Whole {
                candidate: Some(stored),
                prefetch: false,
            },
        );
    }
}
