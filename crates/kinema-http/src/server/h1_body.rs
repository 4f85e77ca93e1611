//! HTTP/1.1 request bodies: the framing decoder (Content-Length and chunked,
//! RFC 9112 §6 and §7.1) and the one-chunk channel through which the
//! connection hands the body to the handler as it arrives.
//!
//! Nothing here buffers a whole body: the connection reads the next chunk
//! from the socket only when the handler asks for one, so an upload of
//! gigabytes flows through a few kilobytes of memory, and a handler that
//! never reads the body never makes the client send it (100-continue).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most read from the socket for, and handed over as, one body chunk.
const BODY_READ_SIZE: usize = 64 * 1024;
/// Longest chunk-size line (size, extensions) or trailer section we accept.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
enum ChunkedState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: skipping the trailer section.
    Trailers,
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(ChunkedState),
    Done,
}

/// Decodes one request body from the connection's read buffer and socket.
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    state: State,
    read_timeout: Duration,
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl BodyDecoder {
    pub(crate) fn new(framing: Framing, read_timeout: Duration) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Chunked(ChunkedState::Size),
        };
        Self {
            state,
            read_timeout,
        }
    }

    /// True once the whole body (and for chunked, its trailers) is consumed,
    /// so that the next bytes on the connection are the next request.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The next piece of the body, `None` at its end.
    pub(crate) async fn next_chunk<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        buffer: &mut BytesMut,
    ) -> io::Result<Option<Bytes>> {
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Length(remaining) => {
                    if buffer.is_empty() {
                        fill(io, buffer, self.read_timeout, *remaining).await?;
                    }
                    let take = (*remaining).min(buffer.len().min(BODY_READ_SIZE) as u64) as usize;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::Done;
                    }
                    return Ok(Some(buffer.split_to(take).freeze()));
                }
                State::Chunked(chunked) => match chunked {
                    ChunkedState::Size => match httparse::parse_chunk_size(buffer) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            buffer.advance(used);
                            *chunked = if size == 0 {
                                ChunkedState::Trailers
                            } else {
                                ChunkedState::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) => {
                            if buffer.len() > MAX_CHUNK_LINE {
                                return Err(invalid("chunk size line too long"));
                            }
                            fill(io, buffer, self.read_timeout, MAX_CHUNK_LINE as u64).await?;
                        }
                        Err(_) => return Err(invalid("invalid chunk size line")),
                    },
                    ChunkedState::Data(remaining) => {
                        if buffer.is_empty() {
                            let want = *remaining + 2;
                            fill(io, buffer, self.read_timeout, want).await?;
                            continue;
                        }
                        let take =
                            (*remaining).min(buffer.len().min(BODY_READ_SIZE) as u64) as usize;
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            *chunked = ChunkedState::DataEnd;
                        }
                        return Ok(Some(buffer.split_to(take).freeze()));
                    }
                    ChunkedState::DataEnd => {
                        if buffer.len() < 2 {
                            fill(io, buffer, self.read_timeout, 2).await?;
                            continue;
                        }
                        if &buffer[..2] != b"\r\n" {
                            return Err(invalid("chunk data not followed by crlf"));
                        }
                        buffer.advance(2);
                        *chunked = ChunkedState::Size;
                    }
                    ChunkedState::Trailers => {
                        // RFC 9112 §7.1.2: trailer fields are optional to
                        // process; we validate their syntax and drop them.
                        let mut headers = [httparse::EMPTY_HEADER; 32];
                        match httparse::parse_headers(buffer, &mut headers) {
                            Ok(httparse::Status::Complete((used, _))) => {
                                buffer.advance(used);
                                self.state = State::Done;
                            }
                            Ok(httparse::Status::Partial) => {
                                if buffer.len() > MAX_TRAILERS {
                                    return Err(invalid("trailer section too large"));
                                }
                                fill(io, buffer, self.read_timeout, 2).await?;
                            }
                            Err(_) => return Err(invalid("invalid trailer section")),
                        }
                    }
                },
            }
        }
    }
}

/// Reads at least one more byte into `buffer` (up to `hint`, bounded).
async fn fill<S: AsyncRead + Unpin>(
    io: &mut S,
    buffer: &mut BytesMut,
    read_timeout: Duration,
    hint: u64,
) -> io::Result<()> {
    let want = hint.clamp(512, BODY_READ_SIZE as u64) as usize;
    buffer.reserve(want);
    match tokio::time::timeout(read_timeout, io.read_buf(buffer)).await {
        Ok(Ok(0)) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed the connection before the request body ended",
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request body stalled past body_read_timeout",
        )),
    }
}

/// The slot between the connection (sender) and the handler's
/// [`RequestBody`](crate::RequestBody) (receiver): at most one chunk in
/// flight, and the sender learns when the receiver wants one.
#[derive(Debug, Default)]
struct Slot {
    chunk: Option<io::Result<Bytes>>,
    finished: bool,
    wanted: bool,
    receiver_gone: bool,
    receiver_waker: Option<Waker>,
    sender_waker: Option<Waker>,
}

pub(crate) fn channel() -> (BodySender, BodyReceiver) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    (BodySender { slot: slot.clone() }, BodyReceiver { slot })
}

#[derive(Debug)]
pub(crate) struct BodySender {
    slot: Arc<Mutex<Slot>>,
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    // The lock is held only for a few field updates that cannot panic.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BodySender {
    /// Waits until the receiver asks for a chunk; false if it was dropped.
    pub(crate) async fn wanted(&self) -> bool {
        std::future::poll_fn(|cx| {
            let mut slot = lock(&self.slot);
            if slot.receiver_gone {
                Poll::Ready(false)
            } else if slot.wanted && slot.chunk.is_none() {
                Poll::Ready(true)
            } else {
                slot.sender_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Hands over a chunk (or an error); call only after [`Self::wanted`].
    pub(crate) fn send(&self, chunk: io::Result<Bytes>) {
        let mut slot = lock(&self.slot);
        slot.chunk = Some(chunk);
        slot.wanted = false;
        if let Some(waker) = slot.receiver_waker.take() {
            waker.wake();
        }
    }
}

impl BodySender {
    /// Ends the body: once the receiver took the last chunk, it sees the end.
    pub(crate) fn finish(&self) {
        let mut slot = lock(&self.slot);
        slot.finished = true;
        if let Some(waker) = slot.receiver_waker.take() {
            waker.wake();
        }
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Marks the body as cut short: a receiver still reading sees an error
/// rather than a clean (truncated) end.
pub(crate) fn abandon(sender: BodySender) {
    let mut slot = lock(&sender.slot);
    if slot.chunk.is_none() {
        slot.chunk = Some(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "request body unavailable: the response was sent before it was read",
        )));
    }
    drop(slot);
    drop(sender);
}

#[derive(Debug)]
pub(crate) struct BodyReceiver {
    slot: Arc<Mutex<Slot>>,
}

impl Stream for BodyReceiver {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut slot = lock(&self.slot);
        if let Some(chunk) = slot.chunk.take() {
            return Poll::Ready(Some(chunk));
        }
        if slot.finished {
            return Poll::Ready(None);
        }
        slot.wanted = true;
        slot.receiver_waker = Some(cx.waker().clone());
        if let Some(waker) = slot.sender_waker.take() {
            waker.wake();
        }
        Poll::Pending
    }
}

impl Drop for BodyReceiver {
    fn drop(&mut self) {
        let mut slot = lock(&self.slot);
        slot.receiver_gone = true;
        if let Some(waker) = slot.sender_waker.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(framing: Framing, wire: &[u8]) -> io::Result<(Vec<u8>, BytesMut)> {
        // Feed the wire in 3-byte reads to exercise every partial state.
        let mut io = tokio_test_reader(wire);
        let mut buffer = BytesMut::new();
        let mut decoder = BodyDecoder::new(framing, Duration::from_secs(5));
        let mut body = Vec::new();
        while let Some(chunk) = decoder.next_chunk(&mut io, &mut buffer).await? {
            body.extend_from_slice(&chunk);
        }
        assert!(decoder.is_done());
        Ok((body, buffer))
    }

    fn tokio_test_reader(wire: &[u8]) -> impl AsyncRead + Unpin {
        let pieces: Vec<Vec<u8>> = wire.chunks(3).map(<[u8]>::to_vec).collect();
        let stream = futures::stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from(p))));
        tokio_util_like::StreamReader::new(stream)
    }

    /// A minimal stream-to-reader adapter so these unit tests need no extra
    /// dependency.
    mod tokio_util_like {
        use super::*;

        pub struct StreamReader<S> {
            stream: S,
            current: Bytes,
        }

        impl<S> StreamReader<S> {
            pub fn new(stream: S) -> Self {
                Self {
                    stream,
                    current: Bytes::new(),
                }
            }
        }

        impl<S: Stream<Item = io::Result<Bytes>> + Unpin> AsyncRead for StreamReader<S> {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                while self.current.is_empty() {
                    match Pin::new(&mut self.stream).poll_next(cx) {
                        Poll::Ready(Some(Ok(bytes))) => self.current = bytes,
                        Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                        Poll::Ready(None) => return Poll::Ready(Ok(())),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let n = self.current.len().min(buf.remaining());
                buf.put_slice(&self.current[..n]);
                self.current.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let wire = b"5;name=v\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: 1\r\n\r\nGET /next";
        let (body, rest) = decode(Framing::Chunked, wire).await.unwrap();
        assert_eq!(body, b"hello, world");
        // The decoder stops exactly at the end of the body.
        assert!(b"GET /next".starts_with(&rest));
    }

    #[tokio::test]
    async fn content_length_stops_at_length() {
        let (body, rest) = decode(Framing::Length(5), b"hello").await.unwrap();
        assert_eq!(body, b"hello");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn truncated_bodies_are_errors() {
        let error = decode(Framing::Length(10), b"hello").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let error = decode(Framing::Chunked, b"5\r\nhel").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn malformed_chunks_are_errors() {
        let error = decode(Framing::Chunked, b"zz\r\nhello\r\n0\r\n\r\n")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("chunk size"), "{error}");
        let error = decode(Framing::Chunked, b"5\r\nhelloXX0\r\n\r\n")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("crlf"), "{error}");
    }
}
