//! One admitted connection: what it keeps while open (a compact
//! [`ConnectionInfo`], a guard that counts it closed however it ends), the
//! byte stream it is served over ([`Transport`]: plain TCP or TLS), and the
//! dispatch to HTTP/1.1 (`h1.rs`) or HTTP/2 (`h2.rs`), including the move
//! of an HTTP/1.1 connection to another serving thread between requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Shared, h1, h2};
use crate::{ConnectionInfo, Handler};

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
    pub(super) fn new(peer: SocketAddr, local: SocketAddr, secure: bool) -> Self {
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
pub(super) struct ConnectionGuard<H> {
    pub(super) shared: Arc<Shared<H>>,
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
pub(super) enum Protocol {
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
pub(super) fn run_connection<S, H>(
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
