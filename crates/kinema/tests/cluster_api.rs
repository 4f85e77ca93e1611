//! `GET /api/cluster` as an admin sees it: `{"cluster": false}` from a
//! single origin, and from an origin with two edges that joined it (on
//! 127.0.0.2 and 127.0.0.3, one port, as `cluster_steering.rs` starts
//! them) every member with its status, region and figures, the node that
//! answered marked as this node, the edges' cache figures fetched from
//! their `/metrics`, and a killed edge shown dead.
//! The browser's view of the same cluster is `web/tests/cluster.mjs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/clip_library.rs"]
mod clip_library;
#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::{DEADLINE, Node, edge, key_file, kinema, shared_port};

/// The address after `name=` in a log line.
fn address_in(line: &str, name: &str) -> String {
    let start = line.find(&format!("{name}=")).expect("the line names it") + name.len() + 1;
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .to_owned()
}

fn free_address() -> String {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

/// `GET target` over HTTP/1.1 with `token`: the status and the body.
fn get(address: &str, target: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (head[9..12].parse().unwrap(), raw[split + 4..].to_vec())
}

fn cluster(address: &str, token: &str) -> serde_json::Value {
    let (status, body) = get(address, "/api/cluster", Some(token));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Polls `/api/cluster` until `wanted` accepts it.
fn cluster_until(
    address: &str,
    token: &str,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let answer = cluster(address, token);
        if wanted(&answer) {
            return answer;
        }
        assert!(started.elapsed() < DEADLINE, "never {what}: {answer:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node<'a>(answer: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    answer["nodes"]
        .as_array()?
        .iter()
        .find(|node| node["node_id"] == id)
}

/// An admin token and a read-only one in `dir/tokens.toml`.
fn tokens(dir: &Path) -> (PathBuf, String, String) {
    let file = dir.join("tokens.toml");
    let issue = |name: &str, scope: &str| {
        let output = kinema()
            .args([
                "tokens", "new", "--scope", scope, "--name", name, "--tokens",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let admin = issue("root", "admin");
    let read = issue("viewer", "read");
    (file, admin, read)
}

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

/// `web/tests/cluster.mjs`, started on the admin page of `base`: it prints
/// `healthy` once both edges show ok, then waits for `dead_edge` to show dead.
fn browser(base: &str, token: &str, dead_edge: &str, shots: &Path) -> Child {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new("node")
        .arg(root.join("web/tests/cluster.mjs"))
        .args(["--base", base, "--token", token, "--dead", dead_edge])
        .arg("--screenshots")
        .arg(shots)
        .current_dir(root.join("web"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs")
}

#[test]
fn a_single_origin_says_there_is_no_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, admin, read) = tokens(dir.path());
    let library = library(dir.path());
    let address = free_address();
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library, "--listen", &address])
            .args(["--web-root", "/nonexistent", "--tokens"])
            .arg(&tokens)
            .current_dir(dir.path()),
    );
    origin.wait_for_line(&["origin serving"]);
    assert_eq!(
        cluster(&address, &admin),
        serde_json::json!({"cluster": false})
    );
    // Admin scope only: none is 401, read is 403.
    assert_eq!(get(&address, "/api/cluster", None).0, 401);
    assert_eq!(get(&address, "/api/cluster", Some(&read)).0, 403);
}

#[test]
fn the_cluster_lists_its_nodes_and_a_killed_edge_shows_dead() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let (tokens, admin, read) = tokens(dir.path());
    let library = library(dir.path());
    let origin_http = free_address();
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library, "--listen", &origin_http])
            .args(["--web-root"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist"))
            .arg("--tokens")
            .arg(&tokens)
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-region", "eu-west"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let joined = origin.wait_for_line(&["joined the cluster", "node=origin"]);
    let seed = address_in(&joined, "gossip");
    origin.wait_for_line(&["origin serving"]);
    assert_eq!(get(&origin_http, "/api/cluster", Some(&read)).0, 403);

    let port = shared_port();
    let (a_http, b_http) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    let _edge_a = edge(dir.path(), "edge-a", &a_http, &origin_http, &seed, &keys);
    let mut edge_b = edge(dir.path(), "edge-b", &b_http, &origin_http, &seed, &keys);
    origin.wait_for_line(&["cluster member joined", "node=edge-a"]);
    origin.wait_for_line(&["cluster member joined", "node=edge-b"]);

    // One segment twice through edge-a: a miss, then a hit from memory.
    for _ in 0..2 {
        assert_eq!(get(&a_http, "/v/clip/v180/1.m4s", None).0, 200);
    }
    let answer = cluster_until(&origin_http, &admin, "listed both edges ok", |answer| {
        ["edge-a", "edge-b"]
            .iter()
            .all(|id| node(answer, id).is_some_and(|node| node["status"] == "ok"))
    });
    assert_eq!(answer["cluster"], true);
    assert_eq!(answer["nodes"].as_array().unwrap().len(), 3, "{answer:#}");
    let origin_node = node(&answer, "origin").unwrap();
    assert_eq!(origin_node["role"], "origin");
    assert_eq!(origin_node["public_url"], format!("http://{origin_http}"));
    assert_eq!(origin_node["cache"], serde_json::Value::Null);
    // Where each member is, and which one answered.
    assert_eq!(origin_node["region"], "eu-west", "{origin_node}");
    assert_eq!(origin_node["this_node"], true, "{origin_node}");
    for id in ["edge-a", "edge-b"] {
        let edge = node(&answer, id).unwrap();
        assert_eq!(edge["region"], "default", "{edge}");
        assert_eq!(edge["this_node"], false, "{edge}");
    }
    let a = node(&answer, "edge-a").unwrap();
    assert_eq!(a["role"], "edge");
    assert_eq!(a["public_url"], format!("http://{a_http}"));
    assert!(
        a["load"]
            .as_f64()
            .is_some_and(|load| (0.0..=1.0).contains(&load))
    );
    assert!(a["sessions"].is_u64() && a["capacity_bps"].is_u64(), "{a}");
    assert_eq!(a["cache"]["hit_ratio"], 0.5, "{a}");
    assert!(
        a["cache"]["memory_bytes"].is_u64() && a["cache"]["disk_bytes"].is_u64(),
        "{a}"
    );
    let b = node(&answer, "edge-b").unwrap();
    assert_eq!(b["cache"]["hit_ratio"], 0.0, "{b}");
    assert_eq!(b["cache"]["memory_bytes"], 0, "{b}");
    // Gossiped egress, once published (every member publishes it).
    cluster_until(&origin_http, &admin, "published egress", |answer| {
        answer["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| node["egress_bps"].is_u64())
    });

    // The browser, when present, sees the same and then the kill.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots/cluster");
    std::fs::create_dir_all(&shots).unwrap();
    let mut page = browser(&format!("http://{origin_http}"), &admin, "edge-b", &shots);
    let mut page_out = BufReader::new(page.stdout.take().unwrap());
    let mut line = String::new();
    page_out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "healthy",
        "cluster.mjs did not see both edges ok"
    );

    edge_b.child.kill().unwrap();
    edge_b.child.wait().unwrap();
    let answer = cluster_until(&origin_http, &admin, "showed edge-b dead", |answer| {
        node(answer, "edge-b").is_none_or(|node| node["status"] == "dead")
    });
    if let Some(b) = node(&answer, "edge-b") {
        assert_eq!(b["cache"], serde_json::Value::Null, "{b}");
        assert_eq!(b["egress_bps"], serde_json::Value::Null, "{b}");
    }
    assert_eq!(node(&answer, "edge-a").unwrap()["status"], "ok");

    let mut rest = String::new();
    page_out.read_to_string(&mut rest).unwrap();
    let status = page.wait().unwrap();
    assert!(status.success(), "cluster.mjs failed: {rest}");
    assert!(rest.contains("dead shown"), "{rest}");
    // The page named the origin as the node answering, and showed regions.
    let report: serde_json::Value =
        serde_json::from_str(rest.lines().last().expect("a report line")).expect("JSON");
    let healthy = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["step"] == "both edges read ok")
        .expect("the healthy step");
    assert_eq!(healthy["this_node"], "origin", "{healthy}");
    let region_of = |id: &str| {
        healthy["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|row| row["id"] == id)
            .map(|row| row["region"].clone())
    };
    assert_eq!(region_of("origin"), Some("eu-west".into()), "{healthy}");
    assert_eq!(region_of("edge-a"), Some("default".into()), "{healthy}");
}
