//! The edge in a cluster: where a miss is filled from ([`PlacementUpstreams`],
//! a cache hierarchy over the membership) and the parts a cluster adds to an
//! edge ([`ClusterPart`]: steering, the membership's counters).
//!
//! A miss of a video's object goes first to the video's placement parent
//! (`kinema_placement::Placement::parent`: the head of the video's
//! rendezvous order among the live, healthy edges), then to the origins.
//! The parent fills from the origins, so one object costs the origin one
//! fetch per cluster however many edges ask for it.
//!
//! The hop guard: a request that came through a kinema node (its `Via`
//! names one) is filled from the origins only, never from another edge.
//! Two edges whose views of the membership disagree for a moment (each
//! thinking the other the head) therefore cost one extra hop, never a loop.
//!
//! What it deliberately is not: membership (kinema-cluster's, read from a
//! watch channel), placement (kinema-placement's, not re-implemented) or
//! steering (kinema-steering's service, which this module only carries).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kinema_cluster::{GossipCounters, MembershipView, Role};
use kinema_core::VideoId;
use kinema_placement::{Cluster, Node, NodeId, Placement};
use kinema_steering::SteeringService;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::origin::OriginClient;
use crate::upstream::{RoundRobin, Upstream, UpstreamFailure, UpstreamRequest, UpstreamSelector};

/// How long a parent that failed a fetch is skipped (the origin asked
/// directly): about the time membership takes to notice a dead node.
pub const PARENT_PENALTY: Duration = Duration::from_secs(5);

/// What a cluster adds to an edge besides its selector: the steering
/// service answering `/steer/{id}` and rewriting viewers' masters and MPDs,
/// and the membership's counters for `/metrics`.
#[derive(Debug, Clone)]
pub struct ClusterPart {
    pub steering: Arc<SteeringService>,
    pub gossip: Arc<GossipCounters>,
}

/// The edges a miss may be filled from, as one membership view showed them.
#[derive(Debug, Default)]
struct Peers {
    /// The live, healthy edges with a usable URL, this one included; `None`
    /// when there are none.
    cluster: Option<Cluster>,
    /// Each edge's URL, by node id.
    urls: HashMap<NodeId, Upstream>,
}

impl Peers {
    /// The live, well-formed, not draining edges of `view` whose public URL
    /// an edge can fetch from; weights are capacities, loads sessions.
    fn of(view: &MembershipView) -> Self {
        let mut nodes = Vec::new();
        let mut urls = HashMap::new();
        for member in view.live.iter().filter(|member| member.is_usable()) {
            let Ok(info) = &member.state else { continue };
            if info.role != Role::Edge {
                continue;
            }
            let Ok(id) = NodeId::new(&*member.node_id) else {
                continue;
            };
            let weight = info
                .capacity_bps
                .clamp(1, kinema_placement::cluster::MAX_WEIGHT);
            let load = info
                .figures
                .sessions
                .min(kinema_placement::cluster::MAX_LOAD);
            let (Ok(node), Ok(upstream)) = (
                Node::new(id.clone(), weight, load),
                Upstream::peer(&info.public_url),
            ) else {
                tracing::debug!(node = %member.node_id, url = %info.public_url, "edge left out of placement: unusable URL or figures");
                continue;
            };
            nodes.push(node);
            urls.insert(id, upstream);
            if nodes.len() == kinema_placement::cluster::MAX_NODES {
                break;
            }
        }
        let cluster = if nodes.is_empty() {
            None
        } else {
            Cluster::new(nodes).ok()
        };
        Self { cluster, urls }
    }
}

#[derive(Debug)]
struct Membership {
    view: watch::Receiver<MembershipView>,
    peers: Arc<Peers>,
}

/// A cluster edge's [`UpstreamSelector`]: a video's placement parent first
/// (unless this edge is the parent, the request came through a kinema
/// node, or the parent failed within [`PARENT_PENALTY`]), then the origins
/// in their round-robin with its failover and health checks.
#[derive(Debug)]
pub struct PlacementUpstreams {
    origins: Arc<RoundRobin>,
    self_id: NodeId,
    placement: Placement,
    membership: Mutex<Membership>,
    /// Parents that failed a fetch, until when they are skipped.
    penalties: Mutex<HashMap<Upstream, Instant>>,
    counters: PlacementCounters,
}

/// What placement did with this edge's misses, for `/metrics`.
#[derive(Debug, Default)]
struct PlacementCounters {
    /// Fetches sent to the video's parent edge first.
    parent_fills: AtomicU64,
    /// Fetches of a video this edge is the parent of (or that has none):
    /// the origins directly.
    led_fills: AtomicU64,
    /// Fetches for a request that came through a kinema node, sent to the
    /// origins only (the hop guard).
    hop_guarded: AtomicU64,
    /// Parent edges that failed a fetch (then skipped for a while).
    parent_failures: AtomicU64,
}

impl PlacementUpstreams {
    /// Fills from the placement parent among the edges of `view` before
    /// `origins`, this edge being `self_id` (its node id in the cluster).
    pub fn new(
        origins: RoundRobin,
        self_id: &str,
        view: watch::Receiver<MembershipView>,
    ) -> Result<Self, String> {
        let self_id = NodeId::new(self_id)
            .map_err(|error| format!("node id {self_id:?} cannot be placed: {error}"))?;
        let peers = Arc::new(Peers::of(&view.borrow()));
        Ok(Self {
            origins: Arc::new(origins),
            self_id,
            placement: Placement::default(),
            membership: Mutex::new(Membership { view, peers }),
            penalties: Mutex::new(HashMap::new()),
            counters: PlacementCounters::default(),
        })
    }

    /// The edges as the latest view shows them, rebuilt only when the
    /// view's membership changed since the last call (figures alone do not
    /// signal a change).
    fn peers(&self) -> Arc<Peers> {
        let mut membership = lock(&self.membership);
        // An error means the cluster is gone: keep the last view.
        if membership.view.has_changed().unwrap_or(false) {
            let peers = Peers::of(&membership.view.borrow_and_update());
            membership.peers = Arc::new(peers);
        }
        membership.peers.clone()
    }

    /// The placement parent of `video` for this edge, if it is another
    /// edge that has not failed lately.
    pub fn parent(&self, video: &str) -> Option<Upstream> {
        let video = VideoId::new(video).ok()?;
        let peers = self.peers();
        let cluster = peers.cluster.as_ref()?;
        let parent = self.placement.parent(&video, &self.self_id, cluster)?;
        let upstream = peers.urls.get(parent.id())?.clone();
        let mut penalties = lock(&self.penalties);
        let now = Instant::now();
        penalties.retain(|_, until| *until > now);
        (!penalties.contains_key(&upstream)).then_some(upstream)
    }
}

impl UpstreamSelector for PlacementUpstreams {
    fn select(&self, request: &UpstreamRequest<'_>) -> Vec<Upstream> {
        let origins = self.origins.select(request);
        let counters = &self.counters;
        if request.through_kinema {
            counters.hop_guarded.fetch_add(1, Ordering::Relaxed);
            return origins;
        }
        match request.video_id.and_then(|video| self.parent(video)) {
            Some(parent) => {
                counters.parent_fills.fetch_add(1, Ordering::Relaxed);
                std::iter::once(parent).chain(origins).collect()
            }
            None => {
                counters.led_fills.fetch_add(1, Ordering::Relaxed);
                origins
            }
        }
    }

    fn fills_from_peer(&self, request: &UpstreamRequest<'_>) -> bool {
        !request.through_kinema
            && request
                .video_id
                .and_then(|video| self.parent(video))
                .is_some()
    }

    fn report_failure(&self, upstream: &Upstream, failure: UpstreamFailure) {
        if !upstream.is_peer() {
            self.origins.report_failure(upstream, failure);
            return;
        }
        self.counters
            .parent_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(parent = %upstream.authority(), ?failure, "parent edge failed a fill; the origin is asked instead for a while");
        lock(&self.penalties).insert(upstream.clone(), Instant::now() + PARENT_PENALTY);
    }

    fn healthy_count(&self) -> u64 {
        self.origins.healthy_count()
    }

    fn metrics_text(&self, prefix: &str) -> String {
        let counters = &self.counters;
        let mut text = String::new();
        for (name, help, counter) in [
            (
                "placement_parent_fills_total",
                "fetches sent to the video's parent edge before the origins",
                &counters.parent_fills,
            ),
            (
                "placement_led_fills_total",
                "fetches of videos this edge leads (or that have no parent), from the origins",
                &counters.led_fills,
            ),
            (
                "placement_hop_guarded_total",
                "fetches for requests through a kinema node, from the origins only",
                &counters.hop_guarded,
            ),
            (
                "placement_parent_failures_total",
                "fetches a parent edge failed, which then went to the origins",
                &counters.parent_failures,
            ),
        ] {
            let value = counter.load(Ordering::Relaxed);
            // Writing into a String cannot fail.
            let _ = write!(
                text,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} counter\n{prefix}_{name} {value}\n"
            );
        }
        text
    }

    /// Every live edge but this one with a usable URL, draining ones
    /// included: they still hold what a purge removes.
    fn purge_peers(&self) -> Vec<(String, Upstream)> {
        let membership = lock(&self.membership);
        let view = membership.view.borrow();
        view.live
            .iter()
            .filter(|member| !member.is_self && &*member.node_id != self.self_id.as_str())
            .filter_map(|member| {
                let info = member.state.as_ref().ok()?;
                let upstream = Upstream::peer(&info.public_url).ok()?;
                (info.role == Role::Edge).then(|| (member.node_id.to_string(), upstream))
            })
            .collect()
    }

    fn run_checks(
        self: Arc<Self>,
        client: Arc<OriginClient>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        self.origins.clone().run_checks(client, shutdown)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
