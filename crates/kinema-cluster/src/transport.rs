//! An authenticated UDP transport for chitchat, plugged in through chitchat's
//! own [`Transport`]/[`Socket`] traits.
//!
//! Those traits hand a socket decoded [`ChitchatEnvelope`]s, and chitchat
//! 0.13 keeps the envelope's wire encoding crate-private, so a transport
//! cannot see the bytes it should sign. This one therefore lets chitchat's
//! own UDP socket do the encoding, on a private loopback pair inside the
//! process:
//!
//! ```text
//!   chitchat ──envelope──► inner (chitchat's UdpSocket, 127.0.0.1:eph)
//!                              │ bytes ▲ bytes (verified)
//!                              ▼       │
//!                          handover (tokio UdpSocket, 127.0.0.1:eph)
//!                              │ seal  ▲ open: size, key id, tag
//!                              ▼       │
//!                          public (the gossip listen address) ◄──► peers
//! ```
//!
//! Sending: the envelope goes from `inner` to `handover`, which reads the
//! bytes, appends key id and tag, and sends them from `public`. Receiving:
//! `public` reads a datagram, drops it (and counts why) unless it has an
//! acceptable size and a tag made with a key this node holds, and only then
//! hands the payload to `inner`, where chitchat decodes it. Each handed-over
//! payload is followed by a marker (a `BadCluster` message in the V0 format,
//! whose bytes no handed-over payload may start with), so a payload chitchat refuses to decode
//! is noticed, counted as malformed, and never leaves `recv` waiting.
//!
//! The two loopback sockets accept datagrams only from each other (anything
//! else is counted as injected and dropped); spoofing their source address
//! would take raw sockets on this very host.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};

use crate::auth::{ClusterKeys, Refusal, TRAILER_LEN};
use crate::metrics::GossipCounters;

/// The largest UDP payload over IPv4, which is also what chitchat fills its
/// deltas up to.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// A chitchat transport that signs every datagram it sends and drops every
/// datagram that does not verify before chitchat decodes it.
#[derive(Debug)]
pub struct AuthenticatedUdpTransport {
    keys: ClusterKeys,
    max_datagram: usize,
    counters: Arc<GossipCounters>,
    /// A socket bound beforehand (to learn a port-0 address), used by the
    /// first `open` at its address.
    bound: std::sync::Mutex<Option<tokio::net::UdpSocket>>,
}

impl AuthenticatedUdpTransport {
    /// `max_datagram` bounds what is accepted and sent, trailer included;
    /// at most [`MAX_UDP_PAYLOAD`].
    pub fn new(keys: ClusterKeys, max_datagram: usize, counters: Arc<GossipCounters>) -> Self {
        Self {
            keys,
            max_datagram: max_datagram.min(MAX_UDP_PAYLOAD),
            counters,
            bound: std::sync::Mutex::new(None),
        }
    }

    /// Opens on `socket` rather than binding anew.
    pub fn with_bound_socket(self, socket: tokio::net::UdpSocket) -> Self {
        *self
            .bound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(socket);
        self
    }
}

#[async_trait]
impl Transport for AuthenticatedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let prebound = self
            .bound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take_if(|socket| socket.local_addr().ok() == Some(listen_addr));
        let public = match prebound {
            Some(socket) => socket,
            None => tokio::net::UdpSocket::bind(listen_addr)
                .await
                .with_context(|| format!("failed to bind the gossip socket {listen_addr}/UDP"))?,
        };
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let handover = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("failed to bind the gossip hand-over socket on 127.0.0.1")?;
        let mut inner = UdpSocket::open(loopback).await?;
        let inner_addr = inner.local_addr()?;
        let handover_addr = handover.local_addr()?;

        // Learn the marker's bytes from chitchat itself rather than assuming
        // its wire format.
        inner.send(handover_addr, marker()).await?;
        let mut buf = vec![0; MAX_UDP_PAYLOAD + 1];
        let marker_bytes = loop {
            let (len, from) = handover.recv_from(&mut buf).await?;
            if from == inner_addr {
                break buf[..len].to_vec();
            }
        };
        Ok(Box::new(AuthenticatedSocket {
            keys: self.keys.clone(),
            max_datagram: self.max_datagram,
            counters: self.counters.clone(),
            public,
            handover,
            inner,
            inner_addr,
            handover_addr,
            marker_bytes,
            handed_over_from: None,
            returned_handed_over: false,
            buf,
        }))
    }
}

fn marker() -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::BadCluster,
    }
}

struct AuthenticatedSocket {
    keys: ClusterKeys,
    max_datagram: usize,
    counters: Arc<GossipCounters>,
    public: tokio::net::UdpSocket,
    handover: tokio::net::UdpSocket,
    inner: UdpSocket,
    inner_addr: SocketAddr,
    handover_addr: SocketAddr,
    marker_bytes: Vec<u8>,
    /// The peer whose payload (and a marker after it) waits in `inner`.
    handed_over_from: Option<(SocketAddr, usize)>,
    /// Whether that payload was decoded and returned already, so the next
    /// thing `inner` yields is its marker.
    returned_handed_over: bool,
    /// One datagram more than the largest accepted, to tell "too large".
    buf: Vec<u8>,
}

#[async_trait]
impl Socket for AuthenticatedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.public
            .local_addr()
            .context("failed to get the gossip socket's address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // chitchat awaits `send` to completion (it is never a branch of its
        // `select!`), so the two steps below are never torn apart.
        self.inner.send(self.handover_addr, envelope).await?;
        let len = loop {
            let (len, from) = self.handover.recv_from(&mut self.buf).await?;
            if from == self.inner_addr {
                break len;
            }
            self.counters.refused(Refusal::Injected);
        };
        if len + TRAILER_LEN > self.max_datagram {
            // Gossip is lossy by design: chitchat retries with a smaller delta
            // next round only if state is kept small, which is ours to do.
            self.counters.count_oversize_send();
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let mut datagram = Vec::with_capacity(len + TRAILER_LEN);
        datagram.extend_from_slice(&self.buf[..len]);
        self.keys.seal(&mut datagram);
        let num_bytes_sent = self
            .public
            .send_to(&datagram, to)
            .await
            .with_context(|| format!("failed to send gossip to {to}"))?;
        self.counters.count_sent();
        Ok(SendOutcome { num_bytes_sent })
    }

    /// Cancel-safe, as chitchat needs: every await is on a cancel-safe
    /// receive, and the state between them lives in `self`.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some((peer, wire_len)) = self.handed_over_from {
                let outcome = self.inner.recv().await?;
                if outcome.from_addr != self.handover_addr {
                    self.counters.refused(Refusal::Injected);
                    continue;
                }
                if outcome.envelope == marker() {
                    if !self.returned_handed_over {
                        // chitchat dropped the payload before its marker.
                        self.counters.refused(Refusal::Malformed);
                    }
                    self.handed_over_from = None;
                    self.returned_handed_over = false;
                    continue;
                }
                if self.returned_handed_over {
                    // Only one payload is ever handed over at a time.
                    self.counters.refused(Refusal::Injected);
                    continue;
                }
                self.returned_handed_over = true;
                self.counters.count_received();
                return Ok(RecvOutcome {
                    from_addr: peer,
                    envelope: outcome.envelope,
                    num_bytes_received: wire_len,
                });
            }
            let (len, from) = match self.public.recv_from(&mut self.buf).await {
                Ok(received) => received,
                // A peer's ICMP "port unreachable" surfaces here on some
                // systems; it says nothing about this socket.
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(error) => return Err(error).context("failed to receive gossip"),
            };
            let payload = match self.keys.open(&self.buf[..len], self.max_datagram) {
                Ok(payload) => payload,
                Err(refusal) => {
                    tracing::debug!(%from, len, reason = refusal.as_str(), "gossip datagram refused");
                    self.counters.refused(refusal);
                    continue;
                }
            };
            if payload.starts_with(&self.marker_bytes) {
                if payload.len() > self.marker_bytes.len() {
                    // It would decode as the marker too (chitchat ignores
                    // trailing bytes), and so must never be handed over.
                    self.counters.refused(Refusal::Malformed);
                    continue;
                }
                // A peer's genuine "wrong cluster" answer, in the very bytes
                // of the marker: return it without handing it over.
                self.counters.count_received();
                return Ok(RecvOutcome {
                    from_addr: from,
                    envelope: marker(),
                    num_bytes_received: len,
                });
            }
            // Non-blocking sends keep this step free of await points (and so
            // cancel-safe); a loopback socket with room never refuses them.
            let handed = self.handover.try_send_to(payload, self.inner_addr).is_ok()
                && self
                    .handover
                    .try_send_to(&self.marker_bytes, self.inner_addr)
                    .is_ok();
            if !handed {
                anyhow::bail!("the gossip hand-over socket refused a datagram");
            }
            self.handed_over_from = Some((from, len));
            self.returned_handed_over = false;
        }
    }
}
