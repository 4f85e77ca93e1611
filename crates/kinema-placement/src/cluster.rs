//! The nodes placement chooses among: ids, weights and loads, validated once
//! per membership snapshot so that every decision over them is infallible.

use std::fmt;

use crate::PlacementError;

/// Longest node id accepted, in bytes.
pub const MAX_NODE_ID_LEN: usize = 255;
/// Most nodes one cluster may hold (every `order` hashes each of them once).
pub const MAX_NODES: usize = 1024;
/// Largest weight: 2^48, e.g. 281 Tbit/s of egress when weights are bits/s.
/// The bound keeps every capacity computation exact in 128-bit integers.
pub const MAX_WEIGHT: u64 = 1 << 48;
/// Largest load of one node: 2^40 assignments.
pub const MAX_LOAD: u64 = 1 << 40;

/// The id of a node, as membership names it: 1 to 255 bytes of printable
/// ASCII without spaces (a host name, an address, a UUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Result<Self, PlacementError> {
        let id = id.into();
        if id.is_empty() {
            return Err(PlacementError::EmptyNodeId);
        }
        if id.len() > MAX_NODE_ID_LEN {
            return Err(PlacementError::NodeIdTooLong);
        }
        if !id.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(PlacementError::NodeIdCharacters(id));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maps keyed by node id can be searched with a `&str` (ids hash and
/// compare as their text).
impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NodeId {
    type Err = PlacementError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// One node that may serve videos, as membership last saw it.
///
/// `weight` is its capacity in any unit shared by the whole cluster (kinema
/// uses egress bits/s): a node of twice the weight is first in the order of
/// twice as many videos and may carry twice the load. `load` is the number of
/// assignments it carries now, in the unit the caller assigns (kinema counts
/// viewing sessions); it matters only to [`crate::Placement::choose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    id: NodeId,
    weight: u64,
    load: u64,
}

impl Node {
    pub fn new(id: NodeId, weight: u64, load: u64) -> Result<Self, PlacementError> {
        if weight == 0 || weight > MAX_WEIGHT {
            return Err(PlacementError::Weight { id: id.0, weight });
        }
        if load > MAX_LOAD {
            return Err(PlacementError::Load { id: id.0, load });
        }
        Ok(Self { id, weight, load })
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn weight(&self) -> u64 {
        self.weight
    }

    pub fn load(&self) -> u64 {
        self.load
    }
}

/// The nodes that may serve: one membership snapshot, 1 to [`MAX_NODES`]
/// nodes with distinct ids.
///
/// The caller puts in only the nodes that may take new work: a node that
/// is dead, unhealthy or draining is left out, exactly as if it had left
/// the cluster (its videos then move to the next node of each order, and
/// nowhere else). There is no flag for it here because a node outside the
/// set and a flagged node would have to behave identically anyway.
///
/// The order in which nodes are given does not matter: they are kept sorted
/// by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    nodes: Vec<Node>,
    total_weight: u128,
    total_load: u128,
}

impl Cluster {
    pub fn new(mut nodes: Vec<Node>) -> Result<Self, PlacementError> {
        if nodes.is_empty() {
            return Err(PlacementError::NoNodes);
        }
        if nodes.len() > MAX_NODES {
            return Err(PlacementError::TooManyNodes(nodes.len()));
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = nodes.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(PlacementError::DuplicateNode(pair[0].id.0.clone()));
        }
        let total_weight = nodes.iter().map(|node| u128::from(node.weight)).sum();
        let total_load = nodes.iter().map(|node| u128::from(node.load)).sum();
        Ok(Self {
            nodes,
            total_weight,
            total_load,
        })
    }

    /// The nodes, sorted by id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, id: &NodeId) -> Option<&Node> {
        self.nodes
            .binary_search_by(|node| node.id.cmp(id))
            .ok()
            .map(|index| &self.nodes[index])
    }

    /// The sum of the weights, W.
    pub fn total_weight(&self) -> u128 {
        self.total_weight
    }

    /// The sum of the loads, L.
    pub fn total_load(&self) -> u128 {
        self.total_load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, weight: u64, load: u64) -> Node {
        Node::new(NodeId::new(id).unwrap(), weight, load).unwrap()
    }

    #[test]
    fn node_ids_are_bounded_and_printable() {
        assert_eq!(NodeId::new(""), Err(PlacementError::EmptyNodeId));
        assert_eq!(
            NodeId::new("a".repeat(256)),
            Err(PlacementError::NodeIdTooLong)
        );
        assert!(NodeId::new("a".repeat(255)).is_ok());
        assert_eq!(
            NodeId::new("edge 1"),
            Err(PlacementError::NodeIdCharacters("edge 1".into()))
        );
        assert!(matches!(
            NodeId::new("edge\u{e9}"),
            Err(PlacementError::NodeIdCharacters(_))
        ));
        assert_eq!(
            NodeId::new("10.0.0.2:7280").unwrap().as_str(),
            "10.0.0.2:7280"
        );
    }

    #[test]
    fn weights_and_loads_are_bounded() {
        let id = || NodeId::new("edge-1").unwrap();
        assert_eq!(
            Node::new(id(), 0, 0),
            Err(PlacementError::Weight {
                id: "edge-1".into(),
                weight: 0
            })
        );
        assert!(Node::new(id(), MAX_WEIGHT + 1, 0).is_err());
        assert!(Node::new(id(), MAX_WEIGHT, MAX_LOAD).is_ok());
        assert_eq!(
            Node::new(id(), 1, MAX_LOAD + 1),
            Err(PlacementError::Load {
                id: "edge-1".into(),
                load: MAX_LOAD + 1
            })
        );
    }

    #[test]
    fn a_cluster_is_sorted_nonempty_bounded_and_without_duplicates() {
        assert_eq!(Cluster::new(vec![]), Err(PlacementError::NoNodes));
        assert_eq!(
            Cluster::new(vec![node("b", 1, 0), node("a", 1, 0), node("b", 2, 0)]),
            Err(PlacementError::DuplicateNode("b".into()))
        );
        let too_many = (0..=MAX_NODES)
            .map(|i| node(&format!("n{i}"), 1, 0))
            .collect();
        assert_eq!(
            Cluster::new(too_many),
            Err(PlacementError::TooManyNodes(MAX_NODES + 1))
        );
        let cluster =
            Cluster::new(vec![node("c", 3, 7), node("a", 1, 2), node("b", 2, 0)]).unwrap();
        let ids: Vec<&str> = cluster.nodes().iter().map(|n| n.id().as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(cluster.total_weight(), 6);
        assert_eq!(cluster.total_load(), 9);
        assert_eq!(cluster.get(&NodeId::new("c").unwrap()).unwrap().load(), 7);
        assert!(cluster.get(&NodeId::new("d").unwrap()).is_none());
    }

    #[test]
    fn a_map_keyed_by_node_id_is_searched_by_text() {
        let mut loads = std::collections::HashMap::new();
        loads.insert(NodeId::new("edge-1").unwrap(), 3u64);
        assert_eq!(loads.get("edge-1"), Some(&3));
        assert_eq!(loads.get("edge-2"), None);
    }
}
