//! HTTP/2 (RFC 9113) by hyper: prior-knowledge h2c on plain TCP (after the
//! preface was sniffed) and ALPN `h2` on TLS, over the same generic code.
//!
//! This file only adapts: hyper's `Incoming` becomes a [`RequestBody`],
//! [`ResponseBody`] is already an `http_body::Body`, handler panics become
//! 500s, and the listener's drain becomes a GOAWAY.

use std::convert::Infallible;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Phase, Shared};
use crate::{ConnectionInfo, Handler, RequestBody, ResponseBody};

pub(super) async fn serve<S, H>(
    io: S,
    already_read: BytesMut,
    shared: &Arc<Shared<H>>,
    info: ConnectionInfo,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let config = &shared.config;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes.as_u64()).unwrap_or(u32::MAX))
        // hyper has no idle timeout for HTTP/2; a ping the client does not
        // answer within the idle timeout ends a dead connection instead.
        .keep_alive_interval(Some(config.idle_timeout))
        .keep_alive_timeout(config.header_read_timeout);
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, request, info).await) }
    });
    let io = TokioIo::new(Rewind {
        prefix: already_read.freeze(),
        inner: io,
    });
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(peer = %info.peer, %error, "http/2 connection ended with an error");
            }
            return;
        }
        () = shared.reached(Phase::Draining) => {}
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

async fn handle<H: Handler>(
    shared: &Shared<H>,
    request: Request<Incoming>,
    info: ConnectionInfo,
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

/// A stream that first yields bytes already read (the sniffed preface).
struct Rewind<S> {
    prefix: Bytes,
    inner: S,
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
