//! Edges in a cluster, as a user runs them: one `kinema serve` and three
//! `kinema edge` nodes on 127.0.0.2, .3 and .4 with one port (players that
//! clone a pathway swap the host only), joined in one cluster.
//!
//! - a flash crowd on the three edges costs the origin one fetch per object
//!   (each edge fills from the video's placement parent, the parent from
//!   the origin);
//! - `/steer/clip` on every edge answers the same priority for one
//!   session's state;
//! - a viewer's master from an edge carries `EXT-X-CONTENT-STEERING` and a
//!   variant set per live edge, sent `no-store`; a kinema node asking gets
//!   the stored file;
//! - a SIGKILLed edge leaves the others' steering and their parent choice.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Instant;

#[path = "support/clip_library.rs"]
mod clip_library;
#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use clip_library::MASTER;
use cluster_nodes::*;

/// Concurrent viewers per object in the flash crowd.
const CROWD: usize = 200;
/// Videos besides `clip`, so some video's parent is the edge killed.
const OTHER_VIDEOS: usize = 12;

fn other_video(n: usize) -> String {
    format!("other-{n}")
}

/// A library directory holding `clip` and [`OTHER_VIDEOS`] more.
fn library(dir: &Path) -> String {
    let library = dir.join("library");
    std::fs::create_dir_all(&library).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids = std::iter::once("clip".to_string()).chain((0..OTHER_VIDEOS).map(other_video));
    for (n, id) in ids.enumerate() {
        runtime.block_on(clip_library::publish(
            &library,
            &dir.join(format!("staging-{n}")),
            &id,
            kinema_core::AccessPolicy::Public,
        ));
    }
    library.display().to_string()
}

/// `CROWD` viewers per target at once, spread over `edges`; every answer
/// must be a 200.
fn flash_crowd(edges: &[String], targets: &[String]) {
    let total = CROWD * targets.len();
    let barrier = Arc::new(Barrier::new(total));
    let threads: Vec<_> = (0..total)
        .map(|n| {
            let edge = edges[n % edges.len()].clone();
            let target = targets[n % targets.len()].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let reply = get(&edge, &target, "");
                assert_eq!(reply.status, 200, "{edge}{target}: {}", reply.head);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("every viewer got a 200");
    }
}

#[test]
fn edges_fill_from_one_parent_steer_alike_and_forget_a_killed_edge() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let library = library(dir.path());

    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library, "--listen", &origin_http])
            .args(["--web-root", "/nonexistent", "--access-log", "true"])
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
    let ids = ["edge-a", "edge-b", "edge-c"];
    let addresses: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|host| format!("{host}:{port}"))
        .collect();
    let mut edges: Vec<Node> = ids
        .iter()
        .zip(&addresses)
        .map(|(id, http)| edge(dir.path(), id, http, &origin_http, &seed, &keys))
        .collect();
    let pathways: HashMap<&str, String> = ids.iter().map(|id| (*id, pathway_of(id))).collect();
    let origin_pathway = pathway_of("origin");

    // Every edge steers over all three edges and the origin before the
    // crowd comes, so every edge places each video on the same parent.
    for address in &addresses {
        steer_until(address, "saw the whole cluster", |now| {
            now.len() == 4 && ids.iter().all(|id| now.contains(&pathways[id]))
        });
    }

    // (a) A flash crowd on one new video: one origin fetch per object.
    let objects: Vec<String> = ["index.m3u8", "init.mp4", "1.m4s", "2.m4s"]
        .iter()
        .map(|file| format!("/v/clip/v180/{file}"))
        .collect();
    let before: Vec<usize> = objects.iter().map(|o| origin.fetches_of(o)).collect();
    assert_eq!(before, [0, 0, 0, 0]);
    flash_crowd(&addresses, &objects);
    // Prefetches of the next segment may still be on their way: they join
    // the same fills, so waiting for one log line per object is enough.
    for object in &objects {
        origin.wait_for_line(&["kinema::access", &format!("path={object} ")]);
    }
    let fetches: Vec<usize> = objects.iter().map(|o| origin.fetches_of(o)).collect();
    println!(
        "origin fetches per object after {} requests each over three edges: {fetches:?}",
        CROWD
    );
    assert_eq!(fetches, [1, 1, 1, 1], "{objects:?}");

    // (b) One session's state gets the same priority from every edge.
    let first = get(&addresses[0], "/steer/clip", "");
    let reload = first.json()["RELOAD-URI"].as_str().unwrap().to_owned();
    let session = reload.split_once('?').unwrap().1.to_owned();
    let answers: Vec<Vec<String>> = addresses
        .iter()
        .map(|address| priority(&get(address, &format!("/steer/clip?{session}"), "")))
        .collect();
    println!("one session's priority on each edge: {answers:?}");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(answers[0].last(), Some(&origin_pathway));
    let head = get(&addresses[1], "/steer/clip", "");
    assert_eq!(head.header("cache-control"), Some("no-store"));
    // Any well-formed id is steered; a malformed one is no video.
    assert_eq!(get(&addresses[1], "/steer/nosuch", "").status, 200);
    assert_eq!(get(&addresses[1], "/steer/no.such", "").status, 404);

    // (c) A viewer's master: steered, one variant set per live edge.
    let master = get(&addresses[2], "/v/clip/master.m3u8", "");
    assert_eq!(master.status, 200, "{}", master.head);
    assert_eq!(master.header("cache-control"), Some("no-store"));
    assert!(master.header("etag").is_none(), "{}", master.head);
    let text = master.text();
    assert!(
        text.contains("#EXT-X-CONTENT-STEERING:SERVER-URI="),
        "{text}"
    );
    for id in ids {
        let variant = format!("PATHWAY-ID=\"{}\"", pathways[id]);
        let variants = text
            .lines()
            .filter(|line| line.starts_with("#EXT-X-STREAM-INF:") && line.contains(&variant))
            .count();
        assert_eq!(variants, 1, "{id}: {text}");
    }
    let mpd = get(&addresses[2], "/v/clip/manifest.mpd", "");
    assert_eq!(mpd.status, 200, "{}", mpd.head);
    assert!(mpd.text().contains("<ContentSteering"), "{}", mpd.text());
    // Generation URLs and media playlists are never rewritten.
    let playlist = get(&addresses[2], "/v/clip/v180/index.m3u8", "");
    assert!(!playlist.text().contains("STEERING"));
    // (e) A kinema node asking gets the stored file.
    let stored = get(&addresses[2], "/v/clip/master.m3u8", "Via: 1.1 kinema\r\n");
    assert_eq!(stored.status, 200, "{}", stored.head);
    assert_eq!(stored.text(), MASTER);
    // The edge's /metrics: membership, steering, sessions started.
    let text = get(&addresses[2], "/metrics", "").text();
    assert_eq!(metric(&text, "kinema_edge_cluster_live_members"), Some(4.0));
    assert!(metric(&text, "kinema_edge_steering_rewrites_total").unwrap() >= 2.0);
    assert_eq!(
        metric(&text, "kinema_edge_sessions_started_total"),
        Some(2.0)
    );

    // (d) A SIGKILLed edge leaves the others' steering and parent choice.
    let killed_at = Instant::now();
    edges[0].child.kill().unwrap();
    edges[0].child.wait().unwrap();
    for address in &addresses[1..] {
        let now = steer_until(address, "dropped the killed edge", |now| {
            !now.contains(&pathways["edge-a"])
        });
        println!(
            "{address} dropped the killed edge after {:?}: {now:?}",
            killed_at.elapsed()
        );
    }
    let retries_before: Vec<f64> = addresses[1..]
        .iter()
        .map(|edge| edge_metric(edge, "kinema_edge_origin_retries_total"))
        .collect();
    for n in 0..OTHER_VIDEOS {
        for address in &addresses[1..] {
            let reply = get(address, &format!("/v/{}/v180/init.mp4", other_video(n)), "");
            assert_eq!(reply.status, 200, "{}", reply.head);
        }
    }
    let retries_after: Vec<f64> = addresses[1..]
        .iter()
        .map(|edge| edge_metric(edge, "kinema_edge_origin_retries_total"))
        .collect();
    // A fill sent to the dead edge would have been retried on the origin.
    assert_eq!(retries_before, retries_after);
    for n in 0..OTHER_VIDEOS {
        let object = format!("/v/{}/v180/init.mp4", other_video(n));
        assert_eq!(origin.fetches_of(&object), 1, "{object}");
    }
    drop(edges);
}
