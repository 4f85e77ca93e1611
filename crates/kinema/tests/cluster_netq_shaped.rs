//! Network-aware steering from `TCP_INFO` alone, on separate hosts (network
//! namespaces on one bridge, support/netns_cluster.rs): the S3 server, the
//! origin, three edges and a client. Two edges' links are shaped by `tc`
//! tbf, one to 40 Mbit/s and one to 4 Mbit/s; the client downloads segments
//! through both with no CMCD at all. Each edge's listener samples its
//! viewer's connections after large responses, gossips a summary naming
//! the client's /24, and the origin then sends the client's new sessions of
//! the hot video to the faster edge.
//!
//! Needs root (CI runs as root), iproute2 and s3s-fs (scripts/test
//! installs it); a missing piece fails the test with what to do.

use std::time::{Duration, Instant};

#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;
#[path = "support/netns_cluster.rs"]
mod netns_cluster;

use cluster_nodes::{DEADLINE, metric, pathway_of};
use netns_cluster::{Cluster, EDGE_IDS, LIBRARY, kinema_on, run};

/// The client's prefix on the bridge (10.77.0.0/24), as summaries name it.
const CLIENT_PREFIX: &str = "10.77.0.0/24";
/// Session starts sent to the origin: well past the 58 after which the
/// video's rate (58 × ln 2 / 20 s above 2 per second on the short
/// half-life) asks for all three edges.
const STARTS: usize = 260;
/// The starts looked at: the last ones, when all three edges serve.
const LATE: usize = 70;
/// Segments of the one rung (1.2 Mbit/s × 2 s = 300 kB, past the 256 KiB a
/// response needs before its connection is sampled).
const SEGMENTS: u32 = 12;

/// Shapes what `edge` sends to the bridge to `rate`, with `burst` bytes.
fn shape(cluster: &Cluster, edge: &str, rate: &str, burst: &str) {
    run(cluster.host(edge).command("tc").args([
        "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", burst, "latency",
        "200ms",
    ]));
}

/// The edge's `TCP_INFO` samples kept so far.
fn samples(cluster: &Cluster, index: usize) -> f64 {
    cluster.edge_counter(index, "kinema_edge_netq_tcp_samples_total")
}

#[test]
fn tcp_info_of_shaped_links_steers_a_viewer_to_the_faster_edge() {
    let cluster = Cluster::start("v1", None, |publishing| {
        // The origin decides every new session by measurement: none explores.
        std::fs::write(
            publishing.dir.join("kinema.toml"),
            "[netq]\nexploration_share = 0.0\n",
        )
        .unwrap();
        run(kinema_on(publishing.origin, publishing.s3)
            .args(["bench", "library", "--library", LIBRARY, "--id", "v1"])
            .args(["--bitrates", "1.2mbit", "--segment", "2s"])
            .args(["--segments", &SEGMENTS.to_string()]));
    });
    let (fast, slow) = (0, 1);
    shape(&cluster, EDGE_IDS[fast], "40mbit", "32kb");
    shape(&cluster, EDGE_IDS[slow], "4mbit", "4kb");

    // The rung's segment URLs, from its media playlist, read through the
    // third edge: a master fetched at an edge is a session there, which
    // bounded load counts against it.
    let master = cluster.get(cluster.edge_http(2), "/v/v1/master.m3u8");
    assert_eq!(master.status, 200, "{}", master.head);
    let master = master.text();
    let media = master
        .lines()
        .find(|line| !line.starts_with('#') && line.ends_with(".m3u8"))
        .unwrap_or_else(|| panic!("no media playlist in\n{master}"));
    let media_url = media
        .find("/v/")
        .map_or_else(|| format!("/v/v1/{media}"), |at| media[at..].to_owned());
    let directory = &media_url[..media_url.rfind('/').unwrap() + 1];
    let playlist = cluster.get(cluster.edge_http(2), &media_url);
    assert_eq!(playlist.status, 200, "{}", playlist.head);
    let segments: Vec<String> = playlist
        .text()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| format!("{directory}{line}"))
        .collect();
    assert_eq!(segments.len(), SEGMENTS as usize, "{}", playlist.text());

    // The client downloads through both shaped edges until each kept a few
    // samples (one large response in four is sampled; a miss streams its
    // fill and is not).
    let started = Instant::now();
    let mut downloads = 0;
    while samples(&cluster, fast) < 3.0 || samples(&cluster, slow) < 3.0 {
        assert!(
            started.elapsed() < DEADLINE * 4,
            "after {downloads} downloads through each edge, samples kept: {} and {}",
            samples(&cluster, fast),
            samples(&cluster, slow)
        );
        let segment = &segments[downloads % segments.len()];
        for edge in [fast, slow] {
            let reply = cluster.get(cluster.edge_http(edge), segment);
            assert_eq!(reply.status, 200, "{segment}: {}", reply.head);
        }
        downloads += 1;
    }
    println!(
        "{downloads} downloads through each edge; samples kept {} and {}",
        samples(&cluster, fast),
        samples(&cluster, slow)
    );
    // Both summaries name the client's prefix, as the origin reads them;
    // the fast edge's with about ten times the throughput.
    let mut kbps = Vec::new();
    for index in [fast, slow] {
        let line = cluster.origin.wait_for_line(&[
            "cluster member network quality",
            &format!("node={}", EDGE_IDS[index]),
            CLIENT_PREFIX,
        ]);
        let entry = line
            .split_whitespace()
            .map(|word| word.trim_start_matches("summary="))
            .find(|word| word.len() > 1 && word[1..].starts_with(CLIENT_PREFIX))
            .unwrap_or_else(|| panic!("no entry for {CLIENT_PREFIX} in {line}"));
        let throughput: u64 = entry.split(',').nth(1).unwrap().parse().unwrap();
        println!("{}: {entry}", EDGE_IDS[index]);
        kbps.push(throughput);
    }
    assert!(
        kbps[0] > 2 * kbps[1] && kbps[1] < 6_000,
        "40 and 4 Mbit/s links measured {kbps:?} kbit/s"
    );

    // The client's first requests, as many as make the video hot.
    let mut chosen = Vec::new();
    for _ in 0..STARTS {
        let reply = cluster.get(cluster.origin_http(), "/v/v1/master.m3u8");
        assert_eq!(reply.status, 302, "{}", reply.head);
        chosen.push(reply.header("location").unwrap().to_owned());
    }
    let late = &chosen[STARTS - LATE..];
    let count = |index: usize| {
        late.iter()
            .filter(|url| url.contains(&cluster.edge_http(index).to_string()))
            .count()
    };
    let counts: Vec<usize> = (0..3).map(count).collect();
    println!("last {LATE} redirects by edge: {counts:?}");
    assert!(
        counts[fast] >= counts[slow] && counts[fast] >= counts[2] && counts[fast] * 3 > LATE,
        "the faster edge got {counts:?} of the last {LATE} viewers"
    );
    // With the crowd's placements aged out (2 s), a new session of the
    // client goes to the faster edge, three times running.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(2_200));
        let priority = cluster.priority(cluster.origin_http(), "v1");
        assert_eq!(priority[0], pathway_of(EDGE_IDS[fast]), "{priority:?}");
    }
    let text = cluster.get(cluster.origin_http(), "/metrics").text();
    let network = metric(
        &text,
        "kinema_origin_steering_decisions_total{reason=\"network\"}",
    );
    assert!(network.is_some_and(|count| count >= 1.0), "{text}");
}
