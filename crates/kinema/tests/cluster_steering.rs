//! A viewer's URL in a cluster, as a user runs it: `kinema serve` with a
//! `[cluster]` and two `kinema edge` nodes that joined it, on loopback
//! addresses of their own (127.0.0.2 and 127.0.0.3, one port, as players
//! that swap only the host expect). The origin sends a viewer's request for
//! a master playlist to an edge (302) and gives edges the stored file;
//! `/steer/{id}` ranks the edges; a killed edge and a draining one drop out
//! of the ranking; `/metrics` shows membership, steering, and the figures
//! the nodes gossip.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/clip_library.rs"]
mod clip_library;

#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use clip_library::{GENERATION, MASTER};
use cluster_nodes::{DEADLINE, Node, edge, get, key_file, kinema, metric, pathway_of, shared_port};

/// The value after `name=` in a log line, up to a space.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next()
}

fn address_in(line: &str, name: &str) -> String {
    field(line, name)
        .expect("the line names the address")
        .trim_matches(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .to_owned()
}

/// Polls `/steer/clip` until its `PATHWAY-PRIORITY` satisfies `wanted`.
fn steer_until(origin: &str, what: &str, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let reply = get(origin, "/steer/clip", "");
        assert_eq!(reply.status, 200, "{}", reply.head);
        let priority: Vec<String> = reply.json()["PATHWAY-PRIORITY"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect();
        if wanted(&priority) {
            return priority;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "steering never {what}: {priority:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A library directory holding video `clip`.
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

#[test]
fn viewers_are_sent_to_edges_and_steering_follows_membership() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let library = library(dir.path());

    // The origin's public URL must be known before it listens: take a free
    // port, then let the origin bind it.
    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let mut origin = Node::start(
        kinema()
            .args(["serve", "--library", &library, "--listen", &origin_http])
            .args(["--web-root", "/nonexistent"])
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let joined = origin.wait_for_line(&["joined the cluster", "node=origin"]);
    let seed = address_in(&joined, "gossip");
    origin.wait_for_line(&["origin serving"]);

    // Before any edge: the origin serves the master itself.
    let alone = get(&origin_http, "/v/clip/master.m3u8", "");
    assert_eq!(alone.status, 200, "{}", alone.head);

    let port = shared_port();
    let (a_http, b_http) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    let mut edge_a = edge(dir.path(), "edge-a", &a_http, &origin_http, &seed, &keys);
    let mut edge_b = edge(dir.path(), "edge-b", &b_http, &origin_http, &seed, &keys);
    origin.wait_for_line(&["cluster member joined", "node=edge-a"]);
    origin.wait_for_line(&["cluster member joined", "node=edge-b"]);
    let (a_path, b_path, origin_path) = (
        pathway_of("edge-a"),
        pathway_of("edge-b"),
        pathway_of("origin"),
    );
    let both = steer_until(&origin_http, "ranked both edges first", |priority| {
        priority.len() == 3
            && priority[..2].contains(&a_path)
            && priority[..2].contains(&b_path)
            && priority[2] == origin_path
    });
    println!("pathways with both edges: {both:?}");

    // A viewer's master: a 302 to the edge steering ranks first.
    let redirected = get(&origin_http, "/v/clip/master.m3u8", "");
    assert_eq!(redirected.status, 302, "{}", redirected.head);
    assert_eq!(redirected.header("cache-control"), Some("no-store"));
    let location = redirected.header("location").unwrap().to_owned();
    let first_edge = if both[0] == a_path { &a_http } else { &b_http };
    assert_eq!(
        location,
        format!("http://{first_edge}/v/clip/master.m3u8"),
        "{}",
        redirected.head
    );
    // The DASH entry point too, query kept.
    let mpd = get(&origin_http, "/v/clip/manifest.mpd?x=1", "");
    assert_eq!(mpd.status, 302, "{}", mpd.head);
    assert!(
        mpd.header("location")
            .unwrap()
            .ends_with("/v/clip/manifest.mpd?x=1")
    );
    // A kinema node asking gets the stored file, and so does the viewer
    // following the redirect (the edge fills from the origin with Via).
    let through = get(&origin_http, "/v/clip/master.m3u8", "Via: 1.1 kinema\r\n");
    assert_eq!(through.status, 200, "{}", through.head);
    assert_eq!(through.body, MASTER.as_bytes());
    // The edge answers the master itself, as stored or rewritten for
    // steering by the edge: no redirect loop between nodes.
    let at_edge = get(first_edge, "/v/clip/master.m3u8", "");
    assert_eq!(at_edge.status, 200, "{}", at_edge.head);
    let text = String::from_utf8(at_edge.body).unwrap();
    assert!(
        text.starts_with("#EXTM3U\n") && text.contains("v180/index.m3u8\n"),
        "{text}"
    );
    // Generation URLs and media are never redirected.
    for target in [
        format!("/v/clip/g{GENERATION}/master.m3u8"),
        "/v/clip/v180/1.m4s".into(),
    ] {
        let direct = get(&origin_http, &target, "");
        assert_eq!(direct.status, 200, "{target}: {}", direct.head);
    }
    // Egress through the first edge, for the figures below.
    for n in [1, 2, 1, 2] {
        let segment = get(first_edge, &format!("/v/clip/v180/{n}.m4s"), "");
        assert_eq!(segment.status, 200, "{}", segment.head);
    }

    // The steering manifest, HLS by default.
    let steer = get(&origin_http, "/steer/clip", "");
    assert_eq!(steer.status, 200, "{}", steer.head);
    assert_eq!(steer.header("content-type"), Some("application/json"));
    assert_eq!(steer.header("cache-control"), Some("no-store"));
    assert_eq!(steer.header("access-control-allow-origin"), Some("*"));
    let manifest = steer.json();
    assert_eq!(manifest["VERSION"], 1);
    let ttl = manifest["TTL"].as_u64().unwrap();
    assert!((10..=30).contains(&ttl), "{manifest}");
    let reload = manifest["RELOAD-URI"].as_str().unwrap();
    assert!(
        [&a_http, &b_http, &origin_http]
            .iter()
            .any(|node| reload.starts_with(&format!("http://{node}/steer/clip?session="))),
        "{reload}"
    );
    assert!(manifest.get("SERVICE-LOCATION-PRIORITY").is_none());
    // Following RELOAD-URI at the origin keeps the session's pathway.
    let session_query = reload.split_once('?').unwrap().1;
    let reloaded = get(&origin_http, &format!("/steer/clip?{session_query}"), "").json();
    assert_eq!(
        reloaded["PATHWAY-PRIORITY"][0],
        manifest["PATHWAY-PRIORITY"][0]
    );
    let dash = get(&origin_http, "/steer/clip?proto=dash", "");
    assert_eq!(dash.status, 200, "{}", dash.head);
    let dash = dash.json();
    assert_eq!(dash["VERSION"], 1);
    assert!(
        dash["RELOAD-URI"]
            .as_str()
            .unwrap()
            .ends_with("&proto=dash")
    );
    assert_eq!(dash["SERVICE-LOCATION-PRIORITY"], dash["PATHWAY-PRIORITY"]);
    let unknown = get(&origin_http, "/steer/unknown", "");
    assert_eq!(unknown.status, 404, "{}", unknown.head);

    // /metrics: membership, steering, and the edges' gossiped figures.
    let started = Instant::now();
    let text = loop {
        let text = String::from_utf8(get(&origin_http, "/metrics", "").body).unwrap();
        let egress = metric(
            &text,
            &format!(
                "kinema_origin_cluster_member_egress_bits_per_second{{node=\"{}\"}}",
                if first_edge == &a_http {
                    "edge-a"
                } else {
                    "edge-b"
                }
            ),
        );
        if egress.is_some_and(|bits| bits > 0.0) {
            println!(
                "an edge's egress reached the origin after {:?}",
                started.elapsed()
            );
            break text;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the edge's egress never reached the origin:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        metric(&text, "kinema_origin_cluster_live_members"),
        Some(3.0)
    );
    assert!(metric(&text, "kinema_origin_steering_redirects_total").unwrap() >= 2.0);
    assert!(metric(&text, "kinema_origin_steering_manifests_total").unwrap() >= 4.0);
    let decisions: f64 = text
        .lines()
        .filter(|line| line.starts_with("kinema_origin_steering_decisions_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(decisions >= 6.0, "{text}");
    assert!(
        metric(
            &text,
            "kinema_origin_requests_total{route=\"steering\",status=\"3xx\"}"
        )
        .is_some_and(|count| count >= 2.0),
        "{text}"
    );
    // The origin admitted sessions (the Via requests): the edges hear of them.
    let line = edge_a.wait_for("with the origin's sessions", |line| {
        line.contains("cluster member figures")
            && line.contains("node=origin")
            && field(line, "sessions").is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n >= 1))
    });
    println!("edge-a heard: {line}");

    // A killed edge leaves the ranking.
    let killed_at = Instant::now();
    edge_a.child.kill().unwrap();
    edge_a.child.wait().unwrap();
    let after_kill = steer_until(&origin_http, "dropped the killed edge", |priority| {
        !priority.contains(&a_path)
    });
    println!(
        "a killed edge left PATHWAY-PRIORITY after {:?}: {after_kill:?}",
        killed_at.elapsed()
    );
    assert_eq!(after_kill, [b_path.clone(), origin_path.clone()]);
    let now_b = get(&origin_http, "/v/clip/master.m3u8", "");
    assert_eq!(
        now_b.header("location"),
        Some(format!("http://{b_http}/v/clip/master.m3u8").as_str())
    );

    // A draining edge leaves it too, and exits cleanly.
    let drained_at = Instant::now();
    edge_b.signal("-TERM");
    let after_drain = steer_until(&origin_http, "dropped the draining edge", |priority| {
        !priority.contains(&b_path)
    });
    println!(
        "a draining edge left PATHWAY-PRIORITY after {:?}: {after_drain:?}",
        drained_at.elapsed()
    );
    assert_eq!(after_drain, [origin_path]);
    let status = edge_b.wait_exit();
    assert!(status.success(), "edge-b exited with {status}");
    // With no edge left the origin serves viewers itself again.
    let last = get(&origin_http, "/v/clip/master.m3u8", "");
    assert_eq!(last.status, 200, "{}", last.head);
    assert_eq!(last.body, MASTER.as_bytes());

    origin.signal("-TERM");
    let status = origin.wait_exit();
    assert!(status.success(), "the origin exited with {status}");
}
