//! A purge reaches every edge of a cluster, as a user runs it: one
//! `kinema serve` and three `kinema edge` nodes on 127.0.0.2, .3 and .4,
//! joined in one cluster and sharing one purge token. An object cached on
//! all three, one purge at one edge: all three miss next time; the answer
//! lists each other edge's outcome; a purge scoped to one node, or sent on
//! by another edge, stays on that node; a wrong token purges nothing. A
//! purge at the origin's `POST /api/purge` (admin token) reaches all three
//! with the edges' token the origin holds (`--cluster-purge-token`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

#[path = "support/clip_library.rs"]
mod clip_library;
#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::*;

const TOKEN: &str = "purge-secret-for-tests";
/// A generation URL: cached for good, so only a purge removes it.
const SEGMENT: &str = "/v/clip/g1700000000000/v180/1.m4s";
/// Asks an edge for its stored copy only: 504 when it has none (RFC 9111
/// §5.2.1.7), so looking never fills the cache.
const ONLY_IF_CACHED: &str = "Cache-Control: only-if-cached\r\n";

/// `method target` over HTTP/1.1 with `extra` header lines and a body.
fn send(address: &str, method: &str, target: &str, extra: &str, body: &str) -> Reply {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// The status of `SEGMENT` from each edge's cache alone.
fn cached(addresses: &[String]) -> Vec<u16> {
    addresses
        .iter()
        .map(|address| get(address, SEGMENT, ONLY_IF_CACHED).status)
        .collect()
}

/// Fetches `SEGMENT` through every edge, so each stores a copy.
fn fill_all(addresses: &[String]) {
    for address in addresses {
        let reply = get(address, SEGMENT, "");
        assert_eq!(reply.status, 200, "{address}: {}", reply.head);
    }
    assert_eq!(cached(addresses), [200, 200, 200]);
}

/// A new token of `scope` in `tokens`; its secret.
fn api_token(tokens: &Path, scope: &str) -> String {
    let output = kinema()
        .args(["tokens", "new", "--scope", scope, "--tokens"])
        .arg(tokens)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn library(dir: &Path) -> String {
    let library = dir.join("library");
    std::fs::create_dir_all(&library).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(clip_library::publish(
            &library,
            &dir.join("staging"),
            "clip",
            kinema_core::AccessPolicy::Public,
        ));
    library.display().to_string()
}

#[test]
fn one_purge_at_one_edge_empties_all_three() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let library = library(dir.path());
    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let tokens = dir.path().join("api-tokens.toml");
    let admin = api_token(&tokens, "admin");
    let writer = api_token(&tokens, "write");
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library, "--listen", &origin_http])
            .arg("--tokens")
            .arg(&tokens)
            .args(["--cluster-purge-token", TOKEN])
            .args(["--web-root", "/nonexistent", "--access-log", "true"])
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let seed = gossip_address(&origin.wait_for_line(&["joined the cluster", "node=origin"]));
    origin.wait_for_line(&["origin serving"]);

    let port = shared_port();
    let ids = ["edge-a", "edge-b", "edge-c"];
    let addresses: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|host| format!("{host}:{port}"))
        .collect();
    let joined = Joined {
        seed: &seed,
        keys: &keys,
    };
    let origin_url = format!("http://{origin_http}");
    let mut edges: Vec<Node> = ids
        .iter()
        .zip(&addresses)
        .map(|(id, listen)| {
            let public_url = format!("http://{listen}");
            // No prefetch: every fill counted below is one asked for.
            let flags = ["--purge-token", TOKEN, "--prefetch-segments", "0"];
            edge_with(
                dir.path(),
                id,
                listen,
                &origin_url,
                &public_url,
                joined,
                &flags,
            )
        })
        .collect();
    for address in &addresses {
        steer_until(address, "saw the whole cluster", |now| now.len() == 4);
    }

    // Cached on all three, then one purge at the first: all three miss.
    fill_all(&addresses);
    // Placement as /metrics shows it: the two edges that are not the
    // video's parent filled from it; the parent filled once from the
    // origin, for a viewer of its own or for one of the others.
    let total = |name: &str| -> f64 {
        addresses
            .iter()
            .map(|address| edge_metric(address, name))
            .sum()
    };
    assert_eq!(total("kinema_edge_placement_parent_fills_total"), 2.0);
    assert_eq!(
        total("kinema_edge_placement_led_fills_total")
            + total("kinema_edge_placement_hop_guarded_total"),
        1.0
    );
    assert_eq!(total("kinema_edge_placement_parent_failures_total"), 0.0);
    let reply = send(&addresses[0], "PURGE", "/v/clip/*", &bearer(TOKEN), "");
    assert_eq!(reply.status, 200, "{}", reply.head);
    let answer = reply.json();
    println!("purge answer: {answer}");
    assert!(answer["purged"].as_u64().unwrap() >= 1, "{answer}");
    assert_eq!(answer["failed"], 0, "{answer}");
    let nodes = answer["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["edge-b", "edge-c"], "{answer}");
    for node in nodes {
        assert_eq!(node["status"], 200, "{answer}");
        assert!(node["purged"].as_u64().unwrap() >= 1, "{answer}");
    }
    assert_eq!(cached(&addresses), [504, 504, 504]);
    assert_eq!(
        edge_metric(&addresses[0], "kinema_edge_purge_fanout_sent_total"),
        2.0
    );
    assert_eq!(
        edge_metric(&addresses[0], "kinema_edge_purge_fanout_failed_total"),
        0.0
    );
    // The edges that received it sent it on to nobody.
    for address in &addresses[1..] {
        assert_eq!(
            edge_metric(address, "kinema_edge_purge_fanout_sent_total"),
            0.0
        );
        assert_eq!(edge_metric(address, "kinema_edge_purges_total"), 1.0);
    }

    // The JSON endpoint at another edge does the same.
    fill_all(&addresses);
    let body = format!(r#"{{"url": "{SEGMENT}"}}"#);
    let extra = format!("{}Content-Type: application/json\r\n", bearer(TOKEN));
    let reply = send(&addresses[2], "POST", "/_kinema/purge", &extra, &body);
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.json()["failed"], 0, "{}", reply.text());
    assert_eq!(cached(&addresses), [504, 504, 504]);

    // Scoped to one node: the others keep their copies.
    fill_all(&addresses);
    let scoped = format!("{}Kinema-Purge-Scope: node\r\n", bearer(TOKEN));
    let reply = send(&addresses[1], "PURGE", SEGMENT, &scoped, "");
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(reply.json().get("nodes").is_none(), "{}", reply.text());
    assert_eq!(cached(&addresses), [200, 504, 200]);

    // A wrong token purges nothing anywhere.
    fill_all(&addresses);
    let reply = send(&addresses[0], "PURGE", SEGMENT, &bearer("wrong"), "");
    assert_eq!(reply.status, 401, "{}", reply.head);
    assert_eq!(cached(&addresses), [200, 200, 200]);

    // At the origin, with an admin token: every edge purges.
    fill_all(&addresses);
    let sent_on = || -> Vec<f64> {
        addresses
            .iter()
            .map(|address| edge_metric(address, "kinema_edge_purge_fanout_sent_total"))
            .collect()
    };
    let sent_before = sent_on();
    let json = "Content-Type: application/json\r\n";
    let body = r#"{"url": "/v/clip/", "prefix": true}"#;
    let extra = format!("{}{json}", bearer(&admin));
    let reply = send(&origin_http, "POST", "/api/purge", &extra, body);
    assert_eq!(reply.status, 200, "{}", reply.head);
    let answer = reply.json();
    println!("purge answer at the origin: {answer}");
    assert_eq!(answer["manifests"], 1, "{answer}");
    assert_eq!(answer["failed"], 0, "{answer}");
    let nodes = answer["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ids, "{answer}");
    for node in nodes {
        assert_eq!(node["status"], 200, "{answer}");
        assert!(node["purged"].as_u64().unwrap() >= 1, "{answer}");
    }
    assert_eq!(cached(&addresses), [504, 504, 504]);
    // Received from the origin, sent on by no edge.
    assert_eq!(sent_on(), sent_before);
    // A write token, no token, or a body that is no purge: nothing purged.
    fill_all(&addresses);
    let extra = format!("{}{json}", bearer(&writer));
    let reply = send(&origin_http, "POST", "/api/purge", &extra, body);
    assert_eq!(reply.status, 403, "{}", reply.head);
    let reply = send(&origin_http, "POST", "/api/purge", json, body);
    assert_eq!(reply.status, 401, "{}", reply.head);
    let extra = format!("{}{json}", bearer(&admin));
    let reply = send(
        &origin_http,
        "POST",
        "/api/purge",
        &extra,
        r#"{"url": "v/clip/"}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.head);
    let reply = send(
        &origin_http,
        "POST",
        "/api/purge",
        &extra,
        r#"{"path": "/v/"}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.head);
    assert_eq!(cached(&addresses), [200, 200, 200]);

    // An edge that is down misses the purge; the answer says so unless
    // membership has already dropped it.
    edges[2].child.kill().unwrap();
    edges[2].child.wait().unwrap();
    let reply = send(&addresses[0], "PURGE", SEGMENT, &bearer(TOKEN), "");
    assert_eq!(reply.status, 200, "{}", reply.head);
    let answer = reply.json();
    println!("purge answer with edge-c down: {answer}");
    for node in answer["nodes"].as_array().unwrap() {
        let down = node["node"] == "edge-c";
        assert_eq!(node.get("error").is_some(), down, "{answer}");
    }
    let failed = answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node.get("error").is_some())
        .count();
    assert_eq!(answer["failed"], failed, "{answer}");
    assert_eq!(cached(&addresses[..2]), [504, 504]);
    drop(edges);
}
