//! CMCD from a real player: hls.js (web/src/player.js, as the watch page
//! sets it up) plays an ingested clip through `kinema edge` in front of
//! `kinema serve` in headless Chromium (web/tests/cmcd.mjs), sending CMCD
//! with its requests, and the edge counts those reports and keeps the
//! viewer's prefix in its network-quality table.
//!
//! Needs what `scripts/install-deps` provides: ffmpeg, node, Chromium at
//! /usr/bin/chromium and the built web UI (web/node_modules, web/dist). A
//! missing piece fails the test with the command that provides it.

use std::net::TcpListener;

use serde_json::Value;

#[allow(
    dead_code,
    reason = "the player tests' support; this test uses its fixture only"
)]
#[path = "support/players_support.rs"]
mod players_support;

#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::{Node, edge_metric, kinema};
use players_support::{Fixture, VIDEO_ID, run_node};

#[test]
fn hls_js_sends_cmcd_that_the_edge_counts() {
    let fixture = Fixture::new();
    let origin = fixture.serve();
    let edge_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let edge = Node::start(
        kinema()
            .args(["edge", "--origin", &format!("http://{}", origin.address)])
            .args(["--listen", &edge_http])
            .current_dir(fixture.dir.path()),
    );
    edge.wait_for_line(&["edge serving"]);

    let url = format!("http://{edge_http}/v/{VIDEO_ID}/master.m3u8");
    let output = run_node("web/tests/cmcd.mjs", &["--url", &url, "--timeout", "90"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cmcd.mjs: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let requests = report["requests"].as_array().unwrap();
    let with_cmcd = requests
        .iter()
        .filter(|request| !request["cmcd"].is_null())
        .count();
    // Checked here rather than trusted from the script: segments carried
    // the player's measured throughput and buffer.
    let segments_reporting = requests
        .iter()
        .filter(|request| request["path"].as_str().unwrap().ends_with(".m4s"))
        .filter(|request| {
            let keys: Vec<&str> = request["cmcd"]
                .as_array()
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            keys.contains(&"mtp") && keys.contains(&"bl")
        })
        .count();
    assert!(segments_reporting >= 1, "{stdout}");
    let counted = edge_metric(&edge_http, "kinema_edge_netq_cmcd_reports_total");
    println!("{with_cmcd} requests carried CMCD, the edge counted {counted}");
    assert!(
        counted >= 1.0 && counted <= with_cmcd as f64,
        "the edge counted {counted} CMCD reports of {with_cmcd} sent: {stdout}"
    );
    assert_eq!(edge_metric(&edge_http, "kinema_edge_netq_prefixes"), 1.0);
}
