//! The HTTP/1.1 request-head parser and body decoder, reachable from the
//! fuzz targets (`fuzz/` at the workspace root) without making the
//! connection machinery public. Not an API: nothing else calls it, and it
//! may change with the code it wraps.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, StatusCode};
use tokio::io::AsyncRead;

use super::h1_body::{BodyDecoder, Framing};

/// How a request's body is delimited, as the head parser decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

impl From<Framing> for BodyFraming {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyFraming::Empty,
            Framing::Length(length) => BodyFraming::Length(length),
            Framing::Chunked => BodyFraming::Chunked,
        }
    }
}

impl From<BodyFraming> for Framing {
    fn from(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::Empty => Framing::Empty,
            BodyFraming::Length(length) => Framing::Length(length),
            BodyFraming::Chunked => Framing::Chunked,
        }
    }
}

/// What the connection does with the bytes read so far of a request head.
#[derive(Debug)]
pub enum HeadOutcome {
    /// The header section is not complete yet: read more.
    Incomplete,
    /// A request; its head was split off the front of the buffer, which now
    /// starts with its body.
    Request {
        /// Boxed: it is most of the size of this enum.
        request: Box<Request<()>>,
        framing: BodyFraming,
        keep_alive: bool,
        expect_continue: bool,
    },
    /// Answered with this status, then closed.
    Refused(StatusCode, &'static str),
    /// Closed without an answer.
    Closed,
}

/// Parses the request head at the front of `buffer` as the connection does
/// (the size limits aside, which depend on how the bytes arrived).
pub fn parse_request_head(buffer: &mut BytesMut, max_uri: usize) -> HeadOutcome {
    super::h1_head::parse_buffered_head(buffer, max_uri)
}

/// Decodes a whole request body framed as `framing`: first from `buffer`
/// (what followed the head), then from `io`. What follows the body (a
/// pipelined request) stays in `buffer`.
pub async fn decode_body<S: AsyncRead + Unpin>(
    framing: BodyFraming,
    io: &mut S,
    buffer: &mut BytesMut,
) -> io::Result<Vec<u8>> {
    let mut decoder = BodyDecoder::new(framing.into(), Duration::from_secs(10));
    let mut body = Vec::new();
    while let Some(chunk) = decoder.next_chunk(io, buffer).await? {
        body.extend_from_slice(&chunk);
    }
    assert!(decoder.is_done(), "a body decoder ended before its end");
    Ok(body)
}
