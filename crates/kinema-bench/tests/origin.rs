//! Viewers against the real origin, `kinema serve` (in process through
//! `kinema_origin::run` on 127.0.0.1:0), over a synthetic ladder published
//! into its library: ABR on a thin and a fat link, over HLS and over DASH,
//! and a crowd with mixed links. Assertions are on what the viewers
//! recorded.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{LADDER, config, library, play};
use kinema_bench::link::LinkSpec;
use kinema_bench::metrics::ViewerReport;
use kinema_bench::synthetic::SyntheticVideo;
use kinema_bench::{BenchConfig, RunReport};
use kinema_core::VideoId;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// `kinema serve` over `library`, and the URL of `file` of video `clip`
/// on it; the server stops when the returned sender drops.
async fn origin(library: &common::Library, file: &str) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = kinema_origin::Config::new(library.dir.path());
    config.access_log = false;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        kinema_origin::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("origin runs");
    });
    // The listener is bound, so connections queue in the kernel until the
    // origin accepts them: no readiness wait is needed.
    (format!("http://{address}/v/clip/{file}"), stop)
}

/// Three seconds of `viewers` viewers on `link`, at ten times real time.
async fn play_on(url: String, link: LinkSpec, viewers: u32) -> RunReport {
    play(BenchConfig {
        viewers,
        link,
        speed: 10.0,
        duration: Duration::from_secs(3),
        ..config(url)
    })
    .await
}

/// A fresh library of the test ladder (ten 1 s segments), and the report
/// of one viewer on a fixed `link` playing its `file` from `kinema serve`.
async fn one_viewer(file: &str, link: u64) -> (common::Library, RunReport) {
    let library = library(1.0, 10).await;
    let (url, _stop) = origin(&library, file).await;
    let report = play_on(url, LinkSpec::Fixed(link), 1).await;
    (library, report)
}

/// What a viewer on a 0.5 Mbit/s link shows in either format: it plays,
/// and never above its link.
#[track_caller]
fn assert_settled_under_a_thin_link(viewer: &ViewerReport) {
    assert_eq!(viewer.fatal, None);
    assert!(viewer.segments >= 5, "{viewer:?}");
    assert!(
        viewer.records.iter().all(|r| r.bitrate <= 500_000),
        "a 0.5 Mbit/s viewer fetched a rung above its link: {:?}",
        viewer.records.iter().map(|r| r.bitrate).collect::<Vec<_>>()
    );
    assert_eq!(viewer.sustainable_bitrate, 300_000);
    assert!(viewer.average_bitrate <= 500_000.0);
}

/// What a viewer on a 20 Mbit/s link shows in either format: it climbs to
/// the top rung and stays there, without a stall, over one connection.
#[track_caller]
fn assert_reached_the_top_rung_over_one_connection(viewer: &ViewerReport) {
    let top = *LADDER.last().unwrap();
    assert_eq!(viewer.fatal, None);
    assert_eq!(viewer.highest_bitrate, top, "{viewer:?}");
    assert_eq!(viewer.records.last().unwrap().bitrate, top);
    assert_eq!(viewer.sustainable_bitrate, top);
    assert_eq!(viewer.stalls, 0);
    assert!(viewer.switches >= 1);
    // Playlists or the MPD, init sections and segments all went over one
    // keep-alive connection, as a browser would send them.
    assert_eq!(viewer.connections, 1);
}

#[tokio::test]
async fn thin_link_settles_on_a_rung_under_its_rate() {
    let (_library, report) = one_viewer("master.m3u8", 500_000).await;
    assert_settled_under_a_thin_link(&report.viewers[0]);
}

#[tokio::test]
async fn fat_link_reaches_the_top_rung_over_one_connection() {
    let (_library, report) = one_viewer("master.m3u8", 20_000_000).await;
    let viewer = &report.viewers[0];
    assert_reached_the_top_rung_over_one_connection(viewer);
    assert_eq!(report.summary.http_errors, 0);
    // Bytes cover at least the exact sizes of the segments fetched.
    let segment_bytes: u64 = viewer
        .records
        .iter()
        .map(|r| (r.bitrate as f64 * r.media_seconds / 8.0).round() as u64)
        .sum();
    assert!(
        viewer.bytes >= segment_bytes,
        "{} < {segment_bytes}",
        viewer.bytes
    );
}

#[tokio::test]
async fn a_crowd_with_mixed_links_plays_each_at_its_own_rate() {
    let library = library(1.0, 10).await;
    let (url, _stop) = origin(&library, "master.m3u8").await;
    let report = play_on(url, "0.5mbit:50%,20mbit:50%".parse().unwrap(), 8).await;
    assert_eq!(report.viewers.len(), 8);
    assert_eq!(report.summary.viewers_failed, 0);
    assert_eq!(report.summary.http_errors, 0);
    for viewer in &report.viewers {
        let link = viewer.link_bits_per_second.unwrap();
        assert!(link == 500_000 || link == 20_000_000);
        if link == 500_000 {
            assert!(viewer.highest_bitrate <= 500_000, "{viewer:?}");
        }
        assert!(viewer.startup_seconds.is_some());
    }
    // The seeded draw gives both classes.
    assert!(
        report
            .viewers
            .iter()
            .any(|v| v.link_bits_per_second == Some(500_000))
    );
    assert!(
        report
            .viewers
            .iter()
            .any(|v| v.link_bits_per_second == Some(20_000_000))
    );
}

/// The fullest the viewer's buffer was when it asked for a segment.
fn fullest_buffer(viewer: &ViewerReport) -> f64 {
    viewer
        .records
        .iter()
        .map(|r| r.buffer_before)
        .fold(0.0, f64::max)
}

#[tokio::test]
async fn buffer_based_abr_climbs_as_the_buffer_fills_and_saturating_ignores_the_target() {
    let library = library(1.0, 10).await;
    let (url, _stop) = origin(&library, "master.m3u8").await;
    let buffer_target = Duration::from_secs(10);
    let report = play(BenchConfig {
        link: LinkSpec::Fixed(20_000_000),
        abr: kinema_bench::abr::AbrKind::Buffer,
        buffer_target,
        speed: 10.0,
        duration: Duration::from_secs(4),
        ..config(url.clone())
    })
    .await;
    let viewer = &report.viewers[0];
    let rates: Vec<u64> = viewer.records.iter().map(|r| r.bitrate).collect();
    // BBA-0 starts at the bottom (empty buffer) and ends at the top.
    assert_eq!(rates.first(), Some(&LADDER[0]), "{rates:?}");
    assert_eq!(viewer.highest_bitrate, *LADDER.last().unwrap(), "{rates:?}");
    assert_eq!(viewer.stalls, 0);
    // A paced viewer never asks for more than its target holds.
    let most_buffered = fullest_buffer(viewer);
    assert!(
        most_buffered <= buffer_target.as_secs_f64(),
        "{most_buffered}"
    );

    // Saturating: segments back to back, far past the buffer target.
    let report = play(BenchConfig {
        saturate: true,
        buffer_target,
        bitrate: Some(kinema_bench::Bitrate(300_000)),
        speed: 10.0,
        duration: Duration::from_secs(1),
        ..config(url)
    })
    .await;
    let viewer = &report.viewers[0];
    let most_buffered = fullest_buffer(viewer);
    assert!(
        most_buffered > 2.0 * buffer_target.as_secs_f64(),
        "{most_buffered}"
    );
}

/// Each file of the published video `clip` and its size.
async fn file_sizes(library: &common::Library) -> HashMap<String, u64> {
    let manifest = library
        .store
        .manifest(&VideoId::new("clip").unwrap())
        .await
        .unwrap();
    manifest
        .files
        .iter()
        .map(|file| (file.path.as_str().to_string(), file.size))
        .collect()
}

/// Checks that a DASH viewer fetched exactly the published files, without
/// an error: each segment record the size of its segment file, plus the
/// rung's init section whenever the rung changed; the viewer's total that
/// plus the MPD.
#[track_caller]
fn assert_fetched_exactly_the_files(viewer: &ViewerReport, sizes: &HashMap<String, u64>) {
    assert_eq!(viewer.http_errors, 0, "{:?}", viewer.first_error);
    assert_eq!(viewer.segments_failed, 0);
    let mut previous_rung = None;
    let mut recorded = 0;
    for record in &viewer.records {
        let rung = SyntheticVideo::rendition_id(record.bitrate);
        let mut expected = sizes[&format!("{rung}/{}.m4s", record.index + 1)];
        if previous_rung.as_ref() != Some(&rung) {
            expected += sizes[&format!("{rung}/init.mp4")];
        }
        assert_eq!(
            record.bytes, expected,
            "segment {} of {rung}: {record:?}",
            record.index
        );
        recorded += record.bytes;
        previous_rung = Some(rung);
    }
    let outside_records = viewer.bytes - sizes["manifest.mpd"] - recorded;
    // The deadline may cancel a segment after its new rung's init section
    // arrived: those bytes were fetched, and belong to no record.
    assert!(
        outside_records == 0 || outside_records == kinema_bench::synthetic::INIT_BYTES as u64,
        "{} bytes fetched beyond the MPD and the recorded segments",
        outside_records
    );
}

#[tokio::test]
async fn dash_fat_link_reaches_the_top_rung_fetching_exactly_the_files() {
    let (library, report) = one_viewer("manifest.mpd", 20_000_000).await;
    let viewer = &report.viewers[0];
    assert_reached_the_top_rung_over_one_connection(viewer);
    assert_fetched_exactly_the_files(viewer, &file_sizes(&library).await);
}

#[tokio::test]
async fn dash_thin_link_settles_on_a_rung_under_its_rate() {
    let (library, report) = one_viewer("manifest.mpd", 500_000).await;
    let viewer = &report.viewers[0];
    assert_settled_under_a_thin_link(viewer);
    assert_fetched_exactly_the_files(viewer, &file_sizes(&library).await);
}
