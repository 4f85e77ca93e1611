//! The one impure part: a node's [`NetworkQuality`], which the listener
//! tells of `TCP_INFO` samples (as a [`TcpInfoObserver`]) and a handler of
//! players' CMCD reports, stamped with the time they arrive; and
//! [`Measuring`], the table with its sampler and counters as a server
//! wires them.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::HeaderMap;
use kinema_http::tcp_info::{TcpInfoObserver, TcpInfoSample, TcpInfoSampling};

use crate::aggregate::{Aggregator, AggregatorConfig, PrefixEstimate};
use crate::cmcd::Cmcd;
use crate::prefix::ClientPrefix;
use crate::summary::Summary;

/// This node's measurements of its viewers, shared by the serving threads
/// (a short lock per sample; never held across an await).
#[derive(Debug)]
pub struct NetworkQuality {
    aggregator: Mutex<Aggregator>,
}

impl NetworkQuality {
    pub fn new(config: AggregatorConfig) -> Self {
        Self {
            aggregator: Mutex::new(Aggregator::new(config)),
        }
    }

    /// A player's CMCD report from `viewer`.
    pub fn record_cmcd(&self, viewer: IpAddr, cmcd: &Cmcd) {
        let now = Instant::now();
        self.lock().record_cmcd(ClientPrefix::of(viewer), cmcd, now);
    }

    /// What is known now of `viewer`'s prefix.
    pub fn estimate(&self, viewer: IpAddr) -> Option<PrefixEstimate> {
        self.lock()
            .estimate(ClientPrefix::of(viewer), Instant::now())
    }

    /// The summary to gossip now.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.lock(), Instant::now())
    }

    /// Prefixes kept now. (The listener's `TcpInfoSampling::counts` says
    /// how many samples were taken and dropped.)
    pub fn prefixes(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        // A panic while holding the lock leaves arithmetic half done at
        // worst: the table stays usable.
        self.aggregator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TcpInfoObserver for NetworkQuality {
    fn observe(&self, peer: SocketAddr, sample: TcpInfoSample) {
        let now = Instant::now();
        self.lock()
            .record_tcp(ClientPrefix::of(peer.ip()), &sample, now);
    }
}

/// What a server needs to measure its viewers, made once per process:
/// the table, the listener's sampler feeding it (hand
/// [`Measuring::sampling`] to `kinema_http::serve_sampled` or
/// `HttpsListeners::tcp_info`) and the count of CMCD reports taken. Cheap
/// to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Measuring {
    quality: Arc<NetworkQuality>,
    sampling: TcpInfoSampling,
    cmcd_reports: Arc<AtomicU64>,
}

/// What a [`Measuring`] did since it was made, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeasuringFigures {
    /// `TCP_INFO` samples taken and kept.
    pub tcp_samples: u64,
    /// `TCP_INFO` samples dropped as application-limited.
    pub tcp_app_limited: u64,
    /// Sockets whose `TCP_INFO` could not be read.
    pub tcp_unreadable: u64,
    /// Requests whose CMCD was recorded.
    pub cmcd_reports: u64,
    /// Client prefixes in the table now.
    pub prefixes: u64,
}

impl Measuring {
    /// A table with `config`, sampled after bodies of at least
    /// `min_body_bytes`, one such response in `one_in`.
    pub fn new(config: AggregatorConfig, min_body_bytes: u64, one_in: u32) -> Self {
        let quality = Arc::new(NetworkQuality::new(config));
        let sampling = TcpInfoSampling::new(quality.clone(), min_body_bytes, one_in);
        Self {
            quality,
            sampling,
            cmcd_reports: Arc::default(),
        }
    }

    pub fn quality(&self) -> &Arc<NetworkQuality> {
        &self.quality
    }

    /// The listener's sampler (a clone: counts are shared).
    pub fn sampling(&self) -> TcpInfoSampling {
        self.sampling.clone()
    }

    /// Records the CMCD a request from `viewer` carried (its `CMCD` query
    /// parameter and headers), if any; whether there was some. Never
    /// fails: what does not parse is skipped.
    pub fn record_request(&self, viewer: IpAddr, query: Option<&str>, headers: &HeaderMap) -> bool {
        let carries = query.is_some_and(|q| q.contains("CMCD="))
            || crate::cmcd::HEADER_NAMES
                .iter()
                .any(|name| headers.contains_key(*name));
        if !carries {
            return false;
        }
        let cmcd = Cmcd::from_request(query, headers);
        if cmcd.is_empty() {
            return false;
        }
        self.quality.record_cmcd(viewer, &cmcd);
        self.cmcd_reports.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn figures(&self) -> MeasuringFigures {
        let counts = self.sampling.counts();
        MeasuringFigures {
            tcp_samples: counts.observed,
            tcp_app_limited: counts.app_limited,
            tcp_unreadable: counts.unreadable,
            cmcd_reports: self.cmcd_reports.load(Ordering::Relaxed),
            prefixes: self.quality.prefixes() as u64,
        }
    }

    /// The figures as Prometheus text, each name starting `prefix` (the
    /// edge's hand-written `/metrics`).
    pub fn render(&self, prefix: &str) -> String {
        let figures = self.figures();
        let mut text = String::new();
        for (name, kind, help, value) in [
            (
                "netq_tcp_samples_total",
                "counter",
                "TCP_INFO samples of viewers' connections taken after large responses.",
                figures.tcp_samples,
            ),
            (
                "netq_tcp_app_limited_total",
                "counter",
                "TCP_INFO samples dropped because the sender, not the path, limited them.",
                figures.tcp_app_limited,
            ),
            (
                "netq_tcp_unreadable_total",
                "counter",
                "Connections whose TCP_INFO could not be read (closed).",
                figures.tcp_unreadable,
            ),
            (
                "netq_cmcd_reports_total",
                "counter",
                "Requests whose CMCD (query parameter or headers) was recorded.",
                figures.cmcd_reports,
            ),
            (
                "netq_prefixes",
                "gauge",
                "Client prefixes (/24, /48) with measurements kept.",
                figures.prefixes,
            ),
        ] {
            let _ = writeln!(text, "# HELP {prefix}{name} {help}");
            let _ = writeln!(text, "# TYPE {prefix}{name} {kind}");
            let _ = writeln!(text, "{prefix}{name} {value}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmcd_of_a_request_is_recorded_and_counted_and_anything_else_is_not() {
        let measuring = Measuring::new(AggregatorConfig::default(), 1 << 20, 1);
        let viewer: IpAddr = "203.0.113.9".parse().unwrap();
        let none = HeaderMap::new();
        // hls.js's query form: the dictionary percent-encoded.
        let query = "CMCD=bl%3D21300%2Cbr%3D3200%2Cmtp%3D25400%2Cot%3Dv%2Csid%3D%226e2fb550%22";
        assert!(measuring.record_request(viewer, Some(query), &none));
        // dash.js's header form.
        let mut headers = HeaderMap::new();
        headers.insert("cmcd-request", "bl=9000,mtp=18000".parse().unwrap());
        assert!(measuring.record_request(viewer, None, &headers));
        // No CMCD, or none of it usable: nothing recorded.
        assert!(!measuring.record_request(viewer, Some("a=1"), &none));
        assert!(!measuring.record_request(viewer, Some("CMCD=%%%"), &none));
        let figures = measuring.figures();
        assert_eq!((figures.cmcd_reports, figures.prefixes), (2, 1));
        let estimate = measuring.quality().estimate(viewer).unwrap();
        // (25,400 + 18,000) / 2 kbit/s, both just now.
        let kbps = estimate.throughput_bps.unwrap() / 1000.0;
        assert!((kbps - 21_700.0).abs() < 50.0, "{kbps}");
        let text = measuring.render("kinema_edge_");
        assert!(
            text.contains("kinema_edge_netq_cmcd_reports_total 2\n"),
            "{text}"
        );
        assert!(text.contains("kinema_edge_netq_prefixes 1\n"), "{text}");
        assert!(
            text.contains("kinema_edge_netq_tcp_samples_total 0\n"),
            "{text}"
        );
    }
}
