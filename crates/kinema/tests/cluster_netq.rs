//! Network-aware steering end to end, as a user runs it: `kinema serve`
//! with a `[cluster]` and three `kinema edge` nodes (127.0.0.2, .3 and .4,
//! one port). A viewer at 127.0.0.1 downloads segments through two of the
//! edges, its player reporting in CMCD (as hls.js and dash.js do) a fast
//! path through one and a slow one through the other. Each edge records
//! what its viewer reported, gossips a summary naming the viewer's /24,
//! and the origin, sending that viewer's first requests to edges (302),
//! then prefers the edge that measured best among the video's equally
//! loaded edges, counting those decisions as `network`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

#[path = "support/clip_library.rs"]
mod clip_library;

#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::{
    DEADLINE, Joined, Node, edge_with, get, key_file, kinema, metric, pathway_of, shared_port,
};

/// The viewer's prefix, as summaries name it.
const VIEWER_PREFIX: &str = "127.0.0.0/24";
/// Session starts sent to the origin: well past the 58 after which the
/// video's rate (58 × ln 2 / 20 s above 2 per second on the short
/// half-life) asks for all three edges (k = ⌈rate / 1⌉ = 3).
const STARTS: usize = 260;
/// The starts looked at: the last ones, when all three edges serve.
const LATE: usize = 70;

fn library(dir: &Path) -> String {
    let library = dir.join("library");
    std::fs::create_dir_all(&library).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(clip_library::publish(
        &library,
        &dir.join("staging"),
        "clip",
        kinema_core::AccessPolicy::Public,
    ));
    library.display().to_string()
}

/// The value after `name=` in a log line, up to a space.
fn gossip_seed(line: &str) -> String {
    let start = line.find("gossip=").expect("the line names the address") + "gossip=".len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .to_owned()
}

/// A player's CMCD query for a segment, hls.js's encoding: the dictionary
/// percent-encoded, keys sorted.
fn cmcd(throughput_kbps: u64) -> String {
    format!("CMCD=bl%3D8000%2Cbr%3D620%2Cmtp%3D{throughput_kbps}%2Cot%3Dv%2Csf%3Dh")
}

#[test]
fn the_origin_sends_a_viewer_to_the_edge_that_measured_best_for_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let library = library(dir.path());
    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let origin = Node::start(
        kinema()
            .args(["--log", "info,kinema::cluster=debug"])
            .args(["serve", "--library", &library, "--listen", &origin_http])
            .args(["--web-root", "/nonexistent", "--access-log", "false"])
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            // Every new session decided by measurement: none explores.
            .args(["--netq-exploration-share", "0"])
            .current_dir(dir.path()),
    );
    let joined = origin.wait_for_line(&["joined the cluster", "node=origin"]);
    let seed = gossip_seed(&joined);
    origin.wait_for_line(&["origin serving"]);

    let port = shared_port();
    let cluster = Joined {
        seed: &seed,
        keys: &keys,
    };
    let origin_url = format!("http://{origin_http}");
    let edges: Vec<(String, String, Node)> = ["edge-a", "edge-b", "edge-c"]
        .iter()
        .zip(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        .map(|(id, host)| {
            let listen = format!("{host}:{port}");
            let node = edge_with(
                dir.path(),
                id,
                &listen,
                &origin_url,
                &format!("http://{listen}"),
                cluster,
                &[],
            );
            (id.to_string(), listen, node)
        })
        .collect();
    for (id, _, _) in &edges {
        origin.wait_for_line(&["cluster member joined", &format!("node={id}")]);
    }

    // The video's placement head for a cold video: where placement alone
    // sends a first viewer. Measurement will make another edge the best.
    let head_pathway = {
        let started = std::time::Instant::now();
        loop {
            let reply = get(&origin_http, "/steer/clip", "");
            assert_eq!(reply.status, 200, "{}", reply.head);
            let priority = cluster_nodes::priority(&reply);
            if priority.len() == 4 {
                break priority[0].clone();
            }
            assert!(
                started.elapsed() < DEADLINE,
                "steering never ranked three edges: {priority:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let by_pathway: HashMap<String, (String, String)> = edges
        .iter()
        .map(|(id, listen, _)| (pathway_of(id), (id.clone(), listen.clone())))
        .collect();
    let (slow_id, slow_http) = by_pathway[&head_pathway].clone();
    let (fast_id, fast_http) = edges
        .iter()
        .find(|(id, _, _)| *id != slow_id)
        .map(|(id, listen, _)| (id.clone(), listen.clone()))
        .unwrap();
    println!("placement head {slow_id} (reported slow), fast: {fast_id}");

    // The viewer downloads segments through both, its player reporting
    // 40 Mbit/s through one and 0.9 Mbit/s through the other.
    for round in 0..4 {
        for (edge, kbps) in [(&fast_http, 40_000), (&slow_http, 900)] {
            let segment = format!("/v/clip/v180/{}.m4s?{}", 1 + round % 2, cmcd(kbps));
            let reply = get(edge, &segment, "");
            assert_eq!(reply.status, 200, "{edge}{segment}: {}", reply.head);
            assert_eq!(reply.body.len(), 90_000);
        }
    }
    for edge in [&fast_http, &slow_http] {
        let text = get(edge, "/metrics", "").text();
        assert_eq!(
            metric(&text, "kinema_edge_netq_cmcd_reports_total"),
            Some(4.0),
            "{text}"
        );
    }
    // Each edge's gossiped summary names the viewer's prefix, as the
    // origin reads it.
    let fast_summary = origin.wait_for_line(&[
        "cluster member network quality",
        &format!("node={fast_id}"),
        VIEWER_PREFIX,
    ]);
    origin.wait_for_line(&[
        "cluster member network quality",
        &format!("node={slow_id}"),
        VIEWER_PREFIX,
    ]);
    println!("{fast_summary}");

    // The viewer's first requests, as many as make the video hot: each a
    // 302 to the edge steering chooses.
    let mut chosen = Vec::new();
    for _ in 0..STARTS {
        let reply = get(&origin_http, "/v/clip/master.m3u8", "");
        assert_eq!(reply.status, 302, "{}", reply.head);
        let location = reply.header("location").unwrap().to_owned();
        let host = location
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .to_owned();
        chosen.push(host);
    }
    // Bounded load spreads a crowd: an edge takes new sessions up to
    // 1.25 times the average, counting those placed in the last 2 s. Among
    // the edges with room, the one that measured best goes first.
    let late = &chosen[STARTS - LATE..];
    let count = |http: &str| late.iter().filter(|host| *host == http).count();
    let fast = count(&fast_http);
    println!("last {LATE} redirects: {fast} to {fast_id}; all: {late:?}");
    for (id, http, _) in &edges {
        assert!(
            fast >= count(http) && fast * 3 > LATE,
            "{fast_id}, which measured best, got {fast} of the last {LATE} viewers, {id} {}: {late:?}",
            count(http)
        );
    }
    // Once the crowd's placements have aged out (2 s), the video still
    // hot: a new session of the viewer goes to the edge that measured best,
    // ahead of the placement head it reported slow.
    // Three times, so that placement's spreading of a hot video's sessions
    // (one of its three edges by session id) would miss at least once.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(2_200));
        let reply = get(&origin_http, "/steer/clip", "");
        let priority = cluster_nodes::priority(&reply);
        assert_eq!(priority[0], pathway_of(&fast_id), "{priority:?}");
    }
    let metrics = get(&origin_http, "/metrics", "").text();
    let network = metric(
        &metrics,
        "kinema_origin_steering_decisions_total{reason=\"network\"}",
    )
    .unwrap_or_else(|| panic!("no network decisions counted in:\n{metrics}"));
    assert!(network >= 1.0, "{metrics}");
    assert!(
        metric(&metrics, "kinema_origin_netq_prefixes").is_some(),
        "the origin shows its own table: {metrics}"
    );
}
