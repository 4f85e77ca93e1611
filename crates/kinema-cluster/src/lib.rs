//! Cluster membership of kinema: which origins and edges are alive, where
//! they are reached, and how loaded they are.
//!
//! Membership and failure detection are chitchat's (scuttlebutt gossip over
//! UDP, phi-accrual failure detection); this crate adds what chitchat lacks
//! and kinema needs:
//!
//! - [`transport`]: gossip datagrams authenticated with an HMAC-SHA256 tag
//!   under a shared cluster key ([`auth`]), checked before chitchat decodes a
//!   byte, with refusals counted by reason;
//! - [`state`]: what each node publishes (role, public URL, region, capacity,
//!   egress, sessions, load, health) as a few short keys, and the typed
//!   [`Member`] parsed back, malformed values making a member unusable;
//! - [`Cluster`]: start, publish figures, read members, be told of changes,
//!   and leave cleanly by gossiping a draining state first (chitchat has no
//!   graceful leave);
//! - [`metrics`]: member gauges and datagram counters for `/metrics`.
//!
//! It deliberately holds no placement or steering policy: those read
//! [`Cluster::members`] and decide elsewhere.

pub mod auth;
mod cluster;
pub mod metrics;
pub mod state;
pub mod transport;

pub use auth::{ClusterKey, ClusterKeys, Refusal};
pub use cluster::{
    Cluster, ClusterConfig, FiguresSource, MAX_GOSSIP_INTERVAL, MAX_LEAVE_ROUNDS,
    MIN_GOSSIP_INTERVAL, MembershipView, NetworkQualitySource, PeerNetworkQuality,
    failure_detector,
};
pub use metrics::{GossipCounters, register, render};
pub use state::{Health, MalformedState, Member, NodeFigures, NodeInfo, Role};

/// What can go wrong starting or stopping a node's membership.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting is out of range; the message says which and why.
    #[error("cluster config: {0}")]
    Config(String),
    /// A cluster key or key file is unusable.
    #[error("cluster key: {0}")]
    Key(String),
    /// The gossip socket could not be bound.
    #[error("cannot bind {0}")]
    Bind(String),
    /// chitchat failed to start or stopped with an error.
    #[error("gossip: {0}")]
    Gossip(String),
}
