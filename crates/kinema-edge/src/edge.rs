//! The edge's request handler: looks a request up in the store, decides by
//! the RFC 9111 rules in [`crate::policy`] whether the stored response
//! answers it, and otherwise forwards it to the origin through a coalesced
//! fill, storing what may be stored.
//!
//! Also here: pass-through of unsafe methods with invalidation (RFC 9111
//! §4.4), serving client conditionals and ranges from stored responses,
//! stale-while-revalidate refreshes, stale-if-error fallbacks, segment
//! prefetch, the purge API and the metrics page; large objects are served
//! from slices by the child module `slices`. Sockets are the connection
//! layer's (kinema-http); origins are [`crate::origin`]'s.

mod slices;

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
use kinema_http::conditional::{self, EntityTag, Precondition, Validators};
use kinema_http::range::{self, RangeRequest};
use kinema_http::{ConnectionInfo, Handler, RequestBody, ResponseBody, SharedFile};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::fill::{BodyStream, Fill, FillGuard, FillHead, Slicing};
use crate::key;
use crate::metrics::{Gauges, Metrics};
use crate::origin::{ClientBodyError, OriginBody, OriginError, OriginRequest, Origins};
use crate::policy::{self, CacheStatus, Directives, FreshnessRules, Reuse};
use crate::slice::{self, Version};
use crate::store::{Lookup, Store, Tier};
use crate::stored::StoredResponse;

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
    origins: Arc<Origins>,
    metrics: Arc<Metrics>,
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
    Whole {
        candidate: Option<Arc<StoredResponse>>,
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
    pub fn new(
        settings: EdgeSettings,
        store: Store,
        origins: Arc<Origins>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            store,
            origins,
            metrics,
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
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn origins(&self) -> &Arc<Origins> {
        &self.origins
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
            self.pass(&incoming, Some(body), CacheStatus::forward("bypass"))
                .await
        };
        finish(&mut response);
        if let Some(expires_at) = token_expiry {
            cap_signed_freshness(&mut response, expires_at);
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
                .pass(request, None, CacheStatus::forward("request"))
                .await;
        }
        if self.pass_keys.contains_key(&key) {
            let mut status = CacheStatus::forward("miss");
            status.detail = Some("hit-for-pass");
            return self.pass(request, None, status).await;
        }
        for _ in 0..3 {
            let lookup = self.store.lookup(&key, &request.headers).await;
            let (candidate, forward) = match lookup {
                Lookup::Hit(stored, tier) => {
                    let freshness = stored.freshness(SystemTime::now(), &self.settings.rules);
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
                            );
                        }
                        Reuse::StaleWhileRevalidate => {
                            Metrics::bump(&self.metrics.stale_hits);
                            self.count_hit(tier);
                            self.clone()
                                .refresh_in_background(&key, request, stored.clone());
                            let mut status = CacheStatus::hit(freshness.ttl_seconds());
                            status.detail = Some("stale-while-revalidate");
                            return serve_stored(request, &stored, status);
                        }
                        Reuse::Validate { forced_by_request } => (
                            Some(stored),
                            if forced_by_request {
                                "request"
                            } else {
                                "stale"
                            },
                        ),
                    }
                }
                Lookup::VaryMiss => (None, "vary-miss"),
                Lookup::UriMiss => (None, "uri-miss"),
            };
            if candidate.is_none() && forward == "uri-miss" && self.slicing(request) {
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
                status.detail = Some("only-if-cached");
                status.apply(response.headers_mut());
                return response;
            }
            Metrics::bump(&self.metrics.misses);
            let job = FillJob::Whole {
                candidate: candidate.clone(),
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
        self.pass(request, None, CacheStatus::forward("miss")).await
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
            FillJob::Whole { candidate } => (None, candidate.is_none()),
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
        {
            return Joined::Waiter(fill.clone());
        }
        // A fill stores before it leaves the map, so a request that missed
        // just before a fill finished sees the stored response here rather
        // than starting a second origin fetch.
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

    /// Fetches from the origin for one key and feeds the fill; stores the
    /// response when allowed. Runs in its own task, so a client that goes
    /// away does not cancel the fill the others wait on.
    async fn run_fill(&self, key: &str, request: &Incoming_, job: FillJob, fill: &Arc<Fill>) {
        let mut headers = forwarded_headers(request);
        // The fill is shared and stored: fetch the whole representation
        // unconditionally, whatever this one client asked (RFC 9111 §4.3.1
        // lets a cache send its own validators instead).
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ] {
            headers.remove(name);
        }
        let (object_key, candidate, slice_job) = match job {
            FillJob::Whole { candidate } => (key.to_string(), candidate, None),
            FillJob::Slice {
                object_key,
                index,
                probe,
                ..
            } => {
                // RFC 9110 §14.2: an aligned range, the same for every
                // client, so slices are shared whatever each one asked.
                headers.insert(
                    header::RANGE,
                    slice::range_header(index, self.settings.slice_size),
                );
                Metrics::bump(&self.metrics.slice_fills);
                (object_key, None, Some((index, probe)))
            }
        };
        let key = object_key.as_str();
        if let Some(stored) = &candidate {
            Metrics::bump(&self.metrics.revalidations);
            // RFC 9111 §4.3.1: validate with the stored validators.
            if let Some(etag) = stored.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = stored.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        let request_time = SystemTime::now();
        let origin_request = OriginRequest {
            method: Method::GET,
            path_and_query: request.path_and_query.clone(),
            headers,
        };
        let response = match self.origins.send(origin_request, None).await {
            Ok(response) => response,
            Err(error) => {
                fill.fail(error);
                return;
            }
        };
        let response_time = SystemTime::now();
        let (parts, body) = response.into_parts();
        let mut probe_refused_range = false;
        if let Some((index, probe)) = slice_job {
            if parts.status == StatusCode::PARTIAL_CONTENT || !probe {
                self.absorb_slice(
                    key,
                    request,
                    index,
                    (parts, body),
                    fill,
                    (request_time, response_time),
                )
                .await;
                return;
            }
            // A probe answered with anything but a 206 got the object's own
            // answer: a 200 from an origin that ignores ranges (so never
            // slice this one), a 404, a 5xx… It is handled as a fill of the
            // whole object below, except a 416: that answers our aligned
            // range, right for the client that asked (its range starts no
            // earlier) but not for others waiting on the object.
            if parts.status == StatusCode::OK {
                self.unsliceable.insert(key.to_string(), ());
            }
            probe_refused_range = parts.status == StatusCode::RANGE_NOT_SATISFIABLE;
        }
        if parts.status == StatusCode::NOT_MODIFIED
            && let Some(stored) = &candidate
        {
            // RFC 9111 §4.3.4: freshen the stored response with the 304's
            // fields and the new exchange times.
            Metrics::bump(&self.metrics.revalidated_not_modified);
            let mut merged = stored.headers.clone();
            policy::merge_headers(&mut merged, &parts.headers);
            let fresh = Arc::new(stored.derive(merged, request_time, response_time, false));
            let storable =
                policy::storable(&Method::GET, &request.headers, fresh.status, &fresh.headers);
            if storable.is_ok() {
                self.store.replace(key, fresh.clone());
            } else {
                self.store.remove(key).await;
            }
            fill.publish_head(FillHead {
                status: fresh.status,
                headers: fresh.headers.clone(),
                request_time,
                response_time,
                secondary_key: Some(fresh.secondary_key.clone()),
                shared: true,
                stored: storable.is_ok(),
                validated: true,
                detail: storable.err().map(|reason| reason.detail()),
                slicing: Slicing::Whole,
            });
            fill.push(fresh.body.clone());
            fill.complete();
            return;
        }
        let headers = policy::stored_headers(&parts.headers);
        let secondary_key = policy::vary_names(&parts.headers)
            .map(|names| policy::secondary_key(&names, &request.headers));
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        let mut verdict =
            policy::storable(&Method::GET, &request.headers, parts.status, &parts.headers)
                .map_err(|reason| (reason.detail(), reason.personal()));
        if probe_refused_range {
            verdict = Err(("range-not-satisfiable", true));
        }
        if verdict.is_ok()
            && declared_length.is_some_and(|length| length > self.settings.max_object_size)
        {
            verdict = Err(("too-large", true));
        }
        // Issue 6: a large complete response is not kept whole; its body is
        // abandoned (the connection closes) and every reader is answered
        // from slices fetched by range.
        if slice_job.is_none()
            && parts.status == StatusCode::OK
            && self.settings.slice_threshold > 0
            && matches!(verdict, Ok(()) | Err(("too-large", _)))
            && declared_length.is_some_and(|length| length > self.settings.slice_threshold)
            && !self.unsliceable.contains_key(key)
            && let Ok(version) = Version::of_whole(&parts.headers)
        {
            if candidate.is_some() {
                self.store.remove(key).await;
            }
            self.sliced_objects
                .insert(key.to_string(), Arc::new(version.clone()));
            fill.publish_head(FillHead {
                status: parts.status,
                headers,
                request_time,
                response_time,
                secondary_key: Some(Vec::new()),
                shared: true,
                stored: false,
                validated: false,
                detail: Some("sliced"),
                slicing: Slicing::Large(version),
            });
            fill.complete();
            return;
        }
        // A 5xx never replaces a stored response that stale-if-error may
        // still serve.
        if verdict.is_ok() && parts.status.is_server_error() && candidate.is_some() {
            verdict = Err(("server-error", false));
        }
        let personal = matches!(verdict, Err((_, true)));
        // Hit-for-pass is for URLs whose responses cannot be shared; a 5xx
        // (an admission refusal, a failure) says nothing of the next one,
        // and passing would bypass the stale copy an outage needs.
        if verdict.is_err() && !probe_refused_range && !parts.status.is_server_error() {
            self.pass_keys.insert(key.to_string(), ());
        }
        // A reader's response is complete as soon as its last byte is sent:
        // with the origin's Content-Length (passed on), when the fill pushes
        // the last declared byte; for a 204, at the head. Both come before
        // the fill completes, so the object is stored before the fill
        // releases what completes it: a client holding a complete response
        // then finds the object stored on its next request (a hit, an
        // answer to only-if-cached) rather than racing this task.
        let mut store_it = verdict.is_ok() && secondary_key.is_some();
        let store_whole = |whole: Bytes| {
            if let Some(secondary_key) = &secondary_key {
                self.store.insert(
                    key,
                    Arc::new(StoredResponse::new(
                        parts.status,
                        headers.clone(),
                        whole,
                        request_time,
                        response_time,
                        secondary_key.clone(),
                    )),
                );
            }
        };
        let shared = !personal && secondary_key.is_some();
        let head = FillHead {
            status: parts.status,
            headers: headers.clone(),
            request_time,
            response_time,
            secondary_key: secondary_key.clone(),
            shared,
            stored: verdict.is_ok(),
            validated: false,
            detail: verdict.err().map(|(detail, _)| detail),
            slicing: Slicing::Whole,
        };
        // Only the leader will read a response that is neither shared (its
        // waiters fetch for themselves) nor stored: hand it the origin's
        // body to read at its own pace instead of buffering the whole of
        // it here, so a slow client of a large private download holds back
        // the origin, not the edge's memory (as Varnish's pass streams).
        if !shared && !store_it {
            fill.hand_over(
                head,
                sole_origin_body(body, self.metrics.clone(), self.settings.body_timeout),
            );
            return;
        }
        let mut body = body;
        // No content (a 204, Content-Length: 0): whole already.
        if store_it && body.is_end_stream() {
            store_whole(Bytes::new());
            store_it = false;
        }
        fill.publish_head(head);
        loop {
            match self.next_origin_chunk(&mut body, fill).await {
                OriginChunk::Data(data) => {
                    let received = fill.length() + data.len() as u64;
                    if received > self.settings.max_object_size {
                        store_it = false;
                    }
                    // The last declared byte: hyper ends the body here, so
                    // the object is whole; stored before it is pushed.
                    if store_it && declared_length == Some(received) {
                        store_whole(fill.whole_body_ending_with(&data));
                        store_it = false;
                    }
                    fill.push(data);
                }
                OriginChunk::End => break,
                // Failed before the object was whole: nothing is stored.
                OriginChunk::Failed => return,
            }
        }
        // Without a Content-Length (chunked) the readers' responses end
        // only when the fill completes, so storing now is in time. With one,
        // a body that ended short is never stored.
        if store_it && declared_length.is_none() {
            store_whole(fill.whole_body_now());
        }
        fill.complete();
    }

    /// The next chunk of an origin's body for `fill`, counted as origin
    /// bytes. A frame that does not come within `body_timeout`, or a broken
    /// body, fails the fill (whole objects and slices alike), and the
    /// caller stops.
    async fn next_origin_chunk(&self, body: &mut Incoming, fill: &Fill) -> OriginChunk {
        match next_origin_data(body, &self.metrics, self.settings.body_timeout).await {
            Ok(Some(data)) => OriginChunk::Data(data),
            Ok(None) => OriginChunk::End,
            Err(error) => {
                fill.fail(error);
                OriginChunk::Failed
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per role; a struct would only rename them"
    )]
    async fn answer_from_fill(
        self: &Arc<Self>,
        request: &Incoming_,
        key: &str,
        fill: Arc<Fill>,
        waiter: bool,
        candidate: Option<Arc<StoredResponse>>,
        forward: &'static str,
        request_directives: &Directives,
    ) -> Response<ResponseBody> {
        let head = match fill.head().await {
            Ok(head) => head,
            Err(error) => {
                if let Some(response) =
                    self.stale_on_error(request, candidate.as_ref(), request_directives)
                {
                    return response;
                }
                return error_response(&error, forward);
            }
        };
        match &head.slicing {
            Slicing::Whole => {}
            Slicing::Large(version) if self.slicing(request) => {
                return Box::pin(self.serve_slices(
                    request,
                    Some(version.clone()),
                    None,
                    request_directives,
                ))
                .await;
            }
            Slicing::Slice(meta) if self.slicing(request) => {
                let first = slices::ObtainedSlice::from_fill(fill.clone(), &head, meta, waiter);
                return Box::pin(self.serve_slices(
                    request,
                    Some(meta.version.clone()),
                    Some(first),
                    request_directives,
                ))
                .await;
            }
            Slicing::Large(_) | Slicing::Slice(_) | Slicing::Refused => {
                let mut status = CacheStatus::forward(forward);
                status.detail = Some("slice-refused");
                return self.pass(request, None, status).await;
            }
        }
        // A 5xx with Retry-After is a deliberate refusal by an origin that
        // is up (overload, admission: RFC 9110 §10.2.3, §15.6.4), not an
        // outage: it reaches the client as it is, never replaced by a
        // stale copy, which would start the very session it refused.
        if head.status.is_server_error()
            && !head.headers.contains_key(header::RETRY_AFTER)
            && let Some(response) =
                self.stale_on_error(request, candidate.as_ref(), request_directives)
        {
            return response;
        }
        let shares = head.shared
            && head
                .secondary_key
                .as_ref()
                .is_some_and(|secondary| policy::vary_matches(secondary, &request.headers));
        if waiter && !shares {
            // Not ours to share (private, or varying on headers this
            // request sends differently): fetch for ourselves.
            let mut status = CacheStatus::forward(forward);
            status.detail = Some("not-shareable");
            return self.pass(request, None, status).await;
        }
        let mut status = CacheStatus::forward(forward);
        status.forward_status = Some(if head.validated {
            304
        } else {
            head.status.as_u16()
        });
        status.stored = head.stored;
        status.collapsed = waiter;
        status.detail = head.detail;
        let mut headers = head.headers.clone();
        let age = policy::current_age(
            &headers,
            head.request_time,
            head.response_time,
            SystemTime::now(),
        );
        set_age(&mut headers, age);
        status.apply(&mut headers);
        let _ = key;
        respond(request, head.status, headers, FillBody(fill)).await
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
        let freshness = stored.freshness(SystemTime::now(), &self.settings.rules);
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
        let mut status = CacheStatus::forward("stale");
        status.ttl = Some(freshness.ttl_seconds());
        status.detail = Some("stale-if-error");
        Some(serve_stored(request, stored, status))
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
            },
        );
    }

    /// Forwards a request without caching; unsafe methods that succeed
    /// invalidate what the cache holds for the target (RFC 9111 §4.4).
    async fn pass(
        &self,
        request: &Incoming_,
        body: Option<RequestBody>,
        mut status: CacheStatus,
    ) -> Response<ResponseBody> {
        Metrics::bump(&self.metrics.passes);
        let headers = forwarded_headers(request);
        // A broken client body is marked as such, so the failed fetch is
        // answered 400 and not counted against the origin.
        let origin_body = body.map(|body| -> OriginBody {
            StreamBody::new(body.map_ok(Frame::data).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    ClientBodyError(error.to_string()),
                )
            }))
            .boxed_unsync()
        });
        let has_body = request.headers.contains_key(header::CONTENT_LENGTH)
            || request.headers.contains_key(header::TRANSFER_ENCODING);
        let origin_request = OriginRequest {
            method: request.method.clone(),
            path_and_query: request.path_and_query.clone(),
            headers,
        };
        let response = self
            .origins
            .send(origin_request, if has_body { origin_body } else { None })
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return error_response(&error, status.forward.unwrap_or("bypass")),
        };
        let (parts, body) = response.into_parts();
        if !policy::is_safe(&request.method)
            && (parts.status.is_success() || parts.status.is_redirection())
        {
            self.invalidate_after_unsafe(request, &parts.headers).await;
        }
        let mut headers = parts.headers;
        policy::strip_hop_by_hop(&mut headers);
        status.forward_status = Some(parts.status.as_u16());
        status.apply(&mut headers);
        let mut response = Response::new(incoming_stream(body, self.metrics.clone()));
        *response.status_mut() = parts.status;
        *response.headers_mut() = headers;
        response
    }

    /// RFC 9111 §4.4: the target URI and the same-origin URIs in `Location`
    /// and `Content-Location` are invalidated.
    async fn invalidate_after_unsafe(&self, request: &Incoming_, response_headers: &HeaderMap) {
        let host = request
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok());
        let mut targets = vec![request.key.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(target) = response_headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| key::same_origin_path(value, host, &request.path_and_query))
            {
                targets.push(key::cache_key(&target));
            }
        }
        for target in targets {
            if self.store.remove(&target).await > 0 {
                Metrics::bump(&self.metrics.invalidations);
            }
            self.pass_keys.invalidate(&target);
            self.forget_slices(&target).await;
        }
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

    /// Playlist-aware prefetch: after segment n of a rendition, fetch the
    /// next few into the cache so the player's next requests are hits.
    fn prefetch_after(self: Arc<Self>, request: &Incoming_, client: IpAddr) {
        if self.settings.prefetch_segments == 0 {
            return;
        }
        // Never the client's query: a prefetch carrying `?cb=…` would let
        // every one-off key cost further origin fetches.
        let Some((prefix, number, _)) = key::segment_number(&request.path_and_query) else {
            return;
        };
        for next in 1..=u64::from(self.settings.prefetch_segments) {
            let Some(number) = number.checked_add(next) else {
                return;
            };
            let path = format!("{prefix}{number}.m4s");
            let Ok((key, _)) = self.request_key(&path, client) else {
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
                    let request = Incoming_ {
                        method: Method::GET,
                        path_and_query: path,
                        headers: HeaderMap::new(),
                        key: key.clone(),
                        slicing: true,
                        // On behalf of the client whose request it follows:
                        // its token may be bound to that client's address.
                        client: Some(client),
                    };
                    let job = FillJob::Whole { candidate: None };
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

    fn admin(&self, path: &str) -> Option<Response<ResponseBody>> {
        match path {
            "/_kinema/metrics" | "/metrics" => {
                let text = self.metrics.render(Gauges {
                    memory_objects: self.store.memory_objects(),
                    memory_bytes: self.store.memory_bytes(),
                    memory_files: crate::stored::shared_files() as u64,
                    memory_files_cap: crate::stored::shared_file_cap() as u64,
                    origins_healthy: self.origins.healthy_count(),
                });
                let mut response = Response::new(ResponseBody::Full(Bytes::from(text)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Some(response)
            }
            "/_kinema/healthz" => Some(plain(StatusCode::OK, "ok\n")),
            _ => None,
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
            SystemTime::now(),
            self.settings.token_skew,
        )?;
        Ok((key::signed_cache_key(rest), Some(claims.expires_at)))
    }

    fn authorised(&self, headers: &HeaderMap) -> Result<(), Box<Response<ResponseBody>>> {
        let Some(token) = &self.settings.purge_token else {
            return Err(Box::new(plain(
                StatusCode::FORBIDDEN,
                "purge is disabled; set purge_token in the [edge] config\n",
            )));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            let mut response = plain(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(response))
        }
    }

    /// `PURGE /path` (hard), `PURGE /prefix/*` (every key under it);
    /// `Kinema-Purge: soft` marks stale instead of removing.
    async fn purge_method(&self, parts: &http::request::Parts) -> Response<ResponseBody> {
        if let Err(response) = self.authorised(&parts.headers) {
            return *response;
        }
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let soft = parts
            .headers
            .get("kinema-purge")
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"soft"));
        let (target, prefix) = match target.strip_suffix('*') {
            Some(prefix) => (prefix.to_string(), true),
            None => (target, false),
        };
        self.purge(PurgeRequest {
            url: target,
            prefix,
            soft,
        })
        .await
    }

    /// `POST /_kinema/purge` with `{"url": "/v/ID/", "prefix": true,
    /// "soft": false}`.
    async fn purge_api(&self, request: Request<RequestBody>) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        if let Err(response) = self.authorised(&parts.headers) {
            return *response;
        }
        let mut collected = Vec::new();
        let mut body = body;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) if collected.len() + chunk.len() <= MAX_PURGE_BODY => {
                    collected.extend_from_slice(&chunk)
                }
                Ok(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "purge request too large\n"),
                Err(_) => return plain(StatusCode::BAD_REQUEST, "purge request body unreadable\n"),
            }
        }
        match serde_json::from_slice::<PurgeRequest>(&collected) {
            Ok(purge) if purge.url.starts_with('/') => self.purge(purge).await,
            Ok(_) => plain(
                StatusCode::BAD_REQUEST,
                "purge url must be a path starting with /\n",
            ),
            Err(error) => plain(
                StatusCode::BAD_REQUEST,
                &format!(
                    "purge request must be JSON like {{\"url\": \"/v/ID/\", \"prefix\": true, \"soft\": false}}: {error}\n"
                ),
            ),
        }
    }

    async fn purge(&self, purge: PurgeRequest) -> Response<ResponseBody> {
        Metrics::bump(&self.metrics.purges);
        // A URL names its unsigned copy and the copy shared by every
        // verified signed URL of the same path.
        let mut count = 0;
        for target in [
            key::cache_key(&purge.url),
            key::signed_cache_key(&purge.url),
        ] {
            count += match (purge.soft, purge.prefix) {
                (true, prefix) => self.store.invalidate(&target, prefix).await,
                (false, true) => self.store.remove_prefix(&target).await,
                (false, false) => self.store.remove(&target).await,
            };
            // The slices of a sliced object (keys `URL#slice=N`) go with it;
            // a prefix purge already matched them.
            if !purge.prefix {
                let slices = slice::slice_prefix(&target);
                count += if purge.soft {
                    self.store.invalidate(&slices, true).await
                } else {
                    self.store.remove_prefix(&slices).await
                };
            }
            if !purge.soft {
                let forgotten: Vec<Arc<String>> = self
                    .sliced_objects
                    .iter()
                    .filter(|(key, _)| {
                        if purge.prefix {
                            key.starts_with(&target)
                        } else {
                            key.as_str() == target
                        }
                    })
                    .map(|(key, _)| key)
                    .collect();
                for key in forgotten {
                    self.sliced_objects.invalidate(key.as_str());
                }
            }
        }
        let body = serde_json::json!({
            "purged": count,
            "url": purge.url,
            "prefix": purge.prefix,
            "soft": purge.soft,
        });
        let mut response = Response::new(ResponseBody::Full(Bytes::from(format!("{body}\n"))));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: String,
    #[serde(default)]
    prefix: bool,
    #[serde(default)]
    soft: bool,
}

/// Where a response's body comes from.
struct FillBody(Arc<Fill>);

/// Builds the answer to a GET/HEAD from a response head and body: client
/// conditionals (RFC 9110 §13.2.2, 304), ranges (§14, 206/416), HEAD.
async fn respond(
    request: &Incoming_,
    status: StatusCode,
    mut headers: HeaderMap,
    body: FillBody,
) -> Response<ResponseBody> {
    if status == StatusCode::OK
        && let Some(answer) = precondition_answer(request, &headers)
    {
        return answer;
    }
    if request.method == Method::HEAD {
        let mut response = Response::new(ResponseBody::Empty);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return response;
    }
    if status == StatusCode::OK
        && let Some(range_header) = request.headers.get(header::RANGE)
    {
        // A single range of an object of known length is cut from the fill
        // as it streams in (issue 6: a range on a miss does not wait for the
        // whole object).
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        if let Some(length) = length
            && conditional::if_range_allows(&request.headers, &validators(&headers))
            && let RangeRequest::Single(range) = range::parse(range_header.as_bytes(), length)
        {
            if let Ok(value) = HeaderValue::from_str(&range::content_range(&range, length)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            let stream = slice::cut(body.0.body(), range.start, range.end - range.start);
            let mut response = Response::new(ResponseBody::Stream(stream));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            *response.headers_mut() = headers;
            return response;
        }
        // Otherwise (several ranges, unknown length) wait for the whole
        // (bounded-size) object, then cut it like a hit. A body handed to
        // this reader alone may be of any size and is never buffered: it
        // is sent whole, as RFC 9110 §14.2 lets a server ignore Range.
        if !body.0.handed_over() {
            return match body.0.whole_body().await {
                Ok(whole) => ranged(request, status, headers, whole, None),
                Err(error) => error_response(&error, "miss"),
            };
        }
    }
    let stream = body.0.body();
    headers.remove(header::CONTENT_RANGE);
    let mut response = Response::new(ResponseBody::Stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Answers from a stored response.
fn serve_stored(
    request: &Incoming_,
    stored: &StoredResponse,
    status: CacheStatus,
) -> Response<ResponseBody> {
    let mut headers = stored.headers.clone();
    set_age(&mut headers, stored.age(SystemTime::now()));
    status.apply(&mut headers);
    if stored.status == StatusCode::OK
        && let Some(answer) = precondition_answer(request, &headers)
    {
        return answer;
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
    if request.method == Method::HEAD {
        let mut response = Response::new(ResponseBody::Empty);
        *response.status_mut() = stored.status;
        *response.headers_mut() = headers;
        return response;
    }
    ranged(
        request,
        stored.status,
        headers,
        stored.body.clone(),
        stored.file.as_ref(),
    )
}

/// Cuts the requested range out of a whole body (RFC 9110 §14); `file`, when
/// given, holds the same bytes and is what a whole or single-range answer
/// is sent from.
fn ranged(
    request: &Incoming_,
    status: StatusCode,
    mut headers: HeaderMap,
    whole: Bytes,
    file: Option<&SharedFile>,
) -> Response<ResponseBody> {
    let length = whole.len() as u64;
    let range_header = request.headers.get(header::RANGE);
    let wanted = match range_header {
        Some(value)
            if status == StatusCode::OK
                && conditional::if_range_allows(&request.headers, &validators(&headers)) =>
        {
            range::parse(value.as_bytes(), length)
        }
        _ => RangeRequest::Full,
    };
    headers.remove(header::CONTENT_LENGTH);
    let mut response = match wanted {
        RangeRequest::Full => {
            let body = match file {
                Some(file) => ResponseBody::File(file.slice(0..length)),
                None => ResponseBody::Full(whole),
            };
            let mut response = Response::new(body);
            *response.status_mut() = status;
            response
        }
        RangeRequest::Single(range) => {
            if let Ok(value) = HeaderValue::from_str(&range::content_range(&range, length)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let body = match file {
                Some(file) => ResponseBody::File(file.slice(range.clone())),
                None => ResponseBody::Full(whole.slice(range.start as usize..range.end as usize)),
            };
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response
        }
        RangeRequest::Multiple(ranges) => {
            let layout = multipart_layout(&mut headers, &ranges, length);
            let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
            for (part_header, range) in layout.part_headers.iter().zip(&ranges) {
                parts.push(part_header.clone());
                parts.push(whole.slice(range.start as usize..range.end as usize));
            }
            parts.push(layout.closing.clone());
            let mut response = Response::new(ResponseBody::Parts(parts));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response
        }
        RangeRequest::Unsatisfiable => {
            if let Ok(value) = HeaderValue::from_str(&range::unsatisfied_content_range(length)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let mut response = Response::new(ResponseBody::Empty);
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            response
        }
    };
    *response.headers_mut() = headers;
    response
}

fn validators(headers: &HeaderMap) -> Validators<'_> {
    Validators {
        etag: headers
            .get(header::ETAG)
            .and_then(|value| EntityTag::parse(value.as_bytes())),
        last_modified: headers
            .get(header::LAST_MODIFIED)
            .and_then(policy::parse_date),
    }
}

/// RFC 9111 §4.3.2: a cache evaluates If-None-Match / If-Modified-Since
/// of a request against the response it would send.
fn evaluate_conditionals(request: &Incoming_, headers: &HeaderMap) -> Precondition {
    // Most requests carry no precondition: then nothing is parsed.
    if ![
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|name| request.headers.contains_key(name))
    {
        return Precondition::Proceed;
    }
    conditional::evaluate(&request.method, &request.headers, &validators(headers))
}

/// Lays out a `multipart/byteranges` answer (RFC 9110 §14.6) for `ranges`
/// of a representation of `length` bytes with `headers`: each part keeps
/// the representation's type, and the response takes the multipart type.
fn multipart_layout(
    headers: &mut HeaderMap,
    ranges: &[std::ops::Range<u64>],
    length: u64,
) -> range::Multipart {
    let part_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let boundary = format!("kinema-{:016x}", length ^ 0x6b69_6e65_6d61);
    let layout = range::multipart(&boundary, &part_type, ranges, length);
    if let Ok(value) = HeaderValue::from_str(&layout.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    layout
}

/// The answer to a request whose preconditions rule out the response it
/// would get (with these `headers`): a 304 or a 412; `None` to serve it.
fn precondition_answer(request: &Incoming_, headers: &HeaderMap) -> Option<Response<ResponseBody>> {
    match evaluate_conditionals(request, headers) {
        // Cloned only for a 304, whose head is the response's.
        Precondition::NotModified => Some(not_modified(headers.clone())),
        Precondition::Failed => Some(plain(
            StatusCode::PRECONDITION_FAILED,
            "precondition failed\n",
        )),
        Precondition::Proceed => None,
    }
}

/// RFC 9110 §15.4.5: a 304 carries the fields a 200 would have, without
/// the body's framing.
fn not_modified(mut headers: HeaderMap) -> Response<ResponseBody> {
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    let mut response = Response::new(ResponseBody::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    *response.headers_mut() = headers;
    response
}

fn set_age(headers: &mut HeaderMap, age: Duration) {
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
}

/// The request headers sent to an origin: without hop-by-hop fields, with
/// our `Via` (RFC 9110 §7.6.3).
fn forwarded_headers(request: &Incoming_) -> HeaderMap {
    let mut headers = request.headers.clone();
    policy::strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.append(header::VIA, HeaderValue::from_static("1.1 kinema"));
    // The origin sees the edge's address; tell it the client's (RFC 7239
    // §5.2), e.g. for tokens bound to a client network. Appended to both
    // fields, so an origin that trusts this edge finds the same client in
    // each, whatever the client itself wrote to their left.
    if let Some(client) = request.client {
        let client = client.to_canonical();
        let node = match client {
            IpAddr::V4(address) => format!("for={address}"),
            IpAddr::V6(address) => format!("for=\"[{address}]\""),
        };
        if let Ok(value) = HeaderValue::from_str(&node) {
            headers.append(header::FORWARDED, value);
        }
        if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
            headers.append("x-forwarded-for", value);
        }
    }
    headers
}

/// A verified signed request is answered from the copy every token of its
/// path shares, whose freshness the token that filled it set: capped here
/// at this request's token, since a cache below this edge (a browser, an
/// edge without keys) keeps it under this token's URL (kinema-auth
/// `cache`).
fn cap_signed_freshness(response: &mut Response<ResponseBody>, expires_at: SystemTime) {
    let seconds_left = expires_at
        .duration_since(SystemTime::now())
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

/// The next data frame of an origin's body, counted as origin bytes;
/// `None` at its end. A frame that does not come within `body_timeout`, or
/// a broken body, is an error (counted as an origin error).
async fn next_origin_data(
    body: &mut Incoming,
    metrics: &Metrics,
    body_timeout: Duration,
) -> Result<Option<Bytes>, OriginError> {
    loop {
        match tokio::time::timeout(body_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                // Trailers are neither stored nor passed on.
                if let Ok(data) = frame.into_data() {
                    Metrics::add(&metrics.origin_bytes, data.len() as u64);
                    return Ok(Some(data));
                }
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(error))) => {
                Metrics::bump(&metrics.origin_errors);
                return Err(OriginError::Protocol(error.to_string()));
            }
            Err(_) => {
                Metrics::bump(&metrics.origin_errors);
                return Err(OriginError::Timeout);
            }
        }
    }
}

/// An origin's body for the one reader of a fill (see
/// [`Fill::hand_over`]): read only as that reader polls, so the origin
/// connection's flow control paces the origin; it ends with an error when
/// the body breaks or stalls, so the client's response ends broken, not
/// complete and short.
fn sole_origin_body(body: Incoming, metrics: Arc<Metrics>, body_timeout: Duration) -> BodyStream {
    futures::stream::unfold(Some(body), move |body| {
        let metrics = metrics.clone();
        async move {
            let mut body = body?;
            match next_origin_data(&mut body, &metrics, body_timeout).await {
                Ok(Some(data)) => Some((Ok(data), Some(body))),
                Ok(None) => None,
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    })
    .boxed()
}

fn incoming_stream(body: Incoming, metrics: Arc<Metrics>) -> ResponseBody {
    let stream = http_body_util::BodyStream::new(body)
        .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
        .map_err(std::io::Error::other)
        .inspect_ok(move |chunk| Metrics::add(&metrics.origin_bytes, chunk.len() as u64));
    ResponseBody::Stream(stream.boxed())
}

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
fn error_response(error: &OriginError, forward: &'static str) -> Response<ResponseBody> {
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
    status.detail = Some(match error {
        OriginError::Timeout => "origin-timeout",
        OriginError::Connect(_) => "origin-unreachable",
        OriginError::Protocol(_) => "origin-error",
        OriginError::RequestBody(_) => "request-body",
    });
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
        );
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], "\"abc\"");
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));

        let response = serve_stored(
            &request(Method::GET, &[("range", "bytes=2-4")]),
            &stored,
            CacheStatus::hit(60),
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
        );
        assert_eq!(response.status(), StatusCode::OK);

        let response = serve_stored(&request(Method::HEAD, &[]), &stored, CacheStatus::hit(60));
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "10");
        assert!(matches!(response.body(), ResponseBody::Empty));
        assert_eq!(response.headers()["cache-status"], "kinema; hit; ttl=60");
    }
}
