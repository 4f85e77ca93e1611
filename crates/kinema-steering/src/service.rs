//! The steering service: the crate's one impure module, where the pure
//! parts meet a running server. It reads the membership from a watch
//! channel, the wall clock from a [`Clock`], draws session ids at random,
//! keeps per-video request rates, counts and logs every decision, and
//! answers with ready HTTP responses: the steering manifest
//! (`GET /steer/{id}`), the `302` that sends a client knowing no steering
//! to the chosen node, and the stored master or MPD rewritten with one
//! pathway per node.
//!
//! What it deliberately is not: a router. The server decides which
//! requests reach it (a published video, a stable manifest URL, a client
//! that did not come through a kinema node), and applies its own CORS
//! policy over the permissive one set here.
//!
//! The membership snapshot is rebuilt when the watched view changes, not
//! per request. Membership signals changes of who is live and usable, not
//! of the figures members republish every second, so the snapshot is also
//! rebuilt when it is older than [`SNAPSHOT_REFRESH`]: loads and sessions
//! reach ranking within that, and each rebuild brings the nodes' sustained
//! loads up to date (`sustained`: what moves a session off a node).
//! Sessions a node counts reach here a second or two after it took them,
//! so a new session is placed against loads with the sessions this service
//! placed within the last [`RECENT_WINDOW`]
//! added to their nodes' published ones (kinema-placement's
//! `RecentAssignments`): a crowd is placed within the bound rather than all
//! on each video's head. A reload is ranked over the published loads
//! alone, alike on every node. A master or MPD rewritten
//! here keeps the viewer on this node while it can (see `rewrite_for`). The per-video rate meters live in a map of at most
//! [`MAX_TRACKED_VIDEOS`] entries, the most faded ones going first, so a
//! scan of made-up ids costs memory only up to that bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use http::{HeaderValue, Response, StatusCode};
use kinema_cluster::{MembershipView, PeerNetworkQuality};
use kinema_core::VideoId;
use kinema_http::{Clock, ResponseBody};
use kinema_netq::{ClientPrefix, NetworkQuality, PrefixFigures, Summary};
use kinema_placement::{CrowdRate, NodeId, RecentAssignments};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::log::SteeringCounters;
use crate::network::{Measured, NetworkChoice};
use crate::pathway::{PathPrefix, PathwayId};
use crate::rank::Snapshot;
use crate::session::SessionId;
use crate::steer::{Decision, Protocol, Steering, SteeringQuery, SteeringRequest};
use crate::sustained::SustainedLoads;

/// Most videos whose request rate is kept at once.
pub const MAX_TRACKED_VIDEOS: usize = 4096;
/// Half-lives of a video's request rate ([`CrowdRate`]): a crowd reads on
/// the short one, so it spreads over more nodes within seconds; a video
/// nobody starts any more fades to half its rate each minute on the long
/// one, so it is back on one node within minutes. 20 s rather than less:
/// a crowd of hundreds spreads within its first seconds all the same, and
/// a few dozen viewers starting together stay on one node, where one copy
/// of the video serves them all.
pub const RATE_RISE_HALF_LIFE: Duration = Duration::from_secs(20);
pub const RATE_FALL_HALF_LIFE: Duration = Duration::from_secs(60);
/// `Retry-After` of a steering request no node can serve: a little under
/// the shortest TTL, so a player asks again about when membership has news.
pub const UNSERVED_RETRY_AFTER_SECONDS: u32 = 5;

/// Longest a snapshot serves before it is rebuilt from the view even
/// without a signal: half the interval at which members publish figures.
pub const SNAPSHOT_REFRESH: Duration = Duration::from_millis(500);

/// How long a session this service placed is added to its node's
/// published sessions: about the time the node's own count takes to reach
/// this service (published each second, a few gossip rounds, one
/// [`SNAPSHOT_REFRESH`]). Without it a crowd starting within that time is
/// placed against the same loads and piles onto each video's head.
pub const RECENT_WINDOW: Duration = Duration::from_secs(2);
/// Most placed sessions remembered within [`RECENT_WINDOW`].
pub const MAX_RECENT_ASSIGNMENTS: usize = 65_536;

/// Which stored file a rewrite is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// The HLS multivariant playlist (`master.m3u8`).
    Master,
    /// The DASH MPD (`manifest.mpd`).
    Mpd,
}

/// Steering as a server runs it; shared by every connection.
#[derive(Debug)]
pub struct SteeringService {
    steering: Steering,
    clock: Clock,
    membership: Mutex<Membership>,
    rates: Mutex<RateMap>,
    /// Sessions this service placed on each node lately, which the
    /// members' published figures do not show yet.
    recent: Mutex<RecentAssignments>,
    counters: Arc<SteeringCounters>,
    served: Arc<Served>,
    network: Option<NetworkSource>,
}

/// Where the service reads what nodes measured of viewers' networks.
#[derive(Debug, Clone)]
pub struct NetworkSource {
    /// This node's own table (fed by its listener and CMCD).
    pub local: Arc<NetworkQuality>,
    /// The summaries members gossip ([`kinema_cluster::Cluster::network_quality`]).
    pub peers: PeerNetworkQuality,
    pub choice: NetworkChoice,
}

#[derive(Debug)]
struct Membership {
    view: watch::Receiver<MembershipView>,
    current: Arc<Current>,
    /// When `current` was built, by the service's clock.
    built_at: SystemTime,
    /// Each node's load smoothed over the snapshots built so far.
    sustained: SustainedLoads,
}

/// One membership view as steering uses it.
#[derive(Debug, Default)]
struct Current {
    snapshot: Arc<Snapshot>,
    /// This node's id, when the view lists it: a redirect to it is none.
    self_node: Option<String>,
}

impl Current {
    /// `view` as steering uses it at `now`, its nodes' sustained loads
    /// brought up to date in `sustained`.
    fn of(view: &MembershipView, sustained: &mut SustainedLoads, now: SystemTime) -> Self {
        let mut snapshot = Snapshot::from_view(view);
        sustained.apply(
            &mut snapshot,
            now.duration_since(UNIX_EPOCH).unwrap_or_default(),
        );
        Self {
            snapshot: Arc::new(snapshot),
            self_node: view
                .live
                .iter()
                .find(|member| member.is_self)
                .map(|member| member.node_id.to_string()),
        }
    }
}

/// What the service answered, for `/metrics`.
#[derive(Debug, Default)]
struct Served {
    manifests: AtomicU64,
    unserved: AtomicU64,
    redirects: AtomicU64,
    rewrites: AtomicU64,
    rewrite_failures: AtomicU64,
    snapshot_rebuilds: AtomicU64,
}

impl SteeringService {
    /// A service deciding with `steering` over the membership `view`
    /// ([`kinema_cluster::Cluster::subscribe`]), at the time `clock` reads.
    pub fn new(steering: Steering, view: watch::Receiver<MembershipView>, clock: Clock) -> Self {
        let built_at = clock.now();
        let mut sustained = SustainedLoads::default();
        let current = Arc::new(Current::of(&view.borrow(), &mut sustained, built_at));
        Self {
            steering,
            clock,
            membership: Mutex::new(Membership {
                view,
                current,
                built_at,
                sustained,
            }),
            rates: Mutex::new(RateMap::default()),
            recent: Mutex::new(
                RecentAssignments::new(RECENT_WINDOW, MAX_RECENT_ASSIGNMENTS)
                    .expect("a window and capacity in range"),
            ),
            counters: Arc::new(SteeringCounters::default()),
            served: Arc::new(Served::default()),
            network: None,
        }
    }

    /// The service, also choosing among a video's nodes of similar load
    /// by what they measured for the viewer's prefix ([`crate::network`]),
    /// for requests whose client address is given (the `*_for` methods).
    pub fn with_network(mut self, network: NetworkSource) -> Self {
        self.network = Some(network);
        self
    }

    /// What `node_id` measured for `client`'s prefix: this node's own
    /// table for itself (with as much evidence as a summary asks), a
    /// peer's gossiped summary otherwise. A summary that does not parse
    /// reads as unmeasured.
    fn measured_by(
        network: &NetworkSource,
        self_node: Option<&str>,
        client: IpAddr,
        node_id: &str,
    ) -> Option<PrefixFigures> {
        if self_node == Some(node_id) {
            let estimate = network.local.estimate(client)?;
            if estimate.throughput_weight < kinema_netq::summary::MIN_WEIGHT {
                return None;
            }
            return PrefixFigures::from_estimate(&estimate);
        }
        let summary = network.peers.get(node_id)?;
        Summary::parse(&summary).figures_for(ClientPrefix::of(client))
    }

    /// The decision counters ([`crate::log::register`] renders them).
    pub fn counters(&self) -> Arc<SteeringCounters> {
        self.counters.clone()
    }

    /// Registers the decision counters (`steering_decisions_total`, …) and
    /// the service's own (`steering_redirects_total`, …) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        crate::log::register(registry, self.counters.clone());
        registry
            .sub_registry_with_prefix("steering")
            .register_collector(Box::new(ServedCollector(self.served.clone())));
    }

    /// `302` responses sent so far.
    pub fn redirects(&self) -> u64 {
        self.served.redirects.load(Relaxed)
    }

    /// The membership snapshot decisions use now, rebuilt first if the
    /// view changed since the last request or the snapshot is older than
    /// [`SNAPSHOT_REFRESH`].
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current().snapshot.clone()
    }

    fn current(&self) -> Arc<Current> {
        let now = self.clock.now();
        let mut membership = lock(&self.membership);
        // An error means the cluster is gone: the last view stays.
        let signalled = membership.view.has_changed().unwrap_or(false);
        // A clock that went back counts as stale too.
        let stale = now
            .duration_since(membership.built_at)
            .map_or(true, |age| age >= SNAPSHOT_REFRESH);
        if signalled || stale {
            let membership = &mut *membership;
            let current = Current::of(
                &membership.view.borrow_and_update(),
                &mut membership.sustained,
                now,
            );
            membership.current = Arc::new(current);
            membership.built_at = now;
            self.served.snapshot_rebuilds.fetch_add(1, Relaxed);
        }
        membership.current.clone()
    }

    /// Decides for one request of `video`, counts and logs it. Session
    /// starts feed the video's rate: a reload of a steering manifest is the
    /// same viewer again, and placement's rate is session starts per second.
    fn decide(
        &self,
        video: &VideoId,
        query: &SteeringQuery,
        client: Option<IpAddr>,
    ) -> (Decision, Arc<Current>) {
        let current = self.current();
        let now = self.clock.now();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let starts = query.session.is_none();
        let rate = {
            let mut rates = lock(&self.rates);
            if starts {
                rates.observe(video, since_epoch)
            } else {
                rates.rate(video, since_epoch)
            }
        };
        // Only a new session is placed against the loads with this node's
        // recent placements added: a session's reload keeps the pathways
        // ranked alike on every node, over the loads all of them see.
        let snapshot = starts
            .then(|| {
                let mut recent = lock(&self.recent);
                let placed = recent.counts(since_epoch);
                (!placed.is_empty()).then(|| {
                    current
                        .snapshot
                        .with_sessions_added(|node| placed.get(node).copied().unwrap_or(0))
                })
            })
            .flatten();
        let request = SteeringRequest {
            video,
            snapshot: snapshot.as_ref().unwrap_or(&current.snapshot),
            rate,
            query,
            new_session: SessionId(rand::random()),
            now,
        };
        let decision = match (&self.network, client) {
            (Some(network), Some(client)) => {
                let self_node = current.self_node.as_deref();
                let figures =
                    |node_id: &str| Self::measured_by(network, self_node, client, node_id);
                let measured = Measured {
                    figures: &figures,
                    choice: network.choice,
                };
                self.steering.decide_measured(&request, Some(&measured))
            }
            _ => self.steering.decide(&request),
        };
        // A new session, or one moved off its pathway, adds to its node's
        // load before that node publishes it.
        if let Some(chosen) = decision.chosen()
            && decision.previous.as_ref() != Some(&chosen.id)
            && let Ok(node) = NodeId::new(chosen.node_id.as_str())
        {
            lock(&self.recent).record(&node, since_epoch);
        }
        let record = decision.record();
        self.counters.count(&record);
        tracing::debug!(target: "kinema::steering", "steering {record}");
        (decision, current)
    }

    /// `GET /steer/{video}?{query}`: the steering manifest, as JSON in the
    /// form `query.protocol` names (HLS when it names none), never stored;
    /// 503 with `Retry-After` when no node can serve. Never 404, 410 or 429:
    /// the caller answers for unknown videos before calling.
    pub fn steer(&self, video: &VideoId, query: &str) -> Response<ResponseBody> {
        self.steer_for(video, query, None)
    }

    /// [`SteeringService::steer`] for a viewer at `client` (the peer
    /// address, or the one a trusted proxy names), whose prefix's
    /// measurements may choose among the video's nodes.
    pub fn steer_for(
        &self,
        video: &VideoId,
        query: &str,
        client: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        let query = SteeringQuery::parse(query);
        let (decision, _) = self.decide(video, &query, client);
        let protocol = query.protocol.unwrap_or(Protocol::Hls);
        match self.steering.manifest(&decision, protocol) {
            Some(manifest) => {
                self.served.manifests.fetch_add(1, Relaxed);
                let mut response = respond(StatusCode::OK, Bytes::from(manifest.body));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(manifest.content_type),
                );
                response
            }
            None => {
                self.served.unserved.fetch_add(1, Relaxed);
                let mut response = respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(b"no node can serve this video now; retry later\n"),
                );
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(RETRY_AFTER, HeaderValue::from(UNSERVED_RETRY_AFTER_SECONDS));
                response
            }
        }
    }

    /// A `302` sending a request for `path_and_query` (starting with `/`)
    /// of `video` to the node steering chooses, with an absolute
    /// `Location`; `None` when that node is this one, nothing can serve, or
    /// the path cannot be put in a `Location`.
    pub fn redirect(
        &self,
        video: &VideoId,
        path_and_query: &str,
    ) -> Option<Response<ResponseBody>> {
        self.redirect_for(video, path_and_query, None)
    }

    /// [`SteeringService::redirect`] for a viewer at `client`.
    pub fn redirect_for(
        &self,
        video: &VideoId,
        path_and_query: &str,
        client: Option<IpAddr>,
    ) -> Option<Response<ResponseBody>> {
        let (decision, current) = self.decide(video, &SteeringQuery::default(), client);
        let chosen = decision.chosen()?;
        if current.self_node.as_deref() == Some(chosen.node_id.as_str()) {
            return None;
        }
        let location = HeaderValue::try_from(decision.redirect(path_and_query)?).ok()?;
        self.served.redirects.fetch_add(1, Relaxed);
        let mut response = respond(StatusCode::FOUND, Bytes::new());
        response.headers_mut().insert(LOCATION, location);
        Some(response)
    }

    /// The stored master playlist or MPD of `video`, requested at
    /// `request_path` (its directory, token included, prefixes every
    /// rewritten URI), rewritten with one pathway per node for a new
    /// session; `None` when it cannot be (no node serves, a path or file
    /// the rewriter refuses): then the stored file is served as it is.
    pub fn rewrite(
        &self,
        kind: ManifestKind,
        video: &VideoId,
        request_path: &str,
        stored: &[u8],
    ) -> Option<Bytes> {
        self.rewrite_for(kind, video, request_path, stored, None)
    }

    /// [`SteeringService::rewrite`] for a viewer at `client`.
    pub fn rewrite_for(
        &self,
        kind: ManifestKind,
        video: &VideoId,
        request_path: &str,
        stored: &[u8],
        client: Option<IpAddr>,
    ) -> Option<Bytes> {
        let rewritten = (|| {
            let prefix = PathPrefix::of_request_path(request_path).ok()?;
            let text = std::str::from_utf8(stored).ok()?;
            // The viewer asked this node for the file: a redirect that
            // weighed the loads (or the viewer's own choice) sent it here.
            // It stays while this node can keep it (healthy, not
            // overloaded), as a player reporting this pathway would; a
            // second decision over this node's own view of the loads would
            // move it off the node that counts its session.
            let here = SteeringQuery {
                reported: self.current().self_node.as_deref().map(PathwayId::of_node),
                ..SteeringQuery::default()
            };
            let (decision, _) = self.decide(video, &here, client);
            let rewritten = match kind {
                ManifestKind::Master => self.steering.rewrite_master(text, &decision, &prefix),
                ManifestKind::Mpd => self.steering.rewrite_mpd(text, &decision, &prefix),
            };
            match rewritten {
                Ok(text) => Some(Bytes::from(text)),
                Err(error) => {
                    tracing::debug!(video = %video, %error, "serving the stored file unchanged");
                    None
                }
            }
        })();
        let counter = match rewritten {
            Some(_) => &self.served.rewrites,
            None => &self.served.rewrite_failures,
        };
        counter.fetch_add(1, Relaxed);
        rewritten
    }
}

/// A response of the service: never stored, readable from any page (the
/// steering URL and a redirect's target are on other nodes than the page).
fn respond(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Empty);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = ResponseBody::Full(body);
    response
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Per-video rate meters, at most [`MAX_TRACKED_VIDEOS`].
#[derive(Debug, Default)]
struct RateMap {
    meters: HashMap<VideoId, CrowdRate>,
}

impl RateMap {
    /// Counts one session start of `video` at `now`; its rate then.
    fn observe(&mut self, video: &VideoId, now: Duration) -> f64 {
        if !self.meters.contains_key(video) && self.meters.len() >= MAX_TRACKED_VIDEOS {
            self.evict(now);
        }
        let meter = self.meters.entry(video.clone()).or_insert_with(|| {
            CrowdRate::new(RATE_RISE_HALF_LIFE, RATE_FALL_HALF_LIFE)
                .expect("half-lives in range and in order")
        });
        meter.observe(now);
        meter.rate(now)
    }

    fn rate(&self, video: &VideoId, now: Duration) -> f64 {
        self.meters.get(video).map_or(0.0, |meter| meter.rate(now))
    }

    /// Drops the eighth of the meters with the lowest rates, so a flood
    /// of new ids pays for one pass per few hundred ids, and a video that
    /// is watched outlives ids seen once.
    fn evict(&mut self, now: Duration) {
        let mut rates: Vec<f64> = self.meters.values().map(|m| m.rate(now)).collect();
        let cut = rates.len() / 8;
        let (_, threshold, _) = rates.select_nth_unstable_by(cut, f64::total_cmp);
        let threshold = *threshold;
        let mut dropped = 0;
        self.meters.retain(|_, meter| {
            let drop = dropped <= cut && meter.rate(now) <= threshold;
            dropped += usize::from(drop);
            !drop
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.meters.len()
    }
}

#[derive(Debug)]
struct ServedCollector(Arc<Served>);

impl Collector for ServedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let served = &self.0;
        for (name, help, value) in [
            (
                "manifests",
                "Steering manifests sent (GET /steer/{id}).",
                &served.manifests,
            ),
            (
                "unserved_answers",
                "Steering requests answered 503 because no node could serve.",
                &served.unserved,
            ),
            (
                "redirects",
                "Requests for a video's master playlist or MPD redirected (302) to the node steering chose.",
                &served.redirects,
            ),
            (
                "rewrites",
                "Master playlists and MPDs rewritten with one pathway per node.",
                &served.rewrites,
            ),
            (
                "rewrite_failures",
                "Master playlists and MPDs served as stored because they could not be rewritten.",
                &served.rewrite_failures,
            ),
            (
                "snapshot_rebuilds",
                "Times the membership snapshot was rebuilt (the view changed, or figures may have).",
                &served.snapshot_rebuilds,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
