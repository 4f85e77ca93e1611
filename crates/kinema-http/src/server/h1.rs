//! HTTP/1.1 (RFC 9112), written for memory and speed in the manner of
//! nginx rather than on hyper's connection machinery.
//!
//! - An idle keep-alive connection holds no read buffer: it waits for the
//!   socket with a read into a buffer on the *stack* of the poll, and only
//!   bytes that actually arrived are copied to the heap. The buffer is
//!   released as soon as a request (and any pipelined successor) is consumed.
//! - Header values and the request target are slices of that one buffer
//!   (`Bytes`), not copies.
//! - A response head is built in a per-thread reused buffer, and sent
//!   together with the body's shared `Bytes` in one `writev`; a file body
//!   on plain TCP follows its head by `sendfile` instead (`sendfile.rs`).
//! - The handler's future is boxed, so its size never inflates the
//!   per-connection task that idle connections keep.
//!
//! This file holds the connection and keep-alive loop; the request head is
//! parsed in `h1_head.rs`, responses are written by `h1_write.rs`, and bodies
//! are framed by `h1_body.rs`.
//!
//! What it does not do: request routing, body limits (the handler's), or
//! HTTP/2 (see `h2.rs`).

use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::Either;
use futures::{FutureExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::h1_body::{self, BodyDecoder, BodySender};
use super::h1_head::{HeadError, ParsedHead, read_head};
use super::h1_write::{RequestFacts, write_all_vectored, write_error, write_response};
use super::{CompactInfo, Phase, Shared, Transport};
use crate::{ConnectionInfo, Handler, RequestBody, ResponseBody};

/// How much one idle-wake read takes from the socket (on the stack).
const FIRST_READ_SIZE: usize = 8 * 1024;
/// A lingering close (RFC 9112 §9.6) discards at most this much...
const LINGER_BYTES: usize = 256 * 1024;
/// ...for at most this long.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Waits for the first bytes of a new connection (or of the next request on
/// a keep-alive one) without holding any buffer while waiting. `None` when
/// the client closed, the wait timed out, or the listener began to drain.
/// A kept-alive connection (`sheddable`) also ends the wait when the
/// listener needs room for new connections.
fn wait_for_bytes<'a, S: AsyncRead + Unpin, H>(
    io: &'a mut S,
    timeout: Duration,
    shared: &'a Shared<H>,
    sheddable: bool,
) -> Option<WaitForBytes<'a, S, H>> {
    // Created (so counted by notify_waiters) before the phase is checked,
    // so a drain starting in between still wakes the wait.
    let wakeup = shared.wakeup.notified();
    if shared.phase() != Phase::Running {
        return None;
    }
    Some(WaitForBytes {
        io,
        shared,
        deadline_millis: shared.now_millis() + timeout.as_millis() as u64,
        wakeup,
        sheddable,
    })
}

pin_project_lite::pin_project! {
    /// The state of an idle connection, written out by hand rather than as
    /// an async block: it is what every idle keep-alive connection holds, so
    /// every byte here is multiplied by the number of idle viewers. No timer
    /// of its own: the listener's idle clock wakes it to check its deadline.
    struct WaitForBytes<'a, S, H> {
        io: &'a mut S,
        shared: &'a Shared<H>,
        deadline_millis: u64,
        #[pin]
        wakeup: tokio::sync::futures::Notified<'a>,
        sheddable: bool,
    }
}

impl<S: AsyncRead + Unpin, H> Future for WaitForBytes<'_, S, H> {
    type Output = Option<BytesMut>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The buffer lives only for this poll, not in the task: an idle
        // connection's memory is its task and socket, nothing more.
        let mut stack = [MaybeUninit::<u8>::uninit(); FIRST_READ_SIZE];
        let mut read_buf = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut **this.io).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) if !read_buf.filled().is_empty() => {
                return Poll::Ready(Some(BytesMut::from(read_buf.filled())));
            }
            Poll::Ready(_) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            if this.shared.phase() != Phase::Running {
                return Poll::Ready(None);
            }
            match this.wakeup.as_mut().poll(cx) {
                // A tick (or a phase change): the clock is read only then,
                // not on every poll; wait for the next tick.
                Poll::Ready(()) => {
                    if this.shared.now_millis() >= *this.deadline_millis
                        || (*this.sheddable && this.shared.should_shed_idle())
                    {
                        return Poll::Ready(None);
                    }
                    this.wakeup.set(this.shared.wakeup.notified());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How an HTTP/1.x connection's service ended.
pub(super) enum Served {
    /// Closed (or to be dropped).
    Closed,
    /// The client opened with the HTTP/2 preface: the bytes read so far
    /// (boxed: the connection's task holds this value, and unboxed it would
    /// need a tag besides `BytesMut`'s one spare pointer value).
    Http2(Box<BytesMut>),
    /// Between two requests, asked to move to another serving thread.
    Move,
}

/// Serves HTTP/1.x requests on `io` until the connection should close.
/// With `sniff_http2`, a connection that opens with the HTTP/2 preface is
/// handed back instead. `kept_alive` is a connection that already carried a
/// request (on another thread): it waits `idle_timeout` for its next.
///
/// When the listener drains, a connection waiting between requests closes
/// at once, one in the middle of a request finishes it (and says
/// `connection: close`), unless the drain deadline passes first.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice in this long-lived future"
)]
pub(super) fn serve<'a, S, H>(
    io: &'a mut S,
    shared: &'a Arc<Shared<H>>,
    info: &'a CompactInfo,
    sniff_http2: bool,
    kept_alive: bool,
) -> impl Future<Output = Served> + Send + 'a
where
    S: Transport,
    H: Handler,
{
    async move {
        // (`shared.config` is spelled out rather than bound to a local: a
        // local would take room in this long-lived future.)
        let mut first = !kept_alive;
        let mut buffer = BytesMut::new();
        loop {
            if buffer.is_empty() {
                // Release the previous request's allocation before waiting.
                drop(std::mem::take(&mut buffer));
                // Holding nothing but its socket, a plain connection can
                // move to a less busy thread (see `shards.rs`).
                if !first && io.plain_tcp().is_some() && shared.shards.should_move() {
                    return Served::Move;
                }
                // A new connection has header_read_timeout to send its first
                // request; a kept-alive one idle_timeout for its next.
                let wait = if first {
                    shared.config.header_read_timeout
                } else {
                    shared.config.idle_timeout
                };
                let Some(waiting) = wait_for_bytes(io, wait, shared, !first) else {
                    return Served::Closed;
                };
                let Some(read) = waiting.await else {
                    return Served::Closed;
                };
                buffer = read;
                if first && sniff_http2 && buffer[0] == HTTP2_PREFACE[0] {
                    let timeout = shared.config.header_read_timeout;
                    match Box::pin(sniff_preface(io, buffer, timeout)).await {
                        Some((true, read)) => return Served::Http2(Box::new(read)),
                        Some((false, read)) => buffer = read,
                        None => return Served::Closed,
                    }
                }
                first = false;
            }
            // Boxed, like everything a request needs while in flight: the task
            // an idle connection keeps must not be sized for a busy one.
            let cycle = Box::pin(async {
                tokio::select! {
                    biased;
                    keep_alive = request_cycle(io, &mut buffer, shared, info) => keep_alive,
                    () = shared.reached(Phase::Aborting) => None,
                }
            });
            let keep_alive = match cycle.await {
                Some(keep_alive) => keep_alive && shared.phase() == Phase::Running,
                // Gone, too slow, or broken mid-response: nothing to linger for.
                None => return Served::Closed,
            };
            if !keep_alive {
                Box::pin(close_gracefully(io)).await;
                return Served::Closed;
            }
        }
    }
}

/// Reads until the bytes received either are or cannot be the HTTP/2
/// preface: `Some((is_http2, bytes))`, `None` when the client went away or
/// stalled.
async fn sniff_preface<S: AsyncRead + Unpin>(
    io: &mut S,
    mut buffer: BytesMut,
    timeout: Duration,
) -> Option<(bool, BytesMut)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = buffer.len().min(HTTP2_PREFACE.len());
        if buffer[..seen] != HTTP2_PREFACE[..seen] {
            return Some((false, buffer));
        }
        if seen == HTTP2_PREFACE.len() {
            return Some((true, buffer));
        }
        buffer.reserve(HTTP2_PREFACE.len());
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Reads one request head and answers it: `Some(keep_alive)` when a
/// response went out, `None` when the connection must just be dropped.
async fn request_cycle<S, H>(
    io: &mut S,
    buffer: &mut BytesMut,
    shared: &Arc<Shared<H>>,
    info: &CompactInfo,
) -> Option<bool>
where
    S: Transport,
    H: Handler,
{
    let config = &shared.config;
    let parsed = match read_head(io, buffer, shared).await {
        Ok(parsed) => parsed,
        Err(HeadError::Close) => return None,
        Err(HeadError::Respond(status, message)) => {
            let _ = write_error(io, status, message, config.write_timeout).await;
            return Some(false);
        }
    };
    shared.stats.count_request();
    let info = info.expand();
    match exchange(io, buffer, shared, info, parsed).await {
        Ok(keep_alive) => Some(keep_alive),
        Err(error) => {
            tracing::debug!(peer = %info.peer, %error, "connection ended while responding");
            None
        }
    }
}

/// Runs one request through the handler and writes its response; returns
/// whether the connection may carry another request.
async fn exchange<S, H>(
    io: &mut S,
    buffer: &mut BytesMut,
    shared: &Arc<Shared<H>>,
    info: ConnectionInfo,
    parsed: ParsedHead,
) -> io::Result<bool>
where
    S: Transport,
    H: Handler,
{
    let config = &shared.config;
    let ParsedHead {
        request,
        framing,
        mut keep_alive,
        expect_continue,
    } = parsed;
    let proxied = crate::tcp_info::through_intermediary(request.headers());
    let facts = RequestFacts {
        head: request.method() == Method::HEAD,
        version: request.version(),
    };
    let mut decoder = BodyDecoder::new(framing, config.body_read_timeout);
    let (request, sender) = if decoder.is_done() {
        (request.map(|()| RequestBody::empty()), None)
    } else {
        let (sender, receiver) = h1_body::channel();
        let body = RequestBody::from_stream(receiver.boxed());
        (request.map(|()| body), Some(sender))
    };
    let handled = Box::pin(AssertUnwindSafe(shared.handler.handle(request, info)).catch_unwind());
    let outcome = match sender {
        None => handled.await,
        Some(sender) => {
            let pump = Box::pin(pump_body(
                io,
                buffer,
                &mut decoder,
                &sender,
                expect_continue,
                config.write_timeout,
            ));
            let outcome = match futures::future::select(handled, pump).await {
                Either::Left((outcome, _pump)) => outcome,
                Either::Right(((), handled)) => handled.await,
            };
            if !decoder.is_done() {
                h1_body::abandon(sender);
            }
            outcome
        }
    };
    let response = match outcome {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(peer = %info.peer, panic = %message, "handler panicked; answering 500");
            internal_error()
        }
    };
    // A body the handler left unread leaves the connection mid-message: it
    // cannot carry another request.
    keep_alive &= decoder.is_done();
    // Whether to read the viewer's TCP_INFO once this body is written.
    let sample_after = shared.tcp_info.as_ref().is_some_and(|sampling| {
        !facts.head
            && !proxied
            && response.status().is_success()
            && response
                .body()
                .known_length()
                .is_some_and(|length| sampling.wants(length))
    });
    write_response(
        io,
        response,
        facts,
        &mut keep_alive,
        config.write_timeout,
        &shared.stats,
        &shared.shards,
    )
    .await?;
    if sample_after && let (Some(sampling), Some(socket)) = (&shared.tcp_info, io.tcp_socket()) {
        sampling.sample(socket, info.peer);
    }
    Ok(keep_alive)
}

/// Moves the request body from the connection to the handler, one chunk per
/// demand, sending `100 Continue` (RFC 9110 §10.1.1) when the handler first
/// asks for the body.
async fn pump_body<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buffer: &mut BytesMut,
    decoder: &mut BodyDecoder,
    sender: &BodySender,
    mut expect_continue: bool,
    write_timeout: Duration,
) {
    loop {
        if !sender.wanted().await {
            return;
        }
        if expect_continue {
            expect_continue = false;
            // RFC 9110 §10.1.1: a client that already sent body bytes does
            // not need the interim response.
            if buffer.is_empty() {
                let continue_line: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                if let Err(error) =
                    write_all_vectored(io, &mut [IoSlice::new(continue_line)], write_timeout).await
                {
                    sender.send(Err(error));
                    return;
                }
            }
        }
        match decoder.next_chunk(io, buffer).await {
            Ok(Some(chunk)) => {
                if !chunk.is_empty() {
                    sender.send(Ok(chunk));
                }
                if decoder.is_done() {
                    sender.finish();
                    return;
                }
            }
            Ok(None) => {
                sender.finish();
                return;
            }
            Err(error) => {
                sender.send(Err(error));
                return;
            }
        }
    }
}

fn internal_error() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(Bytes::from_static(
        b"internal server error\n",
    )));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Closes our side, then reads and discards what the client still sends for
/// a little while (RFC 9112 §9.6): closing with unread input makes the kernel
/// send a reset, which can destroy the response before the client reads it.
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let linger = async {
        io.shutdown().await?;
        let mut sink = vec![0u8; 4096];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let n = io.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            discarded += n;
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(LINGER_TIME, linger).await;
}
