//! The listener's counters: [`ServerStats`], which connections and the
//! serving threads update as they go, and the [`ServerStatsSnapshot`] a
//! metrics scrape copies out of it. Nothing here decides anything; it only
//! counts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Counters of one listener, shared with whoever publishes metrics.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(super) open_connections: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) refused_over_limit: AtomicU64,
    pub(super) requests: AtomicU64,
    pub(super) file_bodies_from_memory: AtomicU64,
    /// Per mille; see [`ServerStats::load`].
    pub(super) load: AtomicU32,
}

/// A consistent-enough copy of [`ServerStats`] for a metrics scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatsSnapshot {
    /// Connections open now (HTTP/1.1, HTTP/2 and TLS alike).
    pub open_connections: u64,
    /// Connections accepted and served since start.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_over_limit: u64,
    /// Requests handed to the handler (both protocols).
    pub requests: u64,
    /// File bodies on plain-TCP HTTP/1.1 written from memory instead of by
    /// `sendfile`, because the kernel had evicted some of their file's pages
    /// ([`crate::FileSlice::ready_to_send`]). Rising steadily, it says the
    /// page cache is too small for what is being watched.
    pub file_bodies_from_memory: u64,
}

impl ServerStats {
    pub fn snapshot(&self) -> ServerStatsSnapshot {
        ServerStatsSnapshot {
            open_connections: self.open_connections.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_over_limit: self.refused_over_limit.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            file_bodies_from_memory: self.file_bodies_from_memory.load(Ordering::Relaxed),
        }
    }

    /// How busy the serving threads are, 0 to 1: the share of wall time
    /// they were awake (not waiting for events) over the last sample period
    /// (half a second), averaged over the threads. Time a runnable thread
    /// waits for a CPU counts as awake, so 1 means the threads cannot keep
    /// up with their work, whether for lack of cycles or of a CPU.
    pub fn load(&self) -> f64 {
        f64::from(self.load.load(Ordering::Relaxed)) / 1000.0
    }

    pub(super) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}
