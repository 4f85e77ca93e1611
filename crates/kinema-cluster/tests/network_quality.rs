//! A node's network-quality summary gossiped to its peers: published each
//! round from the source the node was configured with, read back by every
//! peer through `Cluster::network_quality`, and an over-long one published
//! empty rather than at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kinema_cluster::{
    Cluster, ClusterConfig, ClusterKey, ClusterKeys, FiguresSource, NetworkQualitySource,
    NodeFigures, Role,
};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(30);

fn config(name: &str, seeds: &[std::net::SocketAddr]) -> ClusterConfig {
    let keys = ClusterKeys::new(ClusterKey::new(1, vec![9; 32]).unwrap(), None).unwrap();
    let mut config = ClusterConfig::new(
        name,
        "127.0.0.1:0".parse().unwrap(),
        keys,
        Role::Edge,
        format!("http://{name}.test:8080"),
    );
    config.seeds = seeds.iter().map(ToString::to_string).collect();
    config.gossip_interval = Duration::from_millis(100);
    config
}

async fn start(config: ClusterConfig) -> (Cluster, watch::Sender<NodeFigures>) {
    let (figures, receiver) = watch::channel(NodeFigures::default());
    let cluster = Cluster::start(config, FiguresSource::Watch(receiver))
        .await
        .unwrap();
    (cluster, figures)
}

/// Polls until `node_id`'s summary as `reader` sees it is `expected`.
async fn wait_for_summary(reader: &Cluster, node_id: &str, expected: Option<&str>) {
    let started = Instant::now();
    let peers = reader.network_quality();
    while peers.get(node_id).as_deref() != expected {
        assert!(
            started.elapsed() < DEADLINE,
            "waited {DEADLINE:?} for {node_id}'s summary to be {expected:?}, it is {:?}",
            peers.get(node_id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_summary_reaches_peers_and_follows_changes() {
    let summary = Arc::new(Mutex::new("+203.0.113.0/24,48100,12".to_string()));
    let mut measured = config("measured", &[]);
    let read = summary.clone();
    measured.network_quality = Some(NetworkQualitySource(Arc::new(move || {
        read.lock().unwrap().clone()
    })));
    let (measured, _figures) = start(measured).await;
    let (peer, _peer_figures) = start(config("peer", &[measured.gossip_addr()])).await;
    wait_for_summary(&peer, "measured", Some("+203.0.113.0/24,48100,12")).await;
    // A node without a source publishes none.
    assert_eq!(measured.network_quality().get("peer"), None);
    *summary.lock().unwrap() = "-198.51.100.0/24,800,150".into();
    wait_for_summary(&peer, "measured", Some("-198.51.100.0/24,800,150")).await;
    // Over the bound: published empty, which reads as unmeasured.
    *summary.lock().unwrap() = "x".repeat(401);
    wait_for_summary(&peer, "measured", None).await;
}
