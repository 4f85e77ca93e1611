//! The placement order itself comes from `kinema-placement` (tested there);
//! these tests take it from `Placement::order` and check the rules steering
//! adds on top: who is left out, who is demoted, what comes last, and why.

use std::net::SocketAddr;

use kinema_cluster::{MalformedState, NodeFigures, NodeInfo};

use super::*;

const VIDEO: &str = "clip";

pub(crate) fn node(id: &str, role: Role, status: NodeStatus, load: f64, sessions: u64) -> NodeView {
    let number: u8 = id.bytes().last().unwrap() - b'0';
    NodeView {
        node_id: id.into(),
        role,
        base_url: BaseUrl::new(&format!("http://10.0.0.{number}:8080")).unwrap(),
        status,
        load,
        sustained_load: load,
        sessions,
        capacity_bps: 1_000_000_000,
        egress_bps: 0,
    }
}

pub(crate) fn edge(id: &str) -> NodeView {
    node(id, Role::Edge, NodeStatus::Ok, 0.1, 0)
}

/// The three edges `edge-1`..`edge-3` in the video's placement order, as
/// `kinema-placement` ranks them.
pub(crate) fn placement_order(video: &str) -> Vec<String> {
    let nodes = (1..=3)
        .map(|i| Node::new(NodeId::new(format!("edge-{i}")).unwrap(), 1_000_000_000, 0).unwrap())
        .collect();
    let cluster = Cluster::new(nodes).unwrap();
    Placement::default()
        .order(&VideoId::new(video).unwrap(), &cluster)
        .iter()
        .map(|n| n.id().as_str().to_owned())
        .collect()
}

fn snapshot_with(change: impl Fn(&mut NodeView)) -> Snapshot {
    let mut nodes: Vec<NodeView> = (1..=3).map(|i| edge(&format!("edge-{i}"))).collect();
    nodes.push(node("origin-9", Role::Origin, NodeStatus::Ok, 0.5, 40));
    for node in &mut nodes {
        change(node);
    }
    Snapshot::new(nodes)
}

fn ids(ranking: &Ranking) -> Vec<&str> {
    ranking
        .pathways
        .iter()
        .map(|p| p.node_id.as_str())
        .collect()
}

fn rank(snapshot: &Snapshot) -> Ranking {
    RankConfig::default().rank(&VideoId::new(VIDEO).unwrap(), snapshot, 0.0, SessionId(1))
}

#[test]
fn healthy_edges_come_in_placement_order_then_the_origin() {
    let order = placement_order(VIDEO);
    let ranking = rank(&snapshot_with(|_| {}));
    assert_eq!(ids(&ranking), [&order[0], &order[1], &order[2], "origin-9"]);
    assert_eq!(ranking.reason, Reason::Placement);
    assert_eq!(ranking.ideal_head, Some(PathwayId::of_node(&order[0])));
    assert_eq!(ranking.pathways[3].role, Role::Origin);
    assert_eq!(ranking.pathways[0].base_url, edge(&order[0]).base_url);
}

#[test]
fn a_dead_head_is_left_out_and_the_reason_is_health() {
    let order = placement_order(VIDEO);
    let head = order[0].clone();
    let ranking = rank(&snapshot_with(|n| {
        if n.node_id == head {
            n.status = NodeStatus::Dead;
        }
    }));
    assert_eq!(ids(&ranking), [&order[1], &order[2], "origin-9"]);
    assert_eq!(ranking.reason, Reason::Health);
    assert_eq!(ranking.ideal_head, Some(PathwayId::of_node(&head)));
}

#[test]
fn draining_edges_are_left_out() {
    let order = placement_order(VIDEO);
    let second = order[1].clone();
    let ranking = rank(&snapshot_with(|n| {
        if n.node_id == second {
            n.status = NodeStatus::Draining;
        }
    }));
    assert_eq!(ids(&ranking), [&order[0], &order[2], "origin-9"]);
    assert_eq!(ranking.reason, Reason::Placement);
}

#[test]
fn an_overloaded_head_is_demoted_not_removed_and_the_reason_is_load() {
    let order = placement_order(VIDEO);
    let head = order[0].clone();
    let ranking = rank(&snapshot_with(|n| {
        if n.node_id == head {
            n.load = 0.95;
        }
    }));
    assert_eq!(ids(&ranking), [&order[1], &order[2], &order[0], "origin-9"]);
    assert_eq!(ranking.reason, Reason::Load);
    // At the threshold exactly is not above it.
    let ranking = rank(&snapshot_with(|n| {
        if n.node_id == head {
            n.load = 0.9;
        }
    }));
    assert_eq!(ranking.reason, Reason::Placement);
}

#[test]
fn a_head_at_its_load_bound_is_demoted_behind_roomy_edges() {
    let order = placement_order(VIDEO);
    let head = order[0].clone();
    // Sessions 10 + 0 + 0: L + 1 = 11, bound ⌈1.25 × 11 / 3⌉ = 5 < 10.
    let ranking = rank(&snapshot_with(|n| {
        if n.node_id == head {
            n.sessions = 10;
        }
    }));
    assert_eq!(ids(&ranking), [&order[1], &order[2], &order[0], "origin-9"]);
    assert_eq!(ranking.reason, Reason::Load);
}

#[test]
fn full_edges_come_before_overloaded_ones() {
    let order = placement_order(VIDEO);
    let (head, second) = (order[0].clone(), order[1].clone());
    let ranking = rank(&snapshot_with(|n| {
        if n.node_id == head {
            n.load = 0.99;
        }
        if n.node_id == second {
            n.sessions = 10;
        }
    }));
    assert_eq!(ids(&ranking), [&order[2], &order[1], &order[0], "origin-9"]);
    assert_eq!(ranking.reason, Reason::Load);
}

#[test]
fn with_no_edge_able_to_serve_the_origin_serves_alone() {
    let ranking = rank(&snapshot_with(|n| {
        if n.role == Role::Edge {
            n.status = if n.node_id == "edge-1" {
                NodeStatus::Draining
            } else {
                NodeStatus::Dead
            };
        }
    }));
    assert_eq!(ids(&ranking), ["origin-9"]);
    assert_eq!(ranking.reason, Reason::OriginOnly);
    assert!(ranking.edges_known);
    let only_origin = Snapshot::new(vec![node("origin-9", Role::Origin, NodeStatus::Ok, 0.0, 0)]);
    let ranking = rank(&only_origin);
    assert_eq!(ids(&ranking), ["origin-9"]);
    assert!(!ranking.edges_known);
    assert!(rank(&Snapshot::default()).pathways.is_empty());
}

#[test]
fn a_hot_video_spreads_new_sessions_over_its_replicas() {
    let order = placement_order(VIDEO);
    let snapshot = snapshot_with(|_| {});
    let video = VideoId::new(VIDEO).unwrap();
    let mut firsts = std::collections::BTreeSet::new();
    for session in 0..64 {
        // Ten starts a second at one per node per second: every edge serves.
        let ranking = RankConfig::default().rank(&video, &snapshot, 10.0, SessionId(session));
        let first = ranking.pathways[0].node_id.clone();
        let expected = if first == order[0] {
            Reason::Placement
        } else {
            Reason::Replica
        };
        assert_eq!(ranking.reason, expected);
        assert_eq!(ranking.pathways.len(), 4);
        assert_eq!(ranking.pathways[3].node_id, "origin-9");
        firsts.insert(first);
    }
    assert_eq!(firsts.len(), 3, "{firsts:?}");
    // A cold video keeps every session on its head.
    for session in 0..16 {
        let ranking = RankConfig::default().rank(&video, &snapshot, 0.0, SessionId(session));
        assert_eq!(ranking.pathways[0].node_id, order[0]);
    }
}

#[test]
fn a_new_session_of_a_hot_video_goes_to_its_least_loaded_node() {
    let video = VideoId::new(VIDEO).unwrap();
    // Sessions for the same capacity: edge-2 has the fewest.
    let snapshot = snapshot_with(|node| {
        node.sessions = match node.node_id.as_str() {
            "edge-1" => 12,
            "edge-2" => 3,
            "edge-3" => 9,
            _ => node.sessions,
        }
    });
    for session in 0..16 {
        let ranking = RankConfig::default().rank(&video, &snapshot, 10.0, SessionId(session));
        assert_eq!(ranking.pathways[0].node_id, "edge-2", "session {session}");
    }
    // Load is counted for capacity: edge-3 with twice the capacity of the
    // others and 9 sessions carries less than edge-2's 6 for one.
    let snapshot = snapshot_with(|node| {
        (node.sessions, node.capacity_bps) = match node.node_id.as_str() {
            "edge-1" => (12, 1_000_000_000),
            "edge-2" => (6, 1_000_000_000),
            "edge-3" => (9, 2_000_000_000),
            _ => (node.sessions, node.capacity_bps),
        }
    });
    let ranking = RankConfig::default().rank(&video, &snapshot, 10.0, SessionId(1));
    assert_eq!(ranking.pathways[0].node_id, "edge-3");
}

#[test]
fn rankings_are_bounded_by_the_configured_counts() {
    let config = RankConfig::new(Placement::default(), 0.9, 2, 0).unwrap();
    let ranking = config.rank(
        &VideoId::new(VIDEO).unwrap(),
        &snapshot_with(|_| {}),
        0.0,
        SessionId(1),
    );
    assert_eq!(ranking.pathways.len(), 2);
    assert!(ranking.pathways.iter().all(|p| p.role == Role::Edge));
    assert!(RankConfig::new(Placement::default(), 0.0, 2, 0).is_err());
    assert!(RankConfig::new(Placement::default(), 1.5, 2, 0).is_err());
    assert!(RankConfig::new(Placement::default(), f64::NAN, 2, 0).is_err());
    assert!(RankConfig::new(Placement::default(), 0.9, 0, 1).is_err());
    assert!(RankConfig::new(Placement::default(), 0.9, 16, 1).is_err());
}

fn member(id: &str, state: Result<NodeInfo, MalformedState>) -> Member {
    let gossip_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    Member {
        node_id: id.into(),
        generation: 1,
        gossip_addr,
        is_self: false,
        state,
    }
}

fn info(url: &str, health: Health) -> NodeInfo {
    NodeInfo {
        role: Role::Edge,
        public_url: url.into(),
        region: "here".into(),
        capacity_bps: 5_000,
        figures: NodeFigures {
            egress_bps: 1,
            sessions: 7,
            load: 0.25,
        },
        health,
    }
}

#[test]
fn a_snapshot_reads_live_and_dead_members_and_skips_unusable_ones() {
    let view = MembershipView {
        live: vec![
            member("edge-1", Ok(info("http://10.0.0.1:8080/", Health::Ok))),
            member("edge-2", Ok(info("http://10.0.0.2:8080", Health::Draining))),
            member("edge-3", Err(MalformedState("load is missing".into()))),
            member("edge-4", Ok(info("http://10.0.0.4:8080/?x", Health::Ok))),
        ],
        dead: vec![member(
            "edge-5",
            Ok(info("http://10.0.0.5:8080", Health::Ok)),
        )],
        left: vec![member(
            "edge-6",
            Ok(info("http://10.0.0.6:8080", Health::Draining)),
        )],
    };
    let snapshot = Snapshot::from_view(&view);
    let seen: Vec<(&str, NodeStatus)> = snapshot
        .nodes()
        .iter()
        .map(|n| (n.node_id.as_str(), n.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("edge-1", NodeStatus::Ok),
            ("edge-2", NodeStatus::Draining),
            ("edge-5", NodeStatus::Dead),
        ]
    );
    let first = &snapshot.nodes()[0];
    assert_eq!(first.base_url.as_str(), "http://10.0.0.1:8080");
    assert_eq!(
        (first.sessions, first.capacity_bps, first.load),
        (7, 5_000, 0.25)
    );
    assert_eq!(
        snapshot
            .by_pathway(&PathwayId::of_node("edge-5"))
            .map(|n| n.node_id.as_str()),
        Some("edge-5")
    );
}

#[test]
fn a_membership_larger_than_placement_takes_is_cut_rather_than_fatal() {
    let nodes: Vec<NodeView> = (0..1100)
        .map(|i| NodeView {
            node_id: format!("edge-{i:04}"),
            ..edge("edge-1")
        })
        .collect();
    let snapshot = Snapshot::new(nodes);
    assert_eq!(snapshot.nodes().len(), 1024);
    assert_eq!(snapshot.nodes()[1023].node_id, "edge-1023");
    let ranking = rank(&snapshot);
    assert_eq!(ranking.pathways.len(), 4);
    assert_eq!(ranking.reason, Reason::Placement);
}

#[test]
fn duplicate_node_ids_and_ids_placement_refuses_are_dropped() {
    let snapshot = Snapshot::new(vec![
        edge("edge-1"),
        NodeView {
            load: 0.7,
            ..edge("edge-1")
        },
        NodeView {
            node_id: "edge 2".into(),
            ..edge("edge-2")
        },
    ]);
    assert_eq!(snapshot.nodes().len(), 1);
}

#[test]
fn sessions_placed_lately_count_towards_the_bound() {
    let order = placement_order(VIDEO);
    let snapshot = snapshot_with(|_| {});
    assert_eq!(ids(&rank(&snapshot))[0], order[0]);
    let head = order[0].clone();
    // Five sessions placed on the head and not yet published: L = 5, so
    // its bound is ⌈1.25 × 6 / 3⌉ = 3 and it is full.
    let added = snapshot.with_sessions_added(|id| if id == head { 5 } else { 0 });
    let sessions: Vec<(&str, u64)> = added
        .nodes()
        .iter()
        .map(|node| (node.node_id.as_str(), node.sessions))
        .collect();
    assert!(sessions.contains(&(head.as_str(), 5)), "{sessions:?}");
    assert!(sessions.contains(&("origin-9", 40)), "{sessions:?}");
    let ranking = rank(&added);
    assert_eq!(ids(&ranking)[0], order[1]);
    assert_eq!(ranking.reason, Reason::Load);
    // The pathways still find their nodes, and the snapshot it came from
    // is unchanged.
    let head_pathway = PathwayId::of_node(&head);
    assert_eq!(added.by_pathway(&head_pathway).unwrap().sessions, 5);
    assert_eq!(snapshot.by_pathway(&head_pathway).unwrap().sessions, 0);
}
