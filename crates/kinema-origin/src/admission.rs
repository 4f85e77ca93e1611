//! Admission of viewing sessions (DESIGN §6): under overload the origin
//! refuses new viewers instead of letting every viewer stall.
//!
//! A session starts with the request for a video's multivariant playlist or
//! MPD; everything after it (media playlists, init files, segments) belongs
//! to a session already admitted and is always served. A new session is
//! admitted while the origin has room for the video's bit rate (its top
//! video rung plus its top audio rung):
//!
//! - **egress**: with `max_egress` set, the measured egress rate, plus what
//!   sessions admitted in the last [`RESERVATION`] are expected to add,
//!   plus the new session must fit under it;
//! - **load**: the serving threads must be awake less than `max_load` of
//!   their time ([`ServerStats::load`](kinema_http::server::ServerStats::load)),
//!   and, once they are busy enough for the ratio to mean something, the
//!   same demand must fit under the egress at which they would reach
//!   `max_load` (today's egress scaled by `max_load / load`: sending costs
//!   CPU in proportion to the bytes sent).
//!
//! A refused request gets `503 Service Unavailable` with `Retry-After`,
//! which players honour; the delay is spread over a few seconds so that
//! viewers refused together do not all come back together.
//!
//! The measured egress counts response bodies as they are handed to the
//! connection layer. It and the load are sampled every [`SAMPLE_PERIOD`]
//! and smoothed over [`SMOOTHING`], so a burst of work (or of other
//! processes competing for the CPU) does not turn viewers away; a session's
//! own traffic shows up in the egress within a few seconds, so an admitted
//! session's bit rate is reserved for [`RESERVATION`] and then left to the
//! measurement.
//!
//! A reservation is a prediction of traffic, so it must cost the client
//! what it predicts ([`Reservations`]): a master playlist is a few hundred
//! bytes, and 150 of them a second from one address used to hold the
//! reservations of 600 sessions that never fetched a segment, refusing most
//! real viewers. Now a client network (an IPv4 /24, an IPv6 /56) holds at
//! most one reservation per video and [`MAX_RESERVATIONS_PER_PREFIX`] in
//! all; a reservation counts in full only once its network fetches a
//! segment of the video, and lapses after [`UNCONFIRMED_GRACE`] otherwise.
//! A flood of session starts then reserves no more than its few networks'
//! share, for about a second each.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often the egress rate and the load are read.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(500);
/// Time constant of the exponential smoothing of the egress and the load.
const SMOOTHING: Duration = Duration::from_secs(2);
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
/// Below this load the load/egress ratio is mostly noise (fixed costs,
/// other processes' CPU use): no egress capacity is inferred from it.
const ESTIMATE_ABOVE: f64 = 0.5;
/// `Retry-After` seconds go round this range.
const RETRY_AFTER_SECONDS: std::ops::RangeInclusive<u64> = 3..=7;

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most egress, bits per second; `None`: only the load limits.
    pub max_egress: Option<u64>,
    /// Share of time the serving threads may be awake; 1 or more turns the
    /// load check off.
    pub max_load: f64,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It would take the egress over `max_egress`.
    Egress,
    /// The serving threads are (or would become) too busy.
    Load,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::Egress, Reason::Load];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Egress => "egress",
            Reason::Load => "load",
        }
    }
}

/// The decision for one new session, from what was measured: `egress` and
/// `reserved` in bits per second, `load` as a share of time, `session` the
/// new session's bit rate.
pub fn decide(
    limits: Limits,
    egress: f64,
    load: f64,
    reserved: u64,
    session: u64,
) -> Result<(), Reason> {
    let demand = egress + reserved as f64 + session as f64;
    if let Some(max_egress) = limits.max_egress
        && demand > max_egress as f64
    {
        return Err(Reason::Egress);
    }
    if limits.max_load < 1.0 {
        if load >= limits.max_load {
            return Err(Reason::Load);
        }
        if load >= ESTIMATE_ABOVE && egress > 0.0 && demand > egress * limits.max_load / load {
            return Err(Reason::Load);
        }
    }
    Ok(())
}

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

/// What admission reads from the rest of the origin.
pub struct Sources {
    /// Bytes of response bodies handed to the connection layer so far.
    pub egress_bytes: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The serving threads' load, 0 to 1.
    pub load: Box<dyn Fn() -> f64 + Send + Sync>,
    /// Where admitted sessions are counted: a counter the origin's parts
    /// share, so the cluster's figures read it without asking admission.
    pub admitted: Arc<AtomicU64>,
}

/// The origin's admission control; one per origin.
pub struct Admission {
    limits: Limits,
    sources: Sources,
    state: Mutex<State>,
    /// Whether any reservation waits for its first segment, readable
    /// without the lock, so segment requests usually skip it.
    any_unconfirmed: AtomicBool,
    admitted: Arc<AtomicU64>,
    refused: [AtomicU64; Reason::ALL.len()],
}

struct State {
    reservations: Reservations,
    /// The egress rate, bits per second, smoothed.
    egress: f64,
    /// The serving threads' load, smoothed.
    load: f64,
    sampled_at: Instant,
    sampled_bytes: u64,
}

/// A refusal: the reason, and the `Retry-After` seconds to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub retry_after: u64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Admission {
    pub fn new(limits: Limits, sources: Sources) -> Self {
        let sampled_bytes = (sources.egress_bytes)();
        let admitted = sources.admitted.clone();
        Self {
            limits,
            sources,
            state: Mutex::new(State {
                reservations: Reservations::default(),
                egress: 0.0,
                load: 0.0,
                sampled_at: Instant::now(),
                sampled_bytes,
            }),
            any_unconfirmed: AtomicBool::new(false),
            admitted,
            refused: Default::default(),
        }
    }

    /// Admits a new session of `video` at `bitrate` bits per second from
    /// `client` (reserving it, see [`Reservations::reserve`]), or says why
    /// not.
    pub fn admit(&self, client: IpAddr, video: &str, bitrate: u64) -> Result<(), Refusal> {
        self.admit_at(ClientPrefix::of(client), video, bitrate, Instant::now())
    }

    fn admit_at(
        &self,
        prefix: ClientPrefix,
        video: &str,
        bitrate: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        let mut state = self.state();
        state.reservations.expire(now);
        // A network starting the video again replaces its own reservation.
        let others = state.reservations.reserved() - state.reservations.held_for(prefix, video);
        match decide(self.limits, state.egress, state.load, others, bitrate) {
            Ok(()) => {
                state.reservations.reserve(prefix, video, bitrate, now);
                self.publish_unconfirmed(&state);
                drop(state);
                self.admitted.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(reason) => {
                drop(state);
                let refused = self.refused[reason as usize].fetch_add(1, Relaxed);
                let (low, high) = RETRY_AFTER_SECONDS.into_inner();
                Err(Refusal {
                    reason,
                    retry_after: low + refused % (high - low + 1),
                })
            }
        }
    }

    /// `client` fetched a segment of `video`: a reservation its network
    /// holds for the video is a real session.
    pub fn media_fetched(&self, client: IpAddr, video: &str) {
        if !self.any_unconfirmed.load(Relaxed) {
            return;
        }
        let mut state = self.state();
        state.reservations.confirm(ClientPrefix::of(client), video);
        self.publish_unconfirmed(&state);
    }

    fn publish_unconfirmed(&self, state: &State) {
        self.any_unconfirmed
            .store(state.reservations.any_unconfirmed(), Relaxed);
    }

    /// Bits per second reserved for sessions admitted lately.
    #[cfg(test)]
    fn reserved(&self) -> u64 {
        self.state().reservations.reserved()
    }

    /// Reads the egress counter and the load, and updates their smoothed
    /// values.
    pub fn sample(&self) {
        self.sample_at(Instant::now());
    }

    fn sample_at(&self, now: Instant) {
        let bytes = (self.sources.egress_bytes)();
        let load = (self.sources.load)();
        let mut state = self.state();
        let elapsed = now.duration_since(state.sampled_at).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        let rate = bytes.saturating_sub(state.sampled_bytes) as f64 * 8.0 / elapsed;
        let weight = 1.0 - (-elapsed / SMOOTHING.as_secs_f64()).exp();
        state.egress += (rate - state.egress) * weight;
        state.load += (load - state.load) * weight;
        state.sampled_at = now;
        state.sampled_bytes = bytes;
        state.reservations.expire(now);
        self.publish_unconfirmed(&state);
    }

    /// Samples every [`SAMPLE_PERIOD`] until the task is aborted.
    pub fn run_sampler(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(SAMPLE_PERIOD);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                self.sample();
            }
        })
    }

    /// The smoothed egress rate, bits per second.
    pub fn egress(&self) -> u64 {
        self.state().egress as u64
    }

    /// The smoothed load of the serving threads, 0 to 1.
    pub fn load(&self) -> f64 {
        self.state().load
    }

    pub fn admitted(&self) -> u64 {
        self.admitted.load(Relaxed)
    }

    pub fn refused(&self, reason: Reason) -> u64 {
        self.refused[reason as usize].load(Relaxed)
    }
}

impl Admission {
    /// The state; a panic while holding it leaves nothing half-updated
    /// that matters (counters of reservations), so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    /// A client address in a network of its own.
    fn viewer(network: u8) -> IpAddr {
        IpAddr::from([10, 0, network, 1])
    }

    fn limits(max_egress: Option<u64>, max_load: f64) -> Limits {
        Limits {
            max_egress,
            max_load,
        }
    }

    #[test]
    fn egress_limit_counts_measured_reserved_and_the_new_session() {
        let l = limits(Some(10 * MBIT), 1.0);
        assert_eq!(decide(l, 4e6, 0.0, 3 * MBIT, 3 * MBIT), Ok(()));
        assert_eq!(
            decide(l, 4e6, 0.0, 3 * MBIT, 3 * MBIT + 1),
            Err(Reason::Egress)
        );
        assert_eq!(decide(l, 0.0, 0.0, 8 * MBIT, 3 * MBIT), Err(Reason::Egress));
        assert_eq!(decide(l, 8e6, 0.0, 0, 3 * MBIT), Err(Reason::Egress));
    }

    #[test]
    fn busy_threads_refuse_whatever_the_egress() {
        let l = limits(None, 0.9);
        assert_eq!(decide(l, 0.0, 0.9, 0, MBIT), Err(Reason::Load));
        assert_eq!(decide(l, 0.0, 0.89, 0, MBIT), Ok(()));
    }

    #[test]
    fn the_load_scales_the_egress_into_a_capacity() {
        let l = limits(None, 0.9);
        // 60% busy at 100 Mbit/s: room up to 150 Mbit/s.
        assert_eq!(decide(l, 100e6, 0.6, 40 * MBIT, 10 * MBIT), Ok(()));
        assert_eq!(
            decide(l, 100e6, 0.6, 45 * MBIT, 10 * MBIT),
            Err(Reason::Load)
        );
        // Below ESTIMATE_ABOVE the ratio is not trusted.
        assert_eq!(decide(l, 1e6, 0.45, 500 * MBIT, 10 * MBIT), Ok(()));
    }

    #[test]
    fn a_max_load_of_one_turns_the_load_check_off() {
        let l = limits(None, 1.0);
        assert_eq!(decide(l, 100e6, 1.0, 500 * MBIT, 10 * MBIT), Ok(()));
    }

    /// Admission with a load that tests set (per mille) and an egress
    /// counter they advance.
    fn admission(
        limits: Limits,
        egress_bytes: Arc<AtomicU64>,
        load_per_mille: Arc<AtomicU64>,
    ) -> Admission {
        Admission::new(
            limits,
            Sources {
                egress_bytes: Box::new(move || egress_bytes.load(Relaxed)),
                load: Box::new(move || load_per_mille.load(Relaxed) as f64 / 1000.0),
                admitted: Arc::default(),
            },
        )
    }

    #[test]
    fn admitted_sessions_reserve_their_bitrate_and_refusals_spread_retries() {
        let admission = admission(limits(Some(5 * MBIT), 1.0), Arc::default(), Arc::default());
        assert_eq!(admission.admit(viewer(1), "v", 2 * MBIT), Ok(()));
        assert_eq!(admission.admit(viewer(2), "v", 2 * MBIT), Ok(()));
        let mut retry_afters = Vec::new();
        for _ in 0..5 {
            let refusal = admission.admit(viewer(3), "v", 2 * MBIT).unwrap_err();
            assert_eq!(refusal.reason, Reason::Egress);
            retry_afters.push(refusal.retry_after);
        }
        retry_afters.sort_unstable();
        assert_eq!(retry_afters, vec![3, 4, 5, 6, 7]);
        assert_eq!(admission.admit(viewer(4), "v", MBIT), Ok(()));
        assert_eq!(admission.admitted(), 3);
        assert_eq!(admission.refused(Reason::Egress), 5);
        assert_eq!(admission.refused(Reason::Load), 0);
        // Once the reservations lapse, with nothing measured, room again.
        admission.sample_at(Instant::now() + RESERVATION);
        assert_eq!(admission.admit(viewer(5), "v", 4 * MBIT), Ok(()));
    }

    #[test]
    fn the_sampled_egress_rate_follows_the_bytes_sent_smoothed() {
        let bytes = Arc::new(AtomicU64::new(0));
        let admission = admission(limits(Some(100 * MBIT), 1.0), bytes.clone(), Arc::default());
        let start = Instant::now();
        // 25 MB a second: 200 Mbit/s, approached over a few periods.
        let mut seen = Vec::new();
        for step in 1..=20u32 {
            bytes.store(u64::from(step) * 12_500_000, Relaxed);
            admission.sample_at(start + SAMPLE_PERIOD * step);
            seen.push(admission.egress());
        }
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
        assert!(seen[0] < 100 * MBIT, "{seen:?}");
        let last = seen[19];
        assert!(last > 190 * MBIT && last <= 200 * MBIT, "{seen:?}");
        assert_eq!(
            admission.admit(viewer(6), "v", 1).unwrap_err().reason,
            Reason::Egress
        );
    }

    #[test]
    fn a_sustained_load_refuses_and_a_burst_does_not() {
        let load = Arc::new(AtomicU64::new(1000));
        let admission = admission(limits(None, 0.9), Arc::default(), load.clone());
        let start = Instant::now();
        admission.sample_at(start + SAMPLE_PERIOD);
        assert_eq!(
            admission.admit(viewer(7), "v", MBIT),
            Ok(()),
            "load {}",
            admission.load()
        );
        for step in 2..=12u32 {
            admission.sample_at(start + SAMPLE_PERIOD * step);
        }
        assert!(admission.load() > 0.9, "{}", admission.load());
        assert_eq!(
            admission.admit(viewer(8), "v", MBIT).unwrap_err().reason,
            Reason::Load
        );
        assert_eq!(admission.refused(Reason::Load), 1);
    }

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

    /// 150 master playlist requests a second from one address used to
    /// reserve 600 sessions' bit rates and refuse 79% of real viewers.
    #[test]
    fn a_flood_of_session_starts_from_one_network_reserves_once() {
        let admission = admission(limits(Some(5 * MBIT), 1.0), Arc::default(), Arc::default());
        let start = Instant::now();
        for request in 0..600u32 {
            let host = (request % 250) as u8 + 1;
            let at = start + Duration::from_millis(u64::from(request) * 6);
            assert_eq!(
                admission.admit_at(prefix(&format!("203.0.113.{host}")), "v", 2 * MBIT, at),
                Ok(()),
                "request {request}"
            );
        }
        let at = start + Duration::from_millis(3600);
        // Its one reservation lapsed unconfirmed; even counted, it leaves
        // room for two real viewers of 2 Mbit/s under 5.
        assert!(admission.reserved() <= 2 * MBIT);
        assert_eq!(
            admission.admit_at(prefix("198.51.100.7"), "v", 2 * MBIT, at),
            Ok(())
        );
        assert_eq!(
            admission.admit_at(prefix("192.0.2.7"), "v", 2 * MBIT, at),
            Ok(())
        );
        // Room is still judged: a third real viewer does not fit.
        assert_eq!(
            admission
                .admit_at(prefix("100.64.0.7"), "v", 2 * MBIT, at)
                .unwrap_err()
                .reason,
            Reason::Egress
        );
    }

    #[test]
    fn a_network_holds_a_few_reservations_across_videos() {
        let admission = admission(
            limits(Some(100 * MBIT), 1.0),
            Arc::default(),
            Arc::default(),
        );
        let now = Instant::now();
        for video in 0..20 {
            let video = format!("video{video}");
            assert_eq!(
                admission.admit_at(prefix("203.0.113.9"), &video, MBIT, now),
                Ok(())
            );
        }
        assert_eq!(
            admission.reserved(),
            MAX_RESERVATIONS_PER_PREFIX as u64 * MBIT
        );
        // Another network is not affected.
        assert_eq!(
            admission.admit_at(prefix("192.0.2.1"), "video0", MBIT, now),
            Ok(())
        );
        assert_eq!(
            admission.reserved(),
            (MAX_RESERVATIONS_PER_PREFIX as u64 + 1) * MBIT
        );
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

    #[test]
    fn segment_requests_confirm_and_then_skip_the_lock() {
        let admission = admission(limits(Some(10 * MBIT), 1.0), Arc::default(), Arc::default());
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!admission.any_unconfirmed.load(Relaxed));
        admission.admit(client, "v", MBIT).unwrap();
        assert!(admission.any_unconfirmed.load(Relaxed));
        admission.media_fetched("192.0.2.77".parse().unwrap(), "v");
        assert!(!admission.any_unconfirmed.load(Relaxed));
        assert_eq!(admission.reserved(), MBIT);
    }
}
