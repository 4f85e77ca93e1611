//! Per client prefix, what this node measured of its viewers: throughput
//! (from `TCP_INFO` delivery rates and the players' CMCD `mtp`), RTT
//! inflation (smoothed minus minimum RTT, from `TCP_INFO`) and the share
//! of CMCD reports saying the buffer ran dry (`bs`), each an exponentially
//! decayed average, so old measurements fade with a configured half-life.
//!
//! Pure: every call takes the time it happens at, and nothing here reads a
//! clock. Memory is bounded: at most `max_prefixes` prefixes are kept, and
//! a new one evicts the least recently seen.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kinema_http::tcp_info::TcpInfoSample;

use crate::cmcd::Cmcd;
use crate::prefix::ClientPrefix;

/// How long measurements count and how many prefixes are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatorConfig {
    /// A sample's weight halves every `half_life`.
    pub half_life: Duration,
    /// Prefixes kept at most; the least recently seen goes first.
    pub max_prefixes: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            half_life: Duration::from_secs(300),
            max_prefixes: 10_000,
        }
    }
}

/// An exponentially decayed average: every sample enters with weight 1,
/// and all weights halve every half-life. The average does not move as
/// time passes (sum and weight decay alike); the weight, how much recent
/// evidence stands behind it, does.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Decayed {
    sum: f64,
    weight: f64,
    updated: Instant,
}

impl Decayed {
    fn first(value: f64, at: Instant) -> Self {
        Self {
            sum: value,
            weight: 1.0,
            updated: at,
        }
    }

    fn add(&mut self, value: f64, at: Instant, half_life: Duration) {
        // A sample older than the last (out of order) counts as now.
        let factor = decay(at.saturating_duration_since(self.updated), half_life);
        self.sum = self.sum * factor + value;
        self.weight = self.weight * factor + 1.0;
        self.updated = self.updated.max(at);
    }

    fn average(&self) -> f64 {
        self.sum / self.weight
    }

    fn weight_at(&self, now: Instant, half_life: Duration) -> f64 {
        self.weight * decay(now.saturating_duration_since(self.updated), half_life)
    }
}

/// 2^(−elapsed / half_life).
fn decay(elapsed: Duration, half_life: Duration) -> f64 {
    if half_life.is_zero() {
        return 0.0;
    }
    (-(elapsed.as_secs_f64() / half_life.as_secs_f64())).exp2()
}

fn add(slot: &mut Option<Decayed>, value: f64, at: Instant, half_life: Duration) {
    match slot {
        Some(decayed) => decayed.add(value, at, half_life),
        None => *slot = Some(Decayed::first(value, at)),
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Bits per second.
    throughput: Option<Decayed>,
    /// Milliseconds.
    rtt_inflation: Option<Decayed>,
    /// 1 for a CMCD report with `bs`, 0 without.
    starvation: Option<Decayed>,
    /// Key of this entry in [`Aggregator::by_recency`].
    recency: u64,
}

/// What this node knows of one prefix now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefixEstimate {
    /// Decayed average throughput, bits per second.
    pub throughput_bps: Option<f64>,
    /// Decayed average of smoothed minus minimum RTT, milliseconds.
    pub rtt_inflation_ms: Option<f64>,
    /// Decayed share of CMCD reports with buffer starvation, 0 to 1.
    pub starvation_share: Option<f64>,
    /// The throughput's decayed sample count: how much to trust it.
    pub throughput_weight: f64,
}

/// The per-prefix table of one node.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    entries: HashMap<ClientPrefix, Entry>,
    /// Prefixes by when they were last seen (a sequence number), oldest
    /// first: the eviction order.
    by_recency: BTreeMap<u64, ClientPrefix>,
    next_recency: u64,
    app_limited_dropped: u64,
}

impl Aggregator {
    pub fn new(config: AggregatorConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            by_recency: BTreeMap::new(),
            next_recency: 0,
            app_limited_dropped: 0,
        }
    }

    /// Prefixes kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `TCP_INFO` samples refused because they were application-limited.
    pub fn app_limited_dropped(&self) -> u64 {
        self.app_limited_dropped
    }

    /// A `TCP_INFO` sample of a viewer in `prefix`. An application-limited
    /// sample is dropped (it measured our sending, not the path), and a
    /// zero delivery rate (no rate sample yet) adds no throughput.
    pub fn record_tcp(&mut self, prefix: ClientPrefix, sample: &TcpInfoSample, at: Instant) {
        if sample.app_limited {
            self.app_limited_dropped += 1;
            return;
        }
        let half_life = self.config.half_life;
        let Some(entry) = self.touch(prefix) else {
            return;
        };
        if sample.delivery_rate_bytes_per_second > 0 {
            let bits = sample.delivery_rate_bytes_per_second as f64 * 8.0;
            add(&mut entry.throughput, bits, at, half_life);
        }
        if !sample.min_rtt.is_zero() {
            let inflation = sample.rtt_inflation().as_secs_f64() * 1000.0;
            add(&mut entry.rtt_inflation, inflation, at, half_life);
        }
    }

    /// A player's CMCD report from a viewer in `prefix`: its measured
    /// throughput (`mtp`, when non-zero) and whether it starved (`bs`).
    /// Reports without `mtp` or `bl` (a player not reporting its buffer)
    /// add nothing.
    pub fn record_cmcd(&mut self, prefix: ClientPrefix, cmcd: &Cmcd, at: Instant) {
        let throughput = cmcd.measured_throughput_kbps.filter(|&kbps| kbps > 0);
        if throughput.is_none() && cmcd.buffer_length_ms.is_none() {
            return;
        }
        let half_life = self.config.half_life;
        let Some(entry) = self.touch(prefix) else {
            return;
        };
        if let Some(kbps) = throughput {
            add(&mut entry.throughput, kbps as f64 * 1000.0, at, half_life);
        }
        if cmcd.buffer_length_ms.is_some() {
            let starved = if cmcd.buffer_starvation { 1.0 } else { 0.0 };
            add(&mut entry.starvation, starved, at, half_life);
        }
    }

    /// What is known of `prefix` at `now`.
    pub fn estimate(&self, prefix: ClientPrefix, now: Instant) -> Option<PrefixEstimate> {
        let entry = self.entries.get(&prefix)?;
        Some(self.estimate_of(entry, now))
    }

    /// Every prefix with a throughput, and its estimate at `now`.
    pub fn estimates(&self, now: Instant) -> impl Iterator<Item = (ClientPrefix, PrefixEstimate)> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.throughput.is_some())
            .map(move |(prefix, entry)| (*prefix, self.estimate_of(entry, now)))
    }

    fn estimate_of(&self, entry: &Entry, now: Instant) -> PrefixEstimate {
        let half_life = self.config.half_life;
        PrefixEstimate {
            throughput_bps: entry.throughput.map(|d| d.average()),
            rtt_inflation_ms: entry.rtt_inflation.map(|d| d.average()),
            starvation_share: entry.starvation.map(|d| d.average()),
            throughput_weight: entry
                .throughput
                .map_or(0.0, |d| d.weight_at(now, half_life)),
        }
    }

    /// The entry of `prefix`, made most recently seen; a new prefix evicts
    /// the least recently seen one when the table is full. `None` only
    /// with `max_prefixes` 0.
    fn touch(&mut self, prefix: ClientPrefix) -> Option<&mut Entry> {
        let recency = self.next_recency;
        self.next_recency += 1;
        if let Some(entry) = self.entries.get_mut(&prefix) {
            self.by_recency.remove(&entry.recency);
            self.by_recency.insert(recency, prefix);
            entry.recency = recency;
            return self.entries.get_mut(&prefix);
        }
        if self.config.max_prefixes == 0 {
            return None;
        }
        while self.entries.len() >= self.config.max_prefixes {
            let Some((_, oldest)) = self.by_recency.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.by_recency.insert(recency, prefix);
        Some(self.entries.entry(prefix).or_insert(Entry {
            throughput: None,
            rtt_inflation: None,
            starvation: None,
            recency,
        }))
    }
}

#[cfg(test)]
mod tests;
