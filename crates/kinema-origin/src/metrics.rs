//! What the origin counts, and its rendering as Prometheus text at
//! `/metrics`.
//!
//! The request path only touches plain atomics chosen by array index (no
//! label lookup, no lock, no allocation); everything is turned into the
//! exposition format by one `prometheus-client` collector at scrape time.
//! Gauges that live elsewhere (cache size, open connections) are read then,
//! through closures, so this module knows neither the cache nor the sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use kinema_http::ServerStatsSnapshot;

use crate::admission::{Admission, Reason};
use crate::disk_cache::DiskCacheCounts;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// What a request was for, as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Segment,
    Init,
    Playlist,
    /// Thumbnails and any other published file.
    OtherMedia,
    Ui,
    Api,
    Health,
    Metrics,
    /// `/steer/{id}` and the redirects of a cluster.
    Steering,
    /// Everything that matched no route.
    Unknown,
}

impl RouteKind {
    const ALL: [RouteKind; 10] = [
        RouteKind::Segment,
        RouteKind::Init,
        RouteKind::Playlist,
        RouteKind::OtherMedia,
        RouteKind::Ui,
        RouteKind::Api,
        RouteKind::Health,
        RouteKind::Metrics,
        RouteKind::Steering,
        RouteKind::Unknown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Segment => "segment",
            RouteKind::Init => "init",
            RouteKind::Playlist => "playlist",
            RouteKind::OtherMedia => "other_media",
            RouteKind::Ui => "ui",
            RouteKind::Api => "api",
            RouteKind::Health => "healthz",
            RouteKind::Metrics => "metrics",
            RouteKind::Steering => "steering",
            RouteKind::Unknown => "unknown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Counters of the request path.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; RouteKind::ALL.len()],
    body_bytes: [AtomicU64; RouteKind::ALL.len()],
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub prefetches: AtomicU64,
    pub prefetch_hits: AtomicU64,
    pub streamed_files: AtomicU64,
    pub store_reads: AtomicU64,
    pub store_errors: AtomicU64,
    pub size_mismatches: AtomicU64,
    /// Files refused because their bytes do not match the manifest's
    /// SHA-256: found when loading into the cache or by the scrub.
    pub checksum_mismatches: AtomicU64,
    pub scrub_bytes: AtomicU64,
    pub scrub_passes: AtomicU64,
    /// The disk tier's counts, when there is one (a library in S3).
    pub disk_cache: Option<Arc<DiskCacheCounts>>,
    /// Non-cumulative bucket counts; the last is `+Inf`.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

impl Metrics {
    /// Counters that also publish a disk tier's counts.
    pub fn with_disk_cache(disk_cache: Option<Arc<DiskCacheCounts>>) -> Self {
        Self {
            disk_cache,
            ..Self::default()
        }
    }

    /// Records one answered request: its route, status, the length of the
    /// body handed to the connection layer, and the time to produce the
    /// response head.
    pub fn record(&self, route: RouteKind, status: u16, body_bytes: u64, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[route.index()][class].fetch_add(1, Relaxed);
        if body_bytes > 0 {
            self.body_bytes[route.index()].fetch_add(body_bytes, Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Bytes of all response bodies so far: the egress.
    pub fn body_bytes_total(&self) -> u64 {
        self.body_bytes
            .iter()
            .map(|bytes| bytes.load(Relaxed))
            .sum()
    }

    #[cfg(test)]
    pub fn requests(&self, route: RouteKind, status_class: usize) -> u64 {
        self.requests[route.index()][status_class - 1].load(Relaxed)
    }
}

/// Values read at scrape time from the parts that own them.
pub struct Readings {
    pub cache_bytes: Box<dyn Fn() -> u64 + Send + Sync>,
    pub cache_entries: Box<dyn Fn() -> u64 + Send + Sync>,
    pub videos_loaded: Box<dyn Fn() -> u64 + Send + Sync>,
    pub corrupt_files: Box<dyn Fn() -> u64 + Send + Sync>,
    /// File descriptors the cache's entries keep open.
    pub cache_descriptors: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The connection layer's counts.
    pub server: Box<dyn Fn() -> ServerStatsSnapshot + Send + Sync>,
    /// Sessions admitted and refused, the egress and load it acts on.
    pub admission: Arc<Admission>,
}

impl std::fmt::Debug for Readings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readings")
    }
}

#[derive(Debug)]
struct OriginCollector {
    metrics: std::sync::Arc<Metrics>,
    readings: Readings,
}

/// A registry holding the origin's collector, ready to encode.
pub fn registry(metrics: std::sync::Arc<Metrics>, readings: Readings) -> Registry {
    let mut registry = Registry::with_prefix("kinema_origin");
    registry.register_collector(Box::new(OriginCollector { metrics, readings }));
    registry
}

/// The registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(8 * 1024);
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for OriginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        {
            let mut family = encoder.encode_descriptor(
                "requests",
                "Requests answered, by route kind and status class.",
                None,
                MetricType::Counter,
            )?;
            for route in RouteKind::ALL {
                for (class_index, class) in STATUS_CLASSES.iter().enumerate() {
                    let value = m.requests[route.index()][class_index].load(Relaxed);
                    let labels = [("route", route.label()), ("status", *class)];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                            &value, None,
                        )?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "response_body_bytes",
                "Bytes of response bodies handed to the connection layer, by route kind.",
                None,
                MetricType::Counter,
            )?;
            for route in RouteKind::ALL {
                let value = m.body_bytes[route.index()].load(Relaxed);
                family
                    .encode_family(&[("route", route.label())])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                        &value, None,
                    )?;
            }
        }
        counter(
            &mut encoder,
            "cache_hits",
            "File reads answered from the memory cache.",
            m.cache_hits.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "cache_misses",
            "File reads that went to the store.",
            m.cache_misses.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "prefetches",
            "Segments loaded into the cache ahead of a request.",
            m.prefetches.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "prefetch_hits",
            "Requests answered by a segment that a prefetch had loaded.",
            m.prefetch_hits.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "streamed_files",
            "Responses streamed from the store because the file exceeds max_cached_file_size.",
            m.streamed_files.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_reads",
            "Whole files read from the store into the cache (misses and prefetches).",
            m.store_reads.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_errors",
            "Store reads that failed for a listed file.",
            m.store_errors.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "size_mismatches",
            "Files refused because their size on disk differs from the manifest.",
            m.size_mismatches.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "checksum_mismatches",
            "Files refused because their bytes differ from the manifest's SHA-256 (on loading into the cache, or found by the scrub).",
            m.checksum_mismatches.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "scrub_bytes",
            "Bytes the library scrub has read and checked.",
            m.scrub_bytes.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "scrub_passes",
            "Complete passes of the library scrub.",
            m.scrub_passes.load(Relaxed),
        )?;
        let disk = m.disk_cache.as_deref();
        let disk_count = |read: fn(&DiskCacheCounts) -> &AtomicU64| {
            disk.map_or(0, |counts| read(counts).load(Relaxed))
        };
        counter(
            &mut encoder,
            "disk_cache_hits",
            "Memory-cache misses answered from the disk cache (a library in S3) instead of the store.",
            disk_count(|counts| &counts.hits),
        )?;
        counter(
            &mut encoder,
            "disk_cache_misses",
            "Memory-cache misses the disk cache did not hold, read from the store.",
            disk_count(|counts| &counts.misses),
        )?;
        counter(
            &mut encoder,
            "disk_cache_writes",
            "Files written to the disk cache.",
            disk_count(|counts| &counts.writes),
        )?;
        counter(
            &mut encoder,
            "disk_cache_evictions",
            "Files evicted from the disk cache to stay within disk_cache_size.",
            disk_count(|counts| &counts.evictions),
        )?;
        gauge(
            &mut encoder,
            "disk_cache_bytes",
            "Bytes held in the disk cache.",
            disk_count(|counts| &counts.bytes),
        )?;
        gauge(
            &mut encoder,
            "disk_cache_files",
            "Files held in the disk cache.",
            disk_count(|counts| &counts.files),
        )?;
        gauge(
            &mut encoder,
            "corrupt_files",
            "Files the last scrub pass found corrupt (refused until repaired).",
            (self.readings.corrupt_files)(),
        )?;
        gauge(
            &mut encoder,
            "cache_bytes",
            "Bytes of file content held in the memory cache.",
            (self.readings.cache_bytes)(),
        )?;
        gauge(
            &mut encoder,
            "cache_descriptors",
            "File descriptors cached files keep open for sendfile (at most an eighth of the open-file limit; beyond it, files are cached as bytes).",
            (self.readings.cache_descriptors)(),
        )?;
        gauge(
            &mut encoder,
            "cache_entries",
            "Files held in the memory cache.",
            (self.readings.cache_entries)(),
        )?;
        gauge(
            &mut encoder,
            "videos_loaded",
            "Video manifests held in memory.",
            (self.readings.videos_loaded)(),
        )?;
        let server = (self.readings.server)();
        gauge(
            &mut encoder,
            "open_connections",
            "Client connections currently open.",
            server.open_connections,
        )?;
        let admission = &self.readings.admission;
        counter(
            &mut encoder,
            "sessions_admitted",
            "Viewing sessions (multivariant playlist or MPD requests) admitted.",
            admission.admitted(),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "sessions_refused",
                "Viewing sessions refused with 503 for lack of room, by reason (egress: max_egress; load: max_load).",
                None,
                MetricType::Counter,
            )?;
            for reason in Reason::ALL {
                family
                    .encode_family(&[("reason", reason.label())])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                    &admission.refused(reason),
                    None,
                )?;
            }
        }
        gauge(
            &mut encoder,
            "egress_bits_per_second",
            "Response body bits sent per second, smoothed over a few seconds (what admission measures).",
            admission.egress(),
        )?;
        let load = ConstGauge::new(admission.load());
        load.encode(encoder.encode_descriptor(
            "server_load",
            "Share of time the serving threads are busy, 0 to 1, smoothed over a few seconds (what admission measures against max_load).",
            None,
            load.metric_type(),
        )?)?;
        counter(
            &mut encoder,
            "file_bodies_from_memory",
            "Segment responses written from memory instead of by sendfile because the kernel had evicted pages of the file (the page cache is too small for what is watched).",
            server.file_bodies_from_memory,
        )?;
        // The encoder accumulates the per-bucket counts itself and writes the
        // bound `f64::MAX` as `+Inf`.
        let mut count = 0u64;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (index, bound) in LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .enumerate()
        {
            let in_bucket = m.latency_buckets[index].load(Relaxed);
            count += in_bucket;
            buckets.push((bound, in_bucket));
        }
        let sum = m.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        encoder
            .encode_descriptor(
                "request_duration_seconds",
                "Time from a request's arrival at the handler to its response head.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let metrics = Arc::new(Metrics::default());
        metrics.record(RouteKind::Segment, 200, 1000, Duration::from_micros(80));
        metrics.record(RouteKind::Segment, 206, 10, Duration::from_millis(3));
        metrics.record(RouteKind::Unknown, 404, 0, Duration::from_secs(5));
        metrics.cache_hits.fetch_add(7, Relaxed);
        let registry = registry(
            metrics.clone(),
            Readings {
                cache_bytes: Box::new(|| 4096),
                cache_entries: Box::new(|| 2),
                videos_loaded: Box::new(|| 1),
                corrupt_files: Box::new(|| 0),
                cache_descriptors: Box::new(|| 0),
                server: Box::new(|| ServerStatsSnapshot {
                    open_connections: 3,
                    file_bodies_from_memory: 5,
                    ..ServerStatsSnapshot::default()
                }),
                admission: {
                    let admission = Admission::new(
                        crate::admission::Limits {
                            max_egress: Some(10),
                            max_load: 1.0,
                        },
                        crate::admission::Sources {
                            egress_bytes: Box::new(|| 0),
                            load: Box::new(|| 0.0),
                            admitted: Arc::default(),
                        },
                    );
                    let viewer = |n: u8| std::net::IpAddr::from([192, 0, n, 1]);
                    assert!(admission.admit(viewer(1), "v", 4).is_ok());
                    assert!(admission.admit(viewer(2), "v", 7).is_err());
                    Arc::new(admission)
                },
            },
        );
        let text = render(&registry);
        for expected in [
            "kinema_origin_requests_total{route=\"segment\",status=\"2xx\"} 2",
            "kinema_origin_requests_total{route=\"unknown\",status=\"4xx\"} 1",
            "kinema_origin_response_body_bytes_total{route=\"segment\"} 1010",
            "kinema_origin_cache_hits_total 7",
            "kinema_origin_cache_bytes 4096",
            "kinema_origin_open_connections 3",
            "kinema_origin_sessions_admitted_total 1",
            "kinema_origin_sessions_refused_total{reason=\"egress\"} 1",
            "kinema_origin_sessions_refused_total{reason=\"load\"} 0",
            "kinema_origin_egress_bits_per_second 0",
            "kinema_origin_server_load 0.0",
            "kinema_origin_file_bodies_from_memory_total 5",
            "kinema_origin_request_duration_seconds_bucket{le=\"0.0001\"} 1",
            "kinema_origin_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "kinema_origin_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "kinema_origin_request_duration_seconds_count 3",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(metrics.requests(RouteKind::Segment, 2), 2);
    }
}
