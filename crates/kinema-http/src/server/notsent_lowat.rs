//! How many unsent bytes a connection's socket may queue
//! (`TCP_NOTSENT_LOWAT`): the value every accepted socket gets, and the
//! lifted one a saturated serving thread sends file bodies with. Socket
//! options only; when to set them is the accept loop's and the HTTP/1.1
//! writer's business.

use tokio::net::TcpStream;

/// Unsent bytes a connection's socket may queue before it stops reporting
/// itself writable (`TCP_NOTSENT_LOWAT`). Unlimited (Linux's default), a
/// sendfile of a segment fills the whole send buffer with bytes the network
/// has not taken yet, and loopback viewers then spent about a third more
/// CPU per byte received (most likely because the transmission moves into
/// the receiver's acknowledgement processing, on the receiver's CPU). At
/// 128 KiB the load client's ceiling against the origin rose from 15 to
/// 26–27 Gbit/s (`kinema bench --saturate true`, 300 viewers, client on its
/// own core), against nginx's 20. Measured again with segments sent from
/// the page cache: 8–64 KiB all gave 34–35 Gbit/s against 30 at 128 KiB,
/// and at 6,500 paced 3 Mbit/s viewers 32 KiB took 8% less server CPU
/// (10.3–10.9 s against 11.8 over 30 s) and 10–20% less client CPU. The
/// sender wakes a little more often instead.
///
/// That holds while the serving thread has time to spare. A saturated
/// thread pays for every wake-up: with a paced viewer's 1.5 MB segment sent in
/// ~50 `sendfile` calls, a server confined to 10% of a CPU carried 1,600–
/// 1,900 viewers at 32 KiB and 2,500–3,200 with no limit (nginx, which
/// fills the whole send buffer, 2,600–2,900). So a file body sent by a
/// saturated thread lifts the limit first ([`notsent_lowat`]).
pub(super) const NOTSENT_LOWAT: u32 = 32 * 1024;

/// The `TCP_NOTSENT_LOWAT` to send a file body with: [`NOTSENT_LOWAT`],
/// or, when the serving thread is saturated, no limit to speak of (the
/// largest value the option takes), so one `sendfile` fills the send
/// buffer.
fn notsent_lowat(saturated: bool) -> u32 {
    if saturated {
        i32::MAX as u32
    } else {
        NOTSENT_LOWAT
    }
}

/// Sets [`notsent_lowat`] on `tcp` before a file body is sent (one
/// `setsockopt` per body: the thread's state may have changed since the
/// last, or the connection moved).
pub(super) fn set_file_notsent_lowat(tcp: &TcpStream, saturated: bool) {
    let _ = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(notsent_lowat(saturated));
}
