//! `[cluster]`: `kinema serve` and `kinema edge` joining the gossip
//! membership of origins and edges (`kinema_cluster`), when configured.
//!
//! Without a `[cluster]` section and without `--cluster-*` flags or
//! `KINEMA_CLUSTER_*` variables nothing here runs: a single node stays a
//! single node. With them, the node joins after its listener is bound,
//! publishes its figures every two seconds, logs who joins, drains, leaves or
//! dies, announces itself draining as soon as it is asked to stop, and leaves
//! after its responses in flight are finished.
//!
//! The figures are computed every second from counters the server hands
//! over ([`figures`]). An origin in a cluster also steers: the wiring gives
//! it a [`SteeringService`] over this node's membership view
//! ([`ClusterNode::steering`]) and the cluster's metrics
//! ([`ClusterNode::register_metrics`]). An edge gets the same steering
//! service, and fills misses from each video's placement parent over the
//! membership view ([`ClusterNode::node_id`], [`ClusterNode::subscribe`]),
//! rendering the membership counters ([`ClusterNode::counters`]) in its own
//! hand-written `/metrics`.
//!
//! With network measuring on (`[netq]`, [`crate::netq`]) the node also
//! gossips its table's summary each round, and its steering orders a
//! video's nodes of similar load by what they measured for the viewer's
//! prefix (this node's table and its peers' summaries).

mod figures;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use kinema_cluster::{
    Cluster, ClusterConfig, ClusterKeys, FiguresSource, MembershipView, NodeFigures, Role,
};
use kinema_core::bitrate::Bitrate;
use kinema_steering::{NetworkSource, Steering, SteeringConfig, SteeringService};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use figures::{FiguresFrom, Readings};

use crate::config::ConfigFile;

/// The `[cluster]` settings that have flags; a flag or variable overrides
/// the file.
#[derive(Debug, Default, Args, Serialize)]
pub struct ClusterArgs {
    /// Join a cluster as this node id (unique, at most 64 characters); every --cluster-* setting can also be in the [cluster] section of kinema.toml [default: no cluster]
    #[arg(
        long = "cluster-node-id",
        env = "KINEMA_CLUSTER_NODE_ID",
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,

    /// UDP address the cluster's gossip listens on [required in a cluster]
    #[arg(
        long = "cluster-gossip-listen",
        env = "KINEMA_CLUSTER_GOSSIP_LISTEN",
        value_name = "ADDR"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    gossip_listen: Option<SocketAddr>,

    /// Gossip addresses of nodes to join through, comma-separated [default: none]
    #[arg(
        long = "cluster-seeds",
        env = "KINEMA_CLUSTER_SEEDS",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    seeds: Option<Vec<String>>,

    /// File of the cluster keys (`ID HEX` a line, current first), readable by its owner only [required in a cluster]
    #[arg(
        long = "cluster-key-file",
        env = "KINEMA_CLUSTER_KEY_FILE",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,

    /// URL viewers and other nodes reach this server at [required in a cluster]
    #[arg(
        long = "cluster-public-url",
        env = "KINEMA_CLUSTER_PUBLIC_URL",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    public_url: Option<String>,

    /// Region or site of this node [default: default]
    #[arg(
        long = "cluster-region",
        env = "KINEMA_CLUSTER_REGION",
        value_name = "NAME"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,

    /// Egress this node can sustain, e.g. 10gbit [default: 1gbit]
    #[arg(
        long = "cluster-capacity",
        env = "KINEMA_CLUSTER_CAPACITY",
        value_name = "BITRATE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<String>,

    /// The edges' purge token (their --purge-token), which the origin sends a purge at POST /api/purge on to every edge with; origin only, never logged [default: none: a purge at the origin reaches no edge]
    #[arg(
        id = "cluster_purge_token",
        long = "cluster-purge-token",
        env = "KINEMA_CLUSTER_PURGE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    purge_token: Option<String>,

    /// PEM file of CA certificates the origin trusts, beside the public roots, for https:// edges (purges sent on, their cache figures); origin only (an edge's is --origin-ca) [default: public roots only]
    #[arg(
        long = "cluster-edge-ca",
        env = "KINEMA_CLUSTER_EDGE_CA",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_ca: Option<PathBuf>,
}

/// The `[cluster]` section, resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    node_id: String,
    gossip_listen: SocketAddr,
    /// Where peers reach the gossip socket, when it listens on a wildcard.
    #[serde(default)]
    gossip_advertise: Option<SocketAddr>,
    #[serde(default)]
    seeds: Vec<String>,
    key_file: PathBuf,
    public_url: String,
    #[serde(default = "default_region")]
    region: String,
    #[serde(default = "default_capacity")]
    capacity: Bitrate,
    /// Between gossip rounds, 10ms to 230ms.
    #[serde(default = "default_gossip_interval")]
    gossip_interval: String,
    /// The origin's: the edges' purge token, never logged.
    #[serde(default)]
    purge_token: Option<Hidden>,
    /// The origin's: CA certificates trusted for `https://` edges.
    #[serde(default)]
    edge_ca: Option<PathBuf>,
}

/// A secret setting whose `Debug` shows only that it is set.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Hidden(String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// How an origin reaches the edges of its cluster: `[cluster]`
/// `purge_token` and `edge_ca`.
#[derive(Debug, Clone)]
pub struct EdgeReach {
    pub purge_token: Option<Hidden>,
    pub edge_ca: Option<PathBuf>,
}

impl Hidden {
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl ClusterSettings {
    /// Takes the origin's settings for reaching edges out of these.
    pub fn take_edge_reach(&mut self) -> EdgeReach {
        EdgeReach {
            purge_token: self.purge_token.take(),
            edge_ca: self.edge_ca.take(),
        }
    }
}

fn default_region() -> String {
    "default".into()
}

fn default_capacity() -> Bitrate {
    Bitrate(1_000_000_000)
}

fn default_gossip_interval() -> String {
    "200ms".into()
}

/// The cluster settings if any were given, else `None` (no cluster).
pub fn resolve(config_file: &ConfigFile, args: &ClusterArgs) -> Result<Option<ClusterSettings>> {
    let section: toml::Table = config_file.resolve("cluster", args)?;
    if section.is_empty() {
        return Ok(None);
    }
    config_file.deserialize("cluster", section).map(Some)
}

/// A node in the cluster, and its tasks that feed it figures and log what
/// it sees (both end with the cluster).
#[derive(Debug)]
pub struct ClusterNode {
    cluster: Cluster,
    keys: ClusterKeys,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    network: Option<crate::netq::NetworkPart>,
}

impl ClusterNode {
    /// Steering over this node's membership view, signing session state
    /// with the cluster's keys, at the time `clock` reads.
    pub fn steering(&self, clock: kinema_http::Clock) -> Arc<SteeringService> {
        let steering = Steering::new(SteeringConfig::default(), self.keys.clone());
        let service = SteeringService::new(steering, self.cluster.subscribe(), clock);
        Arc::new(match &self.network {
            Some(network) => service.with_network(NetworkSource {
                local: network.measuring.quality().clone(),
                peers: self.cluster.network_quality(),
                choice: network.choice,
            }),
            None => service,
        })
    }

    /// Registers the membership counters (`cluster_live_members`, …) and
    /// every member's published figures in a server's `/metrics` registry.
    pub fn register_metrics(&self) -> impl FnOnce(&mut Registry) + Send + 'static {
        let counters = self.cluster.counters();
        let view = self.cluster.subscribe();
        move |registry: &mut Registry| {
            kinema_cluster::register(registry, counters);
            registry
                .sub_registry_with_prefix("cluster")
                .register_collector(Box::new(figures::MemberFigures(view)));
        }
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        self.cluster.node_id()
    }

    /// The membership view, signalled when who is live or usable changes.
    pub fn subscribe(&self) -> watch::Receiver<MembershipView> {
        self.cluster.subscribe()
    }

    /// Each member's region and which one this node is, read from the
    /// membership view on each call, for the origin's `GET /api/cluster`.
    pub fn member_places(&self) -> kinema_origin::MemberPlaces {
        let view = self.cluster.subscribe();
        kinema_origin::MemberPlaces::new(move || {
            let view = view.borrow();
            let members = view.live.iter().chain(&view.dead);
            members
                .filter_map(|member| {
                    let info = member.state.as_ref().ok()?;
                    Some(kinema_origin::MemberPlace {
                        node_id: member.node_id.to_string(),
                        region: info.region.clone(),
                        is_self: member.is_self,
                    })
                })
                .collect()
        })
    }

    /// The membership counters, for a server that writes its `/metrics` by
    /// hand (the edge).
    pub fn counters(&self) -> Arc<kinema_cluster::GossipCounters> {
        self.cluster.counters()
    }
}

/// Joins the cluster as a `role` node whose figures come `from` there,
/// when `settings` say so; with `network`, gossiping its summary and
/// steering by it.
pub async fn start_with(
    settings: Option<ClusterSettings>,
    role: Role,
    from: FiguresFrom,
    network: Option<&crate::netq::NetworkPart>,
) -> Result<Option<ClusterNode>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    if role == Role::Edge && (settings.purge_token.is_some() || settings.edge_ca.is_some()) {
        bail!(
            "[cluster] purge_token and edge_ca are the origin's settings; an edge's purge token is \
             --purge-token ([edge] purge_token) and the CA it trusts --origin-ca"
        );
    }
    let keys = read_keys(&settings.key_file)?;
    let interval = humantime::parse_duration(&settings.gossip_interval).with_context(|| {
        format!(
            "[cluster] gossip_interval {:?} is not a duration",
            settings.gossip_interval
        )
    })?;
    let mut config = ClusterConfig::new(
        settings.node_id,
        settings.gossip_listen,
        keys.clone(),
        role,
        settings.public_url,
    );
    config.gossip_advertise = settings.gossip_advertise;
    config.seeds = settings.seeds;
    config.region = settings.region;
    config.capacity_bps = settings.capacity.0;
    config.gossip_interval = interval;
    config.network_quality = network.map(crate::netq::summary_source);
    let (figures, receiver) = watch::channel(NodeFigures::default());
    let cluster = Cluster::start(config, FiguresSource::Watch(receiver))
        .await
        .context("cannot join the cluster")?;
    let tasks = vec![
        tokio::spawn(figures::publish(from, figures)),
        tokio::spawn(log_changes(cluster.subscribe(), cluster.network_quality())),
    ];
    Ok(Some(ClusterNode {
        cluster,
        keys,
        tasks,
        network: network.cloned(),
    }))
}

/// Resolves with `shutdown`, after telling the cluster this node drains.
pub async fn drain_on(shutdown: impl Future<Output = ()>, node: Option<&ClusterNode>) {
    shutdown.await;
    if let Some(node) = node {
        node.cluster.drain().await;
    }
}

/// Leaves the cluster cleanly, if this node is in one.
pub async fn leave(node: Option<ClusterNode>) {
    if let Some(ClusterNode { cluster, tasks, .. }) = node {
        for task in tasks {
            task.abort();
        }
        if let Err(error) = cluster.leave().await {
            tracing::warn!(error = %error, "leaving the cluster failed");
        }
    }
}

/// The key file must exist, be small, and be readable by its owner only.
fn read_keys(path: &std::path::Path) -> Result<ClusterKeys> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read the cluster key file {}", path.display()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        bail!(
            "the cluster key file {} is readable by others; chmod 600 it",
            path.display()
        );
    }
    if metadata.len() > 4096 {
        bail!(
            "the cluster key file {} is over 4 KiB; it holds two keys at most",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cluster key file {}", path.display()))?;
    ClusterKeys::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Logs each member that joins, changes health, leaves or dies.
async fn log_changes(
    mut views: watch::Receiver<MembershipView>,
    peers: kinema_cluster::PeerNetworkQuality,
) {
    let mut before = MembershipView::default();
    // The view is not signalled for figures alone: they are read each second.
    let mut tick = tokio::time::interval(figures::FIGURES_EVERY);
    let mut figures_seen = HashMap::new();
    let mut summaries_seen = HashMap::new();
    loop {
        tokio::select! {
            changed = views.changed() => if changed.is_err() { break },
            _ = tick.tick() => {
                log_figures(&views.borrow(), &mut figures_seen);
                log_network_quality(&views.borrow(), &peers, &mut summaries_seen);
                continue;
            }
        }
        let now = views.borrow_and_update().clone();
        for member in &now.live {
            let was = before.live.iter().find(|m| m.node_id == member.node_id);
            match (&member.state, was.map(|m| m.health())) {
                (_, _) if member.is_self => {}
                (Ok(info), None) => tracing::info!(
                    node = %member.node_id, role = info.role.as_str(), url = %info.public_url,
                    region = %info.region, health = info.health.as_str(), "cluster member joined"
                ),
                (Err(error), None) => tracing::warn!(
                    node = %member.node_id, %error, "cluster member joined with unusable state"
                ),
                (Ok(info), Some(health)) if health != Some(info.health) => tracing::info!(
                    node = %member.node_id, health = info.health.as_str(), "cluster member health changed"
                ),
                _ => {}
            }
        }
        for member in &now.left {
            if !before.left.iter().any(|m| m.node_id == member.node_id) {
                tracing::info!(node = %member.node_id, "cluster member left");
            }
        }
        for member in &now.dead {
            if !before.dead.iter().any(|m| m.node_id == member.node_id) {
                tracing::warn!(node = %member.node_id, "cluster member dead");
            }
        }
        before = now;
    }
}

/// Logs, at debug, the network-quality summary of each other live member
/// that changed since `seen` (what steering reads of its peers).
fn log_network_quality(
    view: &MembershipView,
    peers: &kinema_cluster::PeerNetworkQuality,
    seen: &mut HashMap<Arc<str>, Arc<str>>,
) {
    seen.retain(|node, _| view.live.iter().any(|member| member.node_id == *node));
    for member in view.live.iter().filter(|member| !member.is_self) {
        let Some(summary) = peers.get(&member.node_id) else {
            continue;
        };
        if seen.get(&member.node_id) != Some(&summary) {
            tracing::debug!(
                node = %member.node_id, summary = %summary, "cluster member network quality"
            );
            seen.insert(member.node_id.clone(), summary);
        }
    }
}

/// Logs, at debug (they change every second on a busy node), the figures
/// of each other live member that changed since `seen`.
fn log_figures(view: &MembershipView, seen: &mut HashMap<Arc<str>, NodeFigures>) {
    seen.retain(|node, _| view.live.iter().any(|member| member.node_id == *node));
    for member in view.live.iter().filter(|member| !member.is_self) {
        let Ok(info) = &member.state else { continue };
        if seen.get(&member.node_id) != Some(&info.figures) {
            seen.insert(member.node_id.clone(), info.figures);
            let figures = info.figures;
            tracing::debug!(
                node = %member.node_id, egress_bps = figures.egress_bps,
                sessions = figures.sessions, load = figures.load, "cluster member figures"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_settings_means_no_cluster() {
        let resolved = resolve(&ConfigFile::default(), &ClusterArgs::default()).unwrap();
        assert!(resolved.is_none());
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.keys");
        std::fs::write(&path, format!("1 {}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_keys(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_keys(&path).unwrap().current().id(), 1);
    }
}
