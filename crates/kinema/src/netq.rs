//! `[netq]`: how `kinema serve` and `kinema edge` measure their viewers'
//! networks without probe traffic (`kinema_netq`), shared by both.
//!
//! On by default: each process keeps one table of client prefixes, fed by
//! its listener's `TCP_INFO` sampler (one in `one_in` responses of at
//! least `min_body`) and by the CMCD players send. Its figures go to
//! `/metrics`; in a cluster the node also gossips the table's summary and
//! its steering prefers, among a video's nodes of similar load, the one
//! that measured best for the viewer's prefix ([`NetworkPart`], handed to
//! `crate::cluster::start_with`). `--netq false` measures nothing.

use std::time::Duration;

use anyhow::{Result, bail};
use bytesize::ByteSize;
use clap::{ArgAction, Args};
use kinema_netq::{AggregatorConfig, Measuring};
use kinema_steering::NetworkChoice;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::config::ConfigFile;

/// Most prefixes a table may be configured to keep.
const MAX_PREFIXES: usize = 1_000_000;

/// The `[netq]` settings that have flags; a flag or variable overrides the
/// file.
#[derive(Debug, Default, Args, Serialize)]
pub struct NetqArgs {
    /// Measure viewers' networks (TCP_INFO after large responses, players' CMCD) and, in a cluster, gossip the summary and steer by it; every --netq-* setting can also be in the [netq] section of kinema.toml [default: true]
    #[arg(long = "netq", env = "KINEMA_NETQ", value_name = "BOOL", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,

    /// Smallest response body after which a viewer's TCP_INFO is read, e.g. 256KiB [default: 256KiB]
    #[arg(
        long = "netq-min-body",
        env = "KINEMA_NETQ_MIN_BODY",
        value_name = "SIZE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    min_body: Option<String>,

    /// Read TCP_INFO after one in N such responses [default: 4]
    #[arg(long = "netq-one-in", env = "KINEMA_NETQ_ONE_IN", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    one_in: Option<u32>,

    /// Share of new sessions steered to the second-best measured node, to keep its estimate fresh [default: 0.05]
    #[arg(
        long = "netq-exploration-share",
        env = "KINEMA_NETQ_EXPLORATION_SHARE",
        value_name = "SHARE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    exploration_share: Option<f64>,
}

/// The `[netq]` section, resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetqSettings {
    #[serde(default = "default_enabled")]
    enabled: bool,
    #[serde(default = "default_min_body")]
    min_body: ByteSize,
    #[serde(default = "default_one_in")]
    one_in: u32,
    /// Measurements' weight halves every `half_life`.
    #[serde(default = "default_half_life", with = "humantime_serde")]
    half_life: Duration,
    /// Client prefixes kept at most (the least recently seen go first).
    #[serde(default = "default_max_prefixes")]
    max_prefixes: usize,
    #[serde(default = "default_exploration_share")]
    exploration_share: f64,
    /// Loads (0 to 1) within this of the least loaded of a video's nodes
    /// count as similar, so measurement may choose among them.
    #[serde(default = "default_load_tolerance")]
    load_tolerance: f64,
}

fn default_enabled() -> bool {
    true
}

fn default_min_body() -> ByteSize {
    ByteSize::b(kinema_netq::DEFAULT_MIN_BODY_BYTES)
}

fn default_one_in() -> u32 {
    kinema_netq::DEFAULT_ONE_IN
}

fn default_half_life() -> Duration {
    AggregatorConfig::default().half_life
}

fn default_max_prefixes() -> usize {
    AggregatorConfig::default().max_prefixes
}

fn default_exploration_share() -> f64 {
    kinema_netq::DEFAULT_EXPLORATION_SHARE
}

fn default_load_tolerance() -> f64 {
    NetworkChoice::default().load_tolerance
}

/// What a server measures with, and how its steering uses it.
#[derive(Debug, Clone)]
pub struct NetworkPart {
    pub measuring: Measuring,
    pub choice: NetworkChoice,
}

/// The `[netq]` settings, checked; `None` when measuring is off.
pub fn resolve(config_file: &ConfigFile, args: &NetqArgs) -> Result<Option<NetworkPart>> {
    let settings: NetqSettings = config_file.resolve("netq", args)?;
    settings.part()
}

impl NetqSettings {
    fn part(&self) -> Result<Option<NetworkPart>> {
        if !self.enabled {
            return Ok(None);
        }
        if self.one_in == 0 {
            bail!("[netq] one_in must be at least 1 (1 samples every large response)");
        }
        for (name, share) in [
            ("exploration_share", self.exploration_share),
            ("load_tolerance", self.load_tolerance),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("[netq] {name} {share} must be from 0 to 1");
            }
        }
        if self.max_prefixes == 0 || self.max_prefixes > MAX_PREFIXES {
            bail!(
                "[netq] max_prefixes {} must be from 1 to {MAX_PREFIXES}",
                self.max_prefixes
            );
        }
        if self.half_life < Duration::from_secs(1) {
            bail!("[netq] half_life {:?} must be at least 1s", self.half_life);
        }
        let config = AggregatorConfig {
            half_life: self.half_life,
            max_prefixes: self.max_prefixes,
        };
        Ok(Some(NetworkPart {
            measuring: Measuring::new(config, self.min_body.as_u64(), self.one_in),
            choice: NetworkChoice {
                exploration_share: self.exploration_share,
                load_tolerance: self.load_tolerance,
            },
        }))
    }
}

/// Registers `measuring`'s figures (`netq_tcp_samples_total`, …) in an
/// origin's `/metrics` registry (the edge renders its own).
pub fn register_metrics(measuring: Measuring) -> impl FnOnce(&mut Registry) + Send + 'static {
    move |registry: &mut Registry| {
        registry
            .sub_registry_with_prefix("netq")
            .register_collector(Box::new(Figures(measuring)));
    }
}

#[derive(Debug)]
struct Figures(Measuring);

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.0.figures();
        for (name, help, value) in [
            (
                "tcp_samples",
                "TCP_INFO samples of viewers' connections taken after large responses.",
                figures.tcp_samples,
            ),
            (
                "tcp_app_limited",
                "TCP_INFO samples dropped because the sender, not the path, limited them.",
                figures.tcp_app_limited,
            ),
            (
                "tcp_unreadable",
                "Connections whose TCP_INFO could not be read (closed).",
                figures.tcp_unreadable,
            ),
            (
                "cmcd_reports",
                "Requests whose CMCD (query parameter or headers) was recorded.",
                figures.cmcd_reports,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let prefixes = ConstGauge::new(i64::try_from(figures.prefixes).unwrap_or(i64::MAX));
        prefixes.encode(encoder.encode_descriptor(
            "prefixes",
            "Client prefixes (/24, /48) with measurements kept.",
            None,
            prefixes.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The gossiped summary of `part`'s table, as the cluster reads it each
/// round.
pub fn summary_source(part: &NetworkPart) -> kinema_cluster::NetworkQualitySource {
    let quality = part.measuring.quality().clone();
    kinema_cluster::NetworkQualitySource(std::sync::Arc::new(move || quality.summary().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Option<NetworkPart>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinema.toml");
        std::fs::write(&path, text).unwrap();
        let file = ConfigFile::load(Some(&path)).unwrap();
        resolve(&file, &NetqArgs::default())
    }

    #[test]
    fn on_by_default_with_the_libraries_defaults() {
        let part = settings("").unwrap().expect("measuring is on by default");
        assert_eq!(part.choice, NetworkChoice::default());
        assert!(settings("[netq]\nenabled = false\n").unwrap().is_none());
    }

    #[test]
    fn settings_out_of_range_are_refused_with_their_name() {
        for (text, named) in [
            ("[netq]\none_in = 0\n", "one_in"),
            ("[netq]\nexploration_share = 1.5\n", "exploration_share"),
            ("[netq]\nload_tolerance = -0.1\n", "load_tolerance"),
            ("[netq]\nmax_prefixes = 0\n", "max_prefixes"),
            ("[netq]\nhalf_life = \"10ms\"\n", "half_life"),
            ("[netq]\nmin_body = \"lots\"\n", "min_body"),
            ("[netq]\nsampling = true\n", "sampling"),
        ] {
            let error = format!("{:#}", settings(text).unwrap_err());
            assert!(error.contains(named), "{text}: {error}");
        }
    }
}
