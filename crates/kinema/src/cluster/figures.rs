//! A node's figures (egress, sessions, load): computed every second from
//! counters the server hands over, published to the cluster, and the
//! figures every member published, rendered in `/metrics`.
//!
//! The origin hands its counters over as parts ([`Readings::of_origin`]),
//! the edge as `kinema_edge::EdgeCounters` (wired in `edge.rs`); both go
//! through the same [`FigureMeter`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Result;
use kinema_cluster::{MembershipView, NodeFigures};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;

/// How often figures are computed and published.
pub const FIGURES_EVERY: Duration = Duration::from_secs(1);
/// Sessions a node has open are estimated as those started this long ago
/// at most: a viewer's session has no end the server sees, and most views
/// last about this long.
pub const SESSION_WINDOW: Duration = Duration::from_secs(60);

/// Cumulative counters of a server, read when figures are computed.
pub struct Readings {
    /// Bytes of response bodies sent since start.
    pub bytes_sent: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Viewing sessions started (admitted) since start.
    pub sessions_started: Box<dyn Fn() -> u64 + Send + Sync>,
    /// How busy the serving threads are now, 0 to 1.
    pub load: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl Readings {
    /// The origin's counters, from its parts.
    pub fn of_origin(counters: kinema_origin::OriginCounters) -> Self {
        let (bytes, sessions, load) = (counters.clone(), counters.clone(), counters);
        Self {
            bytes_sent: Box::new(move || bytes.bytes_sent()),
            sessions_started: Box::new(move || sessions.sessions_admitted()),
            load: Box::new(move || load.load()),
        }
    }
}

/// Where a node's figures come from.
pub enum FiguresFrom {
    /// Counters the server's parts hand over.
    Counters(Readings),
}

impl std::fmt::Debug for FiguresFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FiguresFrom::Counters(_) => f.write_str("FiguresFrom::Counters"),
        }
    }
}

/// One reading of the cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    bytes_sent: u64,
    sessions_started: u64,
    load: f64,
}

impl FiguresFrom {
    async fn sample(&self) -> Result<Sample> {
        match self {
            FiguresFrom::Counters(readings) => Ok(Sample {
                bytes_sent: (readings.bytes_sent)(),
                sessions_started: (readings.sessions_started)(),
                load: (readings.load)(),
            }),
        }
    }
}

/// Turns cumulative counters into figures: the egress from the bytes sent
/// since the last sample, the sessions from those started within
/// [`SESSION_WINDOW`].
#[derive(Debug, Default)]
struct FigureMeter {
    last_bytes: Option<(u64, Instant)>,
    /// (when, sessions started by then), oldest first, one within or just
    /// before the window.
    starts: VecDeque<(Instant, u64)>,
}

impl FigureMeter {
    fn update(&mut self, sample: Sample, now: Instant) -> NodeFigures {
        let egress_bps = match self.last_bytes {
            Some((before, then)) if sample.bytes_sent >= before && now > then => {
                let seconds = now.duration_since(then).as_secs_f64();
                ((sample.bytes_sent - before) as f64 * 8.0 / seconds) as u64
            }
            _ => 0,
        };
        self.last_bytes = Some((sample.bytes_sent, now));
        self.starts.push_back((now, sample.sessions_started));
        // Keep the newest sample at or before the window's start.
        while self.starts.len() > 1 && now.duration_since(self.starts[1].0) >= SESSION_WINDOW {
            self.starts.pop_front();
        }
        let oldest = self.starts.front().map_or(0, |&(_, started)| started);
        NodeFigures {
            egress_bps,
            sessions: sample.sessions_started.saturating_sub(oldest),
            load: sample.load,
        }
    }
}

/// Computes and publishes this node's figures every [`FIGURES_EVERY`]
/// until the cluster stops reading them.
pub async fn publish(source: FiguresFrom, figures: watch::Sender<NodeFigures>) {
    let mut tick = tokio::time::interval(FIGURES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut meter = FigureMeter::default();
    let mut warned = false;
    while !figures.is_closed() {
        tick.tick().await;
        match source.sample().await {
            Ok(sample) => {
                figures.send_replace(meter.update(sample, Instant::now()));
            }
            Err(error) if !warned => {
                warned = true;
                tracing::warn!(error = %format!("{error:#}"), "cannot read this server's figures; the cluster sees it idle");
            }
            Err(_) => {}
        }
    }
}

/// A gauge family of member figures: name, help, and the figure.
type Family = (&'static str, &'static str, fn(&NodeFigures) -> f64);

/// The figures every member published, as gauges labelled by node id
/// (`cluster_member_egress_bits_per_second{node="edge-1"}`), read from the
/// membership view at scrape time.
#[derive(Debug)]
pub struct MemberFigures(pub watch::Receiver<MembershipView>);

impl Collector for MemberFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let view = self.0.borrow().clone();
        let figures: Vec<(&str, NodeFigures)> = view
            .live
            .iter()
            .filter_map(|member| {
                let info = member.state.as_ref().ok()?;
                Some((&*member.node_id, info.figures))
            })
            .collect();
        let families: [Family; 3] = [
            (
                "member_egress_bits_per_second",
                "Egress each live member published, bits per second.",
                |f| f.egress_bps as f64,
            ),
            (
                "member_sessions",
                "Viewing sessions each live member published.",
                |f| f.sessions as f64,
            ),
            (
                "member_load",
                "Load each live member published, 0 to 1.",
                |f| f.load,
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (node, figures) in &figures {
                family
                    .encode_family(&[("node", *node)])?
                    .encode_gauge(&value(figures))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(bytes_sent: u64, sessions_started: u64) -> Sample {
        Sample {
            bytes_sent,
            sessions_started,
            load: 0.5,
        }
    }

    #[test]
    fn egress_is_the_bytes_sent_since_the_last_sample() {
        let mut meter = FigureMeter::default();
        let start = Instant::now();
        assert_eq!(meter.update(sample(1_000, 0), start).egress_bps, 0);
        let figures = meter.update(sample(3_000, 0), start + Duration::from_secs(2));
        assert_eq!(figures.egress_bps, 8_000);
        assert_eq!(figures.load, 0.5);
        // A counter that went back (a restart) reads as no egress.
        let after = meter.update(sample(10, 0), start + Duration::from_secs(3));
        assert_eq!(after.egress_bps, 0);
    }

    #[test]
    fn sessions_are_those_started_within_the_window() {
        let mut meter = FigureMeter::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(meter.update(sample(0, 10), at(0)).sessions, 0);
        assert_eq!(meter.update(sample(0, 13), at(1)).sessions, 3);
        assert_eq!(meter.update(sample(0, 15), at(30)).sessions, 5);
        // At 61 s the sample of 1 s is the window's start: 15 - 13.
        assert_eq!(meter.update(sample(0, 15), at(61)).sessions, 2);
        assert_eq!(meter.update(sample(0, 16), at(200)).sessions, 1);
        assert!(meter.starts.len() <= 2, "{:?}", meter.starts);
    }
}
