//! What the distributed-ingest tests share: an S3-protocol store (s3s-fs),
//! a `kinema serve` on it with admin and worker tokens, `kinema worker`
//! processes whose logs are kept, a small blocking HTTP client, and clips
//! made by ffmpeg.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kinema_test_support::{PostgresServer, S3Server};
use serde_json::Value;

pub const BUCKET: &str = "media";
pub const LIBRARY: &str = "s3://media/lib";

/// `kinema` with the store's credentials in the standard AWS variables,
/// `dir/kinema.toml` as its config and no setting inherited from the test's
/// environment.
pub fn kinema(store: &S3Server, dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KINEMA_CONFIG", dir.join("kinema.toml"))
        .env("AWS_ACCESS_KEY_ID", store.access_key())
        .env("AWS_SECRET_ACCESS_KEY", store.secret_key())
        .env("KINEMA_S3_ENDPOINT", store.endpoint());
    command
}

/// A process whose stderr lines are kept for the test to look at.
pub struct Logged {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kinema runs");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a line contains `text`; panics with the log after `limit`.
    pub fn wait_for_line(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.contains(text))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {text:?} within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the server keeps its job queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// In the ingest workspace (the default).
    Embedded,
    /// In a PostgreSQL server of the test's own (`--queue-url`).
    Postgres,
}

/// A server on an S3 library with an admin token, and its queue.
pub struct Setup {
    pub store: S3Server,
    pub dir: tempfile::TempDir,
    pub admin: String,
    pub postgres: Option<PostgresServer>,
}

impl Setup {
    pub fn new() -> Self {
        Self::with_queue(Queue::Embedded)
    }

    pub fn with_queue(queue: Queue) -> Self {
        Self::with_settings(queue, "")
    }

    /// A setup whose `kinema.toml` (the server's and the workers') also has
    /// `ingest_settings` in `[ingest]`.
    pub fn with_settings(queue: Queue, ingest_settings: &str) -> Self {
        let store = S3Server::start();
        store.create_bucket(BUCKET);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kinema.toml"),
            format!(
                "[ingest]\nworkspace = \"{}\"\n{ingest_settings}\n[serve]\ndisk_cache = \"{}\"\n",
                dir.path().join("ingest").display(),
                dir.path().join("cache").display()
            ),
        )
        .unwrap();
        let postgres = (queue == Queue::Postgres).then(PostgresServer::start);
        let mut setup = Self {
            store,
            dir,
            admin: String::new(),
            postgres,
        };
        setup.admin = setup.new_token("admin", "root");
        setup
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A token made by `kinema tokens new`; its secret.
    pub fn new_token(&self, scope: &str, name: &str) -> String {
        let output = kinema(&self.store, self.path())
            .args([
                "tokens", "new", "--scope", scope, "--name", name, "--tokens",
            ])
            .arg(self.path().join("tokens.toml"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A worker token in a file of its own; the file's path. Made before
    /// the server starts, which reads the tokens file then.
    pub fn worker_token_file(&self, name: &str) -> PathBuf {
        let secret = self.new_token("worker", name);
        let path = self.path().join(format!("{name}.token"));
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        path
    }

    /// Starts `kinema serve` on the library; the process and its address.
    pub fn serve(&self) -> (Logged, SocketAddr) {
        let mut command = kinema(&self.store, self.path());
        command
            .args(["serve", "--library", LIBRARY, "--listen", "127.0.0.1:0"])
            .arg("--tokens")
            .arg(self.path().join("tokens.toml"))
            .arg("--keys")
            .arg(self.path().join("keys.toml"));
        if let Some(postgres) = &self.postgres {
            command.env("KINEMA_QUEUE_URL", postgres.url());
        }
        let server = Logged::spawn(&mut command);
        if self.postgres.is_some() {
            server.wait_for_line("job queue in PostgreSQL", Duration::from_secs(60));
        }
        let line = server.wait_for_line("origin serving", Duration::from_secs(60));
        let rest = line.split("address=").nth(1).expect("an address");
        let address: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        (server, address.parse().unwrap())
    }

    /// Starts `kinema worker` named `name` against `server`.
    pub fn worker(&self, server: SocketAddr, name: &str, token_file: &Path) -> Logged {
        let worker = Logged::spawn(
            kinema(&self.store, self.path())
                .args(["worker", "--server", &format!("http://{server}")])
                .arg("--token-file")
                .arg(token_file)
                .args(["--library", LIBRARY, "--name", name])
                .args(["--lease", "4s", "--heartbeat", "1s"])
                .arg("--scratch")
                .arg(self.path().join("scratch")),
        );
        worker.wait_for_line("worker started", Duration::from_secs(60));
        worker
    }

    /// Every file s3s-fs holds below the library's `jobs/`.
    pub fn job_objects_on_disk(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![self.store.bucket_dir(BUCKET).join("lib/jobs")];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }
}

/// One HTTP/1.1 request; the status, the head and the body.
pub fn exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

/// One HTTP/1.1 request; the status and the JSON body (`Null` if empty).
pub fn call(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> (u16, Value) {
    let (status, head, body) = exchange(address, method, path, token, body);
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{head}\n{}", String::from_utf8_lossy(&body)))
    };
    (status, value)
}

/// Uploads `file` as video `id`; the job's id.
pub fn upload(address: SocketAddr, token: &str, id: &str, file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let (status, answer) = call(
        address,
        "POST",
        &format!("/api/videos?id={id}&title=Clip"),
        token,
        &bytes,
    );
    assert_eq!(status, 202, "{answer}");
    answer["job"]["id"].as_str().unwrap().to_string()
}

/// Polls a job until `done` says so; panics with the job after `limit`.
pub fn wait_job(
    address: SocketAddr,
    token: &str,
    job: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
    logs: &[&Logged],
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, answer) = call(address, "GET", &format!("/api/jobs/{job}"), token, b"");
        assert_eq!(status, 200, "{answer}");
        if done(&answer["job"]) {
            return answer["job"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "job not there within {limit:?}: {answer}\n{}",
            logs.iter()
                .map(|logged| logged.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A clip of `seconds` at `size` with a tone, made by ffmpeg.
pub fn clip(dir: &Path, name: &str, size: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s={size}:r=25:d={seconds}"))
        .args(["-f", "lavfi", "-i", &format!("sine=d={seconds}")])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    path
}

/// The status of a GET of `path` (no token).
pub fn get_status(address: SocketAddr, path: &str) -> u16 {
    exchange(address, "GET", path, "", b"").0
}

/// Sends the head of an upload announcing `announced` bytes and `sent` of
/// them, then leaves the connection open (the caller kills the server).
pub fn start_upload(address: SocketAddr, token: &str, announced: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /api/videos?id=cut HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {announced}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![0x47u8; 1024 * 1024];
    let mut written = 0;
    while written < sent {
        let n = chunk.len().min(sent - written);
        stream.write_all(&chunk[..n]).unwrap();
        written += n;
    }
    stream.flush().unwrap();
    stream
}
