//! The bodies handlers receive and return.
//!
//! A response body is one of a few shapes the connection layer can send
//! without copying: shared `Bytes` go to the socket as they are, so every
//! viewer of a cached segment is sent the same buffer.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

pub enum ResponseBody {
    Empty,
    /// One shared buffer.
    Full(Bytes),
    /// Several shared buffers sent back to back (e.g. `multipart/byteranges`).
    Parts(Vec<Bytes>),
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
            ResponseBody::Stream(_) => None,
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Full(bytes) => write!(f, "Full({} bytes)", bytes.len()),
            ResponseBody::Parts(parts) => write!(f, "Parts({} parts)", parts.len()),
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
