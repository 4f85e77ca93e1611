//! The one impure part: a node's [`NetworkQuality`], which the listener
//! tells of `TCP_INFO` samples (as a [`TcpInfoObserver`]) and a handler of
//! players' CMCD reports, stamped with the time they arrive.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use kinema_http::tcp_info::{TcpInfoObserver, TcpInfoSample};

use crate::aggregate::{Aggregator, AggregatorConfig, PrefixEstimate};
use crate::cmcd::Cmcd;
use crate::prefix::ClientPrefix;
use crate::summary::Summary;

/// This node's measurements of its viewers, shared by the serving threads
/// (a short lock per sample; never held across an await).
#[derive(Debug)]
pub struct NetworkQuality {
    aggregator: Mutex<Aggregator>,
}

impl NetworkQuality {
    pub fn new(config: AggregatorConfig) -> Self {
        Self {
            aggregator: Mutex::new(Aggregator::new(config)),
        }
    }

    /// A player's CMCD report from `viewer`.
    pub fn record_cmcd(&self, viewer: IpAddr, cmcd: &Cmcd) {
        let now = Instant::now();
        self.lock().record_cmcd(ClientPrefix::of(viewer), cmcd, now);
    }

    /// What is known now of `viewer`'s prefix.
    pub fn estimate(&self, viewer: IpAddr) -> Option<PrefixEstimate> {
        self.lock()
            .estimate(ClientPrefix::of(viewer), Instant::now())
    }

    /// The summary to gossip now.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.lock(), Instant::now())
    }

    /// Prefixes kept now. (The listener's `TcpInfoSampling::counts` says
    /// how many samples were taken and dropped.)
    pub fn prefixes(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        // A panic while holding the lock leaves arithmetic half done at
        // worst: the table stays usable.
        self.aggregator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TcpInfoObserver for NetworkQuality {
    fn observe(&self, peer: SocketAddr, sample: TcpInfoSample) {
        let now = Instant::now();
        self.lock()
            .record_tcp(ClientPrefix::of(peer.ip()), &sample, now);
    }
}
