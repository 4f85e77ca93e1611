//! Upstream selection is a part the edge is built with: a selector given
//! through `EdgeParts` chooses where each miss is fetched from, is told the
//! video and the object of the request, and hears of each upstream that
//! failed (what a cluster's placement-driven selector needs).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scripted::{Origin, ok};
use common::{Edge, cache_status, get};
use http::StatusCode;
use kinema_edge::upstream::{Upstream, UpstreamFailure, UpstreamRequest, UpstreamSelector};
use tokio::net::TcpListener;

/// Tries a dead upstream first, then the origin; records what it was asked
/// and told.
#[derive(Debug)]
struct DeadFirst {
    dead: Upstream,
    origin: Upstream,
    asked: Mutex<Vec<(String, String, Option<String>)>>,
    failures: Mutex<Vec<(String, UpstreamFailure)>>,
}

impl UpstreamSelector for DeadFirst {
    fn select(&self, request: &UpstreamRequest<'_>) -> Vec<Upstream> {
        self.asked.lock().unwrap().push((
            request.path_and_query.to_string(),
            request.key.to_string(),
            request.video_id.map(str::to_string),
        ));
        vec![self.dead.clone(), self.origin.clone()]
    }

    fn report_failure(&self, upstream: &Upstream, failure: UpstreamFailure) {
        self.failures
            .lock()
            .unwrap()
            .push((upstream.authority().to_string(), failure));
    }

    fn healthy_count(&self) -> u64 {
        1
    }
}

#[tokio::test]
async fn a_selector_in_the_parts_chooses_the_upstreams_and_hears_of_failures() {
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "segment")).await;
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments: 0,
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    };
    let selector = Arc::new(DeadFirst {
        dead: Upstream::parse(&dead_url).unwrap(),
        origin: Upstream::parse(&origin.url()).unwrap(),
        asked: Mutex::default(),
        failures: Mutex::default(),
    });
    let mut parts = kinema_edge::EdgeParts::open(&config).await.unwrap();
    parts.upstreams = selector.clone();
    let edge =
        Edge::spawn(|listener, shutdown| kinema_edge::run_with(config, parts, listener, shutdown))
            .await;

    let (status, headers, body) = get(edge.address, "/v/abc/360p/1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"segment");
    assert!(
        cache_status(&headers).contains("fwd=uri-miss"),
        "{headers:?}"
    );
    // A hit asks no selector.
    let (_, headers, _) = get(edge.address, "/v/abc/360p/1.m4s", &[]).await;
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");

    assert_eq!(
        *selector.asked.lock().unwrap(),
        [(
            "/v/abc/360p/1.m4s".to_string(),
            "/v/abc/360p/1.m4s".to_string(),
            Some("abc".to_string())
        )]
    );
    let dead_authority = dead_url.trim_start_matches("http://").to_string();
    assert_eq!(
        *selector.failures.lock().unwrap(),
        [(dead_authority, UpstreamFailure::Connect)]
    );
    assert_eq!(origin.count("/v/abc/360p/1.m4s"), 1);
    assert_eq!(edge.metric("kinema_edge_origins_healthy").await, 1);
    edge.stop().await;
    origin.kill().await;
}
