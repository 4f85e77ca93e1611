//! The edge's request handler: looks a request up in the store, decides by
//! the RFC 9111 rules in [`crate::policy`] whether the stored response
//! answers it, and otherwise forwards it to the origin through a coalesced
//! fill, storing what may be stored.
//!
//! Also here: pass-through of unsafe methods with invalidation (RFC 9111
//! §4.4), serving client conditionals and ranges from stored responses,
//! stale-while-revalidate refreshes, stale-if-error fallbacks, segment
//! prefetch, the purge API and the metrics page. This file holds the lookup,
//! the coalescing and the stale handling; its children hold the rest:
//! `origin_fill` (the task that fills from the origin), `forward`
//! (pass-through, invalidation, origin headers and bodies), `answer`
//! (conditionals, ranges and HEAD on a head and body), `prefetch`, `admin`
//! (metrics page, purge) and `slices` (large objects served from slices).
//! Sockets are the connection layer's (kinema-http); origins are
//! [`crate::origin`]'s.

mod admin;
mod answer;
mod forward;
mod origin_fill;
mod prefetch;
mod slices;

use self::answer::*;
use self::forward::*;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use kinema_auth::Refusal;
use kinema_http::range::RangeRequest;
use kinema_http::respond::{self, Answer, Body, Held, Representation};
use kinema_http::{Clock, ConnectionInfo, Handler, RequestBody, ResponseBody, SharedFile};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::fill::{BodyStream, Fill, FillGuard, FillHead, Slicing};
use crate::key;
use crate::metrics::{Gauges, Metrics};
use crate::origin::{ClientBodyError, OriginBody, OriginClient, OriginError, OriginRequest};
use crate::policy::{
    self, CacheStatus, Detail, Directives, ForwardReason, FreshnessRules, NotStored, OriginFailure,
    Reuse,
};
use crate::slice::{self, SliceRefusal, Version};
use crate::store::{Lookup, Store, Tier};
use crate::stored::StoredResponse;
use crate::upstream::{Upstream, UpstreamRequest, UpstreamSelector};

/// How long a key that produced an uncacheable response bypasses
/// coalescing (hit-for-pass), so later requests do not queue behind a
/// fill whose result they cannot share.
const HIT_FOR_PASS: Duration = Duration::from_secs(30);
/// Most prefetch fills in flight at once.
const PREFETCH_CONCURRENCY: usize = 8;
/// Largest purge request body.
const MAX_PURGE_BODY: usize = 64 * 1024;
/// How long a URL whose origin refused to serve slices is not sliced again.
const UNSLICEABLE: Duration = Duration::from_secs(600);

/// The settings the handler needs (resolved from [`crate::Config`]).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub rules: FreshnessRules,
    pub stale_grace: Duration,
    pub max_object_size: u64,
    /// Complete responses above this size are served from slices; 0 turns
    /// slicing off.
    pub slice_threshold: u64,
    pub slice_size: u64,
    pub body_timeout: Duration,
    pub prefetch_segments: u32,
    pub purge_token: Option<String>,
    /// Key ring for verifying signed URLs at the edge; `None` leaves tokens
    /// to the origin (and in the cache key).
    pub keyring: Option<Arc<kinema_auth::keyring::KeyRing>>,
    pub token_skew: Duration,
    /// What a video object's query does to its key ([`key::QueryPolicy`]).
    pub query_policy: key::QueryPolicy,
}

#[derive(Debug)]
pub struct Edge {
    settings: EdgeSettings,
    store: Store,
    client: Arc<OriginClient>,
    upstreams: Arc<dyn UpstreamSelector>,
    metrics: Arc<Metrics>,
    /// What time it is for freshness, ages and tokens.
    clock: Clock,
    inflight: Mutex<HashMap<String, Arc<Fill>>>,
    pass_keys: moka::sync::Cache<String, ()>,
    prefetch_slots: Arc<Semaphore>,
    /// Objects known to be served from slices, with the version last seen
    /// (a hint: every slice is still checked against the first one of its
    /// response).
    sliced_objects: moka::sync::Cache<String, Arc<Version>>,
    /// Objects whose origin answered a slice request with something
    /// unusable: not sliced for a while.
    unsliceable: moka::sync::Cache<String, ()>,
    /// The last segment number of the finished media playlists stored,
    /// by their directory key ([`crate::playlist`]): prefetch stops there.
    segment_ends: moka::sync::Cache<String, u64>,
}

/// The handler the connection layer calls.
#[derive(Debug, Clone)]
pub struct EdgeHandler(pub Arc<Edge>);

impl Handler for EdgeHandler {
    async fn handle(
        &self,
        request: Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> Response<ResponseBody> {
        self.0.clone().handle(request, connection).await
    }
}

/// A request's parts the edge keeps while answering it.
#[derive(Debug, Clone)]
struct Incoming_ {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    /// The cache key (token verified and replaced, see [`key`]).
    key: String,
    /// May be answered from slices; false on the fallback after an origin
    /// refused slices, so the two paths cannot call each other forever.
    slicing: bool,
    /// The client's address, sent to the origin as `Forwarded: for=`
    /// (RFC 7239); none for the edge's own prefetches.
    client: Option<IpAddr>,
}

/// What a fill fetches.
enum FillJob {
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

/// One step of reading an origin's body into a fill.
enum OriginChunk {
    Data(Bytes),
    End,
    /// The body broke or stalled; the fill has been failed.
    Failed,
}

enum Joined {
    Leader(Arc<Fill>),
    Waiter(Arc<Fill>),
    /// The key was stored meanwhile: look it up again.
    Stored,
}

impl Edge {
    /// An edge of `parts` (cache, origins, metrics, clock) with `settings`.
    pub fn new(settings: EdgeSettings, parts: crate::EdgeParts) -> Self {
        let crate::EdgeParts {
            cache: store,
            client,
            upstreams,
            metrics,
            clock,
        } = parts;
        Self {
            settings,
            store,
            client,
            upstreams,
            metrics,
            clock,
            inflight: Mutex::new(HashMap::new()),
            pass_keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(HIT_FOR_PASS)
                .build(),
            prefetch_slots: Arc::new(Semaphore::new(PREFETCH_CONCURRENCY)),
            sliced_objects: moka::sync::Cache::builder().max_capacity(100_000).build(),
            unsliceable: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(UNSLICEABLE)
                .build(),
            segment_ends: moka::sync::Cache::builder().max_capacity(100_000).build(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn client(&self) -> &Arc<OriginClient> {
        &self.client
    }

    pub fn upstreams(&self) -> &Arc<dyn UpstreamSelector> {
        &self.upstreams
    }

    /// Upstream selection: the upstreams a fetch for `request` tries, in
    /// order (the selector's choice; a slice's fill is chosen for its
    /// object).
    fn select_upstreams(&self, request: &Incoming_) -> Vec<Upstream> {
        self.upstreams
            .select(&UpstreamRequest::new(&request.path_and_query, &request.key))
    }

    /// Sends `origin_request` to the upstreams selected for `request`.
    async fn fetch(
        &self,
        request: &Incoming_,
        origin_request: OriginRequest,
        body: Option<OriginBody>,
    ) -> Result<Response<Incoming>, OriginError> {
        let upstreams = self.select_upstreams(request);
        self.client
            .send(origin_request, body, &upstreams, &*self.upstreams)
            .await
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> Response<ResponseBody> {
        Metrics::bump(&self.metrics.requests);
        let path = request.uri().path();
        if (path.starts_with("/_kinema/") || path == "/metrics")
            && let Some(response) = self.admin(path)
        {
            return response;
        }
        if request.method().as_str() == "PURGE" {
            let (parts, _) = request.into_parts();
            return self.purge_method(&parts).await;
        }
        if path.starts_with("/_kinema/purge") && request.method() == Method::POST {
            return self.purge_api(request).await;
        }
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        // Settled before the key and the origin request are derived, so the
        // origin, the store and prefetch all see the one canonical target.
        let path_and_query = match key::settle_query(&path_and_query, self.settings.query_policy) {
            Ok(target) => target.into_owned(),
            Err(key::RefusedQuery(name)) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "query parameter {name:?} is not accepted on video objects (query_policy = refuse); remove it\n"
                    ),
                );
            }
        };
        let (key, token_expiry) = match self.request_key(&path_and_query, connection.peer.ip()) {
            Ok(found) => found,
            Err(refusal) => return refused(refusal),
        };
        let incoming = Incoming_ {
            method: parts.method,
            path_and_query,
            headers: parts.headers,
            key,
            slicing: true,
            client: Some(connection.peer.ip()),
        };
        let mut response = if incoming.method == Method::GET || incoming.method == Method::HEAD {
            self.clone().cached(&incoming).await
        } else {
            self.pass(
                &incoming,
                Some(body),
                CacheStatus::forward(ForwardReason::Bypass),
            )
            .await
        };
        finish(&mut response);
        if let Some(expires_at) = token_expiry {
            cap_signed_freshness(&mut response, expires_at, self.clock.now());
        }
        self.count_client_bytes(&mut response);
        if incoming.method == Method::GET && response.status().is_success() {
            self.clone().prefetch_after(&incoming, connection.peer.ip());
        }
        response
    }

    /// GET and HEAD: the cache proper.
    async fn cached(self: Arc<Self>, request: &Incoming_) -> Response<ResponseBody> {
        let key = request.key.clone();
        let request_directives = policy::request_directives(&request.headers);
        // Preconditions only an origin can evaluate (RFC 9111 §4.3.2) make
        // the request unsuitable for a stored response: pass it.
        if request.headers.contains_key(header::IF_MATCH)
            || request.headers.contains_key(header::IF_UNMODIFIED_SINCE)
        {
            return self
                .pass(request, None, CacheStatus::forward(ForwardReason::Request))
                .await;
        }
        if self.pass_keys.contains_key(&key) {
            let status = CacheStatus::forward(ForwardReason::Miss).with_detail(Detail::HitForPass);
            return self.pass(request, None, status).await;
        }
        for _ in 0..3 {
            let lookup = self.store.lookup(&key, &request.headers).await;
            let (candidate, forward) = match lookup {
                Lookup::Hit(stored, tier) => {
                    let freshness = stored.freshness(self.clock.now(), &self.settings.rules);
                    let response_directives = stored.directives();
                    match policy::reuse(&request_directives, response_directives, freshness) {
                        reuse @ (Reuse::Fresh | Reuse::StaleAllowedByClient) => {
                            if reuse == Reuse::StaleAllowedByClient {
                                Metrics::bump(&self.metrics.stale_hits);
                            }
                            self.count_hit(tier);
                            return serve_stored(
                                request,
                                &stored,
                                CacheStatus::hit(freshness.ttl_seconds()),
                                self.clock.now(),
                            );
                        }
                        Reuse::StaleWhileRevalidate => {
                            Metrics::bump(&self.metrics.stale_hits);
                            self.count_hit(tier);
                            self.clone()
                                .refresh_in_background(&key, request, stored.clone());
                            let mut status = CacheStatus::hit(freshness.ttl_seconds());
                            status.detail = Some(Detail::StaleWhileRevalidate);
                            return serve_stored(request, &stored, status, self.clock.now());
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
            if candidate.is_none() && forward == ForwardReason::UriMiss && self.slicing(request) {
                if let Some(version) = self.sliced_objects.get(&key) {
                    return self
                        .serve_slices(request, Some((*version).clone()), None, &request_directives)
                        .await;
                }
                // A seek into an object never seen: fetch only the slice it
                // starts in, which also tells the object's size.
                if request.method == Method::GET
                    && request.headers.contains_key(header::RANGE)
                    && !self.unsliceable.contains_key(&key)
                {
                    return self
                        .serve_slices(request, None, None, &request_directives)
                        .await;
                }
            }
            // RFC 9111 §5.2.1.7: only-if-cached and nothing usable → 504.
            if request_directives.has("only-if-cached") {
                let mut response = plain(StatusCode::GATEWAY_TIMEOUT, "not in cache\n");
                let mut status = CacheStatus::forward(forward);
                status.forward = None;
                status.detail = Some(Detail::OnlyIfCached);
                status.apply(response.headers_mut());
                return response;
            }
            Metrics::bump(&self.metrics.misses);
            let job = FillJob::Whole {
                candidate: candidate.clone(),
                prefetch: false,
            };
            match self.join(&key, request, job) {
                Joined::Stored => continue,
                Joined::Leader(fill) => {
                    return self
                        .answer_from_fill(
                            request,
                            &key,
                            fill,
                            false,
                            candidate,
                            forward,
                            &request_directives,
                        )
                        .await;
                }
                Joined::Waiter(fill) => {
                    Metrics::bump(&self.metrics.coalesced_waiters);
                    return self
                        .answer_from_fill(
                            request,
                            &key,
                            fill,
                            true,
                            candidate,
                            forward,
                            &request_directives,
                        )
                        .await;
                }
            }
        }
        // Stored and evicted three times in a row: a pathological churn;
        // passing is always correct.
        self.pass(request, None, CacheStatus::forward(ForwardReason::Miss))
            .await
    }

    fn count_hit(&self, tier: Tier) {
        match tier {
            Tier::Memory => Metrics::bump(&self.metrics.hits_memory),
            Tier::Disk => Metrics::bump(&self.metrics.hits_disk),
        }
    }

    fn slicing(&self, request: &Incoming_) -> bool {
        request.slicing && self.settings.slice_threshold > 0
    }

    /// Joins the fill in flight for `key`, or starts one.
    fn join(self: &Arc<Self>, key: &str, request: &Incoming_, job: FillJob) -> Joined {
        let (also_under, fresh_lookup) = match &job {
            FillJob::Whole { candidate, .. } => (None, candidate.is_none()),
            FillJob::Slice {
                object_key,
                probe,
                revalidating,
                ..
            } => (probe.then(|| object_key.clone()), !revalidating),
        };
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = inflight
            .get(key)
            .or_else(|| also_under.as_ref().and_then(|other| inflight.get(other)))
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
        inflight.insert(key.to_string(), fill.clone());
        if let Some(other) = &also_under {
            inflight.insert(other.clone(), fill.clone());
        }
        drop(inflight);
        let edge = self.clone();
        let key = key.to_string();
        let request = request.clone();
        let guard = FillGuard(fill.clone());
        tokio::spawn(async move {
            edge.run_fill(&key, &request, job, &guard.0).await;
            let mut inflight = edge.inflight.lock().unwrap_or_else(|p| p.into_inner());
            for registered in std::iter::once(&key).chain(also_under.as_ref()) {
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
    fn abandon_fill(&self, fill: &Arc<Fill>) {
        fill.abandon();
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, registered| !Arc::ptr_eq(registered, fill));
    }

    /// Serves the stale candidate when the origin failed, if
    /// stale-if-error or the grace allow it.
    fn stale_on_error(
        &self,
        request: &Incoming_,
        candidate: Option<&Arc<StoredResponse>>,
        request_directives: &Directives,
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
            request_directives,
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
        self: Arc<Self>,
        key: &str,
        request: &Incoming_,
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

    fn count_client_bytes(&self, response: &mut Response<ResponseBody>) {
        match response.body_mut() {
            ResponseBody::Stream(_) => {
                let ResponseBody::Stream(stream) =
                    std::mem::replace(response.body_mut(), ResponseBody::Empty)
                else {
                    return;
                };
                let metrics = self.metrics.clone();
                *response.body_mut() = ResponseBody::Stream(
                    stream
                        .inspect_ok(move |chunk| {
                            Metrics::add(&metrics.client_bytes, chunk.len() as u64)
                        })
                        .boxed(),
                );
            }
            body => Metrics::add(&self.metrics.client_bytes, body.known_length().unwrap_or(0)),
        }
    }

    /// The cache key of a request target, verifying a signed URL's token
    /// when the edge has the key ring (kinema-auth); with the verified
    /// token's expiry.
    fn request_key(
        &self,
        path_and_query: &str,
        client: IpAddr,
    ) -> Result<(String, Option<SystemTime>), Refusal> {
        let Some(keyring) = &self.settings.keyring else {
            return Ok((key::cache_key(path_and_query), None));
        };
        let Some((token, rest)) = kinema_auth::split_signed_path(path_and_query) else {
            return Ok((key::cache_key(path_and_query), None));
        };
        let path = rest.split('?').next().unwrap_or(rest);
        let claims = kinema_auth::verify(
            keyring,
            token,
            path,
            client,
            self.clock.now(),
            self.settings.token_skew,
        )?;
        Ok((key::signed_cache_key(rest), Some(claims.expires_at)))
    }
}

/// A verified signed request is answered from the copy every token of its
/// path shares, whose freshness the token that filled it set: capped here
/// at this request's token, since a cache below this edge (a browser, an
/// edge without keys) keeps it under this token's URL (kinema-auth
/// `cache`).
fn cap_signed_freshness(
    response: &mut Response<ResponseBody>,
    expires_at: SystemTime,
    now: SystemTime,
) {
    let seconds_left = expires_at
        .duration_since(now)
        .map_or(0, |left| left.as_secs());
    let headers = response.headers_mut();
    for name in [&header::CACHE_CONTROL, &policy::CDN_CACHE_CONTROL] {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let capped = value
            .to_str()
            .ok()
            .and_then(|text| {
                HeaderValue::from_str(&kinema_auth::cap_cache_control(text, seconds_left)).ok()
            })
            .unwrap_or_else(|| HeaderValue::from_static("no-store"));
        headers.insert(name.clone(), capped);
    }
}

/// Last touches on every response: hop-by-hop fields removed, `Via` added.
fn finish(response: &mut Response<ResponseBody>) {
    let headers = response.headers_mut();
    policy::strip_hop_by_hop(headers);
    headers.append(header::VIA, HeaderValue::from_static("1.1 kinema"));
}

/// A one-line plain-text answer no cache keeps, the one shape of an error
/// ([`respond::error`]); `text`'s closing newline is the one it adds.
fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    respond::error(status, text.trim_end_matches('\n'), respond::no_store())
}

/// 403 for a signed URL the edge refuses, with the machine-readable
/// reason and nothing else (as the origin answers).
fn refused(refusal: Refusal) -> Response<ResponseBody> {
    let body = serde_json::json!({"error": refusal.as_str()});
    let mut response = Response::new(ResponseBody::Full(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        kinema_auth::REFUSAL_HEADER,
        HeaderValue::from_static(refusal.as_str()),
    );
    response
}

/// 502 for an unreachable or failing origin, 504 for a slow one.
fn error_response(error: &OriginError, forward: ForwardReason) -> Response<ResponseBody> {
    if let OriginError::RequestBody(_) = error {
        tracing::debug!(%error, "client request body refused");
    } else {
        tracing::warn!(%error, "origin fetch failed");
    }
    let text = match error {
        OriginError::Timeout => "the origin did not answer in time\n",
        OriginError::RequestBody(_) => {
            "the request body is malformed; send a valid Content-Length or chunked body\n"
        }
        _ => "the origin could not be reached\n",
    };
    let mut response = plain(error.status(), text);
    let mut status = CacheStatus::forward(forward);
    status.detail = Some(Detail::Origin(match error {
        OriginError::Timeout => OriginFailure::Timeout,
        OriginError::Connect(_) => OriginFailure::Unreachable,
        OriginError::Protocol(_) => OriginFailure::Error,
        OriginError::RequestBody(_) => OriginFailure::RequestBody,
    }));
    status.apply(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, pairs: &[(&str, &str)]) -> Incoming_ {
        Incoming_ {
            method,
            path_and_query: "/v/a/1.m4s".into(),
            headers: crate::test_support::headers(pairs),
            key: "/v/a/1.m4s".into(),
            slicing: true,
            client: None,
        }
    }

    fn stored() -> StoredResponse {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        StoredResponse::new(
            StatusCode::OK,
            headers,
            Bytes::from_static(b"0123456789"),
            SystemTime::now(),
            SystemTime::now(),
            vec![],
        )
    }

    #[test]
    fn stored_responses_answer_conditionals_and_ranges() {
        let stored = stored();
        let response = serve_stored(
            &request(Method::GET, &[("if-none-match", "W/\"abc\"")]),
            &stored,
            CacheStatus::hit(60),
            SystemTime::now(),
        );
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], "\"abc\"");
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));

        let response = serve_stored(
            &request(Method::GET, &[("range", "bytes=2-4")]),
            &stored,
            CacheStatus::hit(60),
            SystemTime::now(),
        );
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        let ResponseBody::Full(body) = response.body() else {
            panic!("full body")
        };
        assert_eq!(&body[..], b"234");

        let response = serve_stored(
            &request(Method::GET, &[("range", "bytes=20-")]),
            &stored,
            CacheStatus::hit(60),
            SystemTime::now(),
        );
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */10");

        // If-Range naming another representation: the whole body.
        let response = serve_stored(
            &request(
                Method::GET,
                &[("range", "bytes=2-4"), ("if-range", "\"other\"")],
            ),
            &stored,
            CacheStatus::hit(60),
            SystemTime::now(),
        );
        assert_eq!(response.status(), StatusCode::OK);

        let response = serve_stored(
            &request(Method::HEAD, &[]),
            &stored,
            CacheStatus::hit(60),
            SystemTime::now(),
        );
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "10");
        assert!(matches!(response.body(), ResponseBody::Empty));
        assert_eq!(response.headers()["cache-status"], "kinema; hit; ttl=60");
    }
}
