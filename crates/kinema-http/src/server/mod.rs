//! The listener every kinema server runs on: accepts TCP (and TLS)
//! connections, speaks HTTP/1.1 (our own, buffer-free while idle) and
//! HTTP/2 (hyper), enforces the connection limits, and drains gracefully.
//!
//! It does not route, authenticate, or interpret requests: that is the
//! [`Handler`](crate::Handler)'s business, including limits on request bodies.
//!
//! Memory is the design constraint here as much as speed: a keep-alive
//! connection waiting for its next request holds no read buffer and no
//! handler state, only its socket and a small task (see `h1.rs`), so tens of
//! thousands of idle viewers cost little more than their kernel sockets.

mod accept;
mod connection;
mod date;
mod descriptor_limit;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod h1_body;
mod h1_head;
mod h1_write;
mod h2;
mod notsent_lowat;
mod sendfile;
mod shards;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use self::accept::{serve, serve_sampled, serve_with_stats};
use self::connection::{CompactInfo, Transport};
pub use self::descriptor_limit::{connection_cap, raise_descriptor_limit};
use self::notsent_lowat::set_file_notsent_lowat;
use self::shards::ShardSet;
pub use self::stats::{ServerStats, ServerStatsSnapshot};
use crate::tcp_info::TcpInfoSampling;

/// Limits and timeouts of the listener. Deserialises from a config table
/// with humantime durations (`"10s"`) and byte sizes (`"16KiB"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// How long a client may take to send a request's header section, from
    /// its first byte (slowloris defence); also bounds a TLS handshake.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a request body may go without a byte arriving.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a response write may make no progress (a client that stopped
    /// reading) before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Largest request header section (request line included); larger → 431.
    pub max_header_bytes: ByteSize,
    /// Longest request target; longer → 414.
    pub max_uri_bytes: ByteSize,
    /// Connections open at once; one more is accepted and closed at once.
    /// Lowered at start to what the descriptor limit leaves room for (see
    /// [`connection_cap`]); near it, idle keep-alive connections are closed
    /// to make room for new clients.
    pub max_connections: usize,
    /// How long in-flight responses may run after shutdown begins.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Threads that serve connections, each with its own event loop
    /// (0: one per CPU this process may run on).
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_header_bytes: ByteSize::kib(16),
            max_uri_bytes: ByteSize::kib(8),
            max_connections: 50_000,
            drain_timeout: Duration::from_secs(30),
            http2_max_concurrent_streams: 128,
            threads: 0,
        }
    }
}

/// Where the listener is in its life; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    Running,
    /// Stop taking new requests; finish the ones in flight.
    Draining,
    /// The drain deadline passed: drop whatever is still open.
    Aborting,
}

impl<H> Shared<H> {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Aborting,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.wakeup.notify_waiters();
    }

    /// Milliseconds since the listener started: the coarse clock idle
    /// connections measure their deadlines by.
    fn now_millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Resolves once the listener has reached `phase` (or gone past it).
    /// Small on purpose (one waiter node): idle connections hold it.
    async fn reached(&self, phase: Phase) {
        loop {
            // Registered before the check, so a change in between still
            // wakes us (notify_waiters counts from the notified() call).
            let changed = self.wakeup.notified();
            if self.phase() >= phase {
                return;
            }
            changed.await;
        }
    }
}

impl<H> Shared<H> {
    fn new(
        handler: Arc<H>,
        config: ServerConfig,
        stats: Arc<ServerStats>,
        shards: Arc<ShardSet>,
        descriptor_limit: u64,
    ) -> Self {
        let connection_cap = connection_cap(config.max_connections, descriptor_limit);
        Self {
            handler,
            config,
            stats,
            phase: AtomicU8::new(Phase::Running as u8),
            wakeup: Notify::new(),
            started: tokio::time::Instant::now(),
            connection_closed: Notify::new(),
            shards,
            connection_cap,
            shed_down_to: AtomicU64::new(NOT_SHEDDING),
            tcp_info: None,
        }
    }

    fn open_connections(&self) -> u64 {
        self.stats.open_connections.load(Ordering::Relaxed)
    }

    /// Asks idle keep-alive connections to close until no more than
    /// `target` connections are open, and wakes them to check (once per
    /// episode: every idle connection wakes, so not on every accept).
    fn shed_idle_down_to(&self, target: u64) {
        let previous = self.shed_down_to.fetch_min(target, Ordering::AcqRel);
        if previous == NOT_SHEDDING {
            tracing::info!(
                open = self.open_connections(),
                cap = self.connection_cap,
                "near the connection cap; closing idle keep-alive connections"
            );
            self.wakeup.notify_waiters();
        }
    }

    /// Whether an idle keep-alive connection should close now to make room
    /// (as nginx reuses idle keep-alive connections when out of
    /// worker_connections). Ends the episode once enough have closed.
    fn should_shed_idle(&self) -> bool {
        let target = self.shed_down_to.load(Ordering::Acquire);
        if target == NOT_SHEDDING {
            return false;
        }
        if self.open_connections() > target {
            return true;
        }
        self.shed_down_to.store(NOT_SHEDDING, Ordering::Release);
        false
    }
}

/// What every connection task of one listener shares.
struct Shared<H> {
    handler: Arc<H>,
    config: ServerConfig,
    stats: Arc<ServerStats>,
    /// A [`Phase`]; only ever moves forward.
    phase: AtomicU8,
    /// Woken (all waiters) when `phase` moves, and on every tick of the
    /// idle clock (see [`accept::tick_idle_clock`]).
    wakeup: Notify,
    /// The origin of [`Shared::now_millis`].
    started: tokio::time::Instant,
    /// Woken when a connection closes, so the drain can see the count fall.
    connection_closed: Notify,
    /// The serving threads.
    shards: Arc<ShardSet>,
    /// `max_connections` as the descriptor limit allows ([`connection_cap`]).
    connection_cap: u64,
    /// While open connections exceed this, idle keep-alive connections
    /// close themselves at their next wake-up ([`NOT_SHEDDING`]: none do).
    shed_down_to: AtomicU64,
    /// Who is told of viewers' `TCP_INFO`, and when ([`serve_sampled`]).
    tcp_info: Option<TcpInfoSampling>,
}

/// [`Shared::shed_down_to`] when no connection needs to make room.
const NOT_SHEDDING: u64 = u64::MAX;
