//! What several crates' tests share: real components started for one test
//! on loopback and stopped when it ends.
//!
//! [`S3Server`] is a real S3-protocol server (s3s-fs, pinned at
//! [`S3S_FS_VERSION`], which `scripts/test` installs), never an in-memory
//! fake: the tests of the S3 backend talk HTTP, SigV4 and multipart uploads
//! to it as they would to any object store.
//!
//! [`PostgresServer`] is a real PostgreSQL server (Debian's postgresql-15,
//! which `scripts/install-deps` installs) in a temporary data directory on
//! a loopback port, for the job queue's tests.
//!
//! [`netns::Network`] gives a test separate hosts (network namespaces on a
//! bridge), and [`S3Server::start_on`] puts the store on one of them;
//! [`shaped_link::ShapedLink`] is a thin last-mile link.
//!
//! This crate is for tests only (a dev-dependency): it spawns processes,
//! which no crate a user runs does outside kinema-media.

pub mod netns;
mod postgres;
pub mod shaped_link;

pub use postgres::{PostgresServer, postgres_bin_dir};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The s3s-fs release the tests run against (0.17 needs a newer compiler).
pub const S3S_FS_VERSION: &str = "0.14.1";

/// How long s3s-fs may take to accept connections (it starts in ~0.03 s).
const START_DEADLINE: Duration = Duration::from_secs(20);

/// An s3s-fs server on a free loopback port, serving the buckets that are
/// directories of a temporary root; killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    /// The host it runs on, or `None` for the test's own loopback.
    host: Option<netns::Host>,
    root: tempfile::TempDir,
    address: SocketAddr,
    access_key: String,
    secret_key: String,
}

/// The s3s-fs program: on `PATH`, else in cargo's bin directory (where
/// `cargo install` put it). Panics — failing the test — when it is missing
/// or not the pinned version, saying how to install it.
pub fn s3s_fs_program() -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join("s3s-fs"));
    let candidates = std::iter::once(PathBuf::from("s3s-fs")).chain(cargo_bin);
    let mut found = Vec::new();
    for program in candidates {
        let Ok(output) = Command::new(&program).arg("--version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if version == format!("s3s-fs {S3S_FS_VERSION}") {
            return program;
        }
        found.push(format!("{} is {version:?}", program.display()));
    }
    panic!(
        "the S3 tests need s3s-fs {S3S_FS_VERSION} (a real S3-protocol server), {}; \
         run scripts/test, which installs it, or: \
         cargo install s3s-fs --version {S3S_FS_VERSION} --features binary --locked",
        if found.is_empty() {
            "which is not installed".to_string()
        } else {
            found.join(", ")
        }
    );
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Polls until `address` accepts a connection (from `host`, else from the
/// test's own namespace): `Ok` then, `Err` with the exit status if the
/// process exited first (its port was taken).
fn wait_ready(
    child: &mut Child,
    host: Option<&netns::Host>,
    address: SocketAddr,
) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    let timeout = Duration::from_millis(200);
    while Instant::now() < deadline {
        let connected = match host {
            Some(host) => host.connect(address, timeout).is_ok(),
            None => TcpStream::connect_timeout(&address, timeout).is_ok(),
        };
        if connected {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status.to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("s3s-fs did not accept connections on {address} within {START_DEADLINE:?}");
}

impl S3Server {
    /// Starts s3s-fs with its own access key and secret, and waits until it
    /// accepts connections.
    pub fn start() -> Self {
        let program = s3s_fs_program();
        let root = tempfile::tempdir().expect("a temporary directory for s3s-fs");
        let access_key = "kinema-test-access".to_string();
        let secret_key = "kinema-test-secret".to_string();
        let mut exits = Vec::new();
        // A port someone else takes between the probe and s3s-fs's bind
        // makes it exit at once: try another.
        for _ in 0..5 {
            let port = free_loopback_port();
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let mut child = Command::new(&program)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access_key, "--secret-key", &secret_key])
                .arg(root.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
            match wait_ready(&mut child, None, address) {
                Ok(()) => {
                    return Self {
                        child: Some(child),
                        host: None,
                        root,
                        address,
                        access_key,
                        secret_key,
                    };
                }
                Err(status) => exits.push(status),
            }
        }
        panic!("s3s-fs exited at start every time: {exits:?}");
    }

    /// Starts s3s-fs on `host` (its address, port 9000: the host is the
    /// server's own), and waits until it accepts connections there.
    pub fn start_on(host: &netns::Host) -> Self {
        let mut server = Self {
            child: None,
            host: Some(host.clone()),
            root: tempfile::tempdir().expect("a temporary directory for s3s-fs"),
            address: host.socket(9000),
            access_key: "kinema-test-access".to_string(),
            secret_key: "kinema-test-secret".to_string(),
        };
        server.restart();
        server
    }

    /// `http://ADDRESS:PORT` (127.0.0.1, or the host's address).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Creates a bucket: s3s-fs serves each directory of its root as one.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.path().join(name))
            .unwrap_or_else(|error| panic!("cannot create bucket {name}: {error}"));
    }

    /// The directory holding bucket `name`'s objects (one file per key).
    pub fn bucket_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Starts the server again after [`S3Server::stop`], on the same port
    /// with the same data: the store is back.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is still running");
        let program = s3s_fs_program();
        let mut command = match &self.host {
            Some(host) => host.command(&program),
            None => Command::new(&program),
        };
        let mut child = command
            .args([
                "--host",
                &self.address.ip().to_string(),
                "--port",
                &self.address.port().to_string(),
            ])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
        if let Err(status) = wait_ready(&mut child, self.host.as_ref(), self.address) {
            panic!("s3s-fs did not start again on {}: {status}", self.address);
        }
        self.child = Some(child);
    }

    /// Kills the server (the store is down from now on); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
