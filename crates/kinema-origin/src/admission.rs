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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often the egress rate and the load are read.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(500);
/// Time constant of the exponential smoothing of the egress and the load.
const SMOOTHING: Duration = Duration::from_secs(2);
/// How long an admitted session's bit rate counts as reserved.
pub const RESERVATION: Duration = Duration::from_secs(4);
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

/// What admission reads from the rest of the origin.
pub struct Sources {
    /// Bytes of response bodies handed to the connection layer so far.
    pub egress_bytes: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The serving threads' load, 0 to 1.
    pub load: Box<dyn Fn() -> f64 + Send + Sync>,
}

/// The origin's admission control; one per origin.
pub struct Admission {
    limits: Limits,
    sources: Sources,
    state: Mutex<State>,
    admitted: AtomicU64,
    refused: [AtomicU64; Reason::ALL.len()],
}

struct State {
    /// Expiry and bit rate of each reservation, oldest first.
    reservations: VecDeque<(Instant, u64)>,
    reserved: u64,
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
        Self {
            limits,
            sources,
            state: Mutex::new(State {
                reservations: VecDeque::new(),
                reserved: 0,
                egress: 0.0,
                load: 0.0,
                sampled_at: Instant::now(),
                sampled_bytes,
            }),
            admitted: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    /// Admits a new session of `bitrate` bits per second (reserving it), or
    /// says why not.
    pub fn admit(&self, bitrate: u64) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut state = self.state();
        state.expire(now);
        match decide(
            self.limits,
            state.egress,
            state.load,
            state.reserved,
            bitrate,
        ) {
            Ok(()) => {
                state.reservations.push_back((now + RESERVATION, bitrate));
                state.reserved += bitrate;
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
        state.expire(now);
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

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some(&(expiry, bitrate)) = self.reservations.front() {
            if expiry > now {
                break;
            }
            self.reservations.pop_front();
            self.reserved -= bitrate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

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
            },
        )
    }

    #[test]
    fn admitted_sessions_reserve_their_bitrate_and_refusals_spread_retries() {
        let admission = admission(limits(Some(5 * MBIT), 1.0), Arc::default(), Arc::default());
        assert_eq!(admission.admit(2 * MBIT), Ok(()));
        assert_eq!(admission.admit(2 * MBIT), Ok(()));
        let mut retry_afters = Vec::new();
        for _ in 0..5 {
            let refusal = admission.admit(2 * MBIT).unwrap_err();
            assert_eq!(refusal.reason, Reason::Egress);
            retry_afters.push(refusal.retry_after);
        }
        retry_afters.sort_unstable();
        assert_eq!(retry_afters, vec![3, 4, 5, 6, 7]);
        assert_eq!(admission.admit(MBIT), Ok(()));
        assert_eq!(admission.admitted(), 3);
        assert_eq!(admission.refused(Reason::Egress), 5);
        assert_eq!(admission.refused(Reason::Load), 0);
        // Once the reservations lapse, with nothing measured, room again.
        admission.sample_at(Instant::now() + RESERVATION);
        assert_eq!(admission.admit(4 * MBIT), Ok(()));
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
        assert_eq!(admission.admit(1).unwrap_err().reason, Reason::Egress);
    }

    #[test]
    fn a_sustained_load_refuses_and_a_burst_does_not() {
        let load = Arc::new(AtomicU64::new(1000));
        let admission = admission(limits(None, 0.9), Arc::default(), load.clone());
        let start = Instant::now();
        admission.sample_at(start + SAMPLE_PERIOD);
        assert_eq!(admission.admit(MBIT), Ok(()), "load {}", admission.load());
        for step in 2..=12u32 {
            admission.sample_at(start + SAMPLE_PERIOD * step);
        }
        assert!(admission.load() > 0.9, "{}", admission.load());
        assert_eq!(admission.admit(MBIT).unwrap_err().reason, Reason::Load);
        assert_eq!(admission.refused(Reason::Load), 1);
    }
}
