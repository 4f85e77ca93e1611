//! The network-aware step of a decision: among the nodes placement chose
//! to serve a video and whose loads are similar, the one that measured the
//! best throughput for the viewer's client prefix goes first
//! (`kinema_netq::order_by_measurement`), except for a small share of
//! sessions, picked by a hash of the session id, that go to the runner-up
//! so its estimate stays fresh.
//!
//! What each node measured comes from the caller ([`Measured::figures`]):
//! the service reads this node's own table and the summaries peers gossip.
//! Pure: no clock, no I/O; the same inputs always give the same order.
//!
//! What it deliberately is not: a reason to leave the video's nodes. Only
//! the first [`Ranking::serving`](crate::rank::Ranking::serving) pathways
//! (placement's choice, none overloaded) are reordered, so a cold video
//! stays on its one cache whatever was measured, and measurement never
//! overrides stickiness, load or health: the caller applies it to new
//! sessions whose first pathway is the placement head or a replica.

use kinema_netq::{Candidate, MeasuredReason, PrefixFigures, order_by_measurement, similar_load};

use crate::pathway::Pathway;
use crate::rank::Snapshot;
use crate::session::SessionId;

/// How measurement takes part in decisions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkChoice {
    /// Share of new sessions (0 to 1) sent to the second-best node.
    pub exploration_share: f64,
    /// Nodes whose load (0 to 1) is within this of the least loaded of the
    /// video's nodes count as of similar load.
    pub load_tolerance: f64,
}

/// 5% of sessions explore; loads within 0.1 of each other are similar.
impl Default for NetworkChoice {
    fn default() -> Self {
        Self {
            exploration_share: kinema_netq::DEFAULT_EXPLORATION_SHARE,
            load_tolerance: 0.1,
        }
    }
}

/// What is known of one viewer's prefix, for one decision.
pub struct Measured<'a> {
    /// What the node of this id measured for the viewer's prefix, if it
    /// did.
    pub figures: &'a (dyn Fn(&str) -> Option<PrefixFigures> + 'a),
    pub choice: NetworkChoice,
}

impl std::fmt::Debug for Measured<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured")
            .field("choice", &self.choice)
            .finish_non_exhaustive()
    }
}

/// Reorders the first `serving` of `pathways` (the video's nodes) for
/// `session`: those of similar load by what they measured (best first,
/// the unmeasured after the measured, each group in its given order), then
/// the more loaded ones, then the rest unchanged. Returns whether the
/// first pathway changed; with fewer than two nodes of similar load, or
/// fewer than two of them measured, nothing moves.
pub(crate) fn order_by_network(
    pathways: &mut Vec<Pathway>,
    serving: usize,
    snapshot: &Snapshot,
    session: SessionId,
    measured: &Measured<'_>,
) -> bool {
    let serving = serving.min(pathways.len());
    if serving < 2 {
        return false;
    }
    let loads: Vec<f64> = pathways[..serving]
        .iter()
        .map(|pathway| {
            snapshot
                .by_pathway(&pathway.id)
                .map_or(f64::NAN, |n| n.load)
        })
        .collect();
    let similar = similar_load(&loads, measured.choice.load_tolerance);
    if similar.len() < 2 {
        return false;
    }
    let candidates: Vec<Candidate<'_>> = similar
        .iter()
        .map(|&index| Candidate {
            node_id: &pathways[index].node_id,
            measured: (measured.figures)(&pathways[index].node_id),
        })
        .collect();
    let order = order_by_measurement(
        &candidates,
        &session.0.to_string(),
        measured.choice.exploration_share,
    );
    if order.reason == MeasuredReason::Unmeasured {
        return false;
    }
    let first_before = pathways[0].id.clone();
    let mut reordered: Vec<Pathway> = order
        .order
        .iter()
        .map(|&candidate| pathways[similar[candidate]].clone())
        .collect();
    reordered.extend(
        pathways
            .iter()
            .enumerate()
            .filter(|(index, _)| !similar.contains(index))
            .map(|(_, pathway)| pathway.clone()),
    );
    *pathways = reordered;
    pathways[0].id != first_before
}

#[cfg(test)]
mod tests {
    use kinema_cluster::Role;

    use super::*;
    use crate::pathway::BaseUrl;
    use crate::rank::{NodeStatus, NodeView};

    fn node(id: &str, load: f64) -> NodeView {
        NodeView {
            node_id: id.into(),
            role: Role::Edge,
            base_url: BaseUrl::new(&format!("http://{id}.test:8080")).unwrap(),
            status: NodeStatus::Ok,
            load,
            sustained_load: load,
            sessions: 0,
            capacity_bps: 1_000_000_000,
            egress_bps: 0,
        }
    }

    fn pathways(snapshot: &Snapshot, ids: &[&str]) -> Vec<Pathway> {
        ids.iter()
            .map(|id| {
                let node = snapshot.nodes().iter().find(|n| n.node_id == *id).unwrap();
                crate::rank::pathway(node)
            })
            .collect()
    }

    fn names(pathways: &[Pathway]) -> Vec<&str> {
        pathways.iter().map(|p| p.node_id.as_str()).collect()
    }

    fn kbps(throughput_kbps: u64) -> Option<PrefixFigures> {
        Some(PrefixFigures {
            throughput_kbps,
            rtt_inflation_ms: 5,
        })
    }

    /// Edges a, b, c (loads 0.30, 0.32, 0.80) and d, the first three
    /// placement's, measured: a 2,000 kbit/s, b 9,000, c 20,000, d 50,000.
    fn setting() -> (Snapshot, Vec<Pathway>) {
        let snapshot = Snapshot::new(vec![
            node("a", 0.30),
            node("b", 0.32),
            node("c", 0.80),
            node("d", 0.0),
        ]);
        let pathways = pathways(&snapshot, &["a", "b", "c", "d"]);
        (snapshot, pathways)
    }

    fn figures(node_id: &str) -> Option<PrefixFigures> {
        match node_id {
            "a" => kbps(2_000),
            "b" => kbps(9_000),
            "c" => kbps(20_000),
            "d" => kbps(50_000),
            _ => None,
        }
    }

    fn measured(exploration_share: f64) -> Measured<'static> {
        Measured {
            figures: &figures,
            choice: NetworkChoice {
                exploration_share,
                load_tolerance: 0.1,
            },
        }
    }

    #[test]
    fn the_best_measured_of_similar_load_goes_first_within_the_videos_nodes() {
        let (snapshot, mut pathways) = setting();
        let changed = order_by_network(&mut pathways, 3, &snapshot, SessionId(1), &measured(0.0));
        assert!(changed);
        // b beats a; c measured better still but is more loaded; d is not
        // one of the video's nodes, however well it measured.
        assert_eq!(names(&pathways), ["b", "a", "c", "d"]);
    }

    #[test]
    fn an_exploring_session_gets_the_runner_up() {
        let (snapshot, mut pathways) = setting();
        let changed = order_by_network(&mut pathways, 3, &snapshot, SessionId(1), &measured(1.0));
        assert!(!changed);
        assert_eq!(names(&pathways), ["a", "b", "c", "d"]);
    }

    #[test]
    fn exploration_is_the_same_for_the_same_session() {
        // About 5% of sessions (random ids, as the service draws them)
        // explore, each always the same way.
        let exploring: Vec<u64> = (1..=2_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .filter(|&session| {
                let (snapshot, mut pathways) = setting();
                !order_by_network(
                    &mut pathways,
                    3,
                    &snapshot,
                    SessionId(session),
                    &measured(0.05),
                )
            })
            .collect();
        assert!((60..140).contains(&exploring.len()), "{}", exploring.len());
        for &session in exploring.iter().take(20) {
            let (snapshot, mut pathways) = setting();
            order_by_network(
                &mut pathways,
                3,
                &snapshot,
                SessionId(session),
                &measured(0.05),
            );
            assert_eq!(names(&pathways)[0], "a", "session {session}");
        }
    }

    #[test]
    fn nothing_moves_without_a_choice_or_a_measurement() {
        let (snapshot, mut pathways) = setting();
        // One node serves the video (a cold video): placement decides.
        assert!(!order_by_network(
            &mut pathways,
            1,
            &snapshot,
            SessionId(1),
            &measured(0.0)
        ));
        assert_eq!(names(&pathways), ["a", "b", "c", "d"]);
        let unmeasured = Measured {
            figures: &|_: &str| None,
            choice: NetworkChoice::default(),
        };
        assert!(!order_by_network(
            &mut pathways,
            3,
            &snapshot,
            SessionId(1),
            &unmeasured
        ));
        assert_eq!(names(&pathways), ["a", "b", "c", "d"]);
    }

    fn keys() -> kinema_cluster::ClusterKeys {
        let key = kinema_cluster::ClusterKey::new(1, vec![3; 32]).unwrap();
        kinema_cluster::ClusterKeys::new(key, None).unwrap()
    }

    /// A decision for a new or resumed session of a hot video (served by
    /// all three edges) with the summaries `summaries` gossiped, by node,
    /// for a viewer at 198.51.100.7.
    fn decide(
        summaries: &[(&str, &str)],
        query: &str,
        exploration_share: f64,
    ) -> crate::steer::Decision {
        use std::time::{Duration, UNIX_EPOCH};

        use kinema_core::VideoId;
        use kinema_netq::{ClientPrefix, Summary};

        use crate::steer::{Steering, SteeringConfig, SteeringQuery, SteeringRequest};

        let steering = Steering::new(SteeringConfig::default(), keys());
        let snapshot = Snapshot::new(vec![node("e1", 0.2), node("e2", 0.25), node("e3", 0.2)]);
        let viewer = ClientPrefix::of("198.51.100.7".parse().unwrap());
        let figures = |node_id: &str| {
            let (_, text) = summaries.iter().find(|(id, _)| *id == node_id)?;
            Summary::parse(text).figures_for(viewer)
        };
        let measured = Measured {
            figures: &figures,
            choice: NetworkChoice {
                exploration_share,
                load_tolerance: 0.1,
            },
        };
        let video = VideoId::new("clip").unwrap();
        steering.decide_measured(
            &SteeringRequest {
                video: &video,
                snapshot: &snapshot,
                rate: 100.0,
                query: &SteeringQuery::parse(query),
                new_session: SessionId(42),
                now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            },
            Some(&measured),
        )
    }

    #[test]
    fn a_new_session_goes_where_its_prefix_measured_best_and_says_network() {
        use crate::log::Miss;
        use crate::rank::Reason;

        let unmeasured = decide(&[], "", 0.0);
        let placed = unmeasured.pathways[0].node_id.clone();
        // A hot video: the session's slot among its three nodes.
        assert!(matches!(
            unmeasured.reason,
            Reason::Placement | Reason::Replica
        ));
        // Another node's summary lists the viewer's /24 far better than
        // the placed node's; a third lists only other prefixes.
        let best = if placed == "e1" { "e2" } else { "e1" };
        let third = ["e1", "e2", "e3"]
            .into_iter()
            .find(|id| *id != placed && *id != best)
            .unwrap();
        let summaries = [
            (
                placed.as_str(),
                "-198.51.100.0/24,800,150 +203.0.113.0/24,90000,2",
            ),
            (best, "+198.51.100.0/24,48100,12"),
            (third, "+203.0.113.0/24,99000,1 garbage +x,1,2"),
        ];
        let decision = decide(&summaries, "", 0.0);
        assert_eq!(decision.pathways[0].node_id, best);
        assert_eq!(decision.pathways[1].node_id, placed);
        assert_eq!(
            (decision.reason, decision.miss),
            (Reason::Network, Miss::None)
        );
        assert_eq!(
            decision.state.as_ref().unwrap().pathway,
            decision.pathways[0].id
        );
        // Every session exploring: the runner-up, which is the placed
        // node, and no network reason, since the order did not change.
        let exploring = decide(&summaries, "", 1.0);
        assert_eq!(exploring.pathways[0].node_id, placed);
        assert_eq!(exploring.reason, unmeasured.reason);
        // A resumed session keeps its pathway: stickiness comes first.
        let state = unmeasured.state.as_ref().unwrap().encode(&keys());
        let resumed = decide(&summaries, &format!("session={state}"), 0.0);
        assert_eq!(resumed.pathways[0].node_id, placed);
        assert_eq!(resumed.reason, Reason::Sticky);
    }

    #[test]
    fn one_measured_node_of_similar_load_changes_nothing() {
        let snapshot = Snapshot::new(vec![node("a", 0.2), node("b", 0.2)]);
        let mut pathways = pathways(&snapshot, &["a", "b"]);
        let only_b = |node_id: &str| {
            (node_id == "b").then_some(PrefixFigures {
                throughput_kbps: 100,
                rtt_inflation_ms: 400,
            })
        };
        let measured = Measured {
            figures: &only_b,
            choice: NetworkChoice {
                exploration_share: 0.0,
                load_tolerance: 0.1,
            },
        };
        assert!(!order_by_network(
            &mut pathways,
            2,
            &snapshot,
            SessionId(7),
            &measured
        ));
        assert_eq!(names(&pathways), ["a", "b"]);
    }
}
