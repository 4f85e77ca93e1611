//! HTTP/2 (RFC 9113) by hyper: prior-knowledge h2c on plain TCP (after the
//! preface was sniffed) and ALPN `h2` on TLS, over the same generic code.
//!
//! This file mostly adapts: hyper's `Incoming` becomes a [`RequestBody`],
//! [`ResponseBody`] is already an `http_body::Body`, handler panics become
//! 500s, and the listener's drain becomes a GOAWAY.
//!
//! It also bounds what a client that does not read can pin. hyper asks a
//! body for its next chunk only while the stream has flow-control window
//! and less than [`MAX_SEND_BUFFER`] queued, so a streamed body (read from
//! disk as it is asked for) holds at most a chunk or two per stream; at
//! most [`STREAMED_BODIES_PER_CONNECTION`] streamed bodies run at once per
//! connection (the rest wait for their turn before their head is sent);
//! and a connection that makes no progress — no new request and no
//! kilobyte written — for the idle or write timeout (the longer) is closed,
//! however diligently it answers PINGs.

use std::convert::Infallible;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Phase, Shared, Transport};
use crate::tcp_info::TcpInfoSampling;
use crate::{ConnectionInfo, Handler, RequestBody, ResponseBody};

/// Bytes hyper queues per stream beyond the peer's window before it stops
/// asking the body for more (hyper's default is 400 KiB).
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// Streamed (read-as-sent) response bodies one connection may have running
/// at once; each holds up to a couple of read chunks.
pub(crate) const STREAMED_BODIES_PER_CONNECTION: usize = 4;
/// A write of at least this many bytes is progress; smaller ones (PING and
/// SETTINGS acknowledgements, window updates, one-byte DATA frames) are not.
const PROGRESS_BYTES: usize = 1024;

/// What shows a connection is still doing something useful.
#[derive(Debug, Default)]
struct Progress {
    /// Requests received plus writes of at least [`PROGRESS_BYTES`].
    events: AtomicU64,
}

impl Progress {
    fn note(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) async fn serve<S, H>(
    io: S,
    already_read: BytesMut,
    shared: &Arc<Shared<H>>,
    info: ConnectionInfo,
) where
    S: Transport + 'static,
    H: Handler,
{
    let config = &shared.config;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_send_buf_size(MAX_SEND_BUFFER)
        .max_header_list_size(u32::try_from(config.max_header_bytes.as_u64()).unwrap_or(u32::MAX))
        // A ping the client does not answer within the header-read timeout
        // ends a dead connection; one it answers does not keep it alive
        // (see `stalled`).
        .keep_alive_interval(Some(config.idle_timeout))
        .keep_alive_timeout(config.header_read_timeout);
    let progress = Arc::new(Progress::default());
    let streamed = Arc::new(tokio::sync::Semaphore::new(STREAMED_BODIES_PER_CONNECTION));
    let service_shared = shared.clone();
    let service_progress = progress.clone();
    let proxied = Arc::new(AtomicBool::new(false));
    let service_proxied = proxied.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = service_shared.clone();
        let streamed = streamed.clone();
        service_progress.note();
        if crate::tcp_info::through_intermediary(request.headers()) {
            service_proxied.store(true, Ordering::Relaxed);
        }
        async move { Ok::<_, Infallible>(handle(&shared, request, info, streamed).await) }
    });
    let io = TokioIo::new(Rewind {
        prefix: already_read.freeze(),
        inner: io,
        progress: progress.clone(),
        sampling: shared.tcp_info.clone().map(|sampling| ConnectionSampling {
            sampling,
            peer: info.peer,
            written: 0,
            proxied,
        }),
    });
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let stall_after = config.idle_timeout.max(config.write_timeout);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(peer = %info.peer, %error, "http/2 connection ended with an error");
            }
            return;
        }
        () = shared.reached(Phase::Draining) => {}
        () = stalled(&progress, stall_after) => {
            tracing::debug!(peer = %info.peer, "http/2 connection made no progress; closing it");
            // GOAWAY, and a short while for it to go out; a connection
            // that is not reading will not take it anyway.
            connection.as_mut().graceful_shutdown();
            let grace = config.header_read_timeout.min(Duration::from_secs(1));
            let _ = tokio::time::timeout(grace, connection).await;
            return;
        }
    }
    // Draining: GOAWAY, then let the streams in flight finish, unless the
    // drain deadline passes first.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(peer = %info.peer, %error, "http/2 connection ended with an error while draining");
            }
        }
        () = shared.reached(Phase::Aborting) => {}
    }
}

/// Resolves once `progress` saw no event for a whole `after` (checked
/// every quarter of it, so up to a quarter late).
async fn stalled(progress: &Progress, after: Duration) {
    let period = (after / 4).max(Duration::from_millis(10));
    let mut last = progress.events.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(period).await;
        let now = progress.events.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet = Duration::ZERO;
            continue;
        }
        quiet += period;
        if quiet >= after {
            return;
        }
    }
}

async fn handle<H: Handler>(
    shared: &Shared<H>,
    request: Request<Incoming>,
    info: ConnectionInfo,
    streamed: Arc<tokio::sync::Semaphore>,
) -> Response<ResponseBody> {
    shared.stats.count_request();
    let head = request.method() == Method::HEAD;
    let request = request.map(RequestBody::from_body);
    let handled = AssertUnwindSafe(shared.handler.handle(request, info))
        .catch_unwind()
        .await;
    let mut response = match handled {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(peer = %info.peer, panic = %message, "handler panicked; answering 500");
            let mut response = Response::new(ResponseBody::Full(Bytes::from_static(
                b"internal server error\n",
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    };
    // RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2.
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        response.headers_mut().remove(name);
    }
    response.headers_mut().remove("keep-alive");
    if !head && matches!(response.body(), ResponseBody::Stream(_)) {
        // The permit lives as long as the body: hyper drops the body when
        // the stream ends, is reset, or the connection closes.
        if let Ok(permit) = streamed.acquire_owned().await {
            let body = std::mem::replace(response.body_mut(), ResponseBody::Empty);
            if let ResponseBody::Stream(stream) = body {
                *response.body_mut() =
                    ResponseBody::Stream(Box::pin(futures::StreamExt::map(stream, move |chunk| {
                        let _held = &permit;
                        chunk
                    })));
            }
        }
    }
    if head {
        // RFC 9110 §9.3.2: same fields as GET, no content.
        let length = response.body().known_length();
        if let Some(length) = length
            && !response.headers().contains_key(header::CONTENT_LENGTH)
        {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        *response.body_mut() = ResponseBody::Empty;
    }
    response
}

/// A stream that first yields bytes already read (the sniffed preface),
/// notes writes large enough to be progress, and samples the viewer's
/// `TCP_INFO` when a sampler is set.
struct Rewind<S> {
    prefix: Bytes,
    inner: S,
    progress: Arc<Progress>,
    sampling: Option<ConnectionSampling>,
}

/// HTTP/2 interleaves responses, so a connection is sampled by the bytes
/// written on it: each time another `min_body_bytes` went out (by the
/// sampler's one-in-k rule), while the stream still has data queued;
/// never once a request on it came through an intermediary.
struct ConnectionSampling {
    sampling: TcpInfoSampling,
    peer: std::net::SocketAddr,
    written: u64,
    /// Set by the first request that carried `Via`.
    proxied: Arc<AtomicBool>,
}

impl<S: Transport> Rewind<S> {
    fn wrote(&mut self, written: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = written {
            if *n >= PROGRESS_BYTES {
                self.progress.note();
            }
            if let Some(connection) = &mut self.sampling {
                connection.written += *n as u64;
                if connection.written >= connection.sampling.min_body_bytes() {
                    connection.written = 0;
                    if !connection.proxied.load(Ordering::Relaxed)
                        && connection.sampling.picks()
                        && let Some(socket) = self.inner.tcp_socket()
                    {
                        connection.sampling.sample(socket, connection.peer);
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: Transport> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
