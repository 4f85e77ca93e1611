//! The listener's life: the public `serve` entry points, the accept loop
//! that admits connections (or refuses them over the cap) and hands them to
//! a serving thread, the coarse idle clock, and the drain at shutdown.
//! What happens on a connection once admitted is `connection.rs`'s.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::connection::{CompactInfo, ConnectionGuard, Protocol, run_connection};
use super::notsent_lowat::NOTSENT_LOWAT;
use super::shards::Shards;
use super::{Phase, ServerConfig, ServerStats, Shared, raise_descriptor_limit};
use crate::Handler;
use crate::tcp_info::TcpInfoSampling;

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
