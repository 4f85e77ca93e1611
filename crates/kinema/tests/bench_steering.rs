//! `kinema bench` against a real cluster, as a user runs both: `kinema
//! serve` over a synthetic library (`kinema bench library`) and two `kinema
//! edge` nodes that joined its cluster, on 127.0.0.2 and 127.0.0.3 with one
//! port. Viewers start at the origin's stable URLs, follow its 302 to an
//! edge and the edge's content steering (DASH and HLS); when the edge
//! serving them is SIGKILLed mid-run they move to the other pathway with
//! no viewer error, and the report gives each one's failover stall.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::{DEADLINE, Node, edge, gossip_address, key_file, kinema, metric, shared_port};

/// `GET target` over HTTP/1.1: status, head and body.
fn get(address: &str, target: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}

/// Starts `kinema bench` on `url` for `duration`, writing its JSON report
/// to `json`.
#[allow(
    clippy::zombie_processes,
    reason = "the caller waits for the child with a deadline"
)]
fn bench(url: &str, duration: &str, json: &Path) -> Child {
    kinema()
        .args(["bench", url, "--viewers", "4", "--bitrate", "0.3mbit"])
        .args([
            "--duration",
            duration,
            "--speed",
            "2",
            "--progress",
            "false",
        ])
        .arg("--json")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kinema bench runs")
}

/// Waits for `child` to exit within `limit`; returns its stdout, stderr.
fn finish(mut child: Child, limit: Duration) -> (String, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "kinema bench failed: {err}\n{out}");
            return (out, err);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kinema bench did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn requests_at(edge: &str) -> f64 {
    let (_, _, text) = get(edge, "/metrics");
    metric(&text, "kinema_edge_requests_total").unwrap_or(0.0)
}

#[test]
fn bench_viewers_follow_steering_and_fail_over_when_their_edge_dies() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let library = dir.path().join("library");
    let published = kinema()
        .args(["bench", "library", "--library"])
        .arg(&library)
        .args(["--id", "clip", "--bitrates", "0.3mbit,0.8mbit"])
        .args(["--segment", "1s", "--segments", "30"])
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );

    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let origin = Node::start(
        kinema()
            .args(["serve", "--library"])
            .arg(&library)
            .args(["--listen", &origin_http, "--web-root", "/nonexistent"])
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let joined = origin.wait_for_line(&["joined the cluster", "node=origin"]);
    let seed = gossip_address(&joined);
    origin.wait_for_line(&["origin serving"]);
    let port = shared_port();
    let (a_http, b_http) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    let mut edges = [
        edge(dir.path(), "edge-a", &a_http, &origin_http, &seed, &keys),
        edge(dir.path(), "edge-b", &b_http, &origin_http, &seed, &keys),
    ];
    origin.wait_for_line(&["cluster member joined", "node=edge-a"]);
    origin.wait_for_line(&["cluster member joined", "node=edge-b"]);
    // Wait until a viewer's master is sent to an edge (both edges ranked).
    let started = Instant::now();
    while get(&origin_http, "/v/clip/master.m3u8").0 != 302 {
        assert!(started.elapsed() < DEADLINE, "the origin never redirected");
        std::thread::sleep(Duration::from_millis(100));
    }

    // DASH: through the 302 and the edge's ContentSteering.
    let dash_json = dir.path().join("dash.json");
    let dash = bench(
        &format!("http://{origin_http}/v/clip/manifest.mpd"),
        "3s",
        &dash_json,
    );
    finish(dash, DEADLINE);
    let dash = report(&dash_json);
    let summary = &dash["summary"];
    assert_eq!(summary["viewers_failed"], 0, "{summary}");
    assert_eq!(summary["segments_failed"], 0, "{summary}");
    assert_eq!(summary["steering"]["steered_viewers"], 4, "{summary}");
    assert!(summary["steering"]["steering_requests"].as_u64().unwrap() >= 4);
    assert_eq!(summary["steering"]["warnings"], 0, "{summary}");

    // HLS, and the edge the viewers play from dies mid-run.
    let hls_json = dir.path().join("hls.json");
    // The edge steering sends viewers to now (the first in priority, for
    // every session while both are healthy).
    let (status, head, _) = get(&origin_http, "/v/clip/master.m3u8");
    assert_eq!(status, 302, "{head}");
    let serving = usize::from(head.contains(&format!("http://{b_http}/")));
    assert!(
        head.contains(&format!("http://{}/", [&a_http, &b_http][serving])),
        "{head}"
    );
    let before = requests_at([&a_http, &b_http][serving]);
    let hls = bench(
        &format!("http://{origin_http}/v/clip/master.m3u8"),
        "14s",
        &hls_json,
    );
    let started = Instant::now();
    // Playlists, inits and a few segments for each of the 4 viewers.
    while requests_at([&a_http, &b_http][serving]) - before < 24.0 {
        assert!(
            started.elapsed() < DEADLINE,
            "the edge never served the viewers"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = [&a_http, &b_http][serving].clone();
    let survivor = [&a_http, &b_http][1 - serving].clone();
    edges[serving].child.kill().unwrap();
    edges[serving].child.wait().unwrap();
    let (table, _) = finish(hls, DEADLINE * 2);
    println!("{table}");
    let hls = report(&hls_json);
    let summary = &hls["summary"];
    assert_eq!(summary["viewers_failed"], 0, "{summary}");
    assert_eq!(summary["segments_failed"], 0, "{summary}");
    assert_eq!(summary["steering"]["steered_viewers"], 4, "{summary}");
    let failed_over = summary["steering"]["viewers_failed_over"].as_u64().unwrap();
    assert!(failed_over >= 1, "{summary}");
    assert!(summary["steering"]["switches_by_failure"].as_u64().unwrap() >= failed_over);
    assert!(
        summary["steering"]["failover_stall_seconds"]["max"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let pathways = &summary["steering"]["pathways"];
    assert!(
        pathways[&killed]["errors"].as_u64().unwrap() >= 1,
        "{pathways}"
    );
    assert!(
        pathways[&survivor]["bytes"].as_u64().unwrap() > 0,
        "{pathways}"
    );
    for viewer in hls["viewers"].as_array().unwrap() {
        if viewer["pathway_switches_by_failure"].as_u64().unwrap() > 0 {
            let stalls = viewer["failover_stall_seconds"].as_array().unwrap();
            assert!(!stalls.is_empty(), "{viewer}");
        }
    }
    assert!(table.contains("failover"), "{table}");
}
