//! The compact summary a node gossips of what it measured: its best- and
//! worst-served client prefixes, with throughput and RTT inflation, in at
//! most [`MAX_SUMMARY_BYTES`] of text, so it fits the small per-node state
//! membership gossips (keys and decimal strings).
//!
//! Text form: entries separated by one space, each
//! `+PREFIX,KBPS,MS` (among the best) or `-PREFIX,KBPS,MS` (among the
//! worst), e.g. `+203.0.113.0/24,48100,12 -198.51.100.0/24,800,150`.
//! Reading is tolerant: an over-long text is ignored whole, a malformed
//! entry is skipped.

use std::fmt::Write;
use std::time::Instant;

use crate::aggregate::{Aggregator, PrefixEstimate};
use crate::prefix::ClientPrefix;

/// Longest summary text written or read.
pub const MAX_SUMMARY_BYTES: usize = 400;
/// Best and worst prefixes listed at most, each.
pub const MAX_PER_SIDE: usize = 4;
/// A prefix enters the summary only with at least this much decayed
/// evidence (samples' weight) behind its throughput: about two recent
/// samples (two taken a moment apart weigh just under 2).
pub const MIN_WEIGHT: f64 = 1.5;

/// One prefix's figures as gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixFigures {
    pub throughput_kbps: u64,
    /// Smoothed minus minimum RTT; 0 when only players reported.
    pub rtt_inflation_ms: u64,
}

impl PrefixFigures {
    /// A node's own estimate in the units summaries gossip, so steering
    /// compares its own table and its peers' summaries alike; `None`
    /// without a throughput.
    pub fn from_estimate(estimate: &PrefixEstimate) -> Option<Self> {
        let throughput = estimate.throughput_bps?;
        Some(Self {
            throughput_kbps: (throughput / 1000.0).round() as u64,
            rtt_inflation_ms: estimate.rtt_inflation_ms.unwrap_or(0.0).round() as u64,
        })
    }
}

/// What one node measured best and worst.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub best: Vec<(ClientPrefix, PrefixFigures)>,
    pub worst: Vec<(ClientPrefix, PrefixFigures)>,
}

impl Summary {
    /// The best and worst prefixes of `aggregator` at `now` by throughput
    /// (ties by prefix, so equal tables give equal summaries), each side at
    /// most [`MAX_PER_SIDE`], a prefix on one side only, trimmed until its
    /// text fits [`MAX_SUMMARY_BYTES`].
    pub fn of(aggregator: &Aggregator, now: Instant) -> Summary {
        let mut measured: Vec<(ClientPrefix, PrefixFigures)> = aggregator
            .estimates(now)
            .filter(|(_, estimate)| estimate.throughput_weight >= MIN_WEIGHT)
            .filter_map(|(prefix, estimate)| {
                Some((prefix, PrefixFigures::from_estimate(&estimate)?))
            })
            .collect();
        measured.sort_by(|a, b| {
            b.1.throughput_kbps
                .cmp(&a.1.throughput_kbps)
                .then(a.0.cmp(&b.0))
        });
        let best_count = measured.len().min(MAX_PER_SIDE);
        let best: Vec<_> = measured[..best_count].to_vec();
        let worst: Vec<_> = measured[best_count..]
            .iter()
            .rev()
            .take(MAX_PER_SIDE)
            .copied()
            .collect();
        let mut summary = Summary { best, worst };
        while summary.to_string().len() > MAX_SUMMARY_BYTES {
            // Drop from the longer side's least telling end.
            if summary.worst.len() >= summary.best.len() {
                summary.worst.pop();
            } else {
                summary.best.pop();
            }
        }
        summary
    }

    /// Reads a gossiped summary; see the module's text form.
    pub fn parse(text: &str) -> Summary {
        let mut summary = Summary::default();
        if text.len() > MAX_SUMMARY_BYTES {
            return summary;
        }
        for entry in text.split(' ') {
            let Some((side, rest)) = entry
                .strip_prefix('+')
                .map(|rest| (true, rest))
                .or_else(|| entry.strip_prefix('-').map(|rest| (false, rest)))
            else {
                continue;
            };
            let mut fields = rest.split(',');
            let (Some(prefix), Some(kbps), Some(ms), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let decimal = |text: &str| {
                (!text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| text.parse::<u64>().ok())
                    .flatten()
            };
            let (Ok(prefix), Some(throughput_kbps), Some(rtt_inflation_ms)) =
                (prefix.parse(), decimal(kbps), decimal(ms))
            else {
                continue;
            };
            let list = if side {
                &mut summary.best
            } else {
                &mut summary.worst
            };
            if list.len() < MAX_PER_SIDE {
                list.push((
                    prefix,
                    PrefixFigures {
                        throughput_kbps,
                        rtt_inflation_ms,
                    },
                ));
            }
        }
        summary
    }

    /// What this summary says of `prefix`, if it lists it.
    pub fn figures_for(&self, prefix: ClientPrefix) -> Option<PrefixFigures> {
        self.best
            .iter()
            .chain(&self.worst)
            .find(|(listed, _)| *listed == prefix)
            .map(|(_, figures)| *figures)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::new();
        let entries = self
            .best
            .iter()
            .map(|entry| ('+', entry))
            .chain(self.worst.iter().map(|entry| ('-', entry)));
        for (side, (prefix, figures)) in entries {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(
                text,
                "{side}{prefix},{},{}",
                figures.throughput_kbps, figures.rtt_inflation_ms
            );
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kinema_http::tcp_info::TcpInfoSample;

    use super::*;
    use crate::aggregate::AggregatorConfig;

    fn tcp(bytes_per_second: u64, inflation_ms: u64) -> TcpInfoSample {
        TcpInfoSample {
            delivery_rate_bytes_per_second: bytes_per_second,
            min_rtt: Duration::from_millis(10),
            smoothed_rtt: Duration::from_millis(10 + inflation_ms),
            retransmits: 0,
            app_limited: false,
        }
    }

    #[test]
    fn lists_the_best_and_worst_measured_prefixes_within_its_bound() {
        let now = Instant::now();
        let mut aggregator = Aggregator::new(AggregatorConfig::default());
        // Ten IPv6 prefixes (the longest text), 1..=10 MB/s, two samples
        // each; one IPv4 prefix with a single sample stays out.
        for i in 1..=10u16 {
            let prefix = ClientPrefix::V6([0x2001, 0xdb8, i]);
            for _ in 0..2 {
                aggregator.record_tcp(prefix, &tcp(u64::from(i) * 1_000_000, u64::from(i)), now);
            }
        }
        aggregator.record_tcp("203.0.113.0/24".parse().unwrap(), &tcp(99_000_000, 0), now);
        let summary = Summary::of(&aggregator, now);
        let text = summary.to_string();
        assert!(text.len() <= MAX_SUMMARY_BYTES, "{} bytes", text.len());
        assert_eq!(
            text,
            "+2001:db8:a::/48,80000,10 +2001:db8:9::/48,72000,9 +2001:db8:8::/48,64000,8 \
             +2001:db8:7::/48,56000,7 -2001:db8:1::/48,8000,1 -2001:db8:2::/48,16000,2 \
             -2001:db8:3::/48,24000,3 -2001:db8:4::/48,32000,4"
        );
        assert_eq!(Summary::parse(&text), summary);
        assert_eq!(
            summary.figures_for("2001:db8:2::/48".parse().unwrap()),
            Some(PrefixFigures {
                throughput_kbps: 16_000,
                rtt_inflation_ms: 2
            })
        );
        assert_eq!(
            summary.figures_for("2001:db8:5::/48".parse().unwrap()),
            None
        );
    }

    #[test]
    fn reading_skips_malformed_entries_and_refuses_overlong_text() {
        let summary = Summary::parse(
            "+203.0.113.0/24,48100,12 garbage -198.51.100.0/24,800 +10.0.0.1/24,5,5 \
             -198.51.100.0/24,800,150,9 -198.51.100.0/24,-1,3 *x -192.0.2.0/24,800,150",
        );
        assert_eq!(
            summary.to_string(),
            "+203.0.113.0/24,48100,12 -192.0.2.0/24,800,150"
        );
        let long = format!("+203.0.113.0/24,1,1 {}", "x".repeat(MAX_SUMMARY_BYTES));
        assert_eq!(Summary::parse(&long), Summary::default());
        assert_eq!(Summary::parse(""), Summary::default());
    }
}
