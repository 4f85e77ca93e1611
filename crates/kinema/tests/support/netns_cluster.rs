//! The cluster as separate hosts, for ../cluster_netns.rs: an S3 server
//! (s3s-fs) holding the library, `kinema serve` over it, three `kinema edge`
//! nodes on one port (hls.js keeps a pathway URL's port) and a client, each
//! a network namespace with its own address on one bridge
//! (kinema_test_support::netns), all in one gossip cluster signed with a
//! cluster key. The test talks to the nodes from the client host.

#![allow(dead_code, reason = "each test uses a different part")]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kinema_test_support::S3Server;
use kinema_test_support::netns::{Host, Network};

use crate::cluster_nodes::{DEADLINE, Node, Reply, key_file, metric, pathway_of};

/// The hosts, in address order: 10.77.0.1 to .6.
pub const HOSTS: [&str; 6] = ["s3", "origin", "edge-a", "edge-b", "edge-c", "client"];
pub const EDGE_IDS: [&str; 3] = ["edge-a", "edge-b", "edge-c"];
/// Every node's HTTP port (each host is its own, so one port serves all).
pub const HTTP_PORT: u16 = 8080;
pub const GOSSIP_PORT: u16 = 7946;
pub const BUCKET: &str = "media";
pub const LIBRARY: &str = "s3://media/lib";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub s3: S3Server,
    pub keys: String,
    pub origin: Node,
    /// Indexed as [`EDGE_IDS`]; `None` while killed.
    pub edges: Vec<Option<Node>>,
    /// Dropped last: deleting the namespaces ends what still runs in them.
    pub network: Network,
}

/// `kinema` to be run on `host`, with no setting inherited from the test's
/// environment and the S3 server's credentials in the standard variables.
pub fn kinema_on(host: &Host, s3: &S3Server) -> Command {
    let mut command = host.command(env!("CARGO_BIN_EXE_kinema"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
        .env("KINEMA_S3_ENDPOINT", s3.endpoint());
    command
}

/// Runs `command` to its end, failing the test with its stderr if it fails.
pub fn run(command: &mut Command) {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    /// Makes the hosts and the S3 server, lets `publish` fill the library
    /// (from the origin's host), then starts the origin (with `web_root`
    /// when given) and the three edges, and waits until the origin's
    /// steering of `video` names all four nodes.
    pub fn start(
        video: &str,
        web_root: Option<&Path>,
        publish: impl FnOnce(&Publishing<'_>),
    ) -> Self {
        let network = Network::new(&HOSTS);
        let dir = tempfile::tempdir().unwrap();
        let keys = key_file(dir.path());
        let s3 = S3Server::start_on(network.host("s3"));
        s3.create_bucket(BUCKET);
        publish(&Publishing {
            origin: network.host("origin"),
            s3: &s3,
            dir: dir.path(),
        });
        let origin_host = network.host("origin");
        let mut serve = kinema_on(origin_host, &s3);
        serve
            .args(["--log", "info,kinema::cluster=debug"])
            .args(["serve", "--library", LIBRARY])
            .args(["--listen", &origin_host.socket(HTTP_PORT).to_string()])
            .args(["--cluster-node-id", "origin"])
            .args([
                "--cluster-gossip-listen",
                &origin_host.socket(GOSSIP_PORT).to_string(),
            ])
            .args(["--cluster-key-file", &keys])
            .args([
                "--cluster-public-url",
                &format!("http://{}", origin_host.socket(HTTP_PORT)),
            ])
            .current_dir(dir.path());
        match web_root {
            Some(root) => serve.arg("--web-root").arg(root),
            None => serve.args(["--web-root", "/nonexistent"]),
        };
        let origin = Node::start(&mut serve);
        origin.wait_for_line(&["joined the cluster", "node=origin"]);
        origin.wait_for_line(&["origin serving"]);
        let mut cluster = Self {
            dir,
            s3,
            keys,
            origin,
            edges: Vec::new(),
            network,
        };
        for index in 0..EDGE_IDS.len() {
            let edge = cluster.start_edge(index);
            cluster.edges.push(Some(edge));
        }
        let everyone: Vec<String> = std::iter::once("origin")
            .chain(EDGE_IDS)
            .map(pathway_of)
            .collect();
        cluster.steer_until(cluster.origin_http(), video, "named every node", |now| {
            everyone.iter().all(|pathway| now.contains(pathway))
        });
        cluster
    }

    pub fn host(&self, name: &str) -> &Host {
        self.network.host(name)
    }

    pub fn client(&self) -> &Host {
        self.network.host("client")
    }

    pub fn origin_http(&self) -> SocketAddr {
        self.host("origin").socket(HTTP_PORT)
    }

    pub fn edge_http(&self, index: usize) -> SocketAddr {
        self.host(EDGE_IDS[index]).socket(HTTP_PORT)
    }

    /// Starts edge `index` on its host (again, after a kill: same id, same
    /// address, an empty cache) and waits until it has joined the cluster.
    pub fn start_edge(&self, index: usize) -> Node {
        let id = EDGE_IDS[index];
        let host = self.host(id);
        let cache = self.dir.path().join(format!("cache-{id}"));
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache).unwrap();
        let http = host.socket(HTTP_PORT);
        let edge = Node::start(
            kinema_on(host, &self.s3)
                .args(["--log", "info,kinema::cluster=debug"])
                .args([
                    "edge",
                    "--origin",
                    &format!("http://{}", self.origin_http()),
                ])
                .args(["--listen", &http.to_string(), "--cluster-node-id", id])
                .args([
                    "--cluster-gossip-listen",
                    &host.socket(GOSSIP_PORT).to_string(),
                ])
                .args([
                    "--cluster-seeds",
                    &self.host("origin").socket(GOSSIP_PORT).to_string(),
                ])
                .args(["--cluster-key-file", &self.keys])
                .args(["--cluster-public-url", &format!("http://{http}")])
                .current_dir(&cache),
        );
        edge.wait_for_line(&["joined the cluster"]);
        edge
    }

    /// SIGKILLs edge `index` and waits for it to exit.
    pub fn kill_edge(&mut self, index: usize) {
        let mut edge = self.edges[index].take().expect("the edge runs");
        edge.child.kill().unwrap();
        edge.child.wait().unwrap();
    }

    /// `GET target` at `address`, from the client host.
    pub fn get(&self, address: SocketAddr, target: &str) -> Reply {
        get_from(self.client(), address, target)
    }

    /// The PATHWAY-PRIORITY of `/steer/{video}` at `node` (empty while it
    /// answers 503, before it has seen a node able to serve).
    pub fn priority(&self, node: SocketAddr, video: &str) -> Vec<String> {
        let reply = self.get(node, &format!("/steer/{video}"));
        if reply.status == 503 {
            return Vec::new();
        }
        assert_eq!(reply.status, 200, "{}", reply.head);
        reply.json()["PATHWAY-PRIORITY"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }

    /// Polls `node`'s steering of `video` until `wanted` accepts it, for at
    /// most [`DEADLINE`]; returns it and how long that took.
    pub fn steer_until(
        &self,
        node: SocketAddr,
        video: &str,
        what: &str,
        wanted: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, Duration) {
        self.steer_within(node, video, what, DEADLINE, wanted)
    }

    /// As [`Cluster::steer_until`], waiting at most `limit`.
    pub fn steer_within(
        &self,
        node: SocketAddr,
        video: &str,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, Duration) {
        let started = Instant::now();
        loop {
            let now = self.priority(node, video);
            if wanted(&now) {
                return (now, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "{node}'s steering of {video} never {what} within {limit:?}: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A counter of edge `index`'s `/metrics` (0 when absent).
    pub fn edge_counter(&self, index: usize, sample: &str) -> f64 {
        let text = self.get(self.edge_http(index), "/metrics").text();
        metric(&text, sample).unwrap_or(0.0)
    }
}

/// What `publish` gets: the origin's host and the S3 server, before the
/// nodes start.
pub struct Publishing<'a> {
    pub origin: &'a Host,
    pub s3: &'a S3Server,
    pub dir: &'a Path,
}

/// `GET target` over HTTP/1.1 at `address`, connecting from `from`.
pub fn get_from(from: &Host, address: SocketAddr, target: &str) -> Reply {
    let mut stream = from
        .connect(address, Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head from {address}{target}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let body = raw[split + 4..].to_vec();
    Reply { status, head, body }
}
