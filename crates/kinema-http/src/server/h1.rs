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
//! What it does not do: request routing, body limits (the handler's), or
//! HTTP/2 (see `h2.rs`).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::Either;
use futures::{FutureExt, StreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::h1_body::{self, BodyDecoder, BodySender, Framing};
use super::shards::ShardSet;
use super::{
    CompactInfo, Phase, ServerStats, Shared, Transport, date, sendfile, set_file_notsent_lowat,
};
use crate::{ConnectionInfo, Handler, RequestBody, ResponseBody};

/// How much one idle-wake read takes from the socket (on the stack).
const FIRST_READ_SIZE: usize = 8 * 1024;
/// Most header fields in one request; more → 431.
const MAX_HEADERS: usize = 100;
/// Most iovecs per writev, well under Linux's IOV_MAX of 1024.
const MAX_IOVECS: usize = 64;
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

// ---------------------------------------------------------------------------
// Request head

struct ParsedHead {
    request: Request<()>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

enum HeadError {
    /// Answer with this status and close.
    Respond(StatusCode, &'static str),
    /// Close without a word (client gone, or too slow).
    Close,
}

fn bad_request(message: &'static str) -> HeadError {
    HeadError::Respond(StatusCode::BAD_REQUEST, message)
}

/// Reads until `buffer` holds a complete header section, then splits it off
/// and parses it; the body and any pipelined request stay in `buffer`.
async fn read_head<S: AsyncRead + Unpin, H>(
    io: &mut S,
    buffer: &mut BytesMut,
    shared: &Shared<H>,
) -> Result<ParsedHead, HeadError> {
    let config = &shared.config;
    let max_header = config.max_header_bytes.as_u64() as usize;
    let max_uri = config.max_uri_bytes.as_u64() as usize;
    // The clock starts at the request's first byte, which has arrived; it
    // is read only if the head is not all there (usually it is).
    let mut deadline = None;
    loop {
        if let Some(length) = head_length(buffer)? {
            if length > max_header {
                return Err(HeadError::Respond(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request header section too large",
                ));
            }
            let head = buffer.split_to(length).freeze();
            return parse_head(head, max_uri);
        }
        // Incomplete: a request line still unfinished past the longest
        // target we take is a 414, a header section past its limit a 431.
        let request_line_done = memchr_newline(buffer);
        if !request_line_done && buffer.len() > max_uri + 64 {
            return Err(HeadError::Respond(
                StatusCode::URI_TOO_LONG,
                "request target too long",
            ));
        }
        if buffer.len() >= max_header {
            return Err(HeadError::Respond(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header section too large",
            ));
        }
        buffer.reserve(4096.min(max_header + 1 - buffer.len()).max(1024));
        let deadline = *deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + config.header_read_timeout);
        match tokio::time::timeout_at(deadline, io.read_buf(buffer)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow (slowloris): nothing to answer.
            _ => return Err(HeadError::Close),
        }
    }
}

/// The length of the header section if `buffer` holds all of it. A plain
/// function, not inlined into the async reader: its field array must not
/// live in the connection's future across an await.
fn head_length(buffer: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => Ok(Some(length)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::Respond(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many request header fields",
        )),
        Err(_) => Err(bad_request("malformed request")),
    }
}

fn memchr_newline(buffer: &[u8]) -> bool {
    buffer.contains(&b'\n')
}

/// Builds the request from a complete header section; values and the target
/// share `head`'s memory.
fn parse_head(head: Bytes, max_uri: usize) -> Result<ParsedHead, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    if !matches!(parsed.parse(&head), Ok(httparse::Status::Complete(_))) {
        return Err(bad_request("malformed request"));
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(bad_request("malformed request line"));
    };
    if target.len() > max_uri {
        return Err(HeadError::Respond(
            StatusCode::URI_TOO_LONG,
            "request target too long",
        ));
    }
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| bad_request("invalid method"))?;
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes()))
        .map_err(|_| bad_request("invalid request target"))?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| bad_request("invalid header field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value))
            .map_err(|_| bad_request("invalid header field value"))?;
        headers.append(name, value);
    }

    // RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request.
    if version == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return Err(bad_request(
            "an http/1.1 request needs exactly one host header",
        ));
    }
    let framing = body_framing(&headers, version)?;
    let (mut keep_alive, close) = connection_options(&headers);
    // RFC 9112 §9.3: 1.1 persists unless closed; 1.0 only when asked.
    keep_alive = if close {
        false
    } else {
        version == Version::HTTP_11 || keep_alive
    };
    let expect_continue = match headers.get(header::EXPECT) {
        None => false,
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"100-continue") => {
            // RFC 9110 §10.1.1: never send 100 to an HTTP/1.0 client.
            version == Version::HTTP_11
        }
        Some(_) => {
            return Err(HeadError::Respond(
                StatusCode::EXPECTATION_FAILED,
                "only the 100-continue expectation is supported",
            ));
        }
    };

    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(ParsedHead {
        request,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// RFC 9112 §6.3: how the body of a request is delimited. Ambiguous
/// framing (both Transfer-Encoding and Content-Length, differing lengths) is
/// rejected outright, since it is how requests are smuggled past proxies.
fn body_framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .peekable();
    // The field's presence decides, not its codings: a proxy may take an
    // empty `Transfer-Encoding` for chunked while we read Content-Length.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if codings.peek().is_none() {
            return Err(bad_request(
                "transfer-encoding names no coding; send chunked or no transfer-encoding",
            ));
        }
        if version == Version::HTTP_10 {
            // RFC 9112 §6.1: HTTP/1.0 has no transfer codings.
            return Err(bad_request("transfer-encoding in an http/1.0 request"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(bad_request(
                "both transfer-encoding and content-length in one request",
            ));
        }
        let codings: Vec<&[u8]> = codings.collect();
        if codings
            .iter()
            .any(|coding| !coding.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(HeadError::Respond(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer coding; only chunked is understood",
            ));
        }
        if codings.len() > 1 {
            return Err(bad_request("chunked applied more than once"));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 19 {
                return Err(bad_request("invalid content-length"));
            }
            let parsed: u64 = std::str::from_utf8(item)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| bad_request("invalid content-length"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(bad_request("conflicting content-length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(length) => Framing::Length(length),
    })
}

/// The `keep-alive` and `close` options of the Connection header.
fn connection_options(headers: &HeaderMap) -> (bool, bool) {
    let mut keep_alive = false;
    let mut close = false;
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            close |= token.eq_ignore_ascii_case(b"close");
        }
    }
    (keep_alive, close)
}

// ---------------------------------------------------------------------------
// Responses

#[derive(Debug, Clone, Copy)]
struct RequestFacts {
    head: bool,
    version: Version,
}

/// How the body of a response goes on the wire.
enum Output {
    /// Nothing after the head (HEAD, 204, 304, 1xx).
    None,
    /// Known length, in the head's Content-Length.
    Sized,
    /// A stream whose length the handler declared.
    Declared(u64),
    /// A stream of unknown length to an HTTP/1.1 client (RFC 9112 §7.1).
    Chunked,
    /// A stream of unknown length to an HTTP/1.0 client: ends with the
    /// connection.
    UntilClose,
}

thread_local! {
    /// Reused response-head buffers, so that building a head allocates
    /// nothing in the steady state.
    static HEAD_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

struct HeadBuffer(Vec<u8>);

impl HeadBuffer {
    fn take() -> Self {
        let reused = HEAD_POOL
            .try_with(|pool| pool.borrow_mut().pop())
            .ok()
            .flatten();
        Self(reused.unwrap_or_else(|| Vec::with_capacity(512)))
    }
}

impl Drop for HeadBuffer {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() > 16 * 1024 {
            return;
        }
        buffer.clear();
        let _ = HEAD_POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < 64 {
                pool.push(buffer);
            }
        });
    }
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
    version: Version,
) {
    // We answer as HTTP/1.1 even to 1.0 clients (RFC 9110 §6.2).
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // Framing and connection management are ours to decide.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date::append_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = content_length {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, length);
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

async fn write_response<S: Transport>(
    io: &mut S,
    response: Response<ResponseBody>,
    facts: RequestFacts,
    keep_alive: &mut bool,
    write_timeout: Duration,
    stats: &ServerStats,
    shards: &ShardSet,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let (_, close) = connection_options(&parts.headers);
    if close {
        *keep_alive = false;
    }
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    // RFC 9110 §6.4.1: no content in 1xx, 204 and 304 responses, nor in a
    // response to HEAD (which still says how long the GET's would be,
    // §9.3.2).
    let no_content_status = status.is_informational() || status == StatusCode::NO_CONTENT;
    let (content_length, output) = if no_content_status {
        (None, Output::None)
    } else if facts.head || status == StatusCode::NOT_MODIFIED {
        let length = declared_length.or(if status == StatusCode::NOT_MODIFIED {
            None
        } else {
            body.known_length()
        });
        (length, Output::None)
    } else {
        match (body.known_length(), declared_length) {
            (Some(length), _) => (Some(length), Output::Sized),
            (None, Some(declared)) => (Some(declared), Output::Declared(declared)),
            (None, None) if facts.version == Version::HTTP_11 => (None, Output::Chunked),
            (None, None) => {
                *keep_alive = false;
                (None, Output::UntilClose)
            }
        }
    };
    let mut head = HeadBuffer::take();
    write_head(
        &mut head.0,
        status,
        &parts.headers,
        content_length,
        matches!(output, Output::Chunked),
        *keep_alive,
        facts.version,
    );
    drop(parts);

    match (output, body) {
        (Output::None, _) | (Output::Sized, ResponseBody::Empty) => {
            write_all_vectored(io, &mut [IoSlice::new(&head.0)], write_timeout).await?;
        }
        (Output::Sized, ResponseBody::Full(bytes)) => {
            let mut slices = [IoSlice::new(&head.0), IoSlice::new(&bytes)];
            let count = if bytes.is_empty() { 1 } else { 2 };
            write_all_vectored(io, &mut slices[..count], write_timeout).await?;
        }
        (Output::Sized, ResponseBody::File(slice)) => match io.plain_tcp() {
            Some(tcp) if !slice.is_empty() && slice.ready_to_send() => {
                set_file_notsent_lowat(tcp, shards.current_is_saturated());
                sendfile::send_head_and_file(tcp, &head.0, &slice, write_timeout).await?;
            }
            // TLS, nothing to send, or pages the kernel evicted (sendfile
            // would wait for the disk): the bytes in memory, like `Full`.
            tcp => {
                if tcp.is_some() && !slice.is_empty() {
                    stats
                        .file_bodies_from_memory
                        .fetch_add(1, Ordering::Relaxed);
                }
                let bytes = slice.bytes();
                let mut slices = [IoSlice::new(&head.0), IoSlice::new(&bytes)];
                let count = if bytes.is_empty() { 1 } else { 2 };
                write_all_vectored(io, &mut slices[..count], write_timeout).await?;
            }
        },
        (Output::Sized, ResponseBody::Parts(parts)) => {
            let mut slices = Vec::with_capacity(parts.len() + 1);
            slices.push(IoSlice::new(&head.0));
            slices.extend(
                parts
                    .iter()
                    .filter(|part| !part.is_empty())
                    .map(|part| IoSlice::new(part)),
            );
            write_all_vectored(io, &mut slices, write_timeout).await?;
        }
        (output, ResponseBody::Stream(stream)) => {
            let complete = write_stream(io, &head.0, stream, output, write_timeout).await?;
            if !complete {
                *keep_alive = false;
            }
        }
        (_, body) => {
            // known_length() is Some for every non-stream body, so the arms
            // above are exhaustive in practice; say so if that ever changes.
            tracing::error!(?body, "response body shape not handled; closing");
            *keep_alive = false;
        }
    }
    drop(head);
    io.flush().await
}

/// Writes a streamed body after `head`; false if it ended short (the
/// connection must then close so the client sees the truncation).
async fn write_stream<S: AsyncWrite + Unpin>(
    io: &mut S,
    head: &[u8],
    mut stream: futures::stream::BoxStream<'static, io::Result<Bytes>>,
    output: Output,
    write_timeout: Duration,
) -> io::Result<bool> {
    let mut pending_head = Some(head);
    let mut sent: u64 = 0;
    loop {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => {
                tracing::warn!(%error, "response body stream failed; truncating the response");
                if let Some(head) = pending_head {
                    write_all_vectored(io, &mut [IoSlice::new(head)], write_timeout).await?;
                }
                return Ok(false);
            }
            None => break,
        };
        if chunk.is_empty() {
            continue;
        }
        let mut size_line = [0u8; 18];
        let mut slices: [IoSlice<'_>; 4] = [IoSlice::new(&[]); 4];
        let mut count = 0;
        if let Some(head) = pending_head.take() {
            slices[count] = IoSlice::new(head);
            count += 1;
        }
        let mut chunk = chunk;
        match output {
            Output::Chunked => {
                let length = hex_size_line(&mut size_line, chunk.len());
                slices[count] = IoSlice::new(&size_line[..length]);
                slices[count + 1] = IoSlice::new(&chunk);
                slices[count + 2] = IoSlice::new(b"\r\n");
                count += 3;
            }
            Output::Declared(declared) => {
                let room = declared - sent;
                if chunk.len() as u64 > room {
                    tracing::warn!(
                        declared,
                        "response stream longer than its content-length; truncating"
                    );
                    chunk.truncate(room as usize);
                }
                slices[count] = IoSlice::new(&chunk);
                count += 1;
            }
            _ => {
                slices[count] = IoSlice::new(&chunk);
                count += 1;
            }
        }
        write_all_vectored(io, &mut slices[..count], write_timeout).await?;
        sent += chunk.len() as u64;
        if let Output::Declared(declared) = output
            && sent == declared
        {
            return Ok(stream.next().now_or_never().flatten().is_none());
        }
    }
    let mut tail: Vec<IoSlice<'_>> = Vec::with_capacity(2);
    if let Some(head) = pending_head {
        tail.push(IoSlice::new(head));
    }
    match output {
        Output::Chunked => tail.push(IoSlice::new(b"0\r\n\r\n")),
        Output::Declared(declared) if sent < declared => {
            tracing::warn!(
                declared,
                sent,
                "response stream shorter than its content-length"
            );
            if !tail.is_empty() {
                write_all_vectored(io, &mut tail, write_timeout).await?;
            }
            return Ok(false);
        }
        _ => {}
    }
    if !tail.is_empty() {
        write_all_vectored(io, &mut tail, write_timeout).await?;
    }
    Ok(true)
}

/// `{size in hex}\r\n` into `out`; returns its length.
fn hex_size_line(out: &mut [u8; 18], size: usize) -> usize {
    let digits = format_hex(size);
    let length = digits.len();
    out[..length].copy_from_slice(digits.as_bytes());
    out[length] = b'\r';
    out[length + 1] = b'\n';
    length + 2
}

fn format_hex(size: usize) -> HexDigits {
    let mut digits = HexDigits {
        bytes: [0; 16],
        start: 16,
    };
    let mut value = size;
    loop {
        digits.start -= 1;
        digits.bytes[digits.start] = b"0123456789abcdef"[value & 15];
        value >>= 4;
        if value == 0 {
            break;
        }
    }
    digits
}

struct HexDigits {
    bytes: [u8; 16],
    start: usize,
}

impl HexDigits {
    fn len(&self) -> usize {
        16 - self.start
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// Writes all of `slices` with as few writev calls as the socket allows. A
/// client that accepts nothing for `timeout` is given up on.
async fn write_all_vectored<S: AsyncWrite + Unpin>(
    io: &mut S,
    mut slices: &mut [IoSlice<'_>],
    timeout: Duration,
) -> io::Result<()> {
    while !slices.is_empty() {
        let batch = slices.len().min(MAX_IOVECS);
        let mut write = poll_fn(|cx| Pin::new(&mut *io).poll_write_vectored(cx, &slices[..batch]));
        // Usually the socket takes the bytes at once: the timer (a clock
        // read and a registration with the runtime) is only set up when it
        // does not.
        let written = match (&mut write).now_or_never() {
            Some(written) => written?,
            None => match tokio::time::timeout(timeout, write).await {
                Ok(written) => written?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client accepted no response bytes within write_timeout",
                    ));
                }
            },
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// A short plain-text error response, then the connection closes.
async fn write_error<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: StatusCode,
    message: &'static str,
    write_timeout: Duration,
) -> io::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let mut head = HeadBuffer::take();
    write_head(
        &mut head.0,
        status,
        &headers,
        Some(message.len() as u64 + 1),
        false,
        false,
        Version::HTTP_11,
    );
    let mut slices = [
        IoSlice::new(&head.0),
        IoSlice::new(message.as_bytes()),
        IoSlice::new(b"\n"),
    ];
    write_all_vectored(io, &mut slices, write_timeout).await?;
    io.flush().await
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

/// [`head_length`] then [`parse_head`] over bytes already read, as
/// [`read_head`] applies them; for the fuzz targets (`fuzzing.rs`).
pub(super) fn parse_buffered_head(
    buffer: &mut BytesMut,
    max_uri: usize,
) -> super::fuzzing::HeadOutcome {
    use super::fuzzing::HeadOutcome;
    let refused = |error| match error {
        HeadError::Respond(status, message) => HeadOutcome::Refused(status, message),
        HeadError::Close => HeadOutcome::Closed,
    };
    match head_length(buffer) {
        Ok(None) => HeadOutcome::Incomplete,
        Err(error) => refused(error),
        Ok(Some(length)) => match parse_head(buffer.split_to(length).freeze(), max_uri) {
            Ok(head) => HeadOutcome::Request {
                request: Box::new(head.request),
                framing: head.framing.into(),
                keep_alive: head.keep_alive,
                expect_continue: head.expect_continue,
            },
            Err(error) => refused(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedHead, (StatusCode, &'static str)> {
        parse_head(Bytes::copy_from_slice(text.as_bytes()), 8192).map_err(|error| match error {
            HeadError::Respond(status, message) => (status, message),
            HeadError::Close => (StatusCode::OK, "close"),
        })
    }

    #[test]
    fn parses_a_request_sharing_its_buffer() {
        let parsed =
            parse("GET /v/a/master.m3u8?t=1 HTTP/1.1\r\nHost: x\r\nX-A: b c\r\n\r\n").unwrap();
        assert_eq!(parsed.request.method(), Method::GET);
        assert_eq!(parsed.request.uri().path(), "/v/a/master.m3u8");
        assert_eq!(parsed.request.uri().query(), Some("t=1"));
        assert_eq!(parsed.request.headers()["x-a"], "b c");
        assert_eq!(parsed.framing, Framing::Empty);
        assert!(parsed.keep_alive);
    }

    #[test]
    fn framing_rules_of_rfc_9112() {
        let framing = |text| parse(text).map(|p| p.framing);
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        let status = |text| parse(text).err().map(|(status, _)| status);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n"),
            Some(StatusCode::EXPECTATION_FAILED)
        );
    }

    #[test]
    fn an_empty_transfer_encoding_is_refused_not_ignored() {
        // It was skipped, so Content-Length framed the body of a request a
        // proxy in front may have framed as chunked.
        for text in [
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: ,\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n",
        ] {
            let refused = parse(text).err().map(|(status, _)| status);
            assert_eq!(refused, Some(StatusCode::BAD_REQUEST), "{text:?}");
        }
    }

    #[test]
    fn persistence_by_version() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn hex_sizes() {
        let mut out = [0u8; 18];
        let length = hex_size_line(&mut out, 0x1f40);
        assert_eq!(&out[..length], b"1f40\r\n");
        let length = hex_size_line(&mut out, 0);
        assert_eq!(&out[..length], b"0\r\n");
    }

    #[test]
    fn head_lists_framing_once() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        let mut out = Vec::new();
        write_head(
            &mut out,
            StatusCode::OK,
            &headers,
            Some(12),
            false,
            true,
            Version::HTTP_10,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ndate: "));
        assert!(text.ends_with("\r\ncontent-length: 12\r\nconnection: keep-alive\r\n\r\n"));
        assert_eq!(text.matches("content-length").count(), 1);
    }
}
