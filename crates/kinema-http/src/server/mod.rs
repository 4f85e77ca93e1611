//! The listener every kinema server runs on: accepts TCP (and TLS)
//! connections, speaks HTTP/1.1 (our own, buffer-free while idle) and
//! HTTP/2 (hyper), enforces the connection limits, and drains gracefully.
//!
//! It does not route, authenticate, or interpret requests: that is the
//! [`Handler`]'s business, including limits on request bodies.
//!
//! Memory is the design constraint here as much as speed: a keep-alive
//! connection waiting for its next request holds no read buffer and no
//! handler state, only its socket and a small task (see `h1.rs`), so tens of
//! thousands of idle viewers cost little more than their kernel sockets.

mod date;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod h1_body;
mod h1_head;
mod h1_write;
mod h2;
mod sendfile;
mod shards;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use self::shards::{ShardSet, Shards};
use crate::tcp_info::TcpInfoSampling;
use crate::{ConnectionInfo, Handler};

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

/// Counters of one listener, shared with whoever publishes metrics.
#[derive(Debug, Default)]
pub struct ServerStats {
    open_connections: AtomicU64,
    accepted: AtomicU64,
    refused_over_limit: AtomicU64,
    requests: AtomicU64,
    file_bodies_from_memory: AtomicU64,
    /// Per mille; see [`ServerStats::load`].
    load: AtomicU32,
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

    fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
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

/// Connections the listener keeps open at most: `configured`, lowered so
/// that a quarter of the descriptor limit (at least 64) stays free for the
/// files the server opens (cached files, the store's reads, logs), and at
/// least 16. Each connection is one descriptor.
pub fn connection_cap(configured: usize, descriptor_limit: u64) -> u64 {
    let reserve = (descriptor_limit / 4).max(64);
    (configured as u64).min(descriptor_limit.saturating_sub(reserve).max(16))
}

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its
/// hard limit, as a server holding one descriptor per connection needs
/// (distributions start processes at a soft 1024), and returns the soft
/// limit now in force (`u64::MAX` when unlimited).
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(
        unsafe_code,
        reason = "getrlimit and setrlimit only read and write the struct passed; rustix is built without its process module"
    )]
    // SAFETY: `limit` is a valid, writable `struct rlimit` for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            } else {
                tracing::warn!(
                    soft = limit.rlim_cur,
                    hard = limit.rlim_max,
                    "cannot raise the open-file limit to its hard limit"
                );
            }
        }
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
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
    /// idle clock (see [`tick_idle_clock`]).
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

/// Serves `handler` on `listener` until `shutdown` resolves, then drains:
/// stops accepting, closes idle keep-alive connections, lets in-flight
/// responses finish within `config.drain_timeout`, and returns `Ok`.
///
/// With `tls`, every connection is TLS; ALPN `h2` selects HTTP/2 and anything
/// else HTTP/1.1. Without it, HTTP/2 is spoken with prior knowledge (h2c) when
/// a connection opens with the HTTP/2 preface.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with_stats(
        listener,
        handler,
        config,
        tls,
        Arc::new(ServerStats::default()),
        shutdown,
    )
    .await
}

/// [`serve`], counting into `stats` (which the caller may publish).
pub async fn serve_with_stats<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    stats: Arc<ServerStats>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_sampled(listener, handler, config, tls, stats, None, shutdown).await
}

/// [`serve_with_stats`], sampling viewers' `TCP_INFO` after large
/// responses when `tcp_info` is set (see [`crate::tcp_info`]), plain and
/// TLS: on HTTP/1.1 after a response body, on HTTP/2 (which interleaves
/// responses) each time as many bytes went out on the connection.
pub async fn serve_sampled<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    stats: Arc<ServerStats>,
    tcp_info: Option<TcpInfoSampling>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let descriptor_limit = raise_descriptor_limit();
    let shards = Shards::start(config.threads)?;
    let mut shared = Shared::new(
        handler,
        config,
        stats,
        shards.set().clone(),
        descriptor_limit,
    );
    shared.tcp_info = tcp_info;
    let shared = Arc::new(shared);
    if shared.connection_cap < shared.config.max_connections as u64 {
        tracing::info!(
            max_connections = shared.config.max_connections,
            descriptor_limit,
            cap = shared.connection_cap,
            "connections capped by the open-file limit; raise the hard limit (ulimit -Hn, LimitNOFILE=) for more"
        );
    }
    let _ticker = AbortOnDrop(tokio::spawn(tick_idle_clock(shared.clone())));
    let _balancer = AbortOnDrop(tokio::spawn(
        shards.set().clone().balance(shared.stats.clone()),
    ));
    // The accept loop runs on the first serving thread, where the packing
    // rule sends most connections: those need no hand-over between threads
    // (two epoll_ctl calls and a cross-thread wake-up each, a tenth of a
    // TLS handshake's CPU when every connection carries one request).
    let listener = listener.into_std()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel::<io::Result<()>>();
    let accepting = shared.clone();
    shards.set().run_on(
        0,
        Box::new(move || {
            tokio::spawn(async move {
                let result = match TcpListener::from_std(listener) {
                    Ok(listener) => {
                        accept_loop(&accepting, &listener, tls, stopped).await;
                        Ok(())
                    }
                    Err(error) => Err(error),
                };
                let _ = done.send(result);
            });
        }),
    );
    let mut finished = pin!(finished);
    let early = tokio::select! {
        biased;
        () = shutdown => None,
        result = &mut finished => Some(result),
    };
    let result = match early {
        // The loop ended on its own: it could not take the listener.
        Some(result) => result.unwrap_or(Ok(())),
        None => {
            let _ = stop.send(());
            finished.await.unwrap_or(Ok(()))
        }
    };
    drain(&shared).await;
    shards.stop().await;
    result
}

/// Accepts connections until `stop` fires (or its sender is dropped); the
/// listener closes when the caller drops it, right after.
async fn accept_loop<H: Handler>(
    shared: &Arc<Shared<H>>,
    listener: &TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    // Out of descriptors, accept fails over and over: one warning per
    // period, with the count of failures since the last.
    const WARN_EVERY: Duration = Duration::from_secs(10);
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut failures_since_warning = 0u64;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => admit(shared, stream, peer, tls.as_ref()),
            Err(error) if is_per_connection_error(&error) => {
                tracing::debug!(%error, "accept failed for one connection");
            }
            Err(error) => {
                // Out of file descriptors or memory: accepting again at once
                // would spin. Back off briefly, and close idle keep-alive
                // connections (an eighth of those open) to free descriptors.
                let open = shared.open_connections();
                shared.shed_idle_down_to(open - (open / 8).max(1).min(open));
                failures_since_warning += 1;
                let now = tokio::time::Instant::now();
                if last_warning.is_none_or(|last| now - last >= WARN_EVERY) {
                    tracing::warn!(
                        %error,
                        failures = failures_since_warning,
                        open,
                        "accept failed; pausing the listener for 100 ms at a time and closing idle connections"
                    );
                    last_warning = Some(now);
                    failures_since_warning = 0;
                }
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Idle connections hold no timer of their own (a tokio timer is 112 bytes
/// per connection): they keep a deadline on a coarse clock and re-check it
/// whenever this tick wakes them, so a timeout fires up to a quarter of its
/// length late.
async fn tick_idle_clock<H>(shared: Arc<Shared<H>>) {
    let shortest = shared
        .config
        .header_read_timeout
        .min(shared.config.idle_timeout);
    let period = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        shared.wakeup.notify_waiters();
    }
}

/// Ends a task when the listener returns (or is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn drain<H>(shared: &Shared<H>) {
    shared.set_phase(Phase::Draining);
    let open = || shared.stats.open_connections.load(Ordering::Acquire);
    let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
    loop {
        // Register for the wake-up before reading the count, so a connection
        // closing in between cannot be missed.
        let closed = shared.connection_closed.notified();
        if open() == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            break;
        }
    }
    tracing::warn!(
        open = open(),
        "drain timeout passed; closing the connections still open"
    );
    shared.set_phase(Phase::Aborting);
    // Aborting connections drop their sockets at their next poll; give them
    // a moment (bounded) so that the caller sees them closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while open() > 0 {
        let closed = shared.connection_closed.notified();
        if open() == 0 || tokio::time::timeout_at(deadline, closed).await.is_err() {
            break;
        }
    }
}

/// Unsent bytes a connection's socket may queue before it stops reporting
/// itself writable (`TCP_NOTSENT_LOWAT`). Unlimited (Linux's default), a
/// sendfile of a segment fills the whole send buffer with bytes the network
/// has not taken yet, and loopback viewers then spent about a third more
/// CPU per byte received (most likely because the transmission moves into
/// the receiver's acknowledgement processing, on the receiver's CPU). At
/// 128 KiB the load client's ceiling against the origin rose from 15 to
/// 26–27 Gbit/s (`kinema bench --saturate true`, 300 viewers, client on its
/// own core), against nginx's 20. Measured again with segments sent from
/// the page cache: 8–64 KiB all gave 34–35 Gbit/s against 30 at 128 KiB,
/// and at 6,500 paced 3 Mbit/s viewers 32 KiB took 8% less server CPU
/// (10.3–10.9 s against 11.8 over 30 s) and 10–20% less client CPU. The
/// sender wakes a little more often instead.
///
/// That holds while the serving thread has time to spare. A saturated
/// thread pays for every wake-up: with a paced viewer's 1.5 MB segment sent in
/// ~50 `sendfile` calls, a server confined to 10% of a CPU carried 1,600–
/// 1,900 viewers at 32 KiB and 2,500–3,200 with no limit (nginx, which
/// fills the whole send buffer, 2,600–2,900). So a file body sent by a
/// saturated thread lifts the limit first ([`notsent_lowat`]).
const NOTSENT_LOWAT: u32 = 32 * 1024;

/// The `TCP_NOTSENT_LOWAT` to send a file body with: [`NOTSENT_LOWAT`],
/// or, when the serving thread is saturated, no limit to speak of (the
/// largest value the option takes), so one `sendfile` fills the send
/// buffer.
fn notsent_lowat(saturated: bool) -> u32 {
    if saturated {
        i32::MAX as u32
    } else {
        NOTSENT_LOWAT
    }
}

/// Sets [`notsent_lowat`] on `tcp` before a file body is sent (one
/// `setsockopt` per body: the thread's state may have changed since the
/// last, or the connection moved).
fn set_file_notsent_lowat(tcp: &TcpStream, saturated: bool) {
    let _ = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(notsent_lowat(saturated));
}

fn admit<H: Handler>(
    shared: &Arc<Shared<H>>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&TlsAcceptor>,
) {
    let stats = &shared.stats;
    let open = stats.open_connections.load(Ordering::Relaxed);
    // Near the cap, idle keep-alive connections make room for new clients
    // (down to three quarters of it), rather than new clients being refused
    // while idle ones hold every slot.
    let cap = shared.connection_cap;
    if open + 1 >= cap - cap / 8 {
        shared.shed_idle_down_to(cap - cap / 4);
    }
    if open >= cap {
        // Over the limit: accept and close at once (like nginx when out of
        // worker_connections), so the backlog does not fill with clients
        // that will wait for nothing.
        stats.refused_over_limit.fetch_add(1, Ordering::Relaxed);
        drop(stream);
        return;
    }
    stats.open_connections.fetch_add(1, Ordering::AcqRel);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    // Responses are written whole in one writev: Nagle's algorithm would only
    // hold back the tail of a response waiting for an ACK.
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(NOTSENT_LOWAT);
    let local = stream.local_addr().unwrap_or(peer);
    let guard = ConnectionGuard {
        shared: shared.clone(),
    };
    let tls = tls.cloned();
    let Some(shard) = shared.shards.pick() else {
        start_connection(guard, stream, peer, local, tls);
        return;
    };
    // The socket leaves this thread's event loop for its shard's.
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%peer, %error, "cannot hand the connection to a thread");
            return;
        }
    };
    shared.shards.hand_over(
        shard,
        Box::new(move || match TcpStream::from_std(stream) {
            Ok(stream) => start_connection(guard, stream, peer, local, tls),
            Err(error) => tracing::debug!(%peer, %error, "cannot register the connection"),
        }),
    );
}

/// Serves a new connection on this thread: HTTP directly, or after the TLS
/// handshake.
fn start_connection<H: Handler>(
    guard: ConnectionGuard<H>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    {
        match tls {
            None => {
                let info = CompactInfo::new(peer, local, false);
                tokio::spawn(run_connection(guard, stream, info, Protocol::Sniff));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let info = CompactInfo::new(peer, local, true);
                    let timeout = guard.shared.config.header_read_timeout;
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    };
                    // RFC 7301: the protocol the client and we agreed on decides.
                    let protocol = match stream.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Protocol::Http2,
                        _ => Protocol::Http1,
                    };
                    run_connection(guard, stream, info, protocol).await;
                });
            }
        }
    }
}

/// A [`ConnectionInfo`] in 32 bytes instead of 68, as idle connections
/// keep it: IPv6 addresses (rarer here) go to the heap.
#[derive(Debug, Clone)]
pub(crate) struct CompactInfo {
    peer: Endpoint,
    local: Endpoint,
    secure: bool,
}

#[derive(Debug, Clone)]
enum Endpoint {
    V4(std::net::SocketAddrV4),
    V6(Box<std::net::SocketAddrV6>),
}

impl Endpoint {
    fn new(address: SocketAddr) -> Self {
        match address {
            SocketAddr::V4(v4) => Endpoint::V4(v4),
            SocketAddr::V6(v6) => Endpoint::V6(Box::new(v6)),
        }
    }

    fn expand(&self) -> SocketAddr {
        match self {
            Endpoint::V4(v4) => SocketAddr::V4(*v4),
            Endpoint::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

impl CompactInfo {
    fn new(peer: SocketAddr, local: SocketAddr, secure: bool) -> Self {
        Self {
            peer: Endpoint::new(peer),
            local: Endpoint::new(local),
            secure,
        }
    }

    pub(crate) fn expand(&self) -> ConnectionInfo {
        ConnectionInfo {
            peer: self.peer.expand(),
            local: self.local.expand(),
            secure: self.secure,
        }
    }
}

/// Decrements the open-connection count however the task ends (even by a
/// panic unwinding through it).
struct ConnectionGuard<H> {
    shared: Arc<Shared<H>>,
}

impl<H> Drop for ConnectionGuard<H> {
    fn drop(&mut self) {
        self.shared.shards.connection_ended();
        self.shared
            .stats
            .open_connections
            .fetch_sub(1, Ordering::AcqRel);
        self.shared.connection_closed.notify_waiters();
    }
}

/// A connection's byte stream as the HTTP/1.1 writer sees it: on plain TCP
/// it may send a file body by `sendfile(2)`; through TLS it may not (the
/// bytes must be encrypted in user space, and there is no kTLS here).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket itself, when nothing stands between it and the response.
    fn plain_tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// The TCP socket under the stream (under TLS too), to read its
    /// `TCP_INFO`.
    fn tcp_socket(&self) -> Option<&TcpStream> {
        self.plain_tcp()
    }

    /// The socket itself, to move the connection to another thread.
    fn into_plain_tcp(self) -> Result<TcpStream, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

impl Transport for TcpStream {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        Ok(self)
    }
}

impl<S: Transport> Transport for tokio_rustls::server::TlsStream<S> {
    fn tcp_socket(&self) -> Option<&TcpStream> {
        self.get_ref().0.tcp_socket()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Plain TCP: HTTP/2 if the client opens with the preface, else HTTP/1.
    Sniff,
    Http1,
    /// An HTTP/1 connection that moved here between two requests.
    Http1KeptAlive,
    Http2,
}

/// Not an `async fn`: the arguments of one are stored twice in its future
/// (once as arguments, once as locals), and this future lives as long as
/// the connection; an `async move` block captures them once.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in this long-lived future"
)]
fn run_connection<S, H>(
    guard: ConnectionGuard<H>,
    mut io: S,
    info: CompactInfo,
    protocol: Protocol,
) -> impl Future<Output = ()> + Send
where
    S: Transport + 'static,
    H: Handler,
{
    async move {
        match protocol {
            // Boxed: hyper's connection state is kilobytes, and only HTTP/2
            // connections should pay for it.
            Protocol::Http2 => {
                Box::pin(h2::serve(io, BytesMut::new(), &guard.shared, info.expand())).await;
            }
            Protocol::Http1 | Protocol::Sniff | Protocol::Http1KeptAlive => {
                let sniff = protocol == Protocol::Sniff;
                let kept_alive = protocol == Protocol::Http1KeptAlive;
                match h1::serve(&mut io, &guard.shared, &info, sniff, kept_alive).await {
                    h1::Served::Closed => {}
                    h1::Served::Http2(already_read) => {
                        Box::pin(h2::serve(io, *already_read, &guard.shared, info.expand())).await;
                    }
                    h1::Served::Move => {
                        if let Ok(tcp) = io.into_plain_tcp() {
                            move_connection(guard, tcp, info);
                        }
                    }
                }
            }
        }
    }
}

/// Hands a plain HTTP/1 connection, between two requests, to the least
/// busy other thread, where it waits for its next request.
fn move_connection<H: Handler>(guard: ConnectionGuard<H>, tcp: TcpStream, info: CompactInfo) {
    let shards = guard.shared.shards.clone();
    let std = match tcp.into_std() {
        Ok(std) => std,
        Err(error) => {
            tracing::debug!(%error, "cannot move a connection between threads");
            return;
        }
    };
    shards.move_connection(Box::new(move || {
        resume_moved(guard, std, info);
    }));
}

/// Runs on the thread a connection moved to.
fn resume_moved<H: Handler>(
    guard: ConnectionGuard<H>,
    std: std::net::TcpStream,
    info: CompactInfo,
) {
    match TcpStream::from_std(std) {
        Ok(tcp) => {
            tokio::spawn(run_connection(guard, tcp, info, Protocol::Http1KeptAlive));
        }
        Err(error) => tracing::debug!(%error, "cannot register a moved connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_units() {
        let config: ServerConfig = toml::from_str(
            "header_read_timeout = \"2s\"\nmax_header_bytes = \"32KiB\"\nmax_connections = 10\n",
        )
        .unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.max_header_bytes, ByteSize::kib(32));
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.idle_timeout, ServerConfig::default().idle_timeout);
    }

    struct Nothing;

    impl Handler for Nothing {
        async fn handle(
            &self,
            _request: http::Request<crate::RequestBody>,
            _connection: ConnectionInfo,
        ) -> http::Response<crate::ResponseBody> {
            http::Response::new(crate::ResponseBody::Empty)
        }
    }

    /// Every open connection costs its task's future, whatever state it is
    /// in, so the future must stay small: the handler's future and the
    /// body pump are boxed, buffers are on the heap only while in use.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let shared = Arc::new(Shared::new(
            Arc::new(Nothing),
            ServerConfig::default(),
            Arc::new(ServerStats::default()),
            Shards::start(1).unwrap().set().clone(),
            1024,
        ));
        shared
            .stats
            .open_connections
            .fetch_add(1, Ordering::Relaxed);
        let info = CompactInfo::new(peer, peer, false);
        let future = run_connection(ConnectionGuard { shared }, stream, info, Protocol::Sniff);
        let size = std::mem::size_of_val(&future);
        println!("connection future: {size} bytes");
        // With tokio's task header and trailer (~100 B) and its 128 B
        // alignment, a future of at most 280 B keeps the task in 384 B.
        assert!(size <= 280, "a connection future of {size} bytes");
    }

    /// Keeps the calling thread busy for `duration`.
    fn burn(duration: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < duration {
            std::hint::spin_loop();
        }
    }

    /// Answers with the name of the thread that served the request; `/burn`
    /// first keeps that thread busy for 30 ms.
    struct ThreadName;

    impl Handler for ThreadName {
        async fn handle(
            &self,
            request: http::Request<crate::RequestBody>,
            _connection: ConnectionInfo,
        ) -> http::Response<crate::ResponseBody> {
            if request.uri().path() == "/burn" {
                burn(Duration::from_millis(30));
            }
            let name = std::thread::current().name().unwrap_or("").to_string();
            http::Response::new(crate::ResponseBody::Full(name.into()))
        }
    }

    /// One request on a raw HTTP/1.1 connection: the response body.
    async fn get_body(stream: &mut TcpStream, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-response");
            received.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    return body[..length].to_string();
                }
            }
        }
    }

    /// Connections arriving together are packed onto the first thread; when
    /// it saturates while another thread idles and the machine has idle
    /// CPU, some of them move, between two requests, to the idle thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saturated_thread_sheds_connections_to_an_idle_one() {
        shards::tests::force_idle_cpu(1000);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(ThreadName),
            ServerConfig {
                threads: 2,
                ..ServerConfig::default()
            },
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..4 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            assert_eq!(get_body(&mut stream, "/").await, "kinema-http-0");
            clients.push(stream);
        }
        // Every connection keeps the first thread busy until one of them is
        // served elsewhere (or 10 s pass).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let one_moved = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut stream| {
                let one_moved = one_moved.clone();
                tokio::spawn(async move {
                    let mut threads = Vec::new();
                    while tokio::time::Instant::now() < deadline
                        && !one_moved.load(Ordering::Relaxed)
                    {
                        let thread = get_body(&mut stream, "/burn").await;
                        let moved = thread != "kinema-http-0";
                        threads.push(thread);
                        if moved {
                            one_moved.store(true, Ordering::Relaxed);
                        }
                    }
                    threads
                })
            })
            .collect();
        let mut served_by = Vec::new();
        for task in tasks {
            served_by.push(task.await.unwrap());
        }
        let moved = served_by
            .iter()
            .filter(|threads| threads.last().is_some_and(|t| t == "kinema-http-1"))
            .count();
        assert!(
            moved >= 1,
            "no connection moved to the idle thread in 10 s: {served_by:?}"
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// Answers with the server's load as the handler sees it; `/burn`
    /// first keeps its thread busy for 1.2 s, more than two sample periods.
    struct LoadReport(Arc<ServerStats>);

    impl Handler for LoadReport {
        async fn handle(
            &self,
            request: http::Request<crate::RequestBody>,
            _connection: ConnectionInfo,
        ) -> http::Response<crate::ResponseBody> {
            if request.uri().path() == "/burn" {
                burn(Duration::from_millis(1200));
            }
            let load = self.0.load().to_string();
            http::Response::new(crate::ResponseBody::Full(load.into()))
        }
    }

    /// The load is the share of the last sample period the serving thread
    /// was awake: about 0 while it waits for requests, 1 at the end of a
    /// request that kept it busy for longer than two periods (the last
    /// sample then fell wholly inside the busy time).
    #[tokio::test]
    async fn the_load_is_the_share_of_time_the_serving_threads_are_awake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stats = Arc::new(ServerStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_stats(
            listener,
            Arc::new(LoadReport(stats.clone())),
            ServerConfig {
                threads: 1,
                ..ServerConfig::default()
            },
            None,
            stats.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let mut stream = TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(shards::SAMPLE_PERIOD * 3).await;
        let idle: f64 = get_body(&mut stream, "/").await.parse().unwrap();
        assert!(idle < 0.5, "an idle server's load is {idle}");
        let busy: f64 = get_body(&mut stream, "/burn").await.parse().unwrap();
        assert!(busy > 0.9, "a saturated server's load is {busy}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// The kernel takes both values (an error would be ignored, leaving
    /// whatever the socket had).
    #[tokio::test]
    async fn a_saturated_thread_sends_files_with_the_unsent_limit_lifted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let read = || socket2::SockRef::from(&stream).tcp_notsent_lowat().unwrap();
        set_file_notsent_lowat(&stream, true);
        assert!(read() >= 1 << 30, "{}", read());
        set_file_notsent_lowat(&stream, false);
        assert_eq!(read(), 32 * 1024);
    }

    #[test]
    fn the_connection_cap_leaves_room_for_files() {
        assert_eq!(connection_cap(50_000, 1024), 768);
        assert_eq!(connection_cap(50_000, 256), 192);
        assert_eq!(connection_cap(50_000, 1 << 20), 50_000);
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(50_000, 40), 16);
        assert_eq!(connection_cap(50_000, u64::MAX), 50_000);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let error = toml::from_str::<ServerConfig>("idle_timout = \"2s\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("idle_timout"), "{error}");
    }
}
