//! Unit tests of the decisions over a small, known cluster.
//!
//! The order of "big-buck-bunny" over five equal nodes edge-a … edge-e is
//! edge-d, edge-a, edge-b, edge-c, edge-e (computed independently in Python,
//! see `rendezvous`'s tests); the expectations below follow from it by hand.

use super::*;

fn cluster(loads: &[(&str, u64)]) -> Cluster {
    let nodes = loads
        .iter()
        .map(|(id, load)| Node::new(NodeId::new(*id).unwrap(), 1, *load).unwrap())
        .collect();
    Cluster::new(nodes).unwrap()
}

fn ids(nodes: &[&Node]) -> Vec<String> {
    nodes.iter().map(|node| node.id().to_string()).collect()
}

fn video() -> VideoId {
    VideoId::new("big-buck-bunny").unwrap()
}

fn idle() -> Cluster {
    cluster(&[
        ("edge-a", 0),
        ("edge-b", 0),
        ("edge-c", 0),
        ("edge-d", 0),
        ("edge-e", 0),
    ])
}

#[test]
fn a_cold_video_is_served_by_the_head_of_its_order() {
    let placement = Placement::default();
    let cluster = idle();
    let choice = placement.choose(&video(), &cluster, 0.0);
    assert_eq!(ids(&choice.serve), ["edge-d"]);
    assert_eq!(choice.replicas, 1);
    assert!(choice.full.is_empty());
}

#[test]
fn a_hot_video_is_served_by_the_first_k_of_its_order() {
    let placement = Placement::default();
    let cluster = idle();
    // k = ⌈2.5 / 1⌉ = 3.
    let choice = placement.choose(&video(), &cluster, 2.5);
    assert_eq!(ids(&choice.serve), ["edge-d", "edge-a", "edge-b"]);
    assert_eq!(choice.replicas, 3);
    // k is capped by the node count.
    let choice = placement.choose(&video(), &cluster, 1e9);
    assert_eq!(choice.replicas, 5);
    assert_eq!(
        ids(&choice.serve),
        ["edge-d", "edge-a", "edge-b", "edge-c", "edge-e"]
    );
}

#[test]
fn a_bad_rate_counts_as_a_cold_video() {
    let placement = Placement::default();
    let cluster = idle();
    for rate in [-3.0, f64::NAN, f64::NEG_INFINITY] {
        let choice = placement.choose(&video(), &cluster, rate);
        assert_eq!(ids(&choice.serve), ["edge-d"], "rate {rate}");
    }
}

// edge-d carries 5, the others 0: L + 1 = 6, average 1.2, bound ⌈1.5⌉ = 2.
// edge-d is full, so its overflow goes to the next node of the order.
#[test]
fn overflow_walks_to_the_next_node_of_the_order() {
    let placement = Placement::default();
    let cluster = cluster(&[
        ("edge-a", 0),
        ("edge-b", 0),
        ("edge-c", 0),
        ("edge-d", 5),
        ("edge-e", 0),
    ]);
    let head = cluster.get(&NodeId::new("edge-d").unwrap()).unwrap();
    assert_eq!(placement.bound(head, &cluster), 2);
    let choice = placement.choose(&video(), &cluster, 0.0);
    assert_eq!(ids(&choice.serve), ["edge-a"]);
    assert_eq!(ids(&choice.full), ["edge-d"]);
    let choice = placement.choose(&video(), &cluster, 2.5);
    assert_eq!(ids(&choice.serve), ["edge-a", "edge-b", "edge-c"]);
    // Asked for all five, only four have room.
    let choice = placement.choose(&video(), &cluster, 5.0);
    assert_eq!(choice.replicas, 5);
    assert_eq!(ids(&choice.serve), ["edge-a", "edge-b", "edge-c", "edge-e"]);
    assert_eq!(ids(&choice.full), ["edge-d"]);
}

#[test]
fn every_node_but_the_head_fills_from_the_head() {
    let placement = Placement::default();
    let cluster = idle();
    let parent = |id: &str| {
        placement
            .parent(&video(), &NodeId::new(id).unwrap(), &cluster)
            .map(|node| node.id().to_string())
    };
    assert_eq!(parent("edge-d"), None);
    for id in ["edge-a", "edge-b", "edge-c", "edge-e", "edge-leaving"] {
        assert_eq!(parent(id).as_deref(), Some("edge-d"), "node {id}");
    }
    // The parent ignores loads: a full head still holds the object.
    let loaded = self::cluster(&[
        ("edge-a", 0),
        ("edge-b", 0),
        ("edge-c", 0),
        ("edge-d", 50),
        ("edge-e", 0),
    ]);
    let parent = placement.parent(&video(), &NodeId::new("edge-e").unwrap(), &loaded);
    assert_eq!(parent.map(|node| node.id().as_str()), Some("edge-d"));
}

#[test]
fn a_lone_node_fills_from_the_origin() {
    let placement = Placement::default();
    let cluster = cluster(&[("edge-a", 3)]);
    let me = NodeId::new("edge-a").unwrap();
    assert_eq!(placement.parent(&video(), &me, &cluster), None);
    let choice = placement.choose(&video(), &cluster, 100.0);
    assert_eq!(ids(&choice.serve), ["edge-a"]);
}

#[test]
fn config_refuses_a_rate_that_is_not_a_positive_number() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                Config::new(BalanceFactor::default(), rate),
                Err(PlacementError::PerNodeRate(_))
            ),
            "rate {rate}"
        );
    }
    let config = Config::new(BalanceFactor::from_thousandths(1100).unwrap(), 0.5).unwrap();
    assert_eq!(config.balance().thousandths(), 1100);
    assert_eq!(config.per_node_rate(), 0.5);
}
