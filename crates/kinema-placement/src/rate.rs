//! A video's recent request rate, and how many nodes that rate calls for.
//!
//! The meter is an exponentially decaying count: each event adds 1, and the
//! count halves every half-life H. With events arriving at a steady r per
//! second the count settles at r × H / ln 2 (the integral of r × 2^(-t/H)),
//! so the rate read is count × ln 2 / H: a steady rate reads as itself, and
//! a video nobody asks for fades to half its rate every H. Time is whatever
//! the caller passes (a `Duration` since an epoch of its choosing); time
//! that goes backwards counts as no time passing.

use std::time::Duration;

use crate::PlacementError;

/// Longest half-life accepted: a day.
pub const MAX_HALF_LIFE: Duration = Duration::from_secs(24 * 60 * 60);

/// An exponentially decaying event rate, in events per second.
#[derive(Debug, Clone, PartialEq)]
pub struct RateMeter {
    half_life: Duration,
    count: f64,
    at: Duration,
}

impl RateMeter {
    pub fn new(half_life: Duration) -> Result<Self, PlacementError> {
        if half_life.is_zero() || half_life > MAX_HALF_LIFE {
            return Err(PlacementError::HalfLife(half_life));
        }
        Ok(Self {
            half_life,
            count: 0.0,
            at: Duration::ZERO,
        })
    }

    pub fn half_life(&self) -> Duration {
        self.half_life
    }

    /// Counts one event at `now`.
    pub fn observe(&mut self, now: Duration) {
        self.count = self.count_at(now) + 1.0;
        self.at = self.at.max(now);
    }

    /// The rate at `now`, in events per second.
    pub fn rate(&self, now: Duration) -> f64 {
        self.count_at(now) * std::f64::consts::LN_2 / self.half_life.as_secs_f64()
    }

    fn count_at(&self, now: Duration) -> f64 {
        let elapsed = now.saturating_sub(self.at);
        let half_lives = elapsed.as_secs_f64() / self.half_life.as_secs_f64();
        self.count * (-half_lives).exp2()
    }
}

/// A rate that rises with a crowd within seconds and falls back slowly: the
/// higher of two [`RateMeter`]s, one with a short half-life (`rise`) and
/// one with a long one (`fall`). A steady rate reads as itself on both. A
/// crowd that starts at r events per second reads r × (1 − 2^(−t/H)) on a
/// meter of half-life H after t seconds: 5 s into it, 16% of r with
/// H = 20 s but 6% with H = 60 s, so on the long meter alone a crowd that
/// arrives within seconds would mostly land on one node. Once the crowd stops
/// the long meter holds the rate for minutes, so a video's nodes do not
/// shrink back at its first lull.
#[derive(Debug, Clone, PartialEq)]
pub struct CrowdRate {
    rise: RateMeter,
    fall: RateMeter,
}

impl CrowdRate {
    /// `rise` at most `fall`, both within [`RateMeter::new`]'s bounds.
    pub fn new(rise: Duration, fall: Duration) -> Result<Self, PlacementError> {
        if rise > fall {
            return Err(PlacementError::HalfLives { rise, fall });
        }
        Ok(Self {
            rise: RateMeter::new(rise)?,
            fall: RateMeter::new(fall)?,
        })
    }

    /// Counts one event at `now`.
    pub fn observe(&mut self, now: Duration) {
        self.rise.observe(now);
        self.fall.observe(now);
    }

    /// The rate at `now`, in events per second.
    pub fn rate(&self, now: Duration) -> f64 {
        self.rise.rate(now).max(self.fall.rate(now))
    }
}

/// How many nodes serve a video: k = ⌈rate / per_node_rate⌉, at least 1
/// and at most the number of nodes. `per_node_rate` is the rate one node
/// is meant to carry for one video before the next node joins in, in the
/// unit the meter counts (kinema: session starts per second).
pub fn replicas(rate: f64, per_node_rate: f64, nodes: usize) -> usize {
    let wanted = (rate / per_node_rate).ceil();
    // `as` saturates: a huge or infinite rate asks for every node, and NaN
    // (never produced by the meter) reads as 0.
    (wanted as usize).clamp(1, nodes.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }

    fn close(got: f64, expected: f64) -> bool {
        (got - expected).abs() <= 1e-12 * expected.abs().max(1.0)
    }

    #[test]
    fn half_life_is_bounded() {
        assert_eq!(
            RateMeter::new(Duration::ZERO),
            Err(PlacementError::HalfLife(Duration::ZERO))
        );
        assert!(RateMeter::new(MAX_HALF_LIFE + Duration::from_nanos(1)).is_err());
        assert!(RateMeter::new(MAX_HALF_LIFE).is_ok());
    }

    // Hand-computed with H = 10 s: one event reads ln 2 / 10 = 0.0693147…/s,
    // half that after 10 s and a quarter after 20 s.
    #[test]
    fn one_event_decays_by_half_each_half_life() {
        let mut meter = RateMeter::new(seconds(10.0)).unwrap();
        assert_eq!(meter.rate(seconds(0.0)), 0.0);
        meter.observe(seconds(0.0));
        assert!(close(meter.rate(seconds(0.0)), 0.069_314_718_055_994_53));
        assert!(close(meter.rate(seconds(10.0)), 0.034_657_359_027_997_26));
        assert!(close(meter.rate(seconds(20.0)), 0.017_328_679_513_998_63));
        // 5 s is half a half-life: ln 2 / 10 / √2.
        assert!(close(meter.rate(seconds(5.0)), 0.049_012_907_173_427_35));
    }

    // Events at 0 and 10 s (H = 10 s): count 0.5 + 1 = 1.5 at 10 s,
    // rate 1.5 × ln 2 / 10 = 0.103972…/s.
    #[test]
    fn events_add_to_the_decayed_count() {
        let mut meter = RateMeter::new(seconds(10.0)).unwrap();
        meter.observe(seconds(0.0));
        meter.observe(seconds(10.0));
        assert!(close(meter.rate(seconds(10.0)), 0.103_972_077_083_991_78));
    }

    // Ten events a second for 20 half-lives (2001 events, H = 10 s): right
    // after the last, the count is the sum over j = 0..=2000 of 2^(-j/100)
    // and the rate ln 2 / 10 times that, 10.034687893… (summed by hand in
    // Python): a steady rate reads as itself, plus the half event just counted.
    #[test]
    fn a_steady_rate_reads_as_itself() {
        let mut meter = RateMeter::new(seconds(10.0)).unwrap();
        for tick in 0..=2000u64 {
            meter.observe(Duration::from_millis(100 * tick));
        }
        let rate = meter.rate(Duration::from_millis(200_000));
        assert!((rate - 10.034_687_893_017_58).abs() < 1e-9, "rate {rate}");
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let mut meter = RateMeter::new(seconds(10.0)).unwrap();
        meter.observe(seconds(100.0));
        assert!(close(meter.rate(seconds(50.0)), 0.069_314_718_055_994_53));
        meter.observe(seconds(50.0));
        assert!(close(
            meter.rate(seconds(100.0)),
            2.0 * 0.069_314_718_055_994_53
        ));
        assert!(close(meter.rate(seconds(110.0)), 0.069_314_718_055_994_53));
    }

    #[test]
    fn crowd_rate_half_lives_are_checked() {
        assert_eq!(
            CrowdRate::new(seconds(61.0), seconds(60.0)),
            Err(PlacementError::HalfLives {
                rise: seconds(61.0),
                fall: seconds(60.0)
            })
        );
        assert_eq!(
            CrowdRate::new(Duration::ZERO, seconds(60.0)),
            Err(PlacementError::HalfLife(Duration::ZERO))
        );
        assert!(CrowdRate::new(seconds(60.0), seconds(60.0)).is_ok());
    }

    // Ten events a second for 5 s (51 events, at 0, 0.1, …, 5.0 s), summed
    // by hand in Python: at 5 s the 10 s meter reads 2.98810772752…/s and
    // the 60 s meter 0.57248519393…; 60 s after the last event, 0.04668918…
    // and 0.28624259696….
    #[test]
    fn a_crowd_reads_on_the_short_half_life_and_fades_on_the_long_one() {
        let mut rate = CrowdRate::new(seconds(10.0), seconds(60.0)).unwrap();
        for tick in 0..=50u64 {
            rate.observe(Duration::from_millis(100 * tick));
        }
        let at_end = rate.rate(seconds(5.0));
        assert!(
            (at_end - 2.988_107_727_525_657).abs() < 1e-9,
            "rate {at_end}"
        );
        let later = rate.rate(seconds(65.0));
        assert!((later - 0.286_242_596_965_223).abs() < 1e-9, "rate {later}");
    }

    #[test]
    fn replicas_grow_with_rate_from_one_to_the_node_count() {
        assert_eq!(replicas(0.0, 2.0, 5), 1);
        assert_eq!(replicas(0.001, 2.0, 5), 1);
        assert_eq!(replicas(2.0, 2.0, 5), 1);
        assert_eq!(replicas(2.01, 2.0, 5), 2);
        assert_eq!(replicas(7.5, 2.0, 5), 4);
        assert_eq!(replicas(1000.0, 2.0, 5), 5);
        assert_eq!(replicas(f64::INFINITY, 2.0, 5), 5);
        assert_eq!(replicas(3.0, 1.0, 1), 1);
    }
}
