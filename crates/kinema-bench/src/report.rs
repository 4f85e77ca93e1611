//! Turning a run's measurements into things people and scripts read: the
//! summary table, the JSON document and the HTML page with plots (drawn by
//! plotters' SVG backend and inlined, so the page is one file).
//!
//! Nothing here measures; it only formats what [`crate::run()`] gathered.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::BenchError;
use crate::metrics::{Percentiles, SteeringSummary, Summary};
use crate::run::{RunReport, TimelineSample};

fn seconds(p: &Percentiles) -> String {
    format!(
        "p50 {:.3}s  p90 {:.3}s  p99 {:.3}s  max {:.3}s",
        p.p50, p.p90, p.p99, p.max
    )
}

fn ratios(p: &Percentiles) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        p.p50, p.p90, p.p99, p.max
    )
}

/// The final table printed after a run.
pub fn summary_table(report: &RunReport) -> String {
    let s: &Summary = &report.summary;
    let config = &report.config;
    let mut out = String::new();
    let rows: Vec<(&str, String)> = vec![
        ("target", config.url.clone()),
        (
            "viewers",
            format!(
                "{} started of {} ({} could not play)",
                s.viewers, config.viewers, s.viewers_failed
            ),
        ),
        (
            "admission",
            format!(
                "refused {} attempts by {} viewers ({:.1}s refused in all); {} viewers never admitted",
                s.refusals, s.viewers_with_refusals, s.refused_seconds, s.viewers_never_admitted
            ),
        ),
        (
            "admitted",
            format!(
                "{} viewers; the rows from startup to download / duration are theirs alone",
                s.viewers_admitted
            ),
        ),
        (
            "run",
            format!(
                "{:.1}s wall, speed {}x, link {}, abr {}{}",
                s.wall_seconds,
                config.speed,
                config.link,
                match config.bitrate {
                    Some(bitrate) => format!("pinned to {}", String::from(bitrate)),
                    None => format!("{:?}", config.abr).to_lowercase(),
                },
                if config.saturate { ", saturating" } else { "" }
            ),
        ),
        ("startup", seconds(&s.startup_seconds)),
        (
            "stalls",
            format!(
                "{} events, {:.2}s stalled, {} viewers stalled",
                s.stalls, s.stalled_seconds, s.viewers_with_stalls
            ),
        ),
        (
            "rebuffering ratio",
            format!(
                "{:.4} overall; per viewer {}",
                s.rebuffering_ratio,
                ratios(&s.rebuffering_ratio_per_viewer)
            ),
        ),
        (
            "bitrate",
            format!(
                "{:.3} Mbit/s mean of viewers' time-weighted averages; links sustain {:.3} Mbit/s",
                s.average_bitrate_mean / 1e6,
                s.sustainable_bitrate_mean / 1e6
            ),
        ),
        ("quality switches", s.switches.to_string()),
        (
            "segments",
            format!("{} fetched, {} failed", s.segments, s.segments_failed),
        ),
        ("download time", seconds(&s.download_seconds)),
        ("download / duration", ratios(&s.download_ratio)),
        (
            "http",
            format!("{} errors, {} retries", s.http_errors, s.retries),
        ),
        (
            "bytes",
            format!(
                "{} ({:.1} Mbit/s)",
                bytesize::ByteSize(s.bytes),
                s.mbit_per_second
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:>20}  {value}");
    }
    if let Some(cpu) = s.client_cpu_seconds {
        let _ = writeln!(
            out,
            "{:>20}  {cpu:.1}s ({:.0}% of one core)",
            "client cpu",
            cpu / s.wall_seconds.max(1e-3) * 100.0
        );
    }
    steering_rows(&mut out, &s.steering);
    for (kind, count) in &s.error_kinds {
        let _ = writeln!(out, "{:>20}  {count} × {kind}", "errors");
    }
    if let Some(first) = &s.first_error {
        let _ = writeln!(out, "{:>20}  {first}", "first error");
    }
    out
}

/// Content steering's rows: shown when a viewer followed steering or the
/// run's requests went to more than one server.
fn steering_rows(out: &mut String, steering: &SteeringSummary) {
    if steering.steered_viewers == 0 && steering.pathways.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "{:>20}  {} viewers steered; {} steering requests, {} failed, {} ignored as malformed",
        "steering",
        steering.steered_viewers,
        steering.steering_requests,
        steering.steering_errors,
        steering.warnings
    );
    let _ = writeln!(
        out,
        "{:>20}  {} by steering, {} by failure",
        "pathway switches", steering.switches_by_steering, steering.switches_by_failure
    );
    if steering.viewers_failed_over > 0 {
        let _ = writeln!(
            out,
            "{:>20}  {} viewers failed over; longest stall per viewer {}",
            "failover",
            steering.viewers_failed_over,
            seconds(&steering.failover_stall_seconds)
        );
    }
    for (pathway, counters) in &steering.pathways {
        let downloads = steering
            .pathway_download_seconds
            .get(pathway)
            .map(|times| format!(", segment download {}", seconds(times)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>20}  {pathway}: {} requests, {}, {} errors{downloads}",
            "pathway",
            counters.requests,
            bytesize::ByteSize(counters.bytes),
            counters.errors
        );
    }
    if let Some(warning) = &steering.first_warning {
        let _ = writeln!(out, "{:>20}  {warning}", "steering warning");
    }
}

/// Writes the JSON document (config, summary, timeline, per-viewer
/// reports without their per-segment records).
pub fn write_json(report: &RunReport, path: &Path) -> Result<(), BenchError> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| BenchError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    std::fs::write(path, json).map_err(|e| BenchError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn plot_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(error.to_string())
}

/// An empirical CDF as (value, fraction ≤ value) points.
fn cdf(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, (i + 1) as f64 / n))
        .collect()
}

/// One named line of a chart: its points and colour.
type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<String, BenchError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let points = series.iter().flat_map(|(_, points, _)| points.iter());
        let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
        for (x, y) in points {
            x_max = x_max.max(*x);
            y_max = y_max.max(*y);
        }
        let x_max = if x_max > 0.0 { x_max * 1.05 } else { 1.0 };
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(plot_error)?;
        for (name, points, color) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML page: summary table, bit rate over time, startup CDF,
/// download-time CDF, and viewers waiting to be admitted over time when
/// the server refused any.
pub fn html_report(report: &RunReport) -> Result<String, BenchError> {
    let bitrate_over_time: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|sample| (sample.wall_seconds, sample.mean_selected_bitrate / 1e6))
        .collect();
    let throughput: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|sample| {
            // Refused viewers receive nothing; they would dilute the rate.
            let admitted = sample.active_viewers.saturating_sub(sample.refused_viewers);
            let per_viewer = if admitted > 0 {
                sample.mbit_per_second / admitted as f64
            } else {
                0.0
            };
            (sample.wall_seconds, per_viewer)
        })
        .collect();
    let bitrate_chart = line_chart(
        "Bit rate over time",
        "wall seconds",
        "Mbit/s",
        &[
            ("mean selected rung", bitrate_over_time, BLUE),
            ("mean received per viewer", throughput, RED),
        ],
    )?;
    let startup = cdf(report
        .viewers
        .iter()
        .filter_map(|viewer| viewer.startup_seconds)
        .collect());
    let startup_chart = line_chart(
        "Startup time (CDF over viewers)",
        "seconds",
        "fraction of viewers",
        &[("startup", startup, BLUE)],
    )?;
    let download = cdf(report
        .viewers
        .iter()
        .flat_map(|viewer| viewer.records.iter())
        .map(|record| record.download_seconds / record.media_seconds.max(1e-3))
        .collect());
    let download_chart = line_chart(
        "Segment download time / segment duration (CDF over segments)",
        "download time / duration",
        "fraction of segments",
        &[("download ratio", download, BLUE)],
    )?;
    let admission_chart = if report.summary.refusals > 0 {
        let series = |value: fn(&TimelineSample) -> u64| {
            report
                .timeline
                .iter()
                .map(|sample| (sample.wall_seconds, value(sample) as f64))
                .collect::<Vec<_>>()
        };
        line_chart(
            "Viewers over time",
            "wall seconds",
            "viewers",
            &[
                ("active", series(|sample| sample.active_viewers), BLUE),
                (
                    "refused, waiting to ask again",
                    series(|sample| sample.refused_viewers),
                    RED,
                ),
            ],
        )?
    } else {
        String::new()
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>kinema bench report</title>\n\
         <style>body{{font-family:sans-serif;max-width:820px;margin:2em auto}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style>\n\
         </head><body>\n<h1>kinema bench</h1>\n<pre>{}</pre>\n{}\n{}\n{}\n{}\n</body></html>\n",
        escape(&summary_table(report)),
        bitrate_chart,
        admission_chart,
        startup_chart,
        download_chart
    );
    Ok(html)
}

pub fn write_html(report: &RunReport, path: &Path) -> Result<(), BenchError> {
    let html = html_report(report)?;
    std::fs::write(path, html).map_err(|e| BenchError::Output {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_is_monotone_and_ends_at_one() {
        let points = cdf(vec![3.0, 1.0, 2.0]);
        assert_eq!(points, vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]);
    }

    #[test]
    fn charts_are_svg() {
        let svg = line_chart("t", "x", "y", &[("s", vec![(0.0, 1.0), (1.0, 2.0)], BLUE)]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("polyline") || svg.contains("path"));
    }
}
