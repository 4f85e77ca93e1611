//! A response whose body is a [`FileSlice`], on plain TCP: the head by
//! `send(MSG_MORE)`, then the body by `sendfile(2)` from the slice's file
//! (a published file in the page cache, or a sealed memfd).
//!
//! Writing a body from user space costs the kernel a copy of every byte into
//! the socket (`_copy_from_iter` was 45% of the server's CPU on a 1.5 MB
//! segment); `sendfile` hands the socket references to the file's pages
//! instead, as nginx does from the page cache. `MSG_MORE` on the head keeps
//! it from leaving alone in a small packet (the socket has `TCP_NODELAY`):
//! it goes out with the first body bytes.
//!
//! The socket is non-blocking: each call sends what the socket buffer takes,
//! and on `EAGAIN` we wait for tokio's writable readiness, at most
//! `write_timeout` without progress, as the `writev` path does.

use std::io;
use std::time::Duration;

use rustix::net::SendFlags;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::shared_file::FileSlice;

/// Most bytes asked of one `sendfile` call (Linux moves at most
/// 0x7ffff000 per call anyway).
const MAX_SENDFILE_CALL: u64 = 1 << 30;

/// Sends `head`, then `body`, on `tcp`. The caller has checked that the
/// body's pages are in memory ([`FileSlice::ready_to_send`]).
pub(super) async fn send_head_and_file(
    tcp: &TcpStream,
    head: &[u8],
    body: &FileSlice,
    write_timeout: Duration,
) -> io::Result<()> {
    let mut head = head;
    while !head.is_empty() {
        let sent = nonblocking(tcp, write_timeout, || {
            rustix::net::send(tcp, head, SendFlags::MORE | SendFlags::NOSIGNAL)
        })
        .await?;
        if sent == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        head = &head[sent..];
    }
    let file = body.file().fd();
    // The slice's range is the content's; the content may start further in
    // its file (a disk tier's file, after its metadata).
    let base = body.file().offset();
    let (mut offset, end) = (body.range().start + base, body.range().end + base);
    while offset < end {
        let count = (end - offset).min(MAX_SENDFILE_CALL) as usize;
        // The kernel advances `offset` by what it sent.
        let sent = nonblocking(tcp, write_timeout, || {
            rustix::fs::sendfile(tcp, file, Some(&mut offset), count)
        })
        .await?;
        if sent == 0 {
            // Only a file shorter than its slice sends nothing: a sealed
            // memfd cannot shrink and a published file is never written
            // again, but never spin on it all the same.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sendfile sent nothing: the file ended before its slice",
            ));
        }
    }
    Ok(())
}

/// Runs `operation` on the non-blocking socket until it does something,
/// waiting for writability (at most `write_timeout` each time) whenever the
/// socket buffer is full.
async fn nonblocking(
    tcp: &TcpStream,
    write_timeout: Duration,
    mut operation: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<usize> {
    loop {
        // try_io clears tokio's readiness on EAGAIN, so the wait below
        // really waits for the socket buffer to drain.
        match tcp.try_io(Interest::WRITABLE, || operation().map_err(io::Error::from)) {
            Ok(sent) => return Ok(sent),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(write_timeout, tcp.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "client accepted no response bytes within write_timeout",
                        ));
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}
