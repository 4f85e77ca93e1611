//! Catalogue mode over loopback: viewers spread over several published
//! videos by Zipf popularity, each playing the video its URL names.

mod common;

use std::time::Duration;

use common::{Faults, config, play, serve};
use kinema_bench::synthetic::{SyntheticVideo, publish};
use kinema_bench::{BenchConfig, Bitrate};
use kinema_core::VideoId;

#[tokio::test]
async fn viewers_spread_over_the_catalogue_by_popularity() {
    let library = common::library(1.0, 4).await;
    for n in 1..=3 {
        let video = SyntheticVideo {
            id: VideoId::new(format!("video-{n}")).unwrap(),
            bitrates: vec![300_000],
            segment_seconds: 1.0,
            segments: 4,
        };
        publish(
            library.store.as_ref(),
            &library.dir.path().join(format!("staging-{n}")),
            &video,
        )
        .await
        .unwrap();
    }
    let server = serve(&library, Faults::default()).await;
    let report = play(BenchConfig {
        viewers: 40,
        catalogue: Some(3),
        zipf: 1.0,
        bitrate: Some(Bitrate(300_000)),
        speed: 10.0,
        duration: Duration::from_secs(1),
        ..config(server.url("/v/video-{video}/master.m3u8"))
    })
    .await;
    let mut counts = [0u32; 3];
    for viewer in &report.viewers {
        assert_eq!(viewer.fatal, None, "{viewer:?}");
        assert!(viewer.segments > 0);
        let rank = viewer.video.expect("a catalogue viewer names its video");
        counts[rank as usize - 1] += 1;
    }
    // Shares 6/11, 3/11, 2/11 of 40 viewers: the most popular video has
    // far more viewers than the least.
    assert!(counts[0] > counts[2] * 2, "{counts:?}");
    assert_eq!(counts.iter().sum::<u32>(), 40);
}

#[tokio::test]
async fn a_catalogue_without_its_placeholder_is_refused_before_any_request() {
    for (url, catalogue, expected) in [
        ("http://127.0.0.1:1/v/a/master.m3u8", Some(3), "{video}"),
        (
            "http://127.0.0.1:1/v/{video}/master.m3u8",
            None,
            "--catalogue",
        ),
        (
            "http://127.0.0.1:1/v/{video}/master.m3u8",
            Some(0),
            "catalogue",
        ),
    ] {
        let error = kinema_bench::run(
            BenchConfig {
                catalogue,
                ..config(url.into())
            },
            std::future::pending(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains(expected), "{url}: {error}");
    }
}
