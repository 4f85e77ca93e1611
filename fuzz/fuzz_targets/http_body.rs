//! The HTTP/1.1 request-body decoder, Content-Length and chunked
//! (RFC 9112 §6.3, §7.1): never panics, decodes what an encoder wrote,
//! leaves a pipelined request untouched, and gives the same answer however
//! the bytes are split across reads.

#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use kinema_http::server::fuzzing::{BodyFraming, decode_body};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

#[derive(Debug, Arbitrary)]
enum Input {
    /// Arbitrary bytes after a head that declared `framing`.
    Raw {
        chunked: bool,
        length: u16,
        read_size: u8,
        bytes: Vec<u8>,
    },
    /// A body as a client encodes it, then a pipelined request.
    Encoded {
        chunks: Vec<Chunk>,
        trailers: Vec<(u8, u8)>,
        read_size: u8,
        pipelined: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
struct Chunk {
    data: Vec<u8>,
    uppercase: bool,
    leading_zeros: u8,
    extension: Option<u8>,
}

/// Hands out `bytes` at most `size` at a time, as a socket might.
struct Reads<'a> {
    bytes: &'a [u8],
    size: usize,
}

impl AsyncRead for Reads<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let count = self.size.min(self.bytes.len()).min(out.remaining());
        let (now, later) = self.bytes.split_at(count);
        out.put_slice(now);
        self.bytes = later;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

/// Decodes `stream` read `read_size` bytes at a time (0: all of it already
/// buffered behind the head); the body and every byte after it.
fn decode(framing: BodyFraming, stream: &[u8], read_size: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut buffer, mut reads) = if read_size == 0 {
        (
            BytesMut::from(stream),
            Reads {
                bytes: &[],
                size: 1,
            },
        )
    } else {
        (
            BytesMut::new(),
            Reads {
                bytes: stream,
                size: read_size,
            },
        )
    };
    let body = runtime().block_on(decode_body(framing, &mut reads, &mut buffer))?;
    let mut rest = buffer.to_vec();
    rest.extend_from_slice(reads.bytes);
    Ok((body, rest))
}

fn encode(chunks: &[Chunk], trailers: &[(u8, u8)], pipelined: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut body = Vec::new();
    let mut wire = Vec::new();
    for chunk in chunks.iter().filter(|chunk| !chunk.data.is_empty()) {
        wire.extend(std::iter::repeat_n(
            b'0',
            usize::from(chunk.leading_zeros % 8),
        ));
        let size = if chunk.uppercase {
            format!("{:X}", chunk.data.len())
        } else {
            format!("{:x}", chunk.data.len())
        };
        wire.extend_from_slice(size.as_bytes());
        if let Some(extension) = chunk.extension {
            wire.extend_from_slice(format!(";ext{}={}", extension % 10, extension).as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&chunk.data);
        wire.extend_from_slice(b"\r\n");
        body.extend_from_slice(&chunk.data);
    }
    wire.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        wire.extend_from_slice(format!("x-trailer-{}: {}\r\n", name % 16, value).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(pipelined);
    (body, wire)
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            chunked,
            length,
            read_size,
            bytes,
        } => {
            let framing = if chunked {
                BodyFraming::Chunked
            } else {
                BodyFraming::Length(u64::from(length))
            };
            let whole = decode(framing, &bytes, 0);
            let split = decode(framing, &bytes, usize::from(read_size).max(1));
            match (&whole, &split) {
                (Ok(whole), Ok(split)) => assert_eq!(whole, split),
                (Err(_), Err(_)) => {}
                _ => panic!("the split of the reads changed the outcome: {whole:?} vs {split:?}"),
            }
            if let Ok((body, rest)) = whole {
                assert!(body.len() + rest.len() <= bytes.len());
                assert!(bytes.ends_with(&rest));
                if !chunked {
                    assert_eq!(body, bytes[..usize::from(length)]);
                }
            }
        }
        Input::Encoded {
            chunks,
            trailers,
            read_size,
            pipelined,
        } => {
            // The decoder validates at most 32 trailer fields (it drops
            // them all); more is refused, as a bound on work per request.
            if trailers.len() > 32 {
                return;
            }
            let (body, wire) = encode(&chunks, &trailers, &pipelined);
            for read_size in [0, usize::from(read_size).max(1)] {
                let (decoded, rest) = decode(BodyFraming::Chunked, &wire, read_size)
                    .unwrap_or_else(|error| panic!("a well-formed chunked body refused: {error}"));
                assert_eq!(decoded, body);
                assert_eq!(
                    rest, pipelined,
                    "the decoder took bytes of the next request"
                );
            }
        }
    }
});
