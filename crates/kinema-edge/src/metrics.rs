//! Counters of the edge and their Prometheus text rendering.
//!
//! Plain atomics bumped on the request path (no locks, no allocation); the
//! text is produced only when `/metrics` is scraped. The offload ratio is the
//! figure an operator watches: the share of client bytes that did not have
//! to come from the origin.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter the edge keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub hits_memory: AtomicU64,
    pub hits_disk: AtomicU64,
    pub misses: AtomicU64,
    pub stale_hits: AtomicU64,
    pub stale_if_error: AtomicU64,
    pub revalidations: AtomicU64,
    pub revalidated_not_modified: AtomicU64,
    pub passes: AtomicU64,
    pub coalesced_waiters: AtomicU64,
    pub origin_requests: AtomicU64,
    pub origin_errors: AtomicU64,
    pub origin_retries: AtomicU64,
    pub origin_bytes: AtomicU64,
    pub client_bytes: AtomicU64,
    pub stored: AtomicU64,
    pub evictions_memory: AtomicU64,
    pub evictions_disk: AtomicU64,
    pub disk_writes: AtomicU64,
    pub disk_objects: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub purges: AtomicU64,
    /// Purges sent on to other edges of the cluster, and those of them
    /// that failed (unreachable, refused, timed out).
    pub purge_fanout_sent: AtomicU64,
    pub purge_fanout_failed: AtomicU64,
    pub prefetches: AtomicU64,
    pub prefetch_errors: AtomicU64,
    pub invalidations: AtomicU64,
    pub slice_fills: AtomicU64,
    pub slice_version_changes: AtomicU64,
    /// Viewers' GETs of a video's stable master playlist or MPD (not
    /// through a kinema node): the sessions a cluster node publishes.
    pub sessions_started: AtomicU64,
}

/// Counters that need the store's current view.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    /// Stored responses held in memory files (one descriptor each), and
    /// the most allowed at once.
    pub memory_files: u64,
    pub memory_files_cap: u64,
    pub origins_healthy: u64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut text = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            write_family(&mut text, name, "counter", help, &[("", value.to_string())]);
        };
        counter("requests_total", "requests received", get(&self.requests));
        counter(
            "sessions_started_total",
            "viewers' requests for a video's stable master playlist or MPD",
            get(&self.sessions_started),
        );
        counter(
            "misses_total",
            "requests that found no usable stored response",
            get(&self.misses),
        );
        counter(
            "stale_hits_total",
            "stale responses served (max-stale, stale-while-revalidate)",
            get(&self.stale_hits),
        );
        counter(
            "stale_if_error_total",
            "stale responses served because the origin failed",
            get(&self.stale_if_error),
        );
        counter(
            "revalidations_total",
            "conditional requests sent to the origin",
            get(&self.revalidations),
        );
        counter(
            "revalidated_not_modified_total",
            "revalidations answered 304",
            get(&self.revalidated_not_modified),
        );
        counter(
            "passes_total",
            "requests passed to the origin uncached",
            get(&self.passes),
        );
        counter(
            "coalesced_waiters_total",
            "requests that joined another request's origin fetch",
            get(&self.coalesced_waiters),
        );
        counter(
            "origin_requests_total",
            "requests sent to origins",
            get(&self.origin_requests),
        );
        counter(
            "origin_errors_total",
            "origin fetches that failed (connect, timeout, 5xx)",
            get(&self.origin_errors),
        );
        counter(
            "origin_retries_total",
            "idempotent fetches retried on another origin",
            get(&self.origin_retries),
        );
        counter(
            "origin_bytes_total",
            "body bytes received from origins",
            get(&self.origin_bytes),
        );
        counter(
            "client_bytes_total",
            "body bytes sent to clients",
            get(&self.client_bytes),
        );
        counter("stored_total", "responses stored", get(&self.stored));
        counter(
            "disk_writes_total",
            "objects written to the disk tier",
            get(&self.disk_writes),
        );
        counter("purges_total", "purge requests executed", get(&self.purges));
        counter(
            "purge_fanout_sent_total",
            "purges sent on to other edges of the cluster",
            get(&self.purge_fanout_sent),
        );
        counter(
            "purge_fanout_failed_total",
            "purges sent on to other edges that did not succeed",
            get(&self.purge_fanout_failed),
        );
        counter(
            "prefetches_total",
            "segments prefetched",
            get(&self.prefetches),
        );
        counter(
            "prefetch_errors_total",
            "prefetches the origin answered with an error status (not stored)",
            get(&self.prefetch_errors),
        );
        counter(
            "invalidations_total",
            "entries invalidated by unsafe methods",
            get(&self.invalidations),
        );
        counter(
            "slice_fills_total",
            "range requests made to origins for slices of large objects",
            get(&self.slice_fills),
        );
        counter(
            "slice_version_changes_total",
            "times a large object changed at the origin between its slices (old slices dropped)",
            get(&self.slice_version_changes),
        );
        // One counter family, labelled by the tier it concerns.
        let mut counter_by_tier = |name: &str, help: &str, memory: u64, disk: u64| {
            let samples = [
                ("{tier=\"memory\"}", memory.to_string()),
                ("{tier=\"disk\"}", disk.to_string()),
            ];
            write_family(&mut text, name, "counter", help, &samples);
        };
        counter_by_tier(
            "hits_total",
            "responses served from a tier without contacting the origin",
            get(&self.hits_memory),
            get(&self.hits_disk),
        );
        counter_by_tier(
            "evictions_total",
            "objects evicted for space",
            get(&self.evictions_memory),
            get(&self.evictions_disk),
        );
        let lookups = get(&self.hits_memory) + get(&self.hits_disk) + get(&self.misses);
        let ratio = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 / whole as f64
            }
        };
        let mut gauge = |name: &str, help: &str, value: String| {
            write_family(&mut text, name, "gauge", help, &[("", value)]);
        };
        gauge(
            "hit_ratio_memory",
            "share of cache lookups served by the memory tier",
            format!("{:.6}", ratio(get(&self.hits_memory), lookups)),
        );
        gauge(
            "hit_ratio_disk",
            "share of cache lookups served by the disk tier",
            format!("{:.6}", ratio(get(&self.hits_disk), lookups)),
        );
        let client = get(&self.client_bytes);
        let origin = get(&self.origin_bytes);
        let offload = if client == 0 {
            0.0
        } else {
            1.0 - (origin as f64 / client as f64).min(1.0)
        };
        gauge(
            "offload_ratio",
            "1 - origin bytes / client bytes",
            format!("{offload:.6}"),
        );
        gauge(
            "memory_objects",
            "URIs held in the memory tier",
            gauges.memory_objects.to_string(),
        );
        gauge(
            "memory_bytes",
            "bytes held in the memory tier",
            gauges.memory_bytes.to_string(),
        );
        gauge(
            "memory_files",
            "stored responses held in memory files, one descriptor each",
            gauges.memory_files.to_string(),
        );
        gauge(
            "memory_files_max",
            "most stored responses held in memory files (an eighth of the open-file limit)",
            gauges.memory_files_cap.to_string(),
        );
        gauge(
            "disk_objects",
            "responses held in the disk tier",
            get(&self.disk_objects).to_string(),
        );
        gauge(
            "disk_bytes",
            "bytes held in the disk tier",
            get(&self.disk_bytes).to_string(),
        );
        gauge(
            "origins_healthy",
            "origins currently passing health checks",
            gauges.origins_healthy.to_string(),
        );
        text
    }
}

/// Writes one metric family in the Prometheus text format: its `# HELP` and
/// `# TYPE` lines, then one sample per `(labels, value)`, where labels are
/// written as they stand (`{tier="disk"}`, or empty).
fn write_family(text: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, String)]) {
    let _ = writeln!(text, "# HELP kinema_edge_{name} {help}");
    let _ = writeln!(text, "# TYPE kinema_edge_{name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(text, "kinema_edge_{name}{labels} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_offload_and_tier_ratios() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.client_bytes, 1000);
        Metrics::add(&metrics.origin_bytes, 250);
        Metrics::add(&metrics.hits_memory, 3);
        Metrics::add(&metrics.misses, 1);
        let text = metrics.render(Gauges {
            memory_objects: 2,
            memory_files: 1,
            memory_files_cap: 128,
            memory_bytes: 10,
            origins_healthy: 1,
        });
        assert!(
            text.contains("kinema_edge_offload_ratio 0.750000"),
            "{text}"
        );
        assert!(
            text.contains("kinema_edge_hit_ratio_memory 0.750000"),
            "{text}"
        );
        assert!(
            text.contains("kinema_edge_hits_total{tier=\"memory\"} 3"),
            "{text}"
        );
        assert!(text.contains("kinema_edge_memory_objects 2"), "{text}");
    }
}
