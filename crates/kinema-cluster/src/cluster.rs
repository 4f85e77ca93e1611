//! The [`Cluster`] handle: one node's membership, from start to a clean leave.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
    ProtocolVersion, spawn_chitchat,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::ClusterError;
use crate::auth::ClusterKeys;
use crate::metrics::GossipCounters;
use crate::state::{
    Health, MAX_NETWORK_QUALITY_LEN, MAX_NODE_ID_LEN, MAX_REGION_LEN, MAX_URL_LEN, Member,
    NETWORK_QUALITY_KEY, NodeFigures, Role, key, parse_node_info,
};
use crate::transport::{AuthenticatedUdpTransport, MAX_UDP_PAYLOAD};

/// The shortest and longest gossip intervals accepted. The longest keeps
/// failure detection within 5 s (see [`failure_detector`]).
pub const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_GOSSIP_INTERVAL: Duration = Duration::from_millis(230);
/// The most gossip rounds a leave waits for its draining state to spread.
pub const MAX_LEAVE_ROUNDS: u32 = 20;

/// How one node joins the cluster, and what it says about itself.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Unique in the cluster; at most 64 characters.
    pub node_id: String,
    /// Nodes gossip only with nodes of the same name (chitchat's cluster id).
    pub cluster_name: String,
    /// Where the gossip socket listens (UDP); port 0 picks one.
    pub gossip_listen: SocketAddr,
    /// Where peers reach it; required when `gossip_listen` is a wildcard
    /// address, else the address actually bound.
    pub gossip_advertise: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of nodes to contact first.
    pub seeds: Vec<String>,
    pub keys: ClusterKeys,
    pub gossip_interval: Duration,
    /// Rounds a [`Cluster::leave`] keeps gossiping its draining state.
    pub leave_rounds: u32,
    /// Upper bound on every gossip datagram, sent or accepted.
    pub max_datagram: usize,
    pub role: Role,
    pub public_url: String,
    pub region: String,
    pub capacity_bps: u64,
    /// This node's network-quality summary, read each gossip round and
    /// published under [`NETWORK_QUALITY_KEY`] when it changed; none by
    /// default.
    pub network_quality: Option<NetworkQualitySource>,
}

/// Reads this node's network-quality summary text (at most
/// [`MAX_NETWORK_QUALITY_LEN`] bytes; a longer one is published empty).
#[derive(Clone)]
pub struct NetworkQualitySource(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for NetworkQualitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkQualitySource")
    }
}

/// The network-quality summaries live members gossip, by node id, as they
/// were last read (each gossip round): the raw text, at most
/// [`MAX_NETWORK_QUALITY_LEN`] bytes, for the reader to parse tolerantly.
/// A member without one, or with a longer one, is absent.
#[derive(Debug, Clone, Default)]
pub struct PeerNetworkQuality(Arc<std::sync::RwLock<HashMap<Arc<str>, Arc<str>>>>);

impl PeerNetworkQuality {
    /// The summary `node_id` gossips, if it is live and has one.
    pub fn get(&self, node_id: &str) -> Option<Arc<str>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(node_id)
            .cloned()
    }

    fn replace(&self, summaries: HashMap<Arc<str>, Arc<str>>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = summaries;
    }
}

impl ClusterConfig {
    /// A node with the defaults: cluster "kinema", 200 ms gossip, five
    /// rounds of leave, datagrams up to the UDP maximum.
    pub fn new(
        node_id: impl Into<String>,
        gossip_listen: SocketAddr,
        keys: ClusterKeys,
        role: Role,
        public_url: impl Into<String>,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            cluster_name: "kinema".into(),
            gossip_listen,
            gossip_advertise: None,
            seeds: Vec::new(),
            keys,
            gossip_interval: Duration::from_millis(200),
            leave_rounds: 5,
            max_datagram: MAX_UDP_PAYLOAD,
            role,
            public_url: public_url.into(),
            region: "default".into(),
            capacity_bps: 1_000_000_000,
            network_quality: None,
        }
    }

    fn validate(&self) -> Result<(), ClusterError> {
        let bad = |message: String| Err(ClusterError::Config(message));
        if self.node_id.is_empty()
            || self.node_id.len() > MAX_NODE_ID_LEN
            || self
                .node_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad(format!(
                "node id {:?} must be 1 to {MAX_NODE_ID_LEN} characters without spaces",
                self.node_id
            ));
        }
        if !(MIN_GOSSIP_INTERVAL..=MAX_GOSSIP_INTERVAL).contains(&self.gossip_interval) {
            return bad(format!(
                "gossip interval {:?} is outside {MIN_GOSSIP_INTERVAL:?} to {MAX_GOSSIP_INTERVAL:?} (longer would detect a dead node after more than 5 s)",
                self.gossip_interval
            ));
        }
        if self.leave_rounds > MAX_LEAVE_ROUNDS {
            return bad(format!(
                "leave rounds {} is above {MAX_LEAVE_ROUNDS}",
                self.leave_rounds
            ));
        }
        if self.max_datagram < 512 {
            return bad(format!(
                "max datagram {} is below 512 bytes",
                self.max_datagram
            ));
        }
        // Parse the static fields exactly as peers will.
        let capacity = self.capacity_bps.to_string();
        let figures = NodeFigures::default();
        let load = figures.load_text();
        parse_node_info(|name| match name {
            key::ROLE => Some(self.role.as_str()),
            key::URL => Some(self.public_url.as_str()),
            key::REGION => Some(self.region.as_str()),
            key::CAPACITY => Some(capacity.as_str()),
            key::EGRESS | key::SESSIONS => Some("0"),
            key::LOAD => Some(load.as_str()),
            key::HEALTH => Some(Health::Ok.as_str()),
            _ => None,
        })
        .map_err(|error| {
            ClusterError::Config(format!(
                "{error} (public URL up to {MAX_URL_LEN} characters, region up to {MAX_REGION_LEN}, capacity above 0)"
            ))
        })?;
        Ok(())
    }
}

/// Where a node's changing figures come from.
pub enum FiguresSource {
    /// A channel the caller writes into.
    Watch(watch::Receiver<NodeFigures>),
    /// Read once per gossip round.
    Poll(Box<dyn Fn() -> NodeFigures + Send + Sync>),
}

impl std::fmt::Debug for FiguresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FiguresSource::Watch(_) => "FiguresSource::Watch",
            FiguresSource::Poll(_) => "FiguresSource::Poll",
        })
    }
}

impl FiguresSource {
    fn read(&self) -> NodeFigures {
        match self {
            FiguresSource::Watch(receiver) => *receiver.borrow(),
            FiguresSource::Poll(read) => read(),
        }
    }
}

/// Class (live, dead, left), node id, generation, health, usable.
type OutlineEntry = (u8, Arc<str>, u64, Option<Health>, bool);

/// Everyone this node knows of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MembershipView {
    /// Live members, this node included, in node-id order.
    pub live: Vec<Member>,
    /// Members that stopped gossiping without announcing it.
    pub dead: Vec<Member>,
    /// Members that stopped gossiping after announcing they were draining.
    pub left: Vec<Member>,
}

impl MembershipView {
    /// What a change notification is about: who is live, dead or gone and
    /// whether each is usable, not their changing figures.
    fn outline(&self) -> Vec<OutlineEntry> {
        let mut outline = Vec::new();
        for (class, members) in [(0, &self.live), (1, &self.dead), (2, &self.left)] {
            for member in members {
                outline.push((
                    class,
                    member.node_id.clone(),
                    member.generation,
                    member.health(),
                    member.is_usable(),
                ));
            }
        }
        outline
    }
}

/// The failure detector's settings for a gossip interval `g`: a node is
/// dead once no newer heartbeat arrived for phi_threshold × the mean arrival
/// interval. Samples longer than 2.5 g are left out of that mean and the
/// prior is 2 g, so the mean stays at most 2.5 g and a crash is noticed
/// within 8 × 2.5 g = 20 g plus one round (4.2 s at 200 ms); on a healthy
/// small cluster heartbeats arrive about every g and it takes about 8 g.
pub fn failure_detector(gossip_interval: Duration) -> FailureDetectorConfig {
    FailureDetectorConfig {
        phi_threshold: 8.0,
        sampling_window_size: 100,
        max_interval: gossip_interval.mul_f64(2.5),
        initial_interval: gossip_interval * 2,
        // How long a dead or departed node stays listed before it is forgotten.
        dead_node_grace_period: Duration::from_secs(600),
    }
}

/// A running member of the cluster. Dropping it stops gossip at once, as a
/// crash would; [`Cluster::leave`] is the clean way out.
pub struct Cluster {
    /// Taken by the first [`Cluster::leave`].
    handle: std::sync::Mutex<Option<ChitchatHandle>>,
    chitchat: Arc<Mutex<Chitchat>>,
    self_id: ChitchatId,
    gossip_interval: Duration,
    leave_rounds: u32,
    tasks: Vec<JoinHandle<()>>,
    view: watch::Receiver<MembershipView>,
    counters: Arc<GossipCounters>,
    seen_live: SeenLive,
    network_quality: PeerNetworkQuality,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("self_id", &self.self_id)
            .field("gossip_interval", &self.gossip_interval)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Binds the gossip socket, joins through the seeds and starts
    /// publishing `figures`.
    pub async fn start(
        config: ClusterConfig,
        figures: FiguresSource,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let counters = Arc::new(GossipCounters::default());
        let socket = tokio::net::UdpSocket::bind(config.gossip_listen)
            .await
            .map_err(|error| {
                ClusterError::Bind(format!(
                    "gossip address {}/UDP: {error}",
                    config.gossip_listen
                ))
            })?;
        let bound = socket
            .local_addr()
            .map_err(|error| ClusterError::Bind(error.to_string()))?;
        let advertise = match config.gossip_advertise {
            Some(advertise) => advertise,
            None if bound.ip().is_unspecified() => {
                return Err(ClusterError::Config(format!(
                    "gossip listen address {bound} is a wildcard; set the address peers reach this node at"
                )));
            }
            None => bound,
        };
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        let self_id = ChitchatId::new(config.node_id.clone(), generation, advertise);
        let transport = AuthenticatedUdpTransport::new(
            config.keys.clone(),
            config.max_datagram,
            counters.clone(),
        )
        .with_bound_socket(socket);
        let chitchat_config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: config.cluster_name.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: bound,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: failure_detector(config.gossip_interval),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            // The digest uncompressed: chitchat compresses a V1 digest with
            // a zstd context made anew for every message, a cost each node
            // pays several times per gossip round to save a few dozen bytes
            // per member. Every node decodes both versions.
            protocol_version: ProtocolVersion::V0,
        };
        let first = figures.read();
        let initial = vec![
            (key::ROLE.to_owned(), config.role.as_str().to_owned()),
            (key::URL.to_owned(), config.public_url.clone()),
            (key::REGION.to_owned(), config.region.clone()),
            (key::CAPACITY.to_owned(), config.capacity_bps.to_string()),
            (key::EGRESS.to_owned(), first.egress_bps.to_string()),
            (key::SESSIONS.to_owned(), first.sessions.to_string()),
            (key::LOAD.to_owned(), first.load_text()),
            (key::HEALTH.to_owned(), Health::Ok.as_str().to_owned()),
        ];
        let handle = spawn_chitchat(chitchat_config, initial, &transport)
            .await
            .map_err(|error| ClusterError::Gossip(format!("{error:#}")))?;
        let chitchat = handle.chitchat();
        let (view_sender, view) = watch::channel(MembershipView::default());
        let seen_live = SeenLive::default();
        let network_quality = PeerNetworkQuality::default();
        let tasks = vec![
            tokio::spawn(publish_figures(
                chitchat.clone(),
                figures,
                config.network_quality.clone(),
                config.gossip_interval,
            )),
            tokio::spawn(watch_view(
                chitchat.clone(),
                self_id.clone(),
                view_sender,
                counters.clone(),
                config.gossip_interval,
                seen_live.clone(),
                network_quality.clone(),
            )),
            tokio::spawn({
                // chitchat stops its loop on a socket error with a mere
                // warning; a node whose gossip stopped is soon dead to its
                // peers, so its operator must hear of it.
                let stopped = handle.termination_watcher();
                async move {
                    if let Err(error) = stopped.await {
                        tracing::error!(error = %format!("{error:#}"), "cluster gossip stopped");
                    }
                }
            }),
        ];
        tracing::info!(node = %config.node_id, gossip = %advertise, seeds = ?config.seeds, "joined the cluster");
        Ok(Self {
            handle: std::sync::Mutex::new(Some(handle)),
            chitchat,
            self_id,
            gossip_interval: config.gossip_interval,
            leave_rounds: config.leave_rounds,
            tasks,
            view,
            counters,
            seen_live,
            network_quality,
        })
    }

    /// The address peers gossip with this node at.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.self_id.gossip_advertise_addr
    }

    pub fn node_id(&self) -> &str {
        &self.self_id.node_id
    }

    /// Live members with their current state, this node included.
    pub async fn members(&self) -> Vec<Member> {
        view_of(&*self.chitchat.lock().await, &self.self_id, &self.seen_live).live
    }

    /// Live, dead and departed members, as of now.
    pub async fn view(&self) -> MembershipView {
        view_of(&*self.chitchat.lock().await, &self.self_id, &self.seen_live)
    }

    /// Notified when a member joins, dies, leaves, or changes health or
    /// usability. The value itself is refreshed every gossip round, figures
    /// included, without a notification: `borrow()` it for a recent view
    /// without locking anything.
    pub fn subscribe(&self) -> watch::Receiver<MembershipView> {
        self.view.clone()
    }

    /// The network-quality summaries members gossip, refreshed every
    /// gossip round (this node's own included).
    pub fn network_quality(&self) -> PeerNetworkQuality {
        self.network_quality.clone()
    }

    /// Datagram counters and member gauges, for metrics and tests.
    pub fn counters(&self) -> Arc<GossipCounters> {
        self.counters.clone()
    }

    /// Announces this node as draining (taking no new viewers) and keeps
    /// gossiping: for a server that finishes its responses in flight before
    /// [`Cluster::leave`].
    pub async fn drain(&self) {
        let mut chitchat = self.chitchat.lock().await;
        chitchat
            .self_node_state()
            .set(key::HEALTH, Health::Draining.as_str());
    }

    /// Announces this node as draining, gossips that to every live peer and
    /// for `leave_rounds` more rounds, then stops gossip. Later calls return
    /// at once; [`Cluster::members`] then keeps answering the last view.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let taken = self
            .handle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(handle) = taken else {
            return Ok(());
        };
        // Should this future be dropped half-way, gossip still stops.
        let mut handle = AbortOnDrop(Some(handle));
        let peers: Vec<SocketAddr> = {
            let mut chitchat = self.chitchat.lock().await;
            chitchat
                .self_node_state()
                .set(key::HEALTH, Health::Draining.as_str());
            let self_id = self.self_id.clone();
            chitchat
                .live_nodes()
                .filter(|id| **id != self_id)
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        // Straight to every live peer rather than waiting for random picks.
        for peer in peers {
            if let Some(handle) = &handle.0 {
                let _ = handle.gossip(peer);
            }
        }
        tokio::time::sleep(self.gossip_interval * self.leave_rounds).await;
        for task in &self.tasks {
            task.abort();
        }
        tracing::info!(node = %self.self_id.node_id, "left the cluster");
        let Some(handle) = handle.0.take() else {
            return Ok(());
        };
        handle
            .shutdown()
            .await
            .map_err(|error| ClusterError::Gossip(format!("{error:#}")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let handle = self
            .handle
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

/// Aborts chitchat's task unless the handle was taken out to shut it down.
struct AbortOnDrop(Option<ChitchatHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

async fn publish_figures(
    chitchat: Arc<Mutex<Chitchat>>,
    figures: FiguresSource,
    network_quality: Option<NetworkQualitySource>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    let mut last_summary = None;
    loop {
        tick.tick().await;
        if let Some(NetworkQualitySource(read)) = &network_quality {
            let mut summary = read();
            if summary.len() > MAX_NETWORK_QUALITY_LEN {
                tracing::debug!(
                    bytes = summary.len(),
                    "network-quality summary too long; published empty"
                );
                summary.clear();
            }
            if last_summary.as_ref() != Some(&summary) {
                let mut chitchat = chitchat.lock().await;
                chitchat
                    .self_node_state()
                    .set(NETWORK_QUALITY_KEY, &summary);
                last_summary = Some(summary);
            }
        }
        let now = figures.read();
        let text = (
            now.egress_bps.to_string(),
            now.sessions.to_string(),
            now.load_text(),
        );
        if last.as_ref() == Some(&text) {
            continue;
        }
        {
            // `set` bumps a key's version only when its value changed.
            let mut chitchat = chitchat.lock().await;
            let state = chitchat.self_node_state();
            state.set(key::EGRESS, &text.0);
            state.set(key::SESSIONS, &text.1);
            state.set(key::LOAD, &text.2);
        }
        last = Some(text);
    }
}

async fn watch_view(
    chitchat: Arc<Mutex<Chitchat>>,
    self_id: ChitchatId,
    sender: watch::Sender<MembershipView>,
    counters: Arc<GossipCounters>,
    every: Duration,
    seen_live: SeenLive,
    network_quality: PeerNetworkQuality,
) {
    let mut live_changes = chitchat.lock().await.live_nodes_watcher();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = live_changes.changed() => if changed.is_err() { return },
        }
        let view = {
            let chitchat = chitchat.lock().await;
            network_quality.replace(network_quality_of(&chitchat));
            view_of(&chitchat, &self_id, &seen_live)
        };
        counters.live_members.store(view.live.len() as u64, Relaxed);
        counters.unusable_members.store(
            view.live.iter().filter(|m| m.state.is_err()).count() as u64,
            Relaxed,
        );
        counters.dead_members.store(view.dead.len() as u64, Relaxed);
        counters.left_members.store(view.left.len() as u64, Relaxed);
        sender.send_if_modified(|current| {
            let changed = current.outline() != view.outline();
            *current = view;
            changed
        });
    }
}

fn member(id: &ChitchatId, state: Option<&NodeState>, self_id: &ChitchatId) -> Member {
    Member {
        node_id: id.node_id.clone(),
        generation: id.generation_id,
        gossip_addr: id.gossip_advertise_addr,
        is_self: id == self_id,
        state: match state {
            Some(state) => parse_node_info(|name| state.get(name)),
            None => Err(crate::state::MalformedState("no state received yet".into())),
        },
    }
}

/// Nodes this node has seen live: chitchat also lists as dead a node it
/// has just heard of and has too few heartbeats from to judge, which is a
/// node joining, not one that died.
type SeenLive = Arc<std::sync::Mutex<HashSet<ChitchatId>>>;

/// Each live node's network-quality summary, when it has one within the
/// bound.
fn network_quality_of(chitchat: &Chitchat) -> HashMap<Arc<str>, Arc<str>> {
    chitchat
        .live_nodes()
        .filter_map(|id| {
            let summary = chitchat.node_state(id)?.get(NETWORK_QUALITY_KEY)?;
            (!summary.is_empty() && summary.len() <= MAX_NETWORK_QUALITY_LEN)
                .then(|| (Arc::from(&*id.node_id), Arc::from(summary)))
        })
        .collect()
}

fn view_of(chitchat: &Chitchat, self_id: &ChitchatId, seen_live: &SeenLive) -> MembershipView {
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let mut seen_live = seen_live
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Forget what chitchat forgot, so the set stays as small as its state.
    seen_live.retain(|id| chitchat.node_state(id).is_some());
    let mut view = MembershipView::default();
    for id in &live {
        seen_live.insert((*id).clone());
        view.live.push(member(id, chitchat.node_state(id), self_id));
    }
    let was_live = |id: &&ChitchatId| !live.contains(id) && seen_live.contains(*id);
    for id in chitchat.dead_nodes().filter(was_live) {
        let member = member(id, chitchat.node_state(id), self_id);
        if member.health() == Some(Health::Draining) {
            view.left.push(member);
        } else {
            view.dead.push(member);
        }
    }
    for list in [&mut view.live, &mut view.dead, &mut view.left] {
        list.sort_by(|a, b| (&a.node_id, a.generation).cmp(&(&b.node_id, b.generation)));
    }
    view
}
