//! The one error type of the crate: every input a caller can get wrong.

use crate::cluster::{MAX_LOAD, MAX_NODE_ID_LEN, MAX_NODES, MAX_WEIGHT};
use crate::rate::MAX_HALF_LIFE;
use crate::recent::{MAX_RECENT_CAPACITY, MAX_RECENT_WINDOW};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("node id is empty")]
    EmptyNodeId,
    #[error("node id is longer than {MAX_NODE_ID_LEN} bytes")]
    NodeIdTooLong,
    #[error("node id {0:?} may only contain printable ASCII without spaces")]
    NodeIdCharacters(String),
    #[error(
        "node {id}: weight {weight} is outside 1..={MAX_WEIGHT}; give its capacity, e.g. in bits/s"
    )]
    Weight { id: String, weight: u64 },
    #[error("node {id}: load {load} is above {MAX_LOAD}")]
    Load { id: String, load: u64 },
    #[error("a cluster needs at least one node")]
    NoNodes,
    #[error("{0} nodes is more than the {MAX_NODES} a cluster may have")]
    TooManyNodes(usize),
    #[error("node id {0} appears twice; every node needs its own id")]
    DuplicateNode(String),
    #[error("balance factor {0}/1000 must be above 1000 (c > 1) and at most 100000")]
    BalanceFactor(u32),
    #[error("per-node rate {0} must be a finite number above 0")]
    PerNodeRate(f64),
    #[error("half-life {0:?} must be above zero and at most {MAX_HALF_LIFE:?}")]
    HalfLife(std::time::Duration),
    #[error("a crowd rate's rising half-life {rise:?} must be at most its falling one {fall:?}")]
    HalfLives {
        rise: std::time::Duration,
        fall: std::time::Duration,
    },
    #[error("recent-assignment window {0:?} must be above zero and at most {MAX_RECENT_WINDOW:?}")]
    RecentWindow(std::time::Duration),
    #[error("recent-assignment capacity {0} must be from 1 to {MAX_RECENT_CAPACITY}")]
    RecentCapacity(usize),
}
