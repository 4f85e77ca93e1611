//! Viewers against the fault-injecting test server over loopback: a server
//! that hangs mid-stream, a missing segment, redirects, refused session
//! starts (503 with `Retry-After`), ramp, deadline, shutdown and reports (`origin.rs` plays against `kinema serve` itself).
//! Runs use `--speed` so a minute of viewing takes seconds; assertions are
//! on what the viewers recorded, never on how long the test took.

mod common;

use std::time::Duration;

use common::{Faults, Refusal, config, library, play, serve};
use kinema_bench::link::LinkSpec;
use kinema_bench::metrics::ViewerReport;
use kinema_bench::{BenchConfig, BenchError, Bitrate, run};

#[tokio::test]
async fn a_server_pause_mid_stream_is_a_counted_stall_of_about_its_length() {
    let pause = Duration::from_secs(5);
    let library = library(1.0, 10).await;
    let server = serve(
        &library,
        Faults {
            pause: Some(("r300k/4.m4s".into(), pause)),
            ..Faults::default()
        },
    )
    .await;
    let report = play(BenchConfig {
        bitrate: Some(Bitrate(300_000)),
        buffer_target: Duration::from_secs(2),
        duration: Duration::from_secs(9),
        ..config(server.url("/v/clip/master.m3u8"))
    })
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert_eq!(viewer.stalls, 1, "{viewer:?}");
    let paused = viewer
        .records
        .iter()
        .find(|r| r.index == 3)
        .expect("segment 4 was fetched");
    assert!(paused.download_seconds >= pause.as_secs_f64());
    // The stall is the part of the pause the buffer could not cover.
    let expected = paused.download_seconds - paused.buffer_before;
    assert!(
        (viewer.stalled_seconds - expected).abs() < 0.25,
        "stalled {} s, expected {expected} s",
        viewer.stalled_seconds
    );
    let pause = pause.as_secs_f64();
    assert!(
        viewer.stalled_seconds > pause - 2.0 && viewer.stalled_seconds < pause + 1.0,
        "stalled {} s for a {pause} s pause with a 2 s buffer",
        viewer.stalled_seconds
    );
    assert!(viewer.rebuffering_ratio > 0.0);
    assert_eq!(report.summary.stalls, 1);
}

#[tokio::test]
async fn a_missing_segment_is_counted_and_reported_not_fatal() {
    let library = library(1.0, 8).await;
    let server = serve(
        &library,
        Faults {
            missing: Some("r300k/3.m4s".into()),
            ..Faults::default()
        },
    )
    .await;
    let report = play(BenchConfig {
        bitrate: Some(Bitrate(300_000)),
        speed: 10.0,
        duration: Duration::from_secs(2),
        ..config(server.url("/v/clip/master.m3u8"))
    })
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert!(viewer.segments_failed >= 1, "{viewer:?}");
    assert!(viewer.error_kinds.get("http 404").copied().unwrap_or(0) >= 1);
    // 404 is permanent: not retried.
    assert_eq!(viewer.retries, 0);
    // Playback went on past the gap.
    assert!(viewer.records.iter().any(|r| r.index > 2));
    let summary = &report.summary;
    assert!(summary.segments_failed >= 1);
    assert!(summary.first_error.as_deref().unwrap().contains("404"));
    let table = kinema_bench::report::summary_table(&report);
    assert!(table.contains("http 404"), "{table}");
}

#[tokio::test]
async fn redirects_are_followed_and_a_missing_video_is_a_viewer_error() {
    let library = library(1.0, 6).await;
    let server = serve(&library, Faults::default()).await;
    let report = play(BenchConfig {
        speed: 10.0,
        duration: Duration::from_secs(1),
        ..config(server.url("/redirect/clip/master.m3u8"))
    })
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    // Relative URIs resolved against the redirected URL (/v/clip/...).
    assert!(viewer.segments >= 1, "{viewer:?}");
    assert_eq!(viewer.http_errors, 0);

    let report = play(BenchConfig {
        duration: Duration::from_secs(1),
        ..config(server.url("/v/nothing/master.m3u8"))
    })
    .await;
    let viewer = &report.viewers[0];
    assert!(
        viewer.fatal.as_deref().unwrap().contains("404"),
        "{viewer:?}"
    );
    assert_eq!(report.summary.viewers_failed, 1);
}

#[tokio::test]
async fn an_mpd_served_without_a_content_type_is_known_by_its_document() {
    // The test server sends no Content-Type at all, and the redirect hides
    // the extension of the URL the bench was given.
    let library = library(1.0, 6).await;
    let server = serve(&library, Faults::default()).await;
    let report = play(BenchConfig {
        bitrate: Some(Bitrate(800_000)),
        speed: 10.0,
        duration: Duration::from_secs(1),
        ..config(server.url("/redirect/clip/manifest.mpd"))
    })
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert!(viewer.segments >= 1, "{viewer:?}");
    assert!(viewer.records.iter().all(|r| r.bitrate == 800_000));
    assert_eq!(viewer.http_errors, 0);

    // A document that is neither format is a viewer error that says so.
    let report = play(BenchConfig {
        duration: Duration::from_secs(1),
        ..config(server.url("/v/clip/r300k/init.mp4"))
    })
    .await;
    let fatal = report.viewers[0].fatal.as_deref().unwrap();
    assert!(fatal.contains("neither an HLS playlist"), "{fatal}");
}

#[tokio::test]
async fn ramp_and_duration_are_honoured() {
    let library = library(1.0, 10).await;
    let server = serve(&library, Faults::default()).await;
    let viewers = 4u32;
    let ramp = Duration::from_secs(1);
    let duration = Duration::from_secs(2);
    let report = play(BenchConfig {
        viewers,
        ramp,
        duration,
        speed: 10.0,
        link: LinkSpec::Fixed(3_000_000),
        ..config(server.url("/v/clip/master.m3u8"))
    })
    .await;
    assert_eq!(report.viewers.len(), viewers as usize);
    let mut previous_start = -1.0;
    for viewer in &report.viewers {
        let slot = ramp.as_secs_f64() * f64::from(viewer.index) / f64::from(viewers);
        // Never before its slot in the ramp, in ramp order.
        assert!(viewer.started_at_wall >= slot - 1e-3, "{viewer:?}");
        assert!(viewer.started_at_wall > previous_start);
        previous_start = viewer.started_at_wall;
        // Every viewer played until the deadline, and nothing arrived after.
        assert_eq!(viewer.fatal, None);
        assert!(viewer.ended_at_wall >= duration.as_secs_f64(), "{viewer:?}");
        assert!(
            viewer
                .records
                .iter()
                .all(|r| r.arrived_at_wall <= viewer.ended_at_wall)
        );
        assert!(viewer.segments >= 1);
    }
    assert!(report.summary.wall_seconds >= duration.as_secs_f64());
}

#[tokio::test]
async fn a_shutdown_ends_the_run_early_with_a_report() {
    let library = library(1.0, 10).await;
    let server = serve(&library, Faults::default()).await;
    let report = run(
        BenchConfig {
            viewers: 2,
            duration: Duration::from_secs(600),
            speed: 10.0,
            ..config(server.url("/v/clip/master.m3u8"))
        },
        // Shut down once both viewers have fetched something.
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
        },
    )
    .await
    .unwrap();
    assert_eq!(report.viewers.len(), 2);
    assert!(report.summary.wall_seconds < 600.0);
}

#[tokio::test]
async fn remote_targets_are_refused_before_any_request() {
    let error = run(
        config("http://192.0.2.1/v/clip/master.m3u8".into()),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, BenchError::Target(_)), "{error:?}");
    assert!(error.to_string().contains("--allow-remote"), "{error}");
}

#[tokio::test]
async fn json_and_html_reports_are_written() {
    let library = library(1.0, 6).await;
    let server = serve(&library, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let report = play(BenchConfig {
        viewers: 3,
        link: "0.5mbit:50%,20mbit:50%".parse().unwrap(),
        speed: 10.0,
        duration: Duration::from_millis(2500),
        ..config(server.url("/v/clip/master.m3u8"))
    })
    .await;
    let json_path = out.path().join("run.json");
    kinema_bench::report::write_json(&report, &json_path).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(json["summary"]["viewers"], 3);
    assert_eq!(json["viewers"].as_array().unwrap().len(), 3);
    assert!(json["summary"]["startup_seconds"]["p50"].as_f64().unwrap() > 0.0);
    assert!(json["summary"]["client_cpu_seconds"].as_f64().unwrap() > 0.0);
    let html_path = out.path().join("run.html");
    kinema_bench::report::write_html(&report, &html_path).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("Startup time"));
}

/// The master playlist refused as `refusal` says.
fn refusing_the_master(
    first: u32,
    after_serving: Option<u32>,
    retry_after: Option<&str>,
) -> Faults {
    Faults {
        refusal: Some(Refusal {
            path: "master.m3u8".into(),
            first,
            after_serving,
            retry_after: retry_after.map(str::to_string),
        }),
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_refused_start_is_waited_out_and_counted_not_an_error() {
    let library = library(1.0, 10).await;
    let server = serve(&library, refusing_the_master(2, None, Some("1"))).await;
    // Real time: Retry-After counts wall seconds, and so does startup here.
    let report = play(BenchConfig {
        bitrate: Some(Bitrate(300_000)),
        duration: Duration::from_secs(4),
        ..config(server.url("/v/clip/master.m3u8"))
    })
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert!(viewer.admitted, "{viewer:?}");
    assert_eq!(viewer.refusals, 2, "{viewer:?}");
    assert_eq!(viewer.http_errors, 0, "{viewer:?}");
    assert_eq!(viewer.retries, 0);
    assert!(viewer.error_kinds.is_empty(), "{viewer:?}");
    assert!(viewer.segments >= 1, "{viewer:?}");
    // Startup runs from the first request, so it holds both waits.
    let startup = viewer.startup_seconds.expect("the viewer started playing");
    assert!(startup >= 2.0, "startup {startup} s after two 1 s waits");
    assert!(
        viewer.refused_seconds >= 2.0 && viewer.refused_seconds <= startup,
        "refused {} s, startup {startup} s",
        viewer.refused_seconds
    );
    let summary = &report.summary;
    assert_eq!(summary.refusals, 2);
    assert_eq!(summary.viewers_with_refusals, 1);
    assert_eq!(summary.viewers_admitted, 1);
    assert_eq!(summary.viewers_never_admitted, 0);
    assert_eq!(summary.http_errors, 0);
    assert!(summary.startup_seconds.p50 >= 2.0, "{summary:?}");
    let table = kinema_bench::report::summary_table(&report);
    assert!(
        table.contains("refused 2 attempts by 1 viewers")
            && table.contains("0 viewers never admitted"),
        "{table}"
    );
}

#[tokio::test]
async fn a_viewer_the_server_never_admits_is_reported_and_left_out_of_what_viewers_felt() {
    // Room for one session: the first viewer in plays, the other is
    // refused until the run ends.
    let library = library(1.0, 10).await;
    let server = serve(&library, refusing_the_master(0, Some(1), Some("1"))).await;
    let report = play(BenchConfig {
        viewers: 2,
        bitrate: Some(Bitrate(300_000)),
        speed: 10.0,
        duration: Duration::from_millis(2500),
        ..config(server.url("/v/clip/master.m3u8"))
    })
    .await;
    let (admitted, refused): (Vec<&ViewerReport>, Vec<&ViewerReport>) =
        report.viewers.iter().partition(|viewer| viewer.admitted);
    let ([admitted], [refused]) = (admitted.as_slice(), refused.as_slice()) else {
        panic!("one viewer admitted and one not: {:?}", report.viewers);
    };
    assert_eq!(refused.fatal, None, "never admitted is not a failure");
    assert!(refused.refusals >= 2, "{refused:?}");
    assert_eq!(refused.http_errors, 0, "{refused:?}");
    assert_eq!((refused.startup_seconds, refused.segments), (None, 0));
    assert!(refused.refused_seconds > 0.0, "{refused:?}");
    assert_eq!(admitted.refusals, 0);
    assert!(admitted.segments >= 1, "{admitted:?}");

    let summary = &report.summary;
    assert_eq!(summary.viewers_never_admitted, 1);
    assert_eq!(summary.viewers_admitted, 1);
    assert_eq!(summary.viewers_failed, 0);
    assert_eq!(summary.refusals, u64::from(refused.refusals));
    assert_eq!(summary.http_errors, 0);
    // What viewers felt is the admitted viewer's alone.
    let startup = admitted.startup_seconds.unwrap();
    assert!(
        (summary.startup_seconds.max - startup).abs() <= startup * 0.01 + 0.002,
        "{summary:?}"
    );
    assert_eq!(summary.average_bitrate_mean, admitted.average_bitrate);
    // The mean rung over time leaves out the viewer waiting to get in.
    assert!(!report.timeline.is_empty());
    for sample in &report.timeline {
        assert_eq!(sample.refused_viewers, 1, "{sample:?}");
        assert_eq!(sample.mean_selected_bitrate, 300_000.0, "{sample:?}");
    }

    let table = kinema_bench::report::summary_table(&report);
    assert!(table.contains("1 viewers never admitted"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["summary"]["viewers_never_admitted"], 1);
    assert_eq!(json["summary"]["refusals"], refused.refusals);
    assert_eq!(json["viewers"][refused.index as usize]["admitted"], false);
    let html = kinema_bench::report::html_report(&report).unwrap();
    assert!(
        html.contains("never admitted") && html.contains("Viewers over time"),
        "{html}"
    );
    // A capacity trial with a viewer left outside fails, and says why.
    let reason = kinema_bench::capacity::judge(summary, 1.0).unwrap_err();
    assert!(reason.contains("1 viewers never admitted"), "{reason}");
}

#[tokio::test]
async fn a_503_without_a_usable_retry_after_or_past_admission_is_an_error_not_a_refusal() {
    let library = library(1.0, 10).await;
    let refused_once = [
        // No Retry-After, or one that cannot be read, on the master.
        refusing_the_master(1, None, None),
        refusing_the_master(1, None, Some("soon")),
        // Retry-After on a segment: admitted sessions are always served,
        // so this is a server error like any other.
        Faults {
            refusal: Some(Refusal {
                path: "r300k/2.m4s".into(),
                first: 1,
                after_serving: None,
                retry_after: Some("1".into()),
            }),
            ..Faults::default()
        },
    ];
    for faults in refused_once {
        let server = serve(&library, faults.clone()).await;
        let report = play(BenchConfig {
            bitrate: Some(Bitrate(300_000)),
            speed: 10.0,
            duration: Duration::from_secs(1),
            ..config(server.url("/v/clip/master.m3u8"))
        })
        .await;
        let viewer = &report.viewers[0];
        assert_eq!(viewer.fatal, None, "{faults:?}: {viewer:?}");
        assert_eq!(viewer.refusals, 0, "{faults:?}: {viewer:?}");
        assert_eq!(viewer.http_errors, 1, "{faults:?}: {viewer:?}");
        assert_eq!(viewer.error_kinds.get("http 503"), Some(&1), "{faults:?}");
        // The retry policy fetched it again, and playback went on.
        assert_eq!(viewer.retries, 1, "{faults:?}: {viewer:?}");
        assert_eq!(viewer.segments_failed, 0, "{faults:?}: {viewer:?}");
        assert!(viewer.admitted && viewer.segments >= 2, "{faults:?}");
        assert_eq!(report.summary.refusals, 0);
    }
}
