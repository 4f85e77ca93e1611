//! Catalogue mode: viewers spread over many videos by popularity, as a
//! real audience is, for cache hit-ratio benchmarks. The run's URL names
//! the video by `{video}`; each viewer draws its video's rank `n` (1 is the
//! most popular) from a Zipf distribution, P(n) ∝ 1 / n^α, with the run's
//! seed, so a run is repeatable.
//!
//! What it is not: a model of sessions over time. Each viewer plays one
//! video for the whole run (looping it), as in the single-video mode.

use rand::Rng;

/// Most videos a catalogue may have (the cumulative table is held whole).
pub const MAX_VIDEOS: u32 = 1_000_000;
/// The placeholder in the URL replaced by a viewer's video rank.
pub const PLACEHOLDER: &str = "{video}";

/// Zipf(α) over ranks 1..=videos, drawn by inverting its cumulative table.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// `videos` from 1 to [`MAX_VIDEOS`], `alpha` finite and from 0 (every
    /// video alike) to 10; the caller has checked both.
    pub fn new(videos: u32, alpha: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=videos)
            .map(|rank| {
                total += 1.0 / f64::from(rank).powf(alpha);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// The share of requests rank `rank` gets (1-based).
    pub fn share(&self, rank: u32) -> f64 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let index = rank as usize - 1;
        let below = if index == 0 {
            0.0
        } else {
            self.cumulative[index - 1]
        };
        (self.cumulative[index] - below) / total
    }

    /// A rank from 1 to the catalogue's size.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = rng.r#gen::<f64>() * total;
        let index = self.cumulative.partition_point(|c| *c <= target);
        (index.min(self.cumulative.len() - 1) + 1) as u32
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn shares_follow_the_power_law_and_sum_to_one() {
        let zipf = Zipf::new(4, 1.0);
        // 1, 1/2, 1/3, 1/4 over their sum 25/12.
        let expected = [12.0 / 25.0, 6.0 / 25.0, 4.0 / 25.0, 3.0 / 25.0];
        for (rank, expected) in (1..=4).zip(expected) {
            assert!((zipf.share(rank) - expected).abs() < 1e-12, "{rank}");
        }
        let uniform = Zipf::new(5, 0.0);
        assert!((uniform.share(3) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn samples_stay_in_range_and_match_the_shares() {
        let zipf = Zipf::new(4, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            let rank = zipf.sample(&mut rng);
            assert!((1..=4).contains(&rank));
            counts[rank as usize - 1] += 1;
        }
        for (index, count) in counts.iter().enumerate() {
            let share = f64::from(*count) / 40_000.0;
            let expected = [0.48, 0.24, 0.16, 0.12][index];
            assert!(
                (share - expected).abs() < 0.02,
                "rank {}: {share}",
                index + 1
            );
        }
    }
}
