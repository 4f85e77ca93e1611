//! The bodies handlers receive and return.
//!
//! A response body is one of a few shapes the connection layer can send
//! without copying: shared `Bytes` go to the socket as they are, so every
//! viewer of a cached segment is sent the same buffer, and a
//! [`FileSlice`] of a sealed in-memory file goes by `sendfile(2)` on plain
//! TCP, so the kernel does not even copy it into the socket.
//!
//! Both types also speak `http_body::Body` / hyper's `Incoming`, which is how
//! the HTTP/2 path (hyper) carries them; the HTTP/1.1 path writes them itself.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body::{Frame, SizeHint};

use crate::shared_file::FileSlice;

pub enum ResponseBody {
    Empty,
    /// One shared buffer.
    Full(Bytes),
    /// Several shared buffers sent back to back (e.g. `multipart/byteranges`).
    Parts(Vec<Bytes>),
    /// A range of a sealed in-memory file: `sendfile(2)` on plain-TCP
    /// HTTP/1.1, its mapped `Bytes` everywhere else (HTTP/2, TLS). Worth it
    /// for large bodies; a small one is cheaper as `Full`.
    File(FileSlice),
    /// Produced chunk by chunk (large files read in slices, proxied bodies).
    /// An error ends the response abruptly, so the client sees a truncated
    /// body rather than a complete wrong one.
    Stream(BoxStream<'static, Result<Bytes, std::io::Error>>),
}

impl ResponseBody {
    /// The exact length when it is known without running a stream.
    pub fn known_length(&self) -> Option<u64> {
        match self {
            ResponseBody::Empty => Some(0),
            ResponseBody::Full(bytes) => Some(bytes.len() as u64),
            ResponseBody::Parts(parts) => Some(parts.iter().map(|p| p.len() as u64).sum()),
            ResponseBody::File(slice) => Some(slice.len()),
            ResponseBody::Stream(_) => None,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match this {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(_) => match std::mem::replace(this, ResponseBody::Empty) {
                ResponseBody::Full(bytes) if !bytes.is_empty() => {
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                _ => Poll::Ready(None),
            },
            ResponseBody::File(_) => match std::mem::replace(this, ResponseBody::Empty) {
                ResponseBody::File(slice) if !slice.is_empty() => {
                    Poll::Ready(Some(Ok(Frame::data(slice.bytes()))))
                }
                _ => Poll::Ready(None),
            },
            ResponseBody::Parts(parts) => {
                // Parts are few (a multipart response's pieces), so taking the
                // first one out of the Vec costs nothing worth a VecDeque.
                while !parts.is_empty() {
                    let part = parts.remove(0);
                    if !part.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(part))));
                    }
                }
                *this = ResponseBody::Empty;
                Poll::Ready(None)
            }
            ResponseBody::Stream(stream) => match stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    *this = ResponseBody::Empty;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.known_length(), Some(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.known_length() {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Full(bytes) => write!(f, "Full({} bytes)", bytes.len()),
            ResponseBody::Parts(parts) => write!(f, "Parts({} parts)", parts.len()),
            ResponseBody::File(slice) => write!(f, "File({slice:?})"),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::Full(bytes)
    }
}

/// A request body as a stream of chunks; empty for bodiless requests.
pub struct RequestBody {
    inner: Option<BoxStream<'static, Result<Bytes, std::io::Error>>>,
}

impl RequestBody {
    pub fn empty() -> Self {
        Self { inner: None }
    }

    pub fn from_stream(stream: BoxStream<'static, Result<Bytes, std::io::Error>>) -> Self {
        Self {
            inner: Some(stream),
        }
    }

    /// Adapts any `http_body::Body` (hyper's `Incoming` on HTTP/2): its data
    /// frames become chunks, trailers are dropped, errors become I/O errors.
    pub fn from_body<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if body.is_end_stream() {
            return Self::empty();
        }
        Self::from_stream(
            http_body_util::BodyDataStream::new(body)
                .map_err(std::io::Error::other)
                .boxed(),
        )
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.inner.is_some() {
            "RequestBody(stream)"
        } else {
            "RequestBody(empty)"
        })
    }
}

impl Stream for RequestBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut() {
            None => Poll::Ready(None),
            Some(stream) => stream.as_mut().poll_next(cx),
        }
    }
}
