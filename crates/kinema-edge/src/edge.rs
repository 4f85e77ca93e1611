//! The edge's request handler, as a fixed sequence of phases over one
//! per-request context (`RequestContext`), in the manner of pingora:
//!
//! 1. **request filter** (`request_filter`): the admin surface and purge,
//!    the query policy, the signed-URL token and the cache key; then which
//!    requests skip the cache (unsafe methods, preconditions only an origin
//!    can judge, hit-for-pass);
//! 2. **cache lookup** (`lookup`): the memory and disk tiers, freshness and
//!    `Vary` by the RFC 9111 rules of [`crate::policy`], stale serving,
//!    and joining (or starting) the coalesced fill of a miss (`coalesce`);
//! 3. **upstream selection** (`Edge::select_upstreams`): the
//!    [`UpstreamSelector`] the edge was built with orders the upstreams of
//!    every origin fetch;
//! 4. **upstream response**: on the fill's side (`origin_fill`) the
//!    storability verdict, storing, slicing and feeding the waiters; on the
//!    client's side (`upstream_response`) what the fill's head means for
//!    this request (stale-if-error, slices, not shareable);
//! 5. **response** (`answer`): `Cache-Status`, `Age` and kinema-http's
//!    responder (conditionals, ranges, HEAD), then the last touches every
//!    response gets (hop-by-hop fields, `Via`, a signed copy's freshness
//!    cap, byte counts, prefetch of the next segments).
//!
//! Each phase is a function of the context that returns the next `Step`;
//! `Edge::run_phases` is the one loop that follows them, so no phase calls
//! another. Also here: pass-through with invalidation (`forward`), large
//! objects answered from slices (`slices`), `prefetch`, and `admin`
//! (metrics page, purge). Sockets are the connection layer's (kinema-http);
//! sending is [`crate::origin`]'s.

mod admin;
mod answer;
mod coalesce;
mod forward;
mod lookup;
mod origin_fill;
mod prefetch;
mod request_filter;
mod slices;
mod steer;
#[cfg(test)]
mod tests;
mod upstream_response;

use self::answer::*;
use self::coalesce::*;
use self::forward::*;
use self::request_filter::*;

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

use crate::cluster::ClusterPart;
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

/// Most lookups one request makes: each finds the key stored meanwhile by
/// the fill it would have joined, then evicted before it looks again.
const MAX_LOOKUPS: usize = 3;
/// Most phase steps one request takes (lookups, a probe that learns an
/// object is sliced, a whole-object fill found large, …); none of the
/// phases' paths comes near it, but a cycle must not be possible.
const MAX_STEPS: usize = 12;

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
    /// Key ring for verifying signed URLs at the edge (re-read on SIGHUP);
    /// `None` leaves tokens to the origin (and in the cache key).
    pub keyring: Option<Arc<kinema_auth::LiveKeyRing>>,
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
    /// Steering and membership counters, in a cluster.
    cluster: Option<ClusterPart>,
    /// Viewers' network quality, fed the CMCD of their requests.
    network: Option<kinema_netq::Measuring>,
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

/// The per-request context: what the request filter settled, read by every
/// later phase (and cloned into the fills a miss starts, which outlive the
/// client's request).
#[derive(Debug, Clone)]
struct RequestContext {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    /// The cache key (token verified and replaced, see [`key`]).
    key: String,
    /// The request's own cache directives (RFC 9111 §5.2.1).
    directives: Directives,
    /// The client's address, sent to the origin as `Forwarded: for=`
    /// (RFC 7239); none for the edge's own prefetches.
    client: Option<IpAddr>,
    /// The expiry of the verified token of a signed request, which caps
    /// the freshness its response is sent with.
    token_expiry: Option<SystemTime>,
}

/// What the selector is told of `request`.
fn upstream_request(request: &RequestContext) -> UpstreamRequest<'_> {
    UpstreamRequest {
        through_kinema: crate::upstream::through_kinema(&request.headers),
        ..UpstreamRequest::new(&request.path_and_query, &request.key)
    }
}

/// What a phase decided comes next.
enum Step {
    /// Look the request up in the cache.
    Lookup,
    /// Answer from a fill's response once its head is in.
    FromFill(FillAnswer),
    /// Answer from the slices of a large object.
    Slices(SliceStart),
    /// Forward to an upstream without caching.
    Pass(CacheStatus),
    /// The response is ready.
    Respond(Response<ResponseBody>),
}

/// A fill a request answers from, and what it knows of it.
struct FillAnswer {
    fill: Arc<Fill>,
    /// Joined rather than started: the response may not be ours to share.
    waiter: bool,
    /// The stale stored response being revalidated, for stale-if-error.
    candidate: Option<Arc<StoredResponse>>,
    forward: ForwardReason,
}

/// Where answering from slices starts: the object's version when already
/// known (else the first slice tells it), and a slice already at hand
/// (from a fill the request joined).
struct SliceStart {
    known: Option<Version>,
    first: Option<Box<slices::ObtainedSlice>>,
}

/// One step of reading an origin's body into a fill.
enum OriginChunk {
    Data(Bytes),
    End,
    /// The body broke or stalled; the fill has been failed.
    Failed,
}

impl Edge {
    /// An edge of `parts` (cache, origins, metrics, clock) with `settings`.
    pub fn new(settings: EdgeSettings, parts: crate::EdgeParts) -> Self {
        let crate::EdgeParts {
            cache: store,
            client,
            upstreams,
            metrics,
            stats: _,
            clock,
            cluster,
            network,
        } = parts;
        Self {
            settings,
            store,
            client,
            upstreams,
            metrics,
            clock,
            cluster,
            network,
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

    /// The key ring signed URLs are verified with, when the edge has one.
    pub fn keyring(&self) -> Option<&Arc<kinema_auth::LiveKeyRing>> {
        self.settings.keyring.as_ref()
    }

    pub fn upstreams(&self) -> &Arc<dyn UpstreamSelector> {
        &self.upstreams
    }

    /// Upstream selection: the upstreams a fetch for `request` tries, in
    /// order (the selector's choice; a slice's fill is chosen for its
    /// object).
    fn select_upstreams(&self, request: &RequestContext) -> Vec<Upstream> {
        self.upstreams.select(&upstream_request(request))
    }

    /// Sends `origin_request` to the upstreams selected for `request`.
    async fn fetch(
        &self,
        request: &RequestContext,
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
        let (context, body) = match self.request_filter(request, connection).await {
            Filtered::Proceed(context, body) => (context, body),
            Filtered::Answered(response) => return response,
        };
        if let Some(start) = steer::session_start(&context) {
            if context.method == Method::GET {
                Metrics::bump(&self.metrics.sessions_started);
            }
            if let Some(cluster) = &self.cluster {
                let steering = cluster.steering.clone();
                let response = self.steered(&context, start, &steering).await;
                return self.response_filter(&context, response, false);
            }
        }
        let may_prefetch = self.may_prefetch(&context);
        let response = self.run_phases(&context, body).await;
        self.response_filter(&context, response, may_prefetch)
    }

    /// The phases after the request filter, in their order: each returns
    /// the next step, and this loop takes it, until one responds.
    async fn run_phases(
        self: &Arc<Self>,
        context: &RequestContext,
        body: Option<RequestBody>,
    ) -> Response<ResponseBody> {
        let mut body = body;
        let mut step = self.cache_filter(context);
        let mut lookups = 0;
        for _ in 0..MAX_STEPS {
            step = match step {
                Step::Lookup if lookups == MAX_LOOKUPS => break,
                Step::Lookup => {
                    lookups += 1;
                    self.cache_lookup(context).await
                }
                Step::FromFill(answer) => self.upstream_response(context, answer).await,
                Step::Slices(start) => self.serve_slices(context, start).await,
                Step::Pass(status) => return self.pass(context, body.take(), status).await,
                Step::Respond(response) => return response,
            };
        }
        match step {
            Step::Respond(response) => response,
            Step::Pass(status) => self.pass(context, body, status).await,
            // Stored and evicted again and again: a pathological churn;
            // passing is always correct.
            _ => {
                self.pass(context, body, CacheStatus::forward(ForwardReason::Miss))
                    .await
            }
        }
    }
}
