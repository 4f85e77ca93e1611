//! Adaptive bit-rate decisions: which rung of the ladder to fetch next.
//!
//! Both algorithms are pure functions of what a player knows at a segment
//! boundary (the ladder, its throughput history, its buffer level, the rung
//! it is on), so they are tested on recorded inputs without a network or a
//! clock. The viewer re-plans with them after every segment.
//!
//! - `throughput`: the rate-based rule most players ship (hls.js, Shaka):
//!   two exponentially weighted moving averages of measured segment
//!   throughput, a fast and a slow one, weighted by the media seconds each
//!   sample carried; the estimate is the smaller of the two (quick to fall,
//!   slow to rise), and the choice is the highest rung whose bandwidth fits
//!   under a safety factor of it.
//! - `buffer`: BBA-0 (Huang et al., "A Buffer-Based Approach to Rate
//!   Adaptation", SIGCOMM 2014): below a reservoir take the lowest rung,
//!   above the cushion the highest, in between map the buffer level linearly
//!   onto the ladder, and only move when the mapping crosses a neighbouring
//!   rung (hysteresis).

use serde::{Deserialize, Serialize};

/// Which algorithm a viewer runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AbrKind {
    #[default]
    Throughput,
    Buffer,
}

impl std::str::FromStr for AbrKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "throughput" => Ok(AbrKind::Throughput),
            "buffer" => Ok(AbrKind::Buffer),
            other => Err(format!(
                "abr {other:?} is not known; use throughput or buffer"
            )),
        }
    }
}

/// Fraction of the throughput estimate a rung's bandwidth may use, so the
/// variance of real links does not drain the buffer (hls.js uses 0.7–0.95).
pub const SAFETY_FACTOR: f64 = 0.8;
/// Half-lives of the two averages, in media seconds (hls.js's defaults).
const FAST_HALF_LIFE_SECONDS: f64 = 3.0;
const SLOW_HALF_LIFE_SECONDS: f64 = 9.0;

/// Throughput history of one viewer.
#[derive(Debug, Clone, Default)]
pub struct ThroughputEstimator {
    fast: f64,
    slow: f64,
    /// Media seconds sampled so far; corrects the zero-start bias of both
    /// averages while there is little history.
    weight: f64,
}

impl ThroughputEstimator {
    /// Adds one download: `bits_per_second` measured over a segment that
    /// carries `media_seconds` of media.
    pub fn sample(&mut self, media_seconds: f64, bits_per_second: f64) {
        let media_seconds = media_seconds.max(1e-3);
        let fast_alpha = 0.5f64.powf(media_seconds / FAST_HALF_LIFE_SECONDS);
        let slow_alpha = 0.5f64.powf(media_seconds / SLOW_HALF_LIFE_SECONDS);
        self.fast = bits_per_second * (1.0 - fast_alpha) + self.fast * fast_alpha;
        self.slow = bits_per_second * (1.0 - slow_alpha) + self.slow * slow_alpha;
        self.weight += media_seconds;
    }

    /// The estimate in bits per second, `None` before the first sample.
    pub fn estimate(&self) -> Option<f64> {
        if self.weight <= 0.0 {
            return None;
        }
        let fast = self.fast / (1.0 - 0.5f64.powf(self.weight / FAST_HALF_LIFE_SECONDS));
        let slow = self.slow / (1.0 - 0.5f64.powf(self.weight / SLOW_HALF_LIFE_SECONDS));
        Some(fast.min(slow))
    }
}

/// Everything a decision looks at. `ladder` holds each rung's bandwidth in
/// bits per second, ascending.
#[derive(Debug, Clone, Copy)]
pub struct AbrInput<'a> {
    pub ladder: &'a [u64],
    /// Index of the rung of the previous segment; `None` at startup.
    pub current: Option<usize>,
    /// Seconds of media buffered ahead of the play head.
    pub buffer_seconds: f64,
    /// The buffer level the player aims for.
    pub buffer_target_seconds: f64,
    pub segment_seconds: f64,
    pub throughput_bits_per_second: Option<f64>,
}

/// The rung index to fetch next.
pub fn choose(kind: AbrKind, input: &AbrInput<'_>) -> usize {
    if input.ladder.is_empty() {
        return 0;
    }
    match kind {
        AbrKind::Throughput => choose_by_throughput(input),
        AbrKind::Buffer => choose_by_buffer(input),
    }
}

/// The highest rung under `SAFETY_FACTOR` × the estimate; the lowest when
/// nothing fits or nothing was measured yet (a cautious start).
pub fn choose_by_throughput(input: &AbrInput<'_>) -> usize {
    let Some(estimate) = input.throughput_bits_per_second else {
        return 0;
    };
    let budget = estimate * SAFETY_FACTOR;
    input
        .ladder
        .iter()
        .rposition(|bandwidth| *bandwidth as f64 <= budget)
        .unwrap_or(0)
}

/// BBA-0's reservoir and the top of its cushion for a buffer target:
/// the reservoir covers at least one segment, and the cushion ends 10%
/// below the level at which a paced player decides (one segment under the
/// target), so a player whose buffer is full maps to the top rung even
/// though it decides a moment after the exact level.
pub fn buffer_thresholds(buffer_target_seconds: f64, segment_seconds: f64) -> (f64, f64) {
    let reservoir = (0.15 * buffer_target_seconds).max(segment_seconds);
    let upper = (0.9 * (buffer_target_seconds - segment_seconds)).max(reservoir + segment_seconds);
    (reservoir, upper)
}

pub fn choose_by_buffer(input: &AbrInput<'_>) -> usize {
    let ladder = input.ladder;
    let top = ladder.len() - 1;
    let (reservoir, upper) = buffer_thresholds(input.buffer_target_seconds, input.segment_seconds);
    let buffer = input.buffer_seconds;
    if buffer <= reservoir {
        return 0;
    }
    if buffer >= upper {
        return top;
    }
    let (low, high) = (ladder[0] as f64, ladder[top] as f64);
    let mapped = low + (buffer - reservoir) / (upper - reservoir) * (high - low);
    let current = input.current.unwrap_or(0).min(top);
    let next_up = (current + 1).min(top);
    let next_down = current.saturating_sub(1);
    if mapped >= ladder[next_up] as f64 && next_up != current {
        // The highest rung strictly below the mapped rate.
        ladder
            .iter()
            .rposition(|bandwidth| (*bandwidth as f64) < mapped)
            .unwrap_or(current)
            .max(current)
    } else if mapped <= ladder[next_down] as f64 && next_down != current {
        // The lowest rung strictly above the mapped rate.
        ladder
            .iter()
            .position(|bandwidth| (*bandwidth as f64) > mapped)
            .unwrap_or(current)
            .min(current)
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [u64; 5] = [300_000, 800_000, 1_500_000, 3_000_000, 6_000_000];

    fn input(
        current: Option<usize>,
        buffer_seconds: f64,
        throughput: Option<f64>,
    ) -> AbrInput<'static> {
        AbrInput {
            ladder: &LADDER,
            current,
            buffer_seconds,
            buffer_target_seconds: 30.0,
            segment_seconds: 4.0,
            throughput_bits_per_second: throughput,
        }
    }

    #[test]
    fn throughput_rule_fits_under_the_safety_factor() {
        assert_eq!(choose_by_throughput(&input(None, 0.0, None)), 0);
        // 0.5 Mbit/s × 0.8 = 0.4: only the 0.3 Mbit/s rung fits.
        assert_eq!(
            choose_by_throughput(&input(Some(2), 10.0, Some(500_000.0))),
            0
        );
        // 20 Mbit/s: the top rung.
        assert_eq!(choose_by_throughput(&input(Some(0), 10.0, Some(2e7))), 4);
        // 3.7 Mbit/s × 0.8 = 2.96: just under the 3 Mbit/s rung.
        assert_eq!(choose_by_throughput(&input(Some(3), 10.0, Some(3.7e6))), 2);
        // Below the lowest rung, still the lowest (never "nothing").
        assert_eq!(choose_by_throughput(&input(Some(3), 10.0, Some(1e5))), 0);
    }

    /// Recorded samples of a link that drops from 10 to 1 Mbit/s: the
    /// estimate falls within a couple of segments (the fast average) but
    /// rises back slowly (the slow one).
    #[test]
    fn estimator_falls_fast_and_rises_slowly() {
        let mut estimator = ThroughputEstimator::default();
        assert_eq!(estimator.estimate(), None);
        estimator.sample(4.0, 10e6);
        let first = estimator.estimate().unwrap();
        assert!((first - 10e6).abs() < 1.0, "no zero-start bias: {first}");
        for _ in 0..5 {
            estimator.sample(4.0, 10e6);
        }
        estimator.sample(4.0, 1e6);
        estimator.sample(4.0, 1e6);
        let after_drop = estimator.estimate().unwrap();
        assert!(after_drop < 3.0e6, "{after_drop}");
        let mut recovering = estimator.clone();
        recovering.sample(4.0, 10e6);
        let after_one_good = recovering.estimate().unwrap();
        assert!(after_one_good < 8e6, "{after_one_good}");
        assert!(after_one_good > after_drop);
    }

    #[test]
    fn buffer_rule_follows_the_reservoir_and_cushion() {
        let (reservoir, upper) = buffer_thresholds(30.0, 4.0);
        assert_eq!(reservoir, 4.5);
        assert!((upper - 23.4).abs() < 1e-9, "{upper}");
        assert_eq!(choose_by_buffer(&input(None, 0.0, None)), 0);
        assert_eq!(choose_by_buffer(&input(Some(3), 4.0, None)), 0);
        assert_eq!(choose_by_buffer(&input(Some(0), 23.5, None)), 4);
        // Where a paced player decides (a hair under target − segment): top.
        assert_eq!(choose_by_buffer(&input(Some(3), 25.99, None)), 4);
        // Halfway up the cushion maps to ~3.15 Mbit/s: from the bottom,
        // jump to the highest rung below it.
        assert_eq!(choose_by_buffer(&input(Some(0), 13.95, None)), 3);
        // The same level from the top rung: the mapping is not at or under
        // the next rung down (3 Mbit/s), so stay (hysteresis).
        assert_eq!(choose_by_buffer(&input(Some(4), 13.95, None)), 4);
        // Lower level from the top: step down to the lowest rung above
        // the mapped rate (~1.2 Mbit/s → 1.5 Mbit/s).
        assert_eq!(choose_by_buffer(&input(Some(4), 8.0, None)), 2);
        // A single-rung ladder has only one answer.
        let single = AbrInput {
            ladder: &[1_000_000],
            ..input(Some(0), 10.0, None)
        };
        assert_eq!(choose(AbrKind::Buffer, &single), 0);
        assert_eq!(choose(AbrKind::Throughput, &single), 0);
    }
}
