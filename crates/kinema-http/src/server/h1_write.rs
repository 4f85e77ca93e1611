//! HTTP/1.1 responses: the response head built in a per-thread reused
//! buffer, sent with the body's `Bytes` in one `writev` (or followed by
//! `sendfile` for a file body on plain TCP), chunked streaming bodies, and
//! the short error responses the connection sends on its own.
//!
//! What it is not: request parsing (`h1_head.rs`), body decoding
//! (`h1_body.rs`), or the keep-alive loop that decides when to write (`h1.rs`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::h1_head::connection_options;
use super::shards::ShardSet;
use super::{ServerStats, Transport, date, sendfile, set_file_notsent_lowat};
use crate::ResponseBody;

/// Most iovecs per writev, well under Linux's IOV_MAX of 1024.
const MAX_IOVECS: usize = 64;

// ---------------------------------------------------------------------------
// Responses

#[derive(Debug, Clone, Copy)]
pub(super) struct RequestFacts {
    pub(super) head: bool,
    pub(super) version: Version,
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

pub(super) async fn write_response<S: Transport>(
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
pub(super) async fn write_all_vectored<S: AsyncWrite + Unpin>(
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
pub(super) async fn write_error<S: AsyncWrite + Unpin>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
