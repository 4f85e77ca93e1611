//! The edge's descriptors through the real binary: started under a low
//! open-file limit (soft = hard, so nothing can raise it), an edge that has
//! cached many distinct large objects still accepts and serves new
//! clients. Each cached object of 64 KiB or more used to hold a memory file
//! (a descriptor) for as long as it was cached.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Body size of every object the origin serves: above the edge's 64 KiB
/// memory-file threshold.
const OBJECT_BYTES: usize = 100 * 1024;

/// Requests the origin has answered.
static ORIGIN_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Kills the server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An origin on a loopback port, a thread per connection: every path
/// answers `OBJECT_BYTES` bytes, cacheable for an hour.
fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || serve_origin_connection(stream));
        }
    });
    address
}

fn serve_origin_connection(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let body = vec![b'x'; OBJECT_BYTES];
    loop {
        let mut line = String::new();
        let mut request_line = None;
        // The request head; no request here has a body.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) if request_line.is_none() => request_line = Some(line.clone()),
                Ok(_) => {}
            }
        }
        // Health checks aside.
        if request_line.is_some_and(|line| line.contains(" /v/")) {
            ORIGIN_REQUESTS.fetch_add(1, Ordering::Relaxed);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {OBJECT_BYTES}\r\nCache-Control: public, max-age=3600\r\nETag: \"x\"\r\n\r\n"
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

/// `kinema edge` under `prlimit --nofile=LIMIT:LIMIT`, in front of
/// `origin`; returns it and the address it listens on.
fn start_edge(limit: u64, origin: SocketAddr) -> (Running, SocketAddr) {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={limit}:{limit}"))
        .arg(env!("CARGO_BIN_EXE_kinema"))
        .args([
            "edge",
            "--listen",
            "127.0.0.1:0",
            "--prefetch-segments",
            "0",
        ])
        .arg("--origin")
        .arg(format!("http://{origin}"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
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
            .expect("no \"edge serving\" log line within 30 s");
        if line.contains("edge serving")
            && let Some(rest) = line.split("address=").nth(1)
        {
            let address: String = rest
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            // Keep draining the log so the edge never blocks on it.
            std::thread::spawn(move || while lines.recv().is_ok() {});
            return (running, address.parse().unwrap());
        }
    }
}

/// Sends `GET path` on `stream` and reads the whole response: its status
/// and body, or `None` when the edge does not answer (in 10 s).
fn exchange(stream: &mut TcpStream, path: &str) -> Option<(u16, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, body))
}

fn connect(address: SocketAddr) -> Option<TcpStream> {
    TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()
}

fn metric(address: SocketAddr, name: &str) -> u64 {
    let (_, body) = exchange(&mut connect(address).unwrap(), "/_kinema/metrics").unwrap();
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .parse()
        .unwrap()
}

#[test]
fn many_cached_large_objects_leave_descriptors_for_new_clients() {
    let limit = 256;
    let origin = start_origin();
    let (_edge, edge) = start_edge(limit, origin);
    // Distinct large objects, more than the limit: each one is cached.
    for n in 0..400 {
        let answered = connect(edge)
            .and_then(|mut stream| exchange(&mut stream, &format!("/v/flood{n}/1.m4s")));
        assert!(
            answered.is_some_and(|(status, body)| status == 200 && body.len() == OBJECT_BYTES),
            "object {n} was not served"
        );
    }
    let files = metric(edge, "kinema_edge_memory_files");
    let cap = metric(edge, "kinema_edge_memory_files_max");
    assert_eq!(cap, limit / 8);
    assert!(files <= cap, "{files} memory files over the cap of {cap}");
    // New clients, all connected at once: every one is served, cached
    // objects and new ones alike.
    let mut clients: Vec<TcpStream> = (0..100)
        .map(|n| connect(edge).unwrap_or_else(|| panic!("client {n} could not connect")))
        .collect();
    let mut served = 0;
    for (n, stream) in clients.iter_mut().enumerate() {
        let path = if n % 2 == 0 {
            format!("/v/flood{n}/1.m4s")
        } else {
            format!("/v/new{n}/1.m4s")
        };
        if exchange(stream, &path).is_some_and(|(status, _)| status == 200) {
            served += 1;
        }
    }
    assert_eq!(served, 100, "only {served} of 100 new clients were served");
    // The cached objects were answered from the cache, without a memory
    // file but from memory all the same.
    assert_eq!(ORIGIN_REQUESTS.load(Ordering::Relaxed), 400 + 50);
}
