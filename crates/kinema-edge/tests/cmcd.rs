//! CMCD at the edge over real HTTP: a player's `CMCD` query parameter and
//! `CMCD-*` headers are recorded in the edge's network-quality table and
//! counted in `/metrics`, yet a segment asked for with and without them is
//! one cache entry and one origin fetch, and the origin never sees them.
//! The listener's `TCP_INFO` sampler runs after a large body too.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::scripted::{Origin, Reply};
use common::{Edge, cache_status, get};
use http::StatusCode;

const SEGMENT: &str = "/v/clip/360p/1.m4s";
const SEGMENT_BYTES: usize = 512 * 1024;

async fn origin() -> Origin {
    Origin::start(|_, _| -> Reply {
        (
            StatusCode::OK,
            vec![("cache-control", "max-age=60".to_string())],
            Bytes::from(vec![7u8; SEGMENT_BYTES]),
        )
    })
    .await
}

async fn measuring_edge(origin: &Origin) -> Edge {
    let config = kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments: 0,
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    };
    Edge::spawn(|listener, shutdown| async move {
        let measuring =
            kinema_netq::Measuring::new(kinema_netq::AggregatorConfig::default(), 64 * 1024, 1);
        let parts = kinema_edge::EdgeParts::open(&config)
            .await?
            .with_network(measuring);
        kinema_edge::run_with(config, parts, listener, shutdown).await
    })
    .await
}

#[tokio::test]
async fn cmcd_is_counted_but_never_splits_the_cache_nor_goes_upstream() {
    let origin = origin().await;
    let edge = measuring_edge(&origin).await;
    // hls.js sends CMCD as a query parameter (percent-encoded dictionary).
    let with_query = format!("{SEGMENT}?CMCD=bl%3D21300%2Cbr%3D800%2Cmtp%3D25400%2Cot%3Dv");
    let (status, headers, body) = get(edge.address, &with_query, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), SEGMENT_BYTES);
    assert!(cache_status(&headers).contains("miss"), "{headers:?}");
    // The same segment without CMCD, and with dash.js's header form.
    let (status, headers, _) = get(edge.address, SEGMENT, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    let (status, headers, _) = get(
        edge.address,
        SEGMENT,
        &[
            ("cmcd-request", "bl=9000,mtp=18000"),
            ("cmcd-object", "ot=v"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    // One origin fetch, for the bare path, with no CMCD header.
    let seen = origin.seen.lock().unwrap().clone();
    let fetches: Vec<&String> = seen
        .iter()
        .map(|(_, uri, _)| uri)
        .filter(|uri| uri.starts_with("/v/"))
        .collect();
    assert_eq!(fetches, [SEGMENT], "{seen:?}");
    for (_, _, headers) in &seen {
        assert!(
            headers
                .keys()
                .all(|name| !name.as_str().starts_with("cmcd")),
            "{headers:?}"
        );
    }
    assert_eq!(edge.metric("kinema_edge_netq_cmcd_reports_total").await, 2);
    assert_eq!(edge.metric("kinema_edge_netq_prefixes").await, 1);
    // Three 512 KiB bodies went out: the sampler read TCP_INFO after those
    // whose length was known as they went (the hits; a miss streams its
    // fill), keeping the sample or dropping it as app-limited (loopback is
    // rarely the limit).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let taken = edge.metric("kinema_edge_netq_tcp_samples_total").await
            + edge.metric("kinema_edge_netq_tcp_app_limited_total").await;
        if taken >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{taken} TCP_INFO samples of 2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.stop().await;
}
