//! `kinema serve` and `kinema edge` in a cluster, as a user runs them: real
//! processes with `[cluster]` settings from flags, a `KINEMA_CLUSTER_*`
//! variable and `kinema.toml`, that find each other over authenticated
//! gossip; a SIGTERM that makes one drain and leave cleanly, and a SIGKILL
//! that the others notice as a death.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn kinema() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    #[allow(
        clippy::zombie_processes,
        reason = "the child is kept and waited for by the test, or killed on drop"
    )]
    fn start(command: &mut Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("kinema runs");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first log line that has every one of `parts`, waiting for it.
    fn wait_for_line(&mut self, parts: &[&str]) -> String {
        let has = |line: &String| parts.iter().all(|part| line.contains(part));
        if let Some(line) = self.seen.iter().find(|line| has(line)) {
            return line.clone();
        }
        let started = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "no log line with {parts:?} within {DEADLINE:?}; seen:\n{}",
                    self.seen.join("\n")
                );
            };
            self.seen.push(line.clone());
            if has(&line) {
                return line;
            }
        }
    }

    fn terminate_and_wait(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Keep the lines logged on the way out.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "kinema did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gossip_address(joined: &str) -> String {
    joined
        .split("gossip=")
        .nth(1)
        .expect("the join line names the gossip address")
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect()
}

fn key_file(dir: &Path) -> String {
    let path = dir.join("cluster.keys");
    std::fs::write(&path, format!("1 {}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn serve(dir: &Path, node: &str) -> Command {
    let library = dir.join(format!("library-{node}"));
    std::fs::create_dir_all(&library).unwrap();
    let mut command = kinema();
    command
        .args(["serve", "--library", &library.display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--web-root", "/nonexistent"])
        .current_dir(dir);
    command
}

#[test]
fn origins_and_an_edge_find_each_other_one_leaves_one_dies() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());

    // a: everything from flags.
    let mut a = Server::start(
        serve(dir.path(), "a")
            .args([
                "--cluster-node-id",
                "a",
                "--cluster-gossip-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--cluster-key-file",
                &keys,
                "--cluster-public-url",
                "http://a.test:8080",
            ]),
    );
    let a_gossip = gossip_address(&a.wait_for_line(&["joined the cluster", "node=a"]));
    let a_http = a
        .wait_for_line(&["origin serving"])
        .split("address=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect::<String>();

    // b: from its own kinema.toml, one setting overridden by a variable.
    let b_dir = dir.path().join("b");
    std::fs::create_dir(&b_dir).unwrap();
    std::fs::write(
        b_dir.join("kinema.toml"),
        format!(
            "[cluster]\nnode_id = \"b\"\ngossip_listen = \"127.0.0.1:0\"\nseeds = [\"{a_gossip}\"]\n\
             key_file = \"{keys}\"\npublic_url = \"http://b.test:8080\"\nregion = \"file-region\"\n\
             capacity = \"10gbit\"\n"
        ),
    )
    .unwrap();
    let mut b = Server::start(serve(&b_dir, "b").env("KINEMA_CLUSTER_REGION", "env-region"));

    let b_at_a = a.wait_for_line(&["cluster member joined", "node=b"]);
    assert!(b_at_a.contains("b.test:8080"), "{b_at_a}");
    assert!(
        b_at_a.contains("env-region"),
        "the variable beats the file: {b_at_a}"
    );
    let a_at_b = b.wait_for_line(&["cluster member joined", "node=a"]);
    assert!(a_at_b.contains("a.test:8080"), "{a_at_b}");

    // c: an edge in front of a, joining through b.
    let b_gossip = gossip_address(&b.wait_for_line(&["joined the cluster", "node=b"]));
    let mut c = Server::start(
        kinema()
            .args(["edge", "--origin", &format!("http://{a_http}")])
            .args(["--listen", "127.0.0.1:0", "--cluster-node-id", "c"])
            .args([
                "--cluster-gossip-listen",
                "127.0.0.1:0",
                "--cluster-seeds",
                &b_gossip,
            ])
            .args([
                "--cluster-key-file",
                &keys,
                "--cluster-public-url",
                "http://c.test:8081",
            ])
            .current_dir(dir.path()),
    );
    let c_at_a = a.wait_for_line(&["cluster member joined", "node=c"]);
    assert!(
        c_at_a.contains("edge") && c_at_a.contains("c.test:8081"),
        "{c_at_a}"
    );
    c.wait_for_line(&["cluster member joined", "node=a"]);
    let killed_at = Instant::now();
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    a.wait_for_line(&["cluster member dead", "node=c"]);
    println!(
        "a killed edge was logged dead after {:?}",
        killed_at.elapsed()
    );

    let status = b.terminate_and_wait();
    assert!(status.success(), "b exited with {status}");
    a.wait_for_line(&["cluster member health changed", "node=b", "draining"]);
    a.wait_for_line(&["cluster member left", "node=b"]);
    assert!(
        !a.seen
            .iter()
            .any(|line| line.contains("member dead") && line.contains("node=b")),
        "a clean leave is not a death:\n{}",
        a.seen.join("\n")
    );
    let status = a.terminate_and_wait();
    assert!(status.success(), "a exited with {status}");
}

#[test]
fn a_key_file_others_can_read_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = serve(dir.path(), "a")
        .args([
            "--cluster-node-id",
            "a",
            "--cluster-gossip-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--cluster-key-file",
            &keys,
            "--cluster-public-url",
            "http://a.test:8080",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
