//! Descriptor limits through the real binary: started under a low soft
//! `RLIMIT_NOFILE` (as distributions start processes: soft 1024), both
//! servers raise it to the hard limit, and idle keep-alive connections near
//! the connection cap make room for new clients instead of locking them out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `kinema ARGS` under `prlimit --nofile=SOFT:HARD` (prlimit execs it, so
/// the child's pid is the server's).
fn kinema_limited(soft: u64, hard: u64) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_kinema"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1").env("RUST_LOG", "info");
    command
}

/// Kills the server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the command and waits for the log line containing `ready`,
/// returning the address it names (`address=`).
fn start(command: &mut Command, ready: &str) -> (Running, SocketAddr) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("prlimit and kinema run");
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {ready:?} log line within 30 s"));
        if line.contains(ready)
            && let Some(rest) = line.split("address=").nth(1)
        {
            let address: String = rest
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            // Keep draining the log so the server never blocks on it.
            std::thread::spawn(move || while lines.recv().is_ok() {});
            return (running, address.parse().unwrap());
        }
    }
}

/// The soft and hard "Max open files" of a process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_string(),
        words.next().unwrap().to_string(),
    )
}

fn wait_for_soft_limit(pid: u32, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (soft, hard) = open_file_limits(pid);
        if soft == expected {
            assert_eq!(hard, expected);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the soft open-file limit stayed {soft} (hard {hard})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn empty_library() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("library");
    std::fs::create_dir(&library).unwrap();
    let library = library.display().to_string();
    (dir, library)
}

#[test]
fn serve_and_edge_raise_the_soft_descriptor_limit_to_the_hard_one() {
    let (_dir, library) = empty_library();
    let (origin, origin_address) = start(
        kinema_limited(256, 4096)
            .args(["serve", "--library", &library, "--listen", "127.0.0.1:0"])
            .args(["--web-root", "/nonexistent"]),
        "origin serving",
    );
    wait_for_soft_limit(origin.0.id(), "4096");
    let (edge, _) = start(
        kinema_limited(256, 4096)
            .args(["edge", "--listen", "127.0.0.1:0"])
            .args(["--origin", &format!("http://{origin_address}")]),
        "edge serving",
    );
    wait_for_soft_limit(edge.0.id(), "4096");
}

/// One keep-alive request; the connection stays open afterwards.
fn request_and_keep(address: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut response = [0u8; 512];
    let n = stream.read(&mut response).ok()?;
    response[..n].starts_with(b"HTTP/1.1 200").then_some(stream)
}

#[test]
fn idle_keep_alive_clients_under_a_low_descriptor_limit_do_not_lock_out_new_ones() {
    let (_dir, library) = empty_library();
    // Hard 256: the connection cap becomes 192, whatever max_connections.
    let (_origin, address) = start(
        kinema_limited(256, 256)
            .args(["serve", "--library", &library, "--listen", "127.0.0.1:0"])
            .args(["--web-root", "/nonexistent", "--access-log", "false"]),
        "origin serving",
    );
    let idle: Vec<TcpStream> = (0..300).filter_map(|_| request_and_keep(address)).collect();
    assert!(idle.len() >= 150, "only {} clients were served", idle.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while request_and_keep(address).is_none() {
        assert!(
            Instant::now() < deadline,
            "a new client stayed locked out by idle keep-alive connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
