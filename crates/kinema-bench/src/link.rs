//! The viewer's last-mile link, modelled in user space.
//!
//! Every viewer runs on loopback, where the network is effectively infinite;
//! what makes one viewer a 0.5 Mbit/s phone and another a 50 Mbit/s fibre
//! line is how fast it *reads* its responses. [`Shaper`] is a token bucket
//! (in its GCRA form: one "theoretical arrival time" instead of a refill
//! timer) that the body reader charges after every chunk and sleeps on when
//! the viewer is ahead of its link. While it sleeps it does not poll the
//! connection, so TCP flow control pushes back to the server as a slow link
//! would. No timer runs for an idle viewer: the bucket refills by arithmetic.
//!
//! [`LinkSpec`] is the distribution the run draws each viewer's rate from.
//! This module does not touch sockets.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kinema_core::bitrate::{format_bitrate, parse_bitrate};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How each viewer's downlink rate is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LinkSpec {
    /// No shaping: the viewer reads as fast as loopback delivers.
    Unlimited,
    /// Every viewer has the same rate.
    Fixed(u64),
    /// Log-uniform between two rates (`0.3mbit..20mbit`): as many viewers
    /// between 1 and 2 Mbit/s as between 10 and 20.
    LogUniform { low: u64, high: u64 },
    /// Weighted classes (`0.5mbit:30%,3mbit:50%,20mbit:20%`).
    Classes(Vec<(u64, f64)>),
}

impl LinkSpec {
    /// Draws one viewer's rate; `None` means unlimited.
    pub fn sample(&self, rng: &mut impl Rng) -> Option<u64> {
        match self {
            LinkSpec::Unlimited => None,
            LinkSpec::Fixed(rate) => Some(*rate),
            LinkSpec::LogUniform { low, high } => {
                let (low, high) = ((*low as f64).ln(), (*high as f64).ln());
                Some(rng.gen_range(low..=high).exp().round() as u64)
            }
            LinkSpec::Classes(classes) => {
                let total: f64 = classes.iter().map(|(_, weight)| weight).sum();
                let mut pick = rng.gen_range(0.0..total);
                for (rate, weight) in classes {
                    if pick < *weight {
                        return Some(*rate);
                    }
                    pick -= weight;
                }
                classes.last().map(|(rate, _)| *rate)
            }
        }
    }
}

impl FromStr for LinkSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(LinkSpec::Unlimited);
        }
        if let Some((low, high)) = text.split_once("..") {
            let (low, high) = (parse_bitrate(low)?, parse_bitrate(high)?);
            if low >= high {
                return Err(format!(
                    "link range {text:?} must go from the lower rate to the higher"
                ));
            }
            return Ok(LinkSpec::LogUniform { low, high });
        }
        if text.contains(':') || text.contains(',') {
            let mut classes = Vec::new();
            for class in text.split(',') {
                let (rate, weight) = class.split_once(':').ok_or_else(|| {
                    format!("link class {class:?} must be RATE:WEIGHT%, e.g. 3mbit:50%")
                })?;
                let weight_text = weight.trim().trim_end_matches('%');
                let weight: f64 = weight_text
                    .parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| {
                        format!("link class {class:?} needs a positive weight, e.g. 3mbit:50%")
                    })?;
                classes.push((parse_bitrate(rate)?, weight));
            }
            return Ok(LinkSpec::Classes(classes));
        }
        Ok(LinkSpec::Fixed(parse_bitrate(text)?))
    }
}

impl TryFrom<String> for LinkSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<LinkSpec> for String {
    fn from(spec: LinkSpec) -> Self {
        spec.to_string()
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkSpec::Unlimited => f.write_str("unlimited"),
            LinkSpec::Fixed(rate) => f.write_str(&format_bitrate(*rate)),
            LinkSpec::LogUniform { low, high } => {
                write!(f, "{}..{}", format_bitrate(*low), format_bitrate(*high))
            }
            LinkSpec::Classes(classes) => {
                let parts: Vec<String> = classes
                    .iter()
                    .map(|(rate, weight)| format!("{}:{}%", format_bitrate(*rate), weight))
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// A token bucket on one viewer's downlink.
///
/// `rate` is in bytes per second of wall-clock time (the viewer's link rate
/// already multiplied by the run's speed-up); `burst` is how many bytes may
/// pass at once after the link was idle, like the queue of a real access
/// link.
#[derive(Debug)]
pub struct Shaper {
    seconds_per_byte: f64,
    burst_seconds: f64,
    /// When the link will have delivered everything charged so far.
    busy_until: Instant,
}

impl Shaper {
    pub fn new(bytes_per_second: f64, burst_bytes: u64) -> Self {
        let seconds_per_byte = 1.0 / bytes_per_second.max(1.0);
        Self {
            seconds_per_byte,
            burst_seconds: burst_bytes as f64 * seconds_per_byte,
            busy_until: Instant::now(),
        }
    }

    /// Charges `bytes` received at `now`; returns the instant until which
    /// the reader must wait before reading more, if any.
    pub fn charge(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        let start = self.busy_until.max(now);
        self.busy_until = start + Duration::from_secs_f64(bytes as f64 * self.seconds_per_byte);
        let release = self
            .busy_until
            .checked_sub(Duration::from_secs_f64(self.burst_seconds))
            .unwrap_or(now);
        (release > now).then_some(release)
    }

    /// Charges `bytes` and waits until the link has carried them.
    pub async fn consume(&mut self, bytes: usize) {
        if let Some(release) = self.charge(Instant::now(), bytes) {
            tokio::time::sleep_until(release).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_rates_and_distributions() {
        assert_eq!("3mbit".parse(), Ok(LinkSpec::Fixed(3_000_000)));
        assert_eq!(
            "0.3mbit..20mbit".parse(),
            Ok(LinkSpec::LogUniform {
                low: 300_000,
                high: 20_000_000
            })
        );
        assert_eq!(
            "0.5mbit:30%,3mbit:50%,20mbit:20%".parse(),
            Ok(LinkSpec::Classes(vec![
                (500_000, 30.0),
                (3_000_000, 50.0),
                (20_000_000, 20.0)
            ]))
        );
        assert!("20mbit..1mbit".parse::<LinkSpec>().is_err());
        assert!("3mbit:0%".parse::<LinkSpec>().is_err());
        for text in [
            "unlimited",
            "3mbit",
            "300kbit..20mbit",
            "500kbit:30%,3mbit:70%",
        ] {
            let spec: LinkSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn samples_stay_in_their_distribution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let spec: LinkSpec = "1mbit..100mbit".parse().unwrap();
        let samples: Vec<u64> = (0..2000).map(|_| spec.sample(&mut rng).unwrap()).collect();
        assert!(
            samples
                .iter()
                .all(|r| (1_000_000..=100_000_000).contains(r))
        );
        // Log-uniform: about half the samples fall below the geometric mean.
        let below = samples.iter().filter(|r| **r < 10_000_000).count();
        assert!((800..1200).contains(&below), "{below}");

        let spec: LinkSpec = "1mbit:25%,9mbit:75%".parse().unwrap();
        let slow = (0..2000)
            .filter(|_| spec.sample(&mut rng) == Some(1_000_000))
            .count();
        assert!((400..600).contains(&slow), "{slow}");
    }

    /// A shaped read of N bytes takes N / rate (less the burst the idle
    /// link lets through at once), measured on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn shaped_read_takes_size_over_rate() {
        let rate = 125_000.0; // 1 Mbit/s
        let burst = 16 * 1024;
        let mut shaper = Shaper::new(rate, burst);
        let started = Instant::now();
        let total = 1_000_000usize;
        let chunk = 16 * 1024;
        let mut read = 0;
        while read < total {
            let n = chunk.min(total - read);
            shaper.consume(n).await;
            read += n;
        }
        let took = started.elapsed().as_secs_f64();
        let expected = (total as f64 - burst as f64) / rate;
        assert!(
            (took - expected).abs() < 0.01,
            "took {took}, expected {expected}"
        );

        // After the link has been idle longer than the burst takes, a burst
        // passes at once again but no more than that.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let started = Instant::now();
        shaper.consume(burst as usize).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        shaper.consume(125_000).await;
        let took = started.elapsed().as_secs_f64();
        assert!((took - 1.0).abs() < 0.01, "took {took}");
    }
}
