//! Placement for kinema's cluster: which nodes serve a video, and where a
//! node fills a miss from.
//!
//! A pure library: no I/O, no async, no clock (callers pass times), no
//! randomness. Every node that knows the same membership ([`Cluster`])
//! computes the same answer, bit for bit, on any platform. It is not
//! membership (who is alive comes from the gossip layer) and not steering
//! (turning the answer into playlists and redirects is the caller's).
//!
//! # The order of nodes for a video: weighted rendezvous hashing
//!
//! Each node gets a score for each video, `-weight / ln(h)` with `h` a fixed
//! SHA-256-based hash of (video, node) mapped into (0, 1) (the exact
//! encoding is in [`rendezvous`]); [`Placement::order`] ranks all nodes by
//! score, highest first, ties (never seen) to the smaller id.
//!
//! Guarantees: the order depends only on the video and the set of
//! (id, weight) pairs, not on the order nodes are listed in. A node's
//! chance to lead a video's order is its weight's share, weight / W.
//! Removing a node changes no other node's score: only the videos it led
//! move (about weight / W of them, 1/N for equal weights), each to the next
//! node of its order. Adding a node moves only the videos it now leads,
//! each from its former leader to it.
//!
//! # Bounded loads
//!
//! [`Placement::choose`] walks the order and passes over every node at its
//! bound ⌈c × average⌉ (c = 1.25 by default), so a hot node's overflow goes
//! to the next node of each video's order rather than anywhere. Load and
//! average are defined in [`bound`]; the property — no node goes above its
//! bound by an assignment placed here, and some node always has room — holds
//! exactly, in integer arithmetic.
//!
//! # Replication by popularity
//!
//! A video is served by k nodes: the first k nodes of its order that have
//! room, with k = ⌈rate / per_node_rate⌉ clamped to 1 ..= the node count
//! ([`rate::replicas`]). The rate is a video's recent request rate from a
//! [`CrowdRate`] (the higher of two exponentially decaying counts, one
//! with a short half-life so a crowd spreads within seconds, one with a
//! long one so it does not shrink back at its first lull). A cold
//! video stays on one node, so a cluster caches each cold video once; a hot
//! one spreads over as many nodes as its rate needs, always the same ones
//! for the same membership.
//!
//! # Fill order: a cache hierarchy
//!
//! [`Placement::parent`] tells a node where to fill a miss from before the
//! origin: the first node of the video's order, unless the node asking is
//! that first node (or the only node), which fills from the origin. Every
//! other node — a replica of a hot video, a node a viewer was steered to by
//! network quality, a node leaving the cluster — fills in one hop from the
//! same head, so one object costs the origin one fetch per cluster. One hop
//! to the head, not a chain through the nodes in between, keeps a miss at
//! most two fetches deep however far down the order the node is. The
//! parent ignores loads: a fill is one transfer per object and replica, and
//! a parent that moved with every load change would scatter the copies.
//!
//! Nodes that are dead, unhealthy or draining are left out of the
//! [`Cluster`] by the caller: to placement that is the same as leaving.

pub mod bound;
pub mod cluster;
mod error;
pub mod rate;
pub mod recent;
pub mod rendezvous;

pub use bound::BalanceFactor;
pub use cluster::{Cluster, Node, NodeId};
pub use error::PlacementError;
pub use rate::{CrowdRate, RateMeter};
pub use recent::RecentAssignments;

use kinema_core::VideoId;

/// How placement balances and replicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    balance: BalanceFactor,
    per_node_rate: f64,
}

impl Config {
    /// `per_node_rate`: the rate of requests (in the unit the caller's
    /// [`RateMeter`] counts, per second) one node carries for one video
    /// before a second node serves it too. Finite and above 0.
    pub fn new(balance: BalanceFactor, per_node_rate: f64) -> Result<Self, PlacementError> {
        if !(per_node_rate.is_finite() && per_node_rate > 0.0) {
            return Err(PlacementError::PerNodeRate(per_node_rate));
        }
        Ok(Self {
            balance,
            per_node_rate,
        })
    }

    pub fn balance(&self) -> BalanceFactor {
        self.balance
    }

    pub fn per_node_rate(&self) -> f64 {
        self.per_node_rate
    }
}

/// c = 1.25 and one session start per second per node for one video
/// (at ten-minute sessions, some 600 concurrent viewers of it per node).
impl Default for Config {
    fn default() -> Self {
        Self {
            balance: BalanceFactor::default(),
            per_node_rate: 1.0,
        }
    }
}

/// What [`Placement::choose`] decided for one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<'c> {
    /// The nodes that serve the video, in its order: the first `replicas`
    /// nodes of the order that have room for one more assignment (fewer
    /// only when fewer have room; never none). Each may take the next
    /// assignment within its bound.
    pub serve: Vec<&'c Node>,
    /// k, the number of nodes the video's rate calls for.
    pub replicas: usize,
    /// The nodes passed over because they were at their bound, in order:
    /// those ahead of the k-th serving node, or all of them when fewer than
    /// k have room (the overflow's reason, for logs and metrics).
    pub full: Vec<&'c Node>,
}

/// The placement decisions, for one configuration.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    config: Config,
}

impl Placement {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every node of `cluster`, in `video`'s order (weighted rendezvous).
    pub fn order<'c>(&self, video: &VideoId, cluster: &'c Cluster) -> Vec<&'c Node> {
        rendezvous::order(video, cluster)
    }

    /// The nodes that serve `video` now: the first k nodes of its order
    /// that are below their load bound, k from `rate` (events per second,
    /// from the video's [`RateMeter`]; a negative or NaN rate counts as 0).
    ///
    /// The caller places one assignment on one of `serve` (the first, or
    /// another by network quality) and passes the new load in the next
    /// [`Cluster`]; each assignment so placed keeps its node within bound.
    pub fn choose<'c>(&self, video: &VideoId, cluster: &'c Cluster, rate: f64) -> Choice<'c> {
        let replicas = rate::replicas(rate, self.config.per_node_rate, cluster.len());
        let mut serve = Vec::with_capacity(replicas);
        let mut full = Vec::new();
        for node in self.order(video, cluster) {
            if serve.len() == replicas {
                break;
            }
            if bound::has_room(self.config.balance, node, cluster) {
                serve.push(node);
            } else {
                full.push(node);
            }
        }
        Choice {
            serve,
            replicas,
            full,
        }
    }

    /// The bound of `node` in `cluster`: ⌈c × (L + 1) × w / W⌉ (see [`bound`]).
    pub fn bound(&self, node: &Node, cluster: &Cluster) -> u64 {
        bound::bound(self.config.balance, node, cluster)
    }

    /// Where `self_id` fills a miss of `video` from before the origin: the
    /// first node of the video's order, or `None` (the origin) when
    /// `self_id` is that node. A node outside the cluster (draining, say)
    /// fills from the first node too.
    pub fn parent<'c>(
        &self,
        video: &VideoId,
        self_id: &NodeId,
        cluster: &'c Cluster,
    ) -> Option<&'c Node> {
        self.order(video, cluster)
            .first()
            .copied()
            .filter(|head| head.id() != self_id)
    }
}

#[cfg(test)]
mod tests;
