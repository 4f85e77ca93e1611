//! What a viewer's TCP connection already says about its path: the kernel's
//! `TCP_INFO` (delivery rate, minimum and smoothed round-trip time,
//! retransmissions), read after a large response went out, so that network
//! quality is measured without sending a single probe.
//!
//! The listener calls a [`TcpInfoObserver`] with (peer, sample) when one is
//! set ([`TcpInfoSampling`]); without one nothing here runs. Samples whose
//! delivery rate was limited by the application rather than the network
//! (`tcpi_delivery_rate_app_limited`) are dropped: they say how fast we
//! sent, not how fast the path is. Nor is a response to a request that
//! came through an intermediary (one carrying `Via`, RFC 9110 §7.6.3, as
//! a cluster node's fill from its parent does) ever sampled: the far end
//! of that connection is the intermediary, whose link and reading pace are
//! its own and its downstream's, not a viewer's ([`through_intermediary`]).
//!
//! What it deliberately is not: an aggregator. Grouping by client prefix,
//! decay and ranking live with whoever observes (`kinema-netq`).

use std::cell::Cell;
use std::io;
use std::mem::offset_of;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One reading of a connection's `TCP_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfoSample {
    /// `tcpi_delivery_rate`: the most recent delivery-rate sample, bytes/s.
    pub delivery_rate_bytes_per_second: u64,
    /// `tcpi_min_rtt`: the smallest round-trip time seen (the path's
    /// propagation delay, queues empty).
    pub min_rtt: Duration,
    /// `tcpi_rtt`: the smoothed round-trip time now; above `min_rtt` by
    /// the queueing the connection builds on its path.
    pub smoothed_rtt: Duration,
    /// `tcpi_total_retrans`: segments retransmitted over the connection's
    /// life.
    pub retransmits: u32,
    /// `tcpi_delivery_rate_app_limited`: the rate sample was taken while
    /// the sender had too little to send to fill the path.
    pub app_limited: bool,
}

impl TcpInfoSample {
    /// Smoothed RTT above the minimum: how much queue the path holds.
    pub fn rtt_inflation(&self) -> Duration {
        self.smoothed_rtt.saturating_sub(self.min_rtt)
    }
}

/// Reads `TCP_INFO` of a TCP socket. Fails on a socket that is not TCP, or
/// on a kernel too old to report a delivery rate (before Linux 4.9).
pub fn read_tcp_info(socket: impl AsFd) -> io::Result<TcpInfoSample> {
    // The kernel writes at most what we offer and says how much it wrote; an
    // 8-aligned byte buffer the size of libc's struct, read by field offsets,
    // so that the one flag libc leaves out (a bitfield in the byte after
    // `tcpi_snd_rcv_wscale`, which libc counts as padding) is readable too.
    #[repr(C, align(8))]
    struct Buffer([u8; size_of::<libc::tcp_info>()]);
    let mut buffer = Buffer([0; size_of::<libc::tcp_info>()]);
    let mut length = size_of::<libc::tcp_info>() as libc::socklen_t;
    #[allow(
        unsafe_code,
        reason = "getsockopt(TCP_INFO) has no safe wrapper in socket2, rustix or nix"
    )]
    // SAFETY: `buffer` is valid and writable for `length` bytes, `length`
    // is a valid socklen_t the kernel updates, and the descriptor is
    // borrowed (open) for the duration of the call.
    let result = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buffer.0.as_mut_ptr().cast(),
            &mut length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    let written = &buffer.0[..(length as usize).min(buffer.0.len())];
    let needed = offset_of!(libc::tcp_info, tcpi_delivery_rate) + size_of::<u64>();
    if written.len() < needed {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the kernel reports {} bytes of TCP_INFO, fewer than the {needed} a delivery rate needs (Linux 4.9 or later)",
                written.len()
            ),
        ));
    }
    let u32_at = |offset: usize| {
        u32::from_ne_bytes(written[offset..offset + 4].try_into().expect("4 bytes"))
    };
    let u64_at = |offset: usize| {
        u64::from_ne_bytes(written[offset..offset + 8].try_into().expect("8 bytes"))
    };
    // include/uapi/linux/tcp.h: `__u8 tcpi_delivery_rate_app_limited:1`
    // is the first bitfield of the byte after `tcpi_snd_rcv_wscale`: its
    // lowest bit, or its highest where bitfields fill from the top
    // (big-endian ABIs).
    let flags = written[offset_of!(libc::tcp_info, tcpi_snd_rcv_wscale) + 1];
    let app_limited_bit = if cfg!(target_endian = "big") {
        0x80
    } else {
        0x01
    };
    Ok(TcpInfoSample {
        delivery_rate_bytes_per_second: u64_at(offset_of!(libc::tcp_info, tcpi_delivery_rate)),
        min_rtt: Duration::from_micros(u64::from(u32_at(offset_of!(libc::tcp_info, tcpi_min_rtt)))),
        smoothed_rtt: Duration::from_micros(u64::from(u32_at(offset_of!(
            libc::tcp_info,
            tcpi_rtt
        )))),
        retransmits: u32_at(offset_of!(libc::tcp_info, tcpi_total_retrans)),
        app_limited: flags & app_limited_bit != 0,
    })
}

/// Whether a request came through an intermediary (it carries `Via`):
/// the connection it arrived on then says nothing of a viewer's path, and
/// the listener samples no response on it. A viewer who sends `Via` only
/// goes unmeasured.
pub(crate) fn through_intermediary(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::VIA)
}

/// Told of each network-limited sample the listener takes.
pub trait TcpInfoObserver: Send + Sync + 'static {
    /// Called on the serving thread right after a response was written:
    /// keep it short (a lock and a few arithmetic operations).
    fn observe(&self, peer: SocketAddr, sample: TcpInfoSample);
}

/// When the listener samples: after a response body of at least
/// `min_body_bytes` was written, one such response in `one_in` (chosen at
/// random per response, so no connection is always or never picked).
#[derive(Clone)]
pub struct TcpInfoSampling {
    observer: Arc<dyn TcpInfoObserver>,
    min_body_bytes: u64,
    one_in: u32,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    observed: AtomicU64,
    app_limited: AtomicU64,
    unreadable: AtomicU64,
}

/// What a sampler did since it was made, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SamplingCounts {
    /// Samples handed to the observer.
    pub observed: u64,
    /// Samples dropped as application-limited.
    pub app_limited: u64,
    /// Sockets whose `TCP_INFO` could not be read (closed connections).
    pub unreadable: u64,
}

impl std::fmt::Debug for TcpInfoSampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpInfoSampling")
            .field("min_body_bytes", &self.min_body_bytes)
            .field("one_in", &self.one_in)
            .finish_non_exhaustive()
    }
}

impl TcpInfoSampling {
    /// `one_in` of 0 is taken as 1 (every large response).
    pub fn new(observer: Arc<dyn TcpInfoObserver>, min_body_bytes: u64, one_in: u32) -> Self {
        Self {
            observer,
            min_body_bytes,
            one_in: one_in.max(1),
            counts: Arc::default(),
        }
    }

    /// Counts of this sampler and its clones (the listener clones it for
    /// its HTTP/2 connections).
    pub fn counts(&self) -> SamplingCounts {
        SamplingCounts {
            observed: self.counts.observed.load(Ordering::Relaxed),
            app_limited: self.counts.app_limited.load(Ordering::Relaxed),
            unreadable: self.counts.unreadable.load(Ordering::Relaxed),
        }
    }

    /// Whether a response whose body was `body_bytes` long should be
    /// sampled.
    pub(crate) fn wants(&self, body_bytes: u64) -> bool {
        body_bytes >= self.min_body_bytes && self.picks()
    }

    /// The smallest body worth a sample.
    pub(crate) fn min_body_bytes(&self) -> u64 {
        self.min_body_bytes
    }

    /// The one-in-k draw for a body large enough.
    pub(crate) fn picks(&self) -> bool {
        self.one_in == 1 || next_random().is_multiple_of(self.one_in)
    }

    /// Samples `socket` and tells the observer, unless the sample was
    /// application-limited or the socket could not be read (a closed
    /// connection: nothing to learn).
    pub(crate) fn sample(&self, socket: impl AsFd, peer: SocketAddr) {
        let counts = &self.counts;
        match read_tcp_info(socket) {
            Ok(sample) if !sample.app_limited => {
                counts.observed.fetch_add(1, Ordering::Relaxed);
                self.observer.observe(peer, sample);
            }
            Ok(_) => {
                counts.app_limited.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                counts.unreadable.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, %error, "cannot read TCP_INFO");
            }
        }
    }
}

thread_local! {
    /// xorshift64 state per serving thread: no shared counter to contend on.
    static RANDOM: Cell<u64> = const { Cell::new(0) };
}

fn next_random() -> u32 {
    RANDOM.with(|state| {
        let mut x = state.get();
        if x == 0 {
            // Seeded from the thread-local's address and the clock: only
            // needs to differ between threads and runs.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64);
            x = (state as *const Cell<u64> as usize as u64 ^ nanos) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 32) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_is_not_tcp_is_an_error() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(read_tcp_info(&socket).is_err());
    }

    #[test]
    fn a_fresh_loopback_connection_reports_its_rtt() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let sample = read_tcp_info(&client).unwrap();
        // The handshake measured one round trip, and nothing was lost.
        assert!(sample.smoothed_rtt > Duration::ZERO, "{sample:?}");
        assert!(sample.min_rtt <= sample.smoothed_rtt, "{sample:?}");
        assert_eq!(sample.retransmits, 0);
    }

    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicU32);

    impl TcpInfoObserver for Count {
        fn observe(&self, _peer: SocketAddr, _sample: TcpInfoSample) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn only_large_bodies_are_sampled_and_one_in_k_of_them() {
        let sampling = TcpInfoSampling::new(Arc::new(Count::default()), 1000, 1);
        assert!(!sampling.wants(999));
        assert!(sampling.wants(1000));
        let one_in_four = TcpInfoSampling::new(Arc::new(Count::default()), 1000, 4);
        let picked = (0..4000).filter(|_| one_in_four.wants(5000)).count();
        // 1000 expected; a fair coin strays this far once in millions.
        assert!((800..1200).contains(&picked), "{picked} of 4000");
        assert!((0..100).all(|_| !one_in_four.wants(10)));
    }

    #[test]
    fn a_sampler_counts_what_it_observed_and_what_it_could_not_read() {
        let count = Arc::new(Count::default());
        let sampling = TcpInfoSampling::new(count.clone(), 0, 1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let peer = client.local_addr().unwrap();
        let (server, _) = listener.accept().unwrap();
        // A readable socket: observed, or dropped as application-limited.
        sampling.clone().sample(&server, peer);
        sampling.sample(std::net::UdpSocket::bind("127.0.0.1:0").unwrap(), peer);
        let counts = sampling.counts();
        assert_eq!(counts.observed + counts.app_limited, 1, "{counts:?}");
        assert_eq!(counts.unreadable, 1, "{counts:?}");
        assert_eq!(
            u64::from(count.0.load(std::sync::atomic::Ordering::Relaxed)),
            counts.observed
        );
    }
}
