//! Ranking: for one video and one membership snapshot, the pathways a
//! viewer should use, best first, and why the first is first.
//!
//! The rules, in order:
//!
//! 1. Only live edges in good health (`Health::Ok`) serve viewers; draining
//!    and dead edges are left out, exactly as placement leaves them out.
//! 2. Among those, the video's placement order (weighted rendezvous, weights
//!    = capacity, loads = sessions; see `kinema-placement`) decides. The
//!    nodes [`Placement::choose`] picks to serve the video (the first k with
//!    room under the bounded load, k by the video's request rate) come
//!    first; a new session goes to the one of them with the fewest sessions
//!    for its capacity (among equals, by a hash of its session id), so a
//!    hot video's viewers even out its k nodes' loads.
//! 3. Nodes at their load bound, then overloaded nodes (load above the
//!    configured threshold) follow, demoted rather than removed: a player
//!    whose better pathways fail still has somewhere to go. A session
//!    already on a node leaves it for load only once the node's sustained
//!    load is above the threshold too (see `steer`).
//! 4. Origins come last, as a last resort, or alone when no edge can serve.
//!
//! The reason for the first choice compares it with the video's *ideal
//! head*: the first node of its order over every edge known, dead and
//! draining ones included. If that node cannot serve, the reason is
//! [`Reason::Health`]; if it can but is full or overloaded, [`Reason::Load`];
//! if the first choice is it, [`Reason::Placement`]; if the first choice is
//! another of the k nodes placement chose, [`Reason::Replica`]. Edges that
//! left cleanly are not known: a planned departure is a membership change,
//! not a miss.

use std::collections::HashMap;

use kinema_cluster::{Health, Member, MembershipView, Role};
use kinema_core::VideoId;
use kinema_placement::cluster::{MAX_LOAD, MAX_NODES, MAX_WEIGHT};
use kinema_placement::{Cluster, Node, NodeId, Placement};
use sha2::{Digest, Sha256};

use crate::SteeringError;
use crate::pathway::{BaseUrl, Pathway, PathwayId};
use crate::session::SessionId;

/// Whether a node can take viewers, as membership last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Live and in good health.
    Ok,
    /// Live but leaving: finishes what it serves, takes nothing new.
    Draining,
    /// Stopped gossiping without leaving.
    Dead,
}

/// One node as steering sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub node_id: String,
    pub role: Role,
    pub base_url: BaseUrl,
    pub status: NodeStatus,
    /// How busy its serving threads are, 0 to 1, as last published (a
    /// half-second reading, published every second).
    pub load: f64,
    /// Its load held over seconds: what moves a session off it (see
    /// [`RankConfig::holds_overload`]). The steering service smooths the
    /// published loads into it; a node built from a member alone holds its
    /// published load.
    pub sustained_load: f64,
    /// Viewing sessions open now: its load for placement.
    pub sessions: u64,
    /// Egress it sustains, bits per second: its weight for placement.
    pub capacity_bps: u64,
    /// Egress it sends now, bits per second, as it gossiped it.
    pub egress_bps: u64,
}

impl NodeView {
    /// `member` as steering sees it, or `None` when its state is malformed
    /// or its URL unusable as a base (such a member serves no one).
    pub fn from_member(member: &Member, dead: bool) -> Option<Self> {
        let info = member.state.as_ref().ok()?;
        let status = match (dead, info.health) {
            (true, _) => NodeStatus::Dead,
            (false, Health::Ok) => NodeStatus::Ok,
            (false, Health::Draining) => NodeStatus::Draining,
        };
        Some(Self {
            node_id: member.node_id.to_string(),
            role: info.role,
            base_url: BaseUrl::new(&info.public_url).ok()?,
            status,
            load: info.figures.load,
            sustained_load: info.figures.load,
            sessions: info.figures.sessions,
            capacity_bps: info.capacity_bps,
            egress_bps: info.figures.egress_bps,
        })
    }
}

/// Every node steering knows of: one membership snapshot. Build it once
/// per membership change and share it between requests: it derives every
/// node's pathway id once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    nodes: Vec<NodeView>,
    by_pathway: HashMap<PathwayId, usize>,
}

impl Snapshot {
    /// Nodes in any order; a second node with an id already seen, or with
    /// the pathway id of one already seen, is dropped (first by node id
    /// wins), as is a node whose id placement cannot take, and any node
    /// beyond the first [`MAX_NODES`] by id (placement's own bound).
    pub fn new(mut nodes: Vec<NodeView>) -> Self {
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        nodes.retain(|node| NodeId::new(node.node_id.as_str()).is_ok());
        let mut by_pathway = HashMap::new();
        let mut kept = Vec::new();
        for node in nodes {
            if kept.len() == MAX_NODES {
                break;
            }
            if let std::collections::hash_map::Entry::Vacant(entry) =
                by_pathway.entry(PathwayId::of_node(&node.node_id))
            {
                entry.insert(kept.len());
                kept.push(node);
            }
        }
        Self {
            nodes: kept,
            by_pathway,
        }
    }

    /// Live and dead members of `view`; members that left are not known.
    pub fn from_view(view: &MembershipView) -> Self {
        let live = view
            .live
            .iter()
            .filter_map(|member| NodeView::from_member(member, false));
        let dead = view
            .dead
            .iter()
            .filter_map(|member| NodeView::from_member(member, true));
        Self::new(live.chain(dead).collect())
    }

    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// The nodes, to set what the snapshot's builder derives (their
    /// sustained loads); ids, and so pathways, stay as they are.
    pub(crate) fn nodes_mut(&mut self) -> impl Iterator<Item = &mut NodeView> {
        self.nodes.iter_mut()
    }

    /// This snapshot with `added(node id)` more sessions on each node: the
    /// sessions a decider placed lately that the figures members publish
    /// do not show yet ([`kinema_placement::RecentAssignments`]).
    pub fn with_sessions_added(&self, added: impl Fn(&str) -> u64) -> Self {
        let mut snapshot = self.clone();
        for node in &mut snapshot.nodes {
            node.sessions = node.sessions.saturating_add(added(&node.node_id));
        }
        snapshot
    }

    /// The node whose pathway is `pathway`.
    pub fn by_pathway(&self, pathway: &PathwayId) -> Option<&NodeView> {
        self.by_pathway
            .get(pathway)
            .map(|&index| &self.nodes[index])
    }
}

/// How ranking treats load.
#[derive(Debug, Clone)]
pub struct RankConfig {
    pub placement: Placement,
    /// A node whose load is above this (0 to 1) is overloaded: demoted
    /// behind every other edge for new sessions; sessions on it move
    /// elsewhere once its sustained load is above it too.
    pub overload: f64,
    /// Most edges in a ranking (and so in a rewritten playlist).
    pub max_edges: usize,
    /// Most origins in a ranking.
    pub max_origins: usize,
}

/// Largest `max_edges` + `max_origins`: a playlist carries a full variant
/// set per pathway.
pub const MAX_PATHWAYS: usize = 16;

impl RankConfig {
    pub fn new(
        placement: Placement,
        overload: f64,
        max_edges: usize,
        max_origins: usize,
    ) -> Result<Self, SteeringError> {
        if !(overload.is_finite() && overload > 0.0 && overload <= 1.0) {
            return Err(SteeringError::Config(format!(
                "overload threshold {overload} must be above 0 and at most 1"
            )));
        }
        if max_edges == 0 || max_edges + max_origins > MAX_PATHWAYS {
            return Err(SteeringError::Config(format!(
                "{max_edges} edges and {max_origins} origins: give at least one edge and at most {MAX_PATHWAYS} pathways in all"
            )));
        }
        Ok(Self {
            placement,
            overload,
            max_edges,
            max_origins,
        })
    }
}

/// Load above 0.9, four edges and one origin per ranking.
impl Default for RankConfig {
    fn default() -> Self {
        Self {
            placement: Placement::default(),
            overload: 0.9,
            max_edges: 4,
            max_origins: 1,
        }
    }
}

/// Why the first pathway of a decision is first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The video's placement head.
    Placement,
    /// Another of the nodes placement chose for a hot video.
    Replica,
    /// The session's own pathway, kept: healthy and not overloaded.
    Sticky,
    /// Not the head (or not the session's pathway) because that node is
    /// full or overloaded.
    Load,
    /// Not the head (or not the session's pathway) because that node is
    /// draining, dead or gone.
    Health,
    /// No edge can serve: an origin.
    OriginOnly,
    /// Another of the video's nodes of similar load, because it measured
    /// better for the viewer's prefix (or the session explores the
    /// runner-up): see [`crate::network`].
    Network,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Placement,
        Reason::Replica,
        Reason::Sticky,
        Reason::Load,
        Reason::Health,
        Reason::OriginOnly,
        Reason::Network,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Placement => "placement",
            Reason::Replica => "replica",
            Reason::Sticky => "sticky",
            Reason::Load => "load",
            Reason::Health => "health",
            Reason::OriginOnly => "origin_only",
            Reason::Network => "network",
        }
    }
}

/// The pathways for one new session, best first, and why the first is.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Never empty unless the snapshot holds no usable node at all.
    pub pathways: Vec<Pathway>,
    pub reason: Reason,
    /// The video's ideal head over every known edge, if any edge is known.
    pub ideal_head: Option<PathwayId>,
    /// Whether any edge is known at all (live or dead).
    pub edges_known: bool,
    /// How many of the first pathways are nodes placement chose to serve
    /// the video (not overloaded): those network measurement may reorder.
    pub serving: usize,
}

pub(crate) fn pathway(node: &NodeView) -> Pathway {
    Pathway {
        id: PathwayId::of_node(&node.node_id),
        node_id: node.node_id.clone(),
        role: node.role,
        base_url: node.base_url.clone(),
    }
}

/// A node's weight for placement: its capacity, within placement's bounds.
fn weight(node: &NodeView) -> u64 {
    node.capacity_bps.clamp(1, MAX_WEIGHT)
}

fn placement_node(node: &NodeView) -> Option<Node> {
    let id = NodeId::new(node.node_id.as_str()).ok()?;
    Node::new(id, weight(node), node.sessions.min(MAX_LOAD)).ok()
}

/// The nodes of `nodes` in `video`'s placement order.
fn ordered<'n>(
    placement: &Placement,
    video: &VideoId,
    nodes: &[&'n NodeView],
) -> Vec<&'n NodeView> {
    let Ok(cluster) = Cluster::new(nodes.iter().filter_map(|n| placement_node(n)).collect()) else {
        return Vec::new();
    };
    let by_id: HashMap<&str, &'n NodeView> =
        nodes.iter().map(|n| (n.node_id.as_str(), *n)).collect();
    placement
        .order(video, &cluster)
        .into_iter()
        .filter_map(|node| by_id.get(node.id().as_str()).copied())
        .collect()
}

/// `pathways` with at most `max_edges` edges and `max_origins` origins,
/// in their order.
pub(crate) fn bounded(
    pathways: Vec<Pathway>,
    max_edges: usize,
    max_origins: usize,
) -> Vec<Pathway> {
    let (mut edges, mut origins) = (0, 0);
    pathways
        .into_iter()
        .filter(|pathway| {
            let count = match pathway.role {
                Role::Edge => &mut edges,
                Role::Origin => &mut origins,
            };
            *count += 1;
            *count
                <= if pathway.role == Role::Edge {
                    max_edges
                } else {
                    max_origins
                }
        })
        .collect()
}

/// A number from a session id, to spread a hot video's sessions.
fn session_slot(session: SessionId, slots: usize) -> usize {
    let digest = Sha256::digest(session.0.to_be_bytes());
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % slots as u64) as usize
}

/// The node of `serve` with the fewest sessions for its weight; among
/// equals the first from `start` on, so that sessions of equally loaded
/// nodes spread by their slot.
fn least_loaded<'n>(serve: &[&'n NodeView], start: usize) -> &'n NodeView {
    let mut best = serve[start % serve.len()];
    for offset in 1..serve.len() {
        let node = serve[(start + offset) % serve.len()];
        // sessions / weight, compared without division.
        if u128::from(node.sessions) * u128::from(weight(best))
            < u128::from(best.sessions) * u128::from(weight(node))
        {
            best = node;
        }
    }
    best
}

impl RankConfig {
    /// Whether `load` is above the threshold; a load that is not a number
    /// counts as above.
    fn above_threshold(&self, load: f64) -> bool {
        load.is_nan() || load > self.overload
    }

    pub(crate) fn is_overloaded(&self, node: &NodeView) -> bool {
        self.above_threshold(node.load)
    }

    /// Whether `node` has been overloaded for seconds, not for a moment:
    /// its sustained load is above the threshold. Only then does a session
    /// it serves move off it (a spike, such as a crowd's start, demotes it
    /// for new sessions alone).
    pub(crate) fn holds_overload(&self, node: &NodeView) -> bool {
        self.above_threshold(node.sustained_load)
    }

    /// The ranking of `video` for a new session `session`, the video's
    /// request rate being `rate` per second.
    pub fn rank(
        &self,
        video: &VideoId,
        snapshot: &Snapshot,
        rate: f64,
        session: SessionId,
    ) -> Ranking {
        let known_edges: Vec<&NodeView> = snapshot
            .nodes()
            .iter()
            .filter(|node| node.role == Role::Edge)
            .collect();
        let usable: Vec<&NodeView> = known_edges
            .iter()
            .copied()
            .filter(|node| node.status == NodeStatus::Ok)
            .collect();
        // With every known edge usable, the ideal head is the usable head,
        // found below without ordering the nodes twice.
        let ideal_head = if usable.len() == known_edges.len() {
            None
        } else {
            ordered(&self.placement, video, &known_edges)
                .first()
                .map(|node| (*node).clone())
        };
        let origins: Vec<&NodeView> = snapshot
            .nodes()
            .iter()
            .filter(|node| node.role == Role::Origin && node.status == NodeStatus::Ok)
            .collect();
        let origins = ordered(&self.placement, video, &origins);
        let mut pathways = Vec::new();
        let mut ideal_head = ideal_head;
        let mut serving = 0;
        let reason;
        if usable.is_empty() {
            reason = Reason::OriginOnly;
        } else {
            let nodes: Vec<Node> = usable.iter().filter_map(|n| placement_node(n)).collect();
            let cluster = Cluster::new(nodes).expect("usable edges are valid and distinct");
            let choice = self.placement.choose(video, &cluster, rate);
            let by_id: HashMap<&str, &NodeView> =
                usable.iter().map(|n| (n.node_id.as_str(), *n)).collect();
            let view = |node: &Node| by_id[node.id().as_str()];
            let order: Vec<&NodeView> = self
                .placement
                .order(video, &cluster)
                .iter()
                .map(|node| view(node))
                .collect();
            let serve: Vec<&NodeView> = choice
                .serve
                .iter()
                .map(|node| view(node))
                .filter(|node| !self.is_overloaded(node))
                .collect();
            let mut ranked: Vec<&NodeView> = Vec::new();
            serving = serve.len().min(self.max_edges);
            if !serve.is_empty() {
                let first = least_loaded(&serve, session_slot(session, serve.len()));
                ranked.push(first);
                ranked.extend(serve.iter().copied().filter(|n| n.node_id != first.node_id));
            }
            let has_room = |node: &NodeView| {
                let id = NodeId::new(node.node_id.as_str()).expect("usable ids are valid");
                cluster
                    .get(&id)
                    .is_some_and(|placed| self.placement.bound(placed, &cluster) > placed.load())
            };
            let rest = |pick: &dyn Fn(&NodeView) -> bool| -> Vec<&NodeView> {
                order.iter().copied().filter(|node| pick(node)).collect()
            };
            let roomy = rest(&|n| !self.is_overloaded(n) && has_room(n));
            let crowded = rest(&|n| !self.is_overloaded(n) && !has_room(n));
            let overloaded = rest(&|n| self.is_overloaded(n));
            for node in roomy.into_iter().chain(crowded).chain(overloaded) {
                if !ranked.iter().any(|r| r.node_id == node.node_id) {
                    ranked.push(node);
                }
            }
            let first = ranked[0];
            let head = order[0];
            let ideal = ideal_head.get_or_insert_with(|| head.clone());
            reason = match ideal {
                ideal if ideal.status != NodeStatus::Ok => Reason::Health,
                _ if first.node_id == head.node_id => Reason::Placement,
                _ if self.is_overloaded(head) || !has_room(head) => Reason::Load,
                _ => Reason::Replica,
            };
            pathways.extend(ranked.into_iter().take(self.max_edges).map(pathway));
        }
        pathways.extend(origins.into_iter().take(self.max_origins).map(pathway));
        Ranking {
            pathways,
            reason,
            ideal_head: ideal_head.map(|node| PathwayId::of_node(&node.node_id)),
            edges_known: !known_edges.is_empty(),
            serving,
        }
    }
}

#[cfg(test)]
#[path = "rank_tests.rs"]
pub(crate) mod tests;
