//! What the cluster tests (../cluster_edges.rs, ../cluster_players.rs,
//! ../cluster_steering.rs, ../cluster_api.rs, ../bench_steering.rs) share: `kinema` processes with their log lines collected, a small
//! HTTP/1.1 client, the cluster key file, an edge joined to a cluster, and
//! the pathway ids players see, computed by coreutils rather than kinema.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn kinema() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

/// A `kinema` process whose log lines are collected as they come.
pub struct Node {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    joined: mpsc::Receiver<String>,
}

impl Node {
    #[allow(
        clippy::zombie_processes,
        reason = "the child is killed and waited for on drop"
    )]
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("kinema runs");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, joined) = mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
            }
        });
        Self {
            child,
            lines,
            joined,
        }
    }

    /// The first log line `wanted` accepts, waiting for it; `what` names it
    /// in the failure.
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.lines.lock().unwrap().iter().find(|line| wanted(line)) {
            return line.clone();
        }
        let started = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            let Ok(line) = self.joined.recv_timeout(left) else {
                panic!(
                    "no log line {what} within {DEADLINE:?}; seen:\n{}",
                    self.lines.lock().unwrap().join("\n")
                );
            };
            if wanted(&line) {
                return line;
            }
        }
    }

    /// The first log line containing every one of `parts`, waiting for it.
    pub fn wait_for_line(&self, parts: &[&str]) -> String {
        self.wait_for(&format!("with {parts:?}"), |line| {
            parts.iter().all(|part| line.contains(part))
        })
    }

    /// Sends `signal` (`-TERM`, `-KILL`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most [`DEADLINE`]) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < DEADLINE, "kinema did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Access-log lines of the origin for exactly `path`.
    pub fn fetches_of(&self, path: &str) -> usize {
        let wanted = format!("path={path} ");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("kinema::access") && line.contains(&wanted))
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn gossip_address(line: &str) -> String {
    let start = line.find("gossip=").expect("the line names the address") + "gossip=".len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .to_owned()
}

/// The pathway id players see for `node_id` (`n` and the first ten hex
/// digits of SHA-256 over "kinema-pathway\0" and the id), computed by
/// coreutils, not by kinema.
pub fn pathway_of(node_id: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) runs");
    let mut input = b"kinema-pathway\0".to_vec();
    input.extend_from_slice(node_id.as_bytes());
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    format!("n{}", &String::from_utf8(output.stdout).unwrap()[..10])
}

/// A port free on 127.0.0.2, .3 and .4, for the three edges.
pub fn shared_port() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.3", port)).is_ok()
            && TcpListener::bind(("127.0.0.4", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no port free on 127.0.0.2, .3 and .4");
}

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET target` over HTTP/1.1, with `extra` header lines.
pub fn get(address: &str, target: &str, extra: &str) -> Reply {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n"
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
    let body = raw[split + 4..].to_vec();
    Reply { status, head, body }
}

pub fn priority(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.head);
    reply.json()["PATHWAY-PRIORITY"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// A sample of the exposition text (`name{labels}` as written).
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

pub fn edge_metric(edge: &str, sample: &str) -> f64 {
    let text = get(edge, "/metrics", "").text();
    metric(&text, sample).unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
}

pub fn key_file(dir: &Path) -> String {
    let path = dir.join("cluster.keys");
    std::fs::write(&path, format!("1 {}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

pub fn edge(dir: &Path, id: &str, listen: &str, origin: &str, seed: &str, keys: &str) -> Node {
    let origin = format!("http://{origin}");
    let joined = Joined { seed, keys };
    edge_with(
        dir,
        id,
        listen,
        &origin,
        &format!("http://{listen}"),
        joined,
        &[],
    )
}

/// The cluster an edge joins: a seed's gossip address and the key file.
#[derive(Clone, Copy)]
pub struct Joined<'a> {
    pub seed: &'a str,
    pub keys: &'a str,
}

/// An edge of `cluster` filling from `origin` (a URL), reached by other
/// nodes at `public_url`, with `extra` flags; returned once it listens, so
/// a first request is never refused (a test that asked at once failed so).
pub fn edge_with(
    dir: &Path,
    id: &str,
    listen: &str,
    origin: &str,
    public_url: &str,
    cluster: Joined<'_>,
    extra: &[&str],
) -> Node {
    let cache = dir.join(format!("cache-{id}"));
    std::fs::create_dir_all(&cache).unwrap();
    let host = listen.split(':').next().unwrap();
    let node = Node::start(
        kinema()
            // Other members' figures are logged at debug, once a second.
            .args(["--log", "info,kinema::cluster=debug"])
            .args(["edge", "--origin", origin])
            .args(["--listen", listen, "--cluster-node-id", id])
            .args(["--cluster-gossip-listen", &format!("{host}:0")])
            .args(["--cluster-seeds", cluster.seed])
            .args(["--cluster-key-file", cluster.keys])
            .args(["--cluster-public-url", public_url])
            .args(extra)
            .current_dir(&cache),
    );
    node.wait_for_line(&["edge serving"]);
    node
}

/// Polls `/steer/clip` (a 503, no node able to serve yet, as an edge
/// answers before it has seen itself in the membership, counts as no
/// priority) at `edge` until its priority satisfies `wanted`.
pub fn steer_until(edge: &str, what: &str, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let reply = get(edge, "/steer/clip", "");
        let now = if reply.status == 503 {
            Vec::new()
        } else {
            priority(&reply)
        };
        if wanted(&now) {
            return now;
        }
        assert!(started.elapsed() < DEADLINE, "{edge} never {what}: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
