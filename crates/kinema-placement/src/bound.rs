//! Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
//! Bounded Loads", 2016), weighted by capacity.
//!
//! Definitions, for a cluster whose node i has weight w_i and load l_i:
//!
//! - **load** l_i is the number of assignments node i carries now, in the
//!   caller's unit (kinema: viewing sessions), as given in [`crate::Node`];
//! - L = Σ l_i, W = Σ w_i;
//! - the **average** for node i is its weight's share of all assignments
//!   *including the one being placed*: (L + 1) × w_i / W (with equal
//!   weights, the (L + 1) / N of the paper);
//! - the **bound** of node i is ⌈c × (L + 1) × w_i / W⌉ with c the balance
//!   factor, computed exactly in integers (c is held in thousandths).
//!
//! A node may take the new assignment only while l_i < bound_i, so after it
//! takes it, l_i + 1 ≤ bound_i: no node ever goes above ⌈c × average⌉ by an
//! assignment placed here. Some node is always below its bound: the bounds
//! add up to at least c × (L + 1) > L = Σ l_i. Loads can still be above the
//! bound when the caller brings them there (a node left and its viewers
//! came elsewhere, or the bound shrank as viewers left): such a node only
//! takes nothing new until the others catch up.

use crate::PlacementError;
use crate::cluster::{Cluster, Node};

/// The balance factor c > 1, held in thousandths so that every bound is an
/// exact integer computation (1.25 is 1250). At most 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceFactor {
    thousandths: u32,
}

impl BalanceFactor {
    pub fn from_thousandths(thousandths: u32) -> Result<Self, PlacementError> {
        if thousandths <= 1000 || thousandths > 100_000 {
            return Err(PlacementError::BalanceFactor(thousandths));
        }
        Ok(Self { thousandths })
    }

    pub fn thousandths(self) -> u32 {
        self.thousandths
    }
}

/// c = 1.25, the factor of the issue and of Vimeo's HAProxy work.
impl Default for BalanceFactor {
    fn default() -> Self {
        Self { thousandths: 1250 }
    }
}

impl std::fmt::Display for BalanceFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{:03}",
            self.thousandths / 1000,
            self.thousandths % 1000
        )
    }
}

/// The bound of `node` in `cluster`: ⌈c × (L + 1) × w_i / W⌉.
///
/// Exact: c ≤ 2^17 thousandths, L + 1 ≤ 2^50 + 1 and w_i ≤ 2^48 keep the
/// numerator below 2^116, and 1000 × W below 2^69.
pub fn bound(balance: BalanceFactor, node: &Node, cluster: &Cluster) -> u64 {
    let numerator =
        u128::from(balance.thousandths) * (cluster.total_load() + 1) * u128::from(node.weight());
    let denominator = 1000 * cluster.total_weight();
    let bound = numerator.div_ceil(denominator);
    // At most c × (L + 1) ≤ 100 × (2^50 + 1), well inside u64.
    u64::try_from(bound).unwrap_or(u64::MAX)
}

/// Whether `node` may take one more assignment: its load is below its bound.
pub fn has_room(balance: BalanceFactor, node: &Node, cluster: &Cluster) -> bool {
    node.load() < bound(balance, node, cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn cluster(specs: &[(&str, u64, u64)]) -> Cluster {
        let nodes = specs
            .iter()
            .map(|(id, weight, load)| Node::new(NodeId::new(*id).unwrap(), *weight, *load).unwrap())
            .collect();
        Cluster::new(nodes).unwrap()
    }

    #[test]
    fn balance_factor_is_above_one_and_bounded() {
        assert_eq!(
            BalanceFactor::from_thousandths(1000),
            Err(PlacementError::BalanceFactor(1000))
        );
        assert!(BalanceFactor::from_thousandths(100_001).is_err());
        assert!(BalanceFactor::from_thousandths(1001).is_ok());
        assert_eq!(BalanceFactor::default().to_string(), "1.250");
        assert_eq!(
            BalanceFactor::from_thousandths(2005).unwrap().to_string(),
            "2.005"
        );
    }

    // Hand-computed: 3 equal nodes, loads 4 + 4 + 3 = 11, so L + 1 = 12,
    // the average is 4 and ⌈1.25 × 4⌉ = 5.
    #[test]
    fn bound_of_equal_nodes_is_ceil_of_c_times_average() {
        let cluster = cluster(&[("a", 7, 4), ("b", 7, 4), ("c", 7, 3)]);
        let balance = BalanceFactor::default();
        for node in cluster.nodes() {
            assert_eq!(bound(balance, node, &cluster), 5);
            assert!(has_room(balance, node, &cluster));
        }
    }

    // Hand-computed: weights 1 and 3, loads 2 and 5, L + 1 = 8:
    // a: ⌈1.25 × 8 × 1/4⌉ = ⌈2.5⌉ = 3; b: ⌈1.25 × 8 × 3/4⌉ = ⌈7.5⌉ = 8.
    // With c = 1.5: a: ⌈3⌉ = 3 exactly (no rounding up of an integer).
    #[test]
    fn bound_scales_with_weight_share() {
        let cluster = cluster(&[("a", 1, 2), ("b", 3, 5)]);
        let [a, b] = cluster.nodes() else {
            unreachable!("two nodes")
        };
        let balance = BalanceFactor::default();
        assert_eq!(bound(balance, a, &cluster), 3);
        assert_eq!(bound(balance, b, &cluster), 8);
        let balance = BalanceFactor::from_thousandths(1500).unwrap();
        assert_eq!(bound(balance, a, &cluster), 3);
        assert!(has_room(balance, a, &cluster));
        let full = self::cluster(&[("a", 1, 3), ("b", 3, 4)]);
        assert!(!has_room(balance, &full.nodes()[0], &full));
    }

    #[test]
    fn bound_of_an_empty_cluster_is_one() {
        let cluster = cluster(&[("a", 1, 0), ("b", 1, 0), ("c", 1, 0)]);
        // ⌈1.25 × 1 / 3⌉ = 1: every node may take the first assignment.
        for node in cluster.nodes() {
            assert_eq!(bound(BalanceFactor::default(), node, &cluster), 1);
        }
    }

    #[test]
    fn bound_at_the_largest_inputs_does_not_overflow() {
        let cluster = cluster(&[("a", crate::cluster::MAX_WEIGHT, crate::cluster::MAX_LOAD)]);
        let balance = BalanceFactor::from_thousandths(100_000).unwrap();
        assert_eq!(
            bound(balance, &cluster.nodes()[0], &cluster),
            100 * ((1 << 40) + 1)
        );
    }
}
