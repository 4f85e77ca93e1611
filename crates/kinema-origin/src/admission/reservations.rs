//! Session tracking: the reservations of admitted sessions' bit rates, by
//! client network ([`ClientPrefix`]). A network holds at most one
//! reservation per video and [`MAX_RESERVATIONS_PER_PREFIX`] in all; a
//! reservation counts in full once its network fetches a segment of the
//! video, stops counting after [`UNCONFIRMED_GRACE`] otherwise, and goes
//! after [`RESERVATION`]. Pure bookkeeping over instants the caller passes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an admitted session's bit rate counts as reserved.
pub const RESERVATION: Duration = Duration::from_secs(4);
/// How long a reservation counts before its network fetches a segment of
/// the video: long enough for a player's first segment request (media
/// playlist, init, segment: a few round trips), short enough that
/// session starts nobody plays hold little.
pub const UNCONFIRMED_GRACE: Duration = Duration::from_secs(1);
/// Most reservations one client network holds at once; sessions it starts
/// beyond them are admitted (when there is room) without one.
pub const MAX_RESERVATIONS_PER_PREFIX: usize = 8;
/// Most reservations held at all, so the bookkeeping stays bounded whatever
/// the number of networks session starts come from.
const MAX_RESERVATIONS: usize = 100_000;
/// Prefix lengths that group client addresses into one network: what one
/// subscriber (or one attacker) typically holds.
const IPV4_PREFIX: u32 = 24;
const IPV6_PREFIX: u32 = 56;

/// The network a client address belongs to for reservations: its IPv4
/// /24 or IPv6 /56 (IPv4-mapped IPv6 counts as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientPrefix {
    V4(u32),
    V6(u128),
}

impl ClientPrefix {
    pub fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4) & (u32::MAX << (32 - IPV4_PREFIX))),
            IpAddr::V6(v6) => Self::V6(u128::from(v6) & (u128::MAX << (128 - IPV6_PREFIX))),
        }
    }
}

/// One reservation: a session of `video` its network started.
#[derive(Debug)]
struct Reservation {
    video: Box<str>,
    bitrate: u64,
    /// Identifies this reservation in the deadline queues (a later one of
    /// the same network and video has another).
    generation: u64,
    /// Whether its bit rate is in `Reservations::reserved`.
    counted: bool,
    /// Whether its network has fetched a segment of the video since.
    confirmed: bool,
}

/// When something happens to the reservation of `generation`.
#[derive(Debug)]
struct Deadline {
    at: Instant,
    prefix: ClientPrefix,
    generation: u64,
}

/// The reservations held, by client network, and their sum. Pure
/// bookkeeping over instants the caller passes, so tests choose the time.
#[derive(Debug, Default)]
pub struct Reservations {
    by_prefix: HashMap<ClientPrefix, Vec<Reservation>>,
    /// Ends of the unconfirmed grace, in admission order (so in time order).
    grace_ends: VecDeque<Deadline>,
    /// Ends of reservations, in admission order.
    expiries: VecDeque<Deadline>,
    /// Bit rates of the counted reservations.
    reserved: u64,
    held: usize,
    unconfirmed: usize,
    next_generation: u64,
}

impl Reservations {
    /// Bits per second reserved now.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Reservations held, counted or not.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
    }

    /// The bit rate `prefix` already holds for `video`, which a new session
    /// of it replaces rather than adds to.
    pub fn held_for(&self, prefix: ClientPrefix, video: &str) -> u64 {
        self.by_prefix
            .get(&prefix)
            .and_then(|held| held.iter().find(|r| &*r.video == video))
            .filter(|reservation| reservation.counted)
            .map_or(0, |reservation| reservation.bitrate)
    }

    /// Records an admitted session of `video` from `prefix` at `now`. A
    /// network that already holds a reservation for the video keeps that
    /// one as it is (a repeat is the same prediction, so it adds nothing and
    /// extends nothing); otherwise the session takes a new reservation if
    /// the network, and the whole book, have room for one.
    pub fn reserve(&mut self, prefix: ClientPrefix, video: &str, bitrate: u64, now: Instant) {
        let held = self.by_prefix.entry(prefix).or_default();
        if held.iter().any(|r| &*r.video == video) {
            return;
        }
        if held.len() >= MAX_RESERVATIONS_PER_PREFIX || self.held >= MAX_RESERVATIONS {
            if held.is_empty() {
                self.by_prefix.remove(&prefix);
            }
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        held.push(Reservation {
            video: video.into(),
            bitrate,
            generation,
            counted: true,
            confirmed: false,
        });
        self.held += 1;
        self.unconfirmed += 1;
        self.reserved += bitrate;
        self.grace_ends.push_back(Deadline {
            at: now + UNCONFIRMED_GRACE,
            prefix,
            generation,
        });
        self.expiries.push_back(Deadline {
            at: now + RESERVATION,
            prefix,
            generation,
        });
    }

    /// `prefix` fetched a segment of `video`: its reservation for the video,
    /// if any, is a real session and counts until it expires.
    pub fn confirm(&mut self, prefix: ClientPrefix, video: &str) {
        let Some(reservation) = self
            .by_prefix
            .get_mut(&prefix)
            .and_then(|held| held.iter_mut().find(|r| &*r.video == video))
        else {
            return;
        };
        if reservation.confirmed {
            return;
        }
        reservation.confirmed = true;
        self.unconfirmed -= 1;
        if !reservation.counted {
            reservation.counted = true;
            self.reserved += reservation.bitrate;
        }
    }

    /// Whether any reservation waits for its first segment (when none
    /// does, a segment request need not look).
    pub fn any_unconfirmed(&self) -> bool {
        self.unconfirmed > 0
    }

    /// Applies every deadline up to `now`: unconfirmed reservations past
    /// their grace stop counting, reservations past [`RESERVATION`] go.
    pub fn expire(&mut self, now: Instant) {
        while let Some(deadline) = self.grace_ends.front() {
            if deadline.at > now {
                break;
            }
            let deadline = self.grace_ends.pop_front().expect("front exists");
            if let Some(reservation) = self.find(&deadline)
                && reservation.counted
                && !reservation.confirmed
            {
                reservation.counted = false;
                let bitrate = reservation.bitrate;
                self.reserved -= bitrate;
            }
        }
        while let Some(deadline) = self.expiries.front() {
            if deadline.at > now {
                break;
            }
            let deadline = self.expiries.pop_front().expect("front exists");
            let Some(held) = self.by_prefix.get_mut(&deadline.prefix) else {
                continue;
            };
            let Some(index) = held
                .iter()
                .position(|r| r.generation == deadline.generation)
            else {
                continue;
            };
            let reservation = held.swap_remove(index);
            if held.is_empty() {
                self.by_prefix.remove(&deadline.prefix);
            }
            self.held -= 1;
            if reservation.counted {
                self.reserved -= reservation.bitrate;
            }
            if !reservation.confirmed {
                self.unconfirmed -= 1;
            }
        }
    }

    fn find(&mut self, deadline: &Deadline) -> Option<&mut Reservation> {
        self.by_prefix
            .get_mut(&deadline.prefix)?
            .iter_mut()
            .find(|r| r.generation == deadline.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    fn prefix(address: &str) -> ClientPrefix {
        ClientPrefix::of(address.parse().unwrap())
    }

    #[test]
    fn client_networks_are_ipv4_24s_and_ipv6_56s() {
        assert_eq!(prefix("192.0.2.1"), prefix("192.0.2.254"));
        assert_ne!(prefix("192.0.2.1"), prefix("192.0.3.1"));
        assert_eq!(prefix("::ffff:192.0.2.9"), prefix("192.0.2.1"));
        assert_eq!(prefix("2001:db8:0:ff::1"), prefix("2001:db8:0:1::2"));
        assert_ne!(prefix("2001:db8:0:100::1"), prefix("2001:db8::1"));
        assert_ne!(prefix("0.0.0.1"), prefix("::1"));
    }
    #[test]
    fn reservations_count_past_the_grace_only_once_media_is_fetched() {
        let mut book = Reservations::default();
        let start = Instant::now();
        let (played, abandoned) = (prefix("192.0.2.1"), prefix("198.51.100.1"));
        book.reserve(played, "v", 3 * MBIT, start);
        book.reserve(abandoned, "v", 2 * MBIT, start);
        assert_eq!(book.reserved(), 5 * MBIT);
        assert!(book.any_unconfirmed());
        // A segment of another video, or from another network, confirms
        // nothing.
        book.confirm(played, "w");
        book.confirm(prefix("203.0.113.1"), "v");
        book.confirm(played, "v");
        book.expire(start + UNCONFIRMED_GRACE);
        assert_eq!(book.reserved(), 3 * MBIT);
        assert_eq!(book.held(), 2);
        // A player that was slow to its first segment counts again.
        book.confirm(abandoned, "v");
        assert_eq!(book.reserved(), 5 * MBIT);
        assert!(!book.any_unconfirmed());
        book.expire(start + RESERVATION - Duration::from_millis(1));
        assert_eq!(book.reserved(), 5 * MBIT);
        book.expire(start + RESERVATION);
        assert_eq!((book.reserved(), book.held()), (0, 0));
        assert!(book.by_prefix.is_empty());
        // The network may reserve for the video again.
        book.reserve(played, "v", MBIT, start + RESERVATION);
        assert_eq!(book.reserved(), MBIT);
        book.expire(start + RESERVATION * 2);
        assert_eq!((book.reserved(), book.held()), (0, 0));
        assert!(!book.any_unconfirmed());
    }

    #[test]
    fn a_repeat_start_neither_adds_to_nor_extends_a_reservation() {
        let mut book = Reservations::default();
        let start = Instant::now();
        let network = prefix("192.0.2.1");
        book.reserve(network, "v", MBIT, start);
        book.reserve(network, "v", MBIT, start + Duration::from_millis(900));
        assert_eq!(book.reserved(), MBIT);
        assert_eq!(book.held_for(network, "v"), MBIT);
        book.expire(start + UNCONFIRMED_GRACE);
        assert_eq!(book.held_for(network, "v"), 0);
        book.expire(start + RESERVATION);
        assert_eq!(book.held(), 0);
    }

    #[test]
    fn the_book_is_bounded_whatever_the_number_of_networks() {
        let mut book = Reservations::default();
        let now = Instant::now();
        for network in 0..=MAX_RESERVATIONS as u128 {
            book.reserve(ClientPrefix::V6(network << 72), "v", 1, now);
        }
        assert_eq!(book.held(), MAX_RESERVATIONS);
        assert_eq!(book.reserved(), MAX_RESERVATIONS as u64);
        book.expire(now + RESERVATION);
        assert_eq!(book.held(), 0);
    }
}
