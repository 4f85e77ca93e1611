//! What viewers feel, per viewer and over the run.
//!
//! Durations here are in *viewer time*: wall-clock time multiplied by the
//! run's `--speed`, so a run played four times faster reports the startup,
//! stalls and download times its viewers would have had in real time.
//! The only wall-clock figures are the offsets at which viewers started and
//! ended, which say whether ramp and duration were honoured.
//!
//! A viewer is *admitted* once the server answered its manifest request; an
//! origin at capacity refuses that request (503 with `Retry-After`) and the
//! viewer asks again later. What viewers felt (startup, stalls, bit rate,
//! download times) is aggregated over admitted viewers only: one that never
//! got in watched nothing, and averaging its nothing in would make a
//! refusing server look better. Refusals and viewers never admitted are
//! counted beside them.
//!
//! Live counters are plain atomics updated by the viewers and read once a
//! second by the progress line; everything else is built after the run from
//! each viewer's own report, so no lock is shared on the hot path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub bytes: AtomicU64,
    pub active_viewers: AtomicU64,
    pub stalls: AtomicU64,
    pub errors: AtomicU64,
    /// Session starts the server refused (503 with `Retry-After`).
    pub refusals: AtomicU64,
    /// Viewers refused and waiting to ask again.
    pub refused_viewers: AtomicU64,
    pub segments: AtomicU64,
    /// Sum over active viewers of the bit rate of their last segment.
    pub selected_bitrate_sum: AtomicU64,
}

impl LiveCounters {
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// One fetched segment, as recorded by its viewer.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentRecord {
    /// Position in the playlist (0-based; wraps when the viewer loops).
    pub index: u32,
    pub bitrate: u64,
    /// Viewer seconds since the viewer requested its playlist.
    pub requested_at: f64,
    /// Wall seconds since the run started, when the segment arrived.
    pub arrived_at_wall: f64,
    pub download_seconds: f64,
    pub media_seconds: f64,
    /// Buffered media ahead of the play head when the request went out.
    pub buffer_before: f64,
    /// Body bytes fetched for it: the segment, the rung's init section
    /// when it came with it, and the audio segment (and init) beside it.
    pub bytes: u64,
    /// The server (`host:port`) it came from.
    pub pathway: String,
}

/// p50 / p90 / p99 / max of a set of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[index]
        };
        Self {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// What one server (a pathway, as `host:port`) was asked and gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PathwayCounters {
    pub requests: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// Everything one viewer measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerReport {
    pub index: u32,
    /// Link rate in bits per second; `None` when unshaped.
    pub link_bits_per_second: Option<u64>,
    /// Catalogue mode: the rank of the video played (1: most popular).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<u32>,
    pub started_at_wall: f64,
    pub ended_at_wall: f64,
    /// The server sent the manifest: the session was admitted.
    pub admitted: bool,
    /// Manifest requests refused with 503 and `Retry-After` (waited out,
    /// not counted as HTTP errors).
    pub refusals: u32,
    /// Viewer seconds from the first refused manifest request to the one
    /// admitted (or to the viewer's end, if never admitted).
    pub refused_seconds: f64,
    /// First playlist request → first segment ready, viewer seconds; the
    /// time spent refused is part of it, as a viewer sits through it.
    pub startup_seconds: Option<f64>,
    pub stalls: u32,
    pub stalled_seconds: f64,
    pub played_seconds: f64,
    /// Stalled time over (played + stalled) time.
    pub rebuffering_ratio: f64,
    /// Time-weighted over the media seconds fetched.
    pub average_bitrate: f64,
    /// The highest rung whose bandwidth fits in the viewer's link.
    pub sustainable_bitrate: u64,
    pub highest_bitrate: u64,
    pub switches: u32,
    pub segments: u32,
    pub segments_failed: u32,
    pub http_errors: u32,
    pub retries: u32,
    pub bytes: u64,
    pub connections: u32,
    pub download_seconds: Percentiles,
    /// Download time over the segment's media duration.
    pub download_ratio: Percentiles,
    /// Error counts by kind (`http 404`, `timeout`…).
    pub error_kinds: BTreeMap<String, u32>,
    /// The first error message seen, in full.
    pub first_error: Option<String>,
    /// Set when the viewer could not play at all.
    pub fatal: Option<String>,
    /// Whether the manifest carried content steering the viewer followed.
    pub steered: bool,
    /// Requests, bytes and errors per server (`host:port`).
    pub pathways: BTreeMap<String, PathwayCounters>,
    pub steering_requests: u32,
    pub steering_errors: u32,
    /// Steering the viewer ignored (a malformed manifest or tag).
    pub steering_warnings: u32,
    pub first_steering_warning: Option<String>,
    pub pathway_switches_by_steering: u32,
    pub pathway_switches_by_failure: u32,
    /// Per failover: viewer seconds from the failed request to the next
    /// segment that arrived.
    pub failover_stall_seconds: Vec<f64>,
    #[serde(skip)]
    pub records: Vec<SegmentRecord>,
}

/// Aggregates of a whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub viewers: u32,
    pub viewers_failed: u32,
    /// Viewers the server sent the manifest; every QoE aggregate (startup
    /// to download times) is over these alone.
    pub viewers_admitted: u32,
    /// Viewers that ended, without a fatal error, still not admitted
    /// (refused until the run ended, or still waiting for the manifest).
    pub viewers_never_admitted: u32,
    /// Viewers refused at least once, admitted later or not.
    pub viewers_with_refusals: u32,
    /// Refused session starts (503 with `Retry-After`) over all viewers.
    pub refusals: u64,
    /// Viewer seconds spent refused, summed over viewers.
    pub refused_seconds: f64,
    pub viewers_with_stalls: u32,
    pub wall_seconds: f64,
    pub startup_seconds: Percentiles,
    pub stalls: u64,
    pub stalled_seconds: f64,
    pub played_seconds: f64,
    pub rebuffering_ratio: f64,
    /// Per-viewer rebuffering ratio, p50/p90/p99/max.
    pub rebuffering_ratio_per_viewer: Percentiles,
    pub average_bitrate_mean: f64,
    pub sustainable_bitrate_mean: f64,
    pub switches: u64,
    pub segments: u64,
    pub segments_failed: u64,
    pub http_errors: u64,
    pub retries: u64,
    pub bytes: u64,
    /// Bytes over wall time, Mbit/s.
    pub mbit_per_second: f64,
    pub download_seconds: Percentiles,
    pub download_ratio: Percentiles,
    pub error_kinds: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    /// CPU time the client process used during the run (all threads);
    /// near `wall_seconds × threads` means the client, not the server,
    /// was the limit.
    pub client_cpu_seconds: Option<f64>,
    /// Content steering: viewers that followed it, and what it did.
    pub steering: SteeringSummary,
}

/// What content steering did over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SteeringSummary {
    pub steered_viewers: u32,
    /// Per server (`host:port`), every viewer's requests, steered or not.
    pub pathways: BTreeMap<String, PathwayCounters>,
    /// Per server, the download times of the segments it served: which
    /// one was slow when the run's p99 was.
    pub pathway_download_seconds: BTreeMap<String, Percentiles>,
    pub steering_requests: u64,
    pub steering_errors: u64,
    pub warnings: u64,
    pub first_warning: Option<String>,
    pub switches_by_steering: u64,
    pub switches_by_failure: u64,
    /// Viewers that failed over at least once.
    pub viewers_failed_over: u32,
    /// Per affected viewer, its longest failover stall (seconds from the
    /// failed request to the next segment that arrived).
    pub failover_stall_seconds: Percentiles,
}

/// Histogram of values in milliseconds (1 ms to 1 h, 3 significant
/// digits): merged over thousands of viewers in constant memory.
fn millisecond_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("static histogram bounds are valid")
}

fn histogram_percentiles(histogram: &Histogram<u64>, scale: f64) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: histogram.value_at_quantile(0.50) as f64 / scale,
        p90: histogram.value_at_quantile(0.90) as f64 / scale,
        p99: histogram.value_at_quantile(0.99) as f64 / scale,
        max: histogram.max() as f64 / scale,
    }
}

impl Summary {
    pub fn from_viewers(viewers: &[ViewerReport], wall_seconds: f64) -> Self {
        let mut summary = Summary {
            viewers: viewers.len() as u32,
            wall_seconds,
            ..Summary::default()
        };
        let mut startup = millisecond_histogram();
        let mut download = millisecond_histogram();
        let mut download_by_pathway: BTreeMap<&str, Histogram<u64>> = BTreeMap::new();
        // Ratios ×1000 so three digits survive the integer histogram.
        let mut ratio = millisecond_histogram();
        let mut rebuffering: Vec<f64> = Vec::with_capacity(viewers.len());
        let mut bitrate_sum = 0.0;
        let mut sustainable_sum = 0.0;
        let mut playing_viewers = 0u32;
        let mut failover_stalls: Vec<f64> = Vec::new();
        for viewer in viewers {
            let steering = &mut summary.steering;
            steering.steered_viewers += u32::from(viewer.steered);
            for (pathway, counters) in &viewer.pathways {
                let total = steering.pathways.entry(pathway.clone()).or_default();
                total.requests += counters.requests;
                total.bytes += counters.bytes;
                total.errors += counters.errors;
            }
            steering.steering_requests += u64::from(viewer.steering_requests);
            steering.steering_errors += u64::from(viewer.steering_errors);
            steering.warnings += u64::from(viewer.steering_warnings);
            if steering.first_warning.is_none() {
                steering.first_warning = viewer.first_steering_warning.clone();
            }
            steering.switches_by_steering += u64::from(viewer.pathway_switches_by_steering);
            steering.switches_by_failure += u64::from(viewer.pathway_switches_by_failure);
            if let Some(longest) = viewer
                .failover_stall_seconds
                .iter()
                .copied()
                .max_by(f64::total_cmp)
            {
                steering.viewers_failed_over += 1;
                failover_stalls.push(longest);
            }
            // The traffic of every viewer, admitted or not.
            if viewer.fatal.is_some() {
                summary.viewers_failed += 1;
            }
            if viewer.refusals > 0 {
                summary.viewers_with_refusals += 1;
            }
            summary.refusals += u64::from(viewer.refusals);
            summary.refused_seconds += viewer.refused_seconds;
            summary.http_errors += u64::from(viewer.http_errors);
            summary.retries += u64::from(viewer.retries);
            summary.bytes += viewer.bytes;
            for (kind, count) in &viewer.error_kinds {
                *summary.error_kinds.entry(kind.clone()).or_default() += u64::from(*count);
            }
            if summary.first_error.is_none() {
                summary.first_error = viewer.first_error.clone();
            }
            if !viewer.admitted {
                if viewer.fatal.is_none() {
                    summary.viewers_never_admitted += 1;
                }
                continue;
            }
            // What admitted viewers felt.
            summary.viewers_admitted += 1;
            if let Some(seconds) = viewer.startup_seconds {
                let _ = startup.record((seconds * 1000.0).round().max(1.0) as u64);
                playing_viewers += 1;
                bitrate_sum += viewer.average_bitrate;
                sustainable_sum += viewer.sustainable_bitrate as f64;
                rebuffering.push(viewer.rebuffering_ratio);
            }
            if viewer.stalls > 0 {
                summary.viewers_with_stalls += 1;
            }
            summary.stalls += u64::from(viewer.stalls);
            summary.stalled_seconds += viewer.stalled_seconds;
            summary.played_seconds += viewer.played_seconds;
            summary.switches += u64::from(viewer.switches);
            summary.segments += u64::from(viewer.segments);
            summary.segments_failed += u64::from(viewer.segments_failed);
            for record in &viewer.records {
                let milliseconds = (record.download_seconds * 1000.0).round().max(1.0) as u64;
                let _ = download.record(milliseconds);
                let _ = download_by_pathway
                    .entry(&record.pathway)
                    .or_insert_with(millisecond_histogram)
                    .record(milliseconds);
                let share = record.download_seconds / record.media_seconds.max(1e-3);
                let _ = ratio.record((share * 1000.0).round().max(1.0) as u64);
            }
        }
        let watched = summary.played_seconds + summary.stalled_seconds;
        summary.rebuffering_ratio = if watched > 0.0 {
            summary.stalled_seconds / watched
        } else {
            0.0
        };
        summary.rebuffering_ratio_per_viewer = Percentiles::of(&mut rebuffering);
        summary.steering.failover_stall_seconds = Percentiles::of(&mut failover_stalls);
        if playing_viewers > 0 {
            summary.average_bitrate_mean = bitrate_sum / f64::from(playing_viewers);
            summary.sustainable_bitrate_mean = sustainable_sum / f64::from(playing_viewers);
        }
        summary.startup_seconds = histogram_percentiles(&startup, 1000.0);
        summary.download_seconds = histogram_percentiles(&download, 1000.0);
        summary.steering.pathway_download_seconds = download_by_pathway
            .into_iter()
            .map(|(pathway, histogram)| {
                (
                    pathway.to_owned(),
                    histogram_percentiles(&histogram, 1000.0),
                )
            })
            .collect();
        summary.download_ratio = histogram_percentiles(&ratio, 1000.0);
        if wall_seconds > 0.0 {
            summary.mbit_per_second = summary.bytes as f64 * 8.0 / wall_seconds / 1e6;
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        values.reverse();
        let percentiles = Percentiles::of(&mut values);
        assert_eq!(
            percentiles,
            Percentiles {
                p50: 50.0,
                p90: 90.0,
                p99: 99.0,
                max: 100.0
            }
        );
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn summary_weights_rebuffering_by_time() {
        let viewer = |stalled: f64, played: f64| ViewerReport {
            admitted: true,
            startup_seconds: Some(0.5),
            stalls: u32::from(stalled > 0.0),
            stalled_seconds: stalled,
            played_seconds: played,
            rebuffering_ratio: stalled / (stalled + played),
            ..ViewerReport::default()
        };
        let summary = Summary::from_viewers(&[viewer(10.0, 90.0), viewer(0.0, 100.0)], 100.0);
        assert_eq!(summary.stalls, 1);
        assert_eq!(summary.viewers_with_stalls, 1);
        assert!((summary.rebuffering_ratio - 10.0 / 200.0).abs() < 1e-9);
        assert!((summary.startup_seconds.p50 - 0.5).abs() < 1e-3);
    }

    #[test]
    fn viewers_never_admitted_are_counted_but_left_out_of_what_viewers_felt() {
        let admitted = ViewerReport {
            admitted: true,
            refusals: 2,
            refused_seconds: 2.0,
            startup_seconds: Some(2.5),
            played_seconds: 10.0,
            average_bitrate: 3e6,
            segments: 10,
            ..ViewerReport::default()
        };
        // Refused until the end; a viewer could not sit through a stall
        // it never started, but the aggregate must not rely on that.
        let refused = ViewerReport {
            refusals: 12,
            refused_seconds: 12.0,
            stalls: 1,
            stalled_seconds: 5.0,
            ..ViewerReport::default()
        };
        let failed = ViewerReport {
            fatal: Some("http status 404".into()),
            http_errors: 1,
            ..ViewerReport::default()
        };
        let summary = Summary::from_viewers(&[admitted, refused, failed], 12.0);
        assert_eq!(summary.viewers, 3);
        assert_eq!(summary.viewers_admitted, 1);
        assert_eq!(summary.viewers_never_admitted, 1);
        assert_eq!(summary.viewers_failed, 1);
        assert_eq!(summary.viewers_with_refusals, 2);
        assert_eq!(summary.refusals, 14);
        assert!((summary.refused_seconds - 14.0).abs() < 1e-9);
        assert_eq!(summary.http_errors, 1);
        assert_eq!((summary.stalls, summary.viewers_with_stalls), (0, 0));
        assert_eq!(summary.rebuffering_ratio, 0.0);
        assert!((summary.startup_seconds.max - 2.5).abs() < 1e-3);
        assert!((summary.average_bitrate_mean - 3e6).abs() < 1e-3);
    }
}
