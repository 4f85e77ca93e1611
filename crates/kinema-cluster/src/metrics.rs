//! What membership counts, and its registration in a `prometheus-client`
//! registry, so the binary's `/metrics` carries it beside its own figures.
//!
//! Counters are plain atomics bumped by the transport and the view task;
//! one collector turns them into the exposition format at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::auth::Refusal;

/// Datagram counters of one node's gossip socket, and the member gauges
/// its view task keeps current.
#[derive(Debug, Default)]
pub struct GossipCounters {
    refused: [AtomicU64; Refusal::ALL.len()],
    sent: AtomicU64,
    received: AtomicU64,
    oversize_sends: AtomicU64,
    pub(crate) live_members: AtomicU64,
    pub(crate) unusable_members: AtomicU64,
    pub(crate) dead_members: AtomicU64,
    pub(crate) left_members: AtomicU64,
}

impl GossipCounters {
    pub(crate) fn refused(&self, refusal: Refusal) {
        self.refused[refusal.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_received(&self) {
        self.received.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_oversize_send(&self) {
        self.oversize_sends.fetch_add(1, Relaxed);
    }

    /// Datagrams dropped for `refusal` since start.
    pub fn refused_count(&self, refusal: Refusal) -> u64 {
        self.refused[refusal.index()].load(Relaxed)
    }

    /// Datagrams dropped for any reason since start.
    pub fn refused_total(&self) -> u64 {
        Refusal::ALL
            .iter()
            .map(|&refusal| self.refused_count(refusal))
            .sum()
    }

    /// Authenticated datagrams handed to chitchat since start.
    pub fn received(&self) -> u64 {
        self.received.load(Relaxed)
    }

    /// Live members, this node included, as of the last view update.
    pub fn live_members(&self) -> u64 {
        self.live_members.load(Relaxed)
    }

    /// Live members whose state does not parse.
    pub fn unusable_members(&self) -> u64 {
        self.unusable_members.load(Relaxed)
    }

    /// Members that died without leaving, until forgotten.
    pub fn dead_members(&self) -> u64 {
        self.dead_members.load(Relaxed)
    }

    /// Members that left cleanly, until forgotten.
    pub fn left_members(&self) -> u64 {
        self.left_members.load(Relaxed)
    }

    /// Datagrams sent since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Relaxed)
    }
}

#[derive(Debug)]
struct ClusterCollector {
    counters: Arc<GossipCounters>,
}

/// Registers the membership figures under `cluster_` in `registry`
/// (`kinema_origin_cluster_live_members` in the origin's registry, say).
pub fn register(registry: &mut Registry, counters: Arc<GossipCounters>) {
    registry
        .sub_registry_with_prefix("cluster")
        .register_collector(Box::new(ClusterCollector { counters }));
}

/// The same figures as exposition text under `{prefix}_cluster_`, for a
/// server that writes its `/metrics` by hand rather than from a registry.
pub fn render(prefix: &str, counters: Arc<GossipCounters>) -> String {
    let mut registry = Registry::with_prefix(prefix);
    register(&mut registry, counters);
    let mut text = String::with_capacity(2048);
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
    text
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        encode_gauge(
            &mut encoder,
            "live_members",
            "Nodes the failure detector holds alive, this one included.",
            c.live_members.load(Relaxed),
        )?;
        encode_gauge(
            &mut encoder,
            "unusable_members",
            "Live nodes whose gossiped state does not parse (counted in live_members too).",
            c.unusable_members.load(Relaxed),
        )?;
        encode_gauge(
            &mut encoder,
            "dead_members",
            "Nodes that stopped gossiping without announcing it, until forgotten.",
            c.dead_members.load(Relaxed),
        )?;
        encode_gauge(
            &mut encoder,
            "left_members",
            "Nodes that stopped gossiping after announcing they were draining, until forgotten.",
            c.left_members.load(Relaxed),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "refused_datagrams",
                "Gossip datagrams dropped before chitchat read them, by reason.",
                None,
                MetricType::Counter,
            )?;
            for refusal in Refusal::ALL {
                let value = c.refused_count(refusal);
                family
                    .encode_family(&[("reason", refusal.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        encode_counter(
            &mut encoder,
            "received_datagrams",
            "Authenticated gossip datagrams handed to chitchat.",
            c.received(),
        )?;
        encode_counter(
            &mut encoder,
            "sent_datagrams",
            "Gossip datagrams sent.",
            c.sent(),
        )?;
        encode_counter(
            &mut encoder,
            "oversize_sends",
            "Gossip datagrams not sent because, signed, they exceeded the datagram limit.",
            c.oversize_sends.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_refusals_by_reason_and_gauges() {
        let counters = Arc::new(GossipCounters::default());
        counters.refused(Refusal::BadTag);
        counters.refused(Refusal::BadTag);
        counters.live_members.store(3, Relaxed);
        let mut registry = Registry::with_prefix("kinema_origin");
        register(&mut registry, counters);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("kinema_origin_cluster_live_members 3\n"),
            "{text}"
        );
        assert!(
            text.contains("kinema_origin_cluster_refused_datagrams_total{reason=\"bad_tag\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "kinema_origin_cluster_refused_datagrams_total{reason=\"too_short\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_alone_without_an_end_marker() {
        let counters = Arc::new(GossipCounters::default());
        counters.dead_members.store(1, Relaxed);
        let text = render("kinema_edge", counters);
        assert!(
            text.contains("kinema_edge_cluster_dead_members 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
