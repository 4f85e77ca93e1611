//! Each node's sustained load: the load it publishes every second, smoothed
//! over a few seconds by the node that steers.
//!
//! A published load is one reading over half a second, published every
//! second: a crowd's start, when every new viewer fills its buffer at once,
//! reads close to 1 on a node that carries the crowd easily once it plays.
//! Such a spike demotes the node for new sessions (ranking reads the load
//! as published), but moving the sessions it already serves would send
//! each of them through a new connection to another node, all those
//! renewing in the same seconds to the same least loaded one, which then
//! reads overloaded in turn. So a session leaves its node for load only
//! when the node's sustained load is above the threshold: a load held
//! there for about [`SUSTAINED_LOAD_HALF_LIFE`] × 3.3 (from idle to 0.9 of
//! a full load), and within one TTL of that the sessions renewing move.

use std::collections::HashMap;
use std::time::Duration;

use crate::rank::Snapshot;

/// Half-life of the smoothing: the weight of a reading halves every this.
pub const SUSTAINED_LOAD_HALF_LIFE: Duration = Duration::from_secs(3);

/// The sustained load of each node of the last snapshot, and when it was
/// last brought up to date. Nodes that leave the snapshot are forgotten, so
/// it holds at most the snapshot's own bound of nodes.
#[derive(Debug, Default)]
pub(crate) struct SustainedLoads {
    by_node: HashMap<String, (f64, Duration)>,
}

impl SustainedLoads {
    /// Moves each node's sustained load towards its load in `snapshot`, by
    /// the share the time since its last update weighs (`now` since any
    /// fixed epoch; a clock that went back moves nothing), and sets it on
    /// the snapshot's nodes. A node seen for the first time starts at its
    /// load: nothing else is known of it. A load that is not a number
    /// counts as full.
    pub(crate) fn apply(&mut self, snapshot: &mut Snapshot, now: Duration) {
        let mut by_node = HashMap::with_capacity(snapshot.nodes().len());
        for node in snapshot.nodes_mut() {
            let load = if node.load.is_nan() {
                1.0
            } else {
                node.load.clamp(0.0, 1.0)
            };
            let (sustained, then) = match self.by_node.get(&node.node_id) {
                Some(&(before, then)) => {
                    let elapsed = now.saturating_sub(then).as_secs_f64();
                    let weight =
                        1.0 - 0.5f64.powf(elapsed / SUSTAINED_LOAD_HALF_LIFE.as_secs_f64());
                    (before + weight * (load - before), then.max(now))
                }
                None => (load, now),
            };
            node.sustained_load = sustained;
            by_node.insert(node.node_id.clone(), (sustained, then));
        }
        self.by_node = by_node;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::NodeView;
    use crate::rank::tests::edge;

    fn with_loads(loads: &[(&str, f64)]) -> Snapshot {
        Snapshot::new(
            loads
                .iter()
                .map(|&(id, load)| NodeView { load, ..edge(id) })
                .collect(),
        )
    }

    fn sustained(snapshot: &Snapshot, id: &str) -> f64 {
        snapshot
            .nodes()
            .iter()
            .find(|node| node.node_id == id)
            .unwrap()
            .sustained_load
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    const T0: Duration = Duration::from_secs(1_000);

    #[test]
    fn a_node_first_seen_starts_at_its_load_then_moves_by_the_half_life() {
        let mut loads = SustainedLoads::default();
        let mut first = with_loads(&[("edge-1", 0.2)]);
        loads.apply(&mut first, T0);
        assert!(close(sustained(&first, "edge-1"), 0.2));
        // One half-life at a load of 1: halfway from 0.2, 0.6.
        let mut later = with_loads(&[("edge-1", 1.0)]);
        loads.apply(&mut later, T0 + SUSTAINED_LOAD_HALF_LIFE);
        assert!(close(sustained(&later, "edge-1"), 0.6));
        // Two more half-lives: 1 - 0.4 / 4 = 0.9.
        loads.apply(&mut later, T0 + SUSTAINED_LOAD_HALF_LIFE * 3);
        assert!(close(sustained(&later, "edge-1"), 0.9));
    }

    #[test]
    fn a_crowd_start_spike_stays_under_the_threshold_a_held_load_does_not() {
        // Loads read each second on an edge as a 2,400-viewer crowd started
        // over 10 s (bench/cluster.sh c, three edges): the last second's
        // load, then back to idle once the crowd plays.
        let spike = [0.01, 0.31, 0.70, 0.70, 1.00, 0.80, 0.70, 0.01];
        let mut loads = SustainedLoads::default();
        let mut highest: f64 = 0.0;
        for (second, &load) in spike.iter().enumerate() {
            let mut snapshot = with_loads(&[("edge-1", load)]);
            loads.apply(&mut snapshot, T0 + Duration::from_secs(second as u64));
            highest = highest.max(sustained(&snapshot, "edge-1"));
        }
        // By hand, each second weighing 1 - 2^(-1/3) = 0.2063: 0.01, 0.0719,
        // 0.2015, 0.3043, 0.4478, 0.5205, 0.5575, 0.4446.
        assert!((highest - 0.5575).abs() < 1e-3, "{highest}");
        assert!(highest < 0.9);
        // A full load held from idle passes 0.9 after 3 × log2(10) = 9.97 s:
        // 1 - 2^-3 = 0.875 after 9 s, 0.875 + 0.2063 × 0.125 = 0.9008 after 10.
        let mut loads = SustainedLoads::default();
        let mut at = |second: u64, load: f64| {
            let mut snapshot = with_loads(&[("edge-1", load)]);
            loads.apply(&mut snapshot, T0 + Duration::from_secs(second));
            sustained(&snapshot, "edge-1")
        };
        at(0, 0.0);
        assert!(at(9, 1.0) < 0.9);
        assert!(at(10, 1.0) > 0.9);
    }

    #[test]
    fn a_clock_gone_back_moves_nothing_and_nodes_gone_are_forgotten() {
        let mut loads = SustainedLoads::default();
        let mut snapshot = with_loads(&[("edge-1", 0.5), ("edge-2", 0.1)]);
        loads.apply(&mut snapshot, T0);
        let mut back = with_loads(&[("edge-1", 1.0)]);
        loads.apply(&mut back, T0 - Duration::from_secs(5));
        assert!(close(sustained(&back, "edge-1"), 0.5));
        assert!(!loads.by_node.contains_key("edge-2"));
        // Once the clock is past the last update again, time counts from it.
        loads.apply(&mut back, T0 + SUSTAINED_LOAD_HALF_LIFE);
        assert!(close(sustained(&back, "edge-1"), 0.75));
        // edge-2 comes back as new: at its load.
        let mut again = with_loads(&[("edge-1", 1.0), ("edge-2", 0.3)]);
        loads.apply(&mut again, T0 + SUSTAINED_LOAD_HALF_LIFE);
        assert!(close(sustained(&again, "edge-2"), 0.3));
    }

    #[test]
    fn a_load_that_is_not_a_number_counts_as_full() {
        let mut loads = SustainedLoads::default();
        let mut snapshot = with_loads(&[("edge-1", f64::NAN)]);
        loads.apply(&mut snapshot, T0);
        assert!(close(sustained(&snapshot, "edge-1"), 1.0));
    }
}
