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
//!
//! [`RESERVATION`]: reservations::RESERVATION
//! [`MAX_RESERVATIONS_PER_PREFIX`]: reservations::MAX_RESERVATIONS_PER_PREFIX
//! [`UNCONFIRMED_GRACE`]: reservations::UNCONFIRMED_GRACE

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

mod model;
mod reservations;

pub use model::{Limits, Reason, decide};
pub use reservations::{ClientPrefix, Reservations};

/// How often the egress rate and the load are read.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(500);
/// Time constant of the exponential smoothing of the egress and the load.
const SMOOTHING: Duration = Duration::from_secs(2);
/// `Retry-After` seconds go round this range.
const RETRY_AFTER_SECONDS: std::ops::RangeInclusive<u64> = 3..=7;
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
mod tests;
