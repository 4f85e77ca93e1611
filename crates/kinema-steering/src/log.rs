//! The decision log: one record per steering decision, classified as
//! Netflix classifies misses, and counters for `/metrics`.
//!
//! - A **content miss**: the viewer is not served by the video's placement
//!   head (or leaves the node that held its session) for load or capacity
//!   reasons ([`Reason::Load`]): the cache that should hold the video was
//!   too busy.
//! - A **health miss**: the viewer is moved away from, or cannot be given,
//!   the node it should have because that node is draining, dead or gone
//!   ([`Reason::Health`], and [`Reason::OriginOnly`] when edges exist but
//!   none can serve).
//!
//! Everything else (the head, a replica of a hot video, a session kept on
//! its pathway, an origin-only cluster) is no miss.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kinema_core::VideoId;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

use crate::pathway::PathwayId;
use crate::rank::Reason;
use crate::session::SessionId;

/// A decision's miss class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Miss {
    None,
    Content,
    Health,
}

impl Miss {
    pub const ALL: [Miss; 3] = [Miss::None, Miss::Content, Miss::Health];

    pub fn as_str(self) -> &'static str {
        match self {
            Miss::None => "none",
            Miss::Content => "content_miss",
            Miss::Health => "health_miss",
        }
    }
}

/// One steering decision, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub video: VideoId,
    pub session: SessionId,
    /// The chosen pathway and its node id; `None` when nothing could serve.
    pub chosen: Option<(PathwayId, String)>,
    /// The pathway the session had before, from its verified state.
    pub previous: Option<PathwayId>,
    pub reason: Reason,
    pub miss: Miss,
    /// Whether the session continued from a valid state.
    pub resumed: bool,
    /// The pathway the player said it was on, unverified.
    pub reported: Option<PathwayId>,
    /// The throughput the player said it measured, bits/s, unverified.
    pub throughput_bps: Option<u64>,
}

impl DecisionRecord {
    /// Whether the session changed pathway with this decision.
    pub fn moved(&self) -> bool {
        match (&self.previous, &self.chosen) {
            (Some(previous), Some((chosen, _))) => previous != chosen,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// One line, `key=value` pairs, for a log message.
impl fmt::Display for DecisionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "video={} session={}", self.video, self.session)?;
        match &self.chosen {
            Some((pathway, node)) => write!(f, " pathway={pathway} node={node}")?,
            None => f.write_str(" pathway=none")?,
        }
        if let Some(previous) = &self.previous {
            write!(f, " previous={previous}")?;
        }
        write!(
            f,
            " reason={} miss={} moved={} resumed={}",
            self.reason.as_str(),
            self.miss.as_str(),
            self.moved(),
            self.resumed
        )?;
        if let Some(reported) = &self.reported {
            write!(f, " reported={reported}")?;
        }
        if let Some(throughput) = self.throughput_bps {
            write!(f, " throughput_bps={throughput}")?;
        }
        Ok(())
    }
}

/// Decisions counted by reason and by miss class, and moves.
#[derive(Debug, Default)]
pub struct SteeringCounters {
    by_reason: [AtomicU64; Reason::ALL.len()],
    by_miss: [AtomicU64; Miss::ALL.len()],
    moves: AtomicU64,
    unserved: AtomicU64,
}

impl SteeringCounters {
    pub fn count(&self, record: &DecisionRecord) {
        let reason = Reason::ALL.iter().position(|r| *r == record.reason);
        let miss = Miss::ALL.iter().position(|m| *m == record.miss);
        if let Some(index) = reason {
            self.by_reason[index].fetch_add(1, Relaxed);
        }
        if let Some(index) = miss {
            self.by_miss[index].fetch_add(1, Relaxed);
        }
        if record.moved() {
            self.moves.fetch_add(1, Relaxed);
        }
        if record.chosen.is_none() {
            self.unserved.fetch_add(1, Relaxed);
        }
    }

    pub fn reason_count(&self, reason: Reason) -> u64 {
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.by_reason[index].load(Relaxed)
    }

    pub fn miss_count(&self, miss: Miss) -> u64 {
        let index = Miss::ALL.iter().position(|m| *m == miss).unwrap_or(0);
        self.by_miss[index].load(Relaxed)
    }

    pub fn moves(&self) -> u64 {
        self.moves.load(Relaxed)
    }
}

#[derive(Debug)]
struct SteeringCollector {
    counters: Arc<SteeringCounters>,
}

/// Registers `counters` under `steering_` in `registry`
/// (`kinema_edge_steering_decisions_total{reason="load"}`, say).
pub fn register(registry: &mut Registry, counters: Arc<SteeringCounters>) {
    registry
        .sub_registry_with_prefix("steering")
        .register_collector(Box::new(SteeringCollector { counters }));
}

impl Collector for SteeringCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        {
            let mut family = encoder.encode_descriptor(
                "decisions",
                "Steering decisions, by the reason for the first pathway.",
                None,
                MetricType::Counter,
            )?;
            for reason in Reason::ALL {
                family
                    .encode_family(&[("reason", reason.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&c.reason_count(reason), None)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "misses",
                "Steering decisions by miss class: content_miss (not the video's node, for load), health_miss (moved off or denied a draining or dead node), none.",
                None,
                MetricType::Counter,
            )?;
            for miss in Miss::ALL {
                family
                    .encode_family(&[("class", miss.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&c.miss_count(miss), None)?;
            }
        }
        let moves = ConstCounter::new(c.moves());
        moves.encode(encoder.encode_descriptor(
            "moves",
            "Sessions moved to another pathway than their state named.",
            None,
            moves.metric_type(),
        )?)?;
        let unserved = ConstCounter::new(c.unserved.load(Relaxed));
        unserved.encode(encoder.encode_descriptor(
            "unserved",
            "Steering requests no node could serve (answered 503).",
            None,
            unserved.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: Reason, miss: Miss, previous: Option<&str>, chosen: &str) -> DecisionRecord {
        DecisionRecord {
            video: VideoId::new("clip").unwrap(),
            session: SessionId(0xab),
            chosen: Some((PathwayId::parse(chosen).unwrap(), "edge-2".into())),
            previous: previous.map(|p| PathwayId::parse(p).unwrap()),
            reason,
            miss,
            resumed: previous.is_some(),
            reported: None,
            throughput_bps: None,
        }
    }

    #[test]
    fn a_record_reads_as_one_log_line() {
        let moved = record(
            Reason::Health,
            Miss::Health,
            Some("n1111111111"),
            "n2222222222",
        );
        assert_eq!(
            moved.to_string(),
            "video=clip session=00000000000000ab pathway=n2222222222 node=edge-2 \
             previous=n1111111111 reason=health miss=health_miss moved=true resumed=true"
        );
        let kept = record(
            Reason::Sticky,
            Miss::None,
            Some("n2222222222"),
            "n2222222222",
        );
        assert!(!kept.moved());
    }

    #[test]
    fn counters_render_by_reason_and_class() {
        let counters = Arc::new(SteeringCounters::default());
        counters.count(&record(Reason::Load, Miss::Content, None, "n2222222222"));
        counters.count(&record(
            Reason::Load,
            Miss::Content,
            Some("n1111111111"),
            "n2222222222",
        ));
        counters.count(&record(
            Reason::Health,
            Miss::Health,
            Some("n1111111111"),
            "n2222222222",
        ));
        let mut registry = Registry::with_prefix("kinema_edge");
        register(&mut registry, counters);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "kinema_edge_steering_decisions_total{reason=\"load\"} 2\n",
            "kinema_edge_steering_decisions_total{reason=\"health\"} 1\n",
            "kinema_edge_steering_decisions_total{reason=\"placement\"} 0\n",
            "kinema_edge_steering_misses_total{class=\"content_miss\"} 2\n",
            "kinema_edge_steering_misses_total{class=\"health_miss\"} 1\n",
            "kinema_edge_steering_moves_total 2\n",
            "kinema_edge_steering_unserved_total 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
