//! A real PostgreSQL server for one test: a fresh cluster in a temporary
//! data directory (`initdb`), started on a free loopback port (`pg_ctl`),
//! stopped and removed when dropped.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then the cluster
//! is made and run as the `postgres` user (Debian's package creates it),
//! through `runuser`. The binaries are Debian's `postgresql-15`, which
//! `scripts/install-deps` installs; a test that finds none fails, saying so.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long `pg_ctl` may wait for the server to accept connections (it is
/// ready in a few seconds here).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A PostgreSQL cluster of its own on `127.0.0.1`; user `postgres`, trust
/// authentication, no fsync (a test's data need not survive a power cut,
/// only a crash of the server: commits still reach the WAL before they
/// are acknowledged).
#[derive(Debug)]
pub struct PostgresServer {
    root: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
    /// `Some(user)` when the server runs as another user than this process.
    run_as: Option<String>,
}

/// The directory of `initdb` and `pg_ctl`: on `PATH`, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest). Panics — failing the
/// test — when there is none, saying how to install it.
pub fn postgres_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file())
    });
    if let Some(dir) = on_path {
        return std::fs::canonicalize(dir.join("pg_ctl"))
            .ok()
            .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
            .unwrap_or(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "the job queue's PostgreSQL tests need a PostgreSQL server (initdb, pg_ctl), which \
             is not installed; run scripts/test, which installs Debian's postgresql-15 through \
             scripts/install-deps, or: apt-get install postgresql-15"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The uid and gid of `user`, from `id`.
fn ids_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|error| panic!("cannot run id: {error}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "PostgreSQL refuses to run as root and there is no {user:?} user to run it \
                     as; install Debian's postgresql-15 (scripts/install-deps), which creates it"
                )
            })
    };
    (id("-u"), id("-g"))
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl PostgresServer {
    /// Makes a cluster and starts it; returns once it accepts connections.
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let run_as = is_root().then(|| "postgres".to_string());
        // The postgres user must reach the directory: under /tmp, whatever
        // TMPDIR says (root's may be a directory only root can enter).
        let parent = match run_as {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let root = tempfile::Builder::new()
            .prefix("kinema-pg")
            .tempdir_in(parent)
            .expect("a temporary directory for PostgreSQL");
        if let Some(user) = &run_as {
            let (uid, gid) = ids_of(user);
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))
                .expect("the temporary directory handed to the postgres user");
        }
        let mut server = Self {
            root,
            bin,
            port: 0,
            running: false,
            run_as,
        };
        let data = server.data_dir();
        let output = server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // A port someone else takes between the probe and the server's bind
        // makes the start fail: try another.
        let mut failures = Vec::new();
        for _ in 0..5 {
            server.port = free_loopback_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(why) => failures.push(why),
            }
        }
        panic!("PostgreSQL did not start: {failures:#?}");
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command
            .args(args)
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()))
    }

    fn try_start(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.root.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c max_connections=200",
            self.port,
            self.root.path().display()
        );
        let timeout = START_DEADLINE.as_secs().to_string();
        let output = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                timeout.as_ref(),
                "start".as_ref(),
            ],
        );
        if !output.status.success() {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = self.stop_with("immediate");
            return Err(format!(
                "pg_ctl start: {}{}",
                String::from_utf8_lossy(&output.stderr),
                server_log
            ));
        }
        self.running = true;
        // pg_ctl -w waited for the server; the TCP port is the proof a
        // client needs.
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("nothing accepts connections on {address}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn stop_with(&mut self, mode: &str) -> Output {
        let data = self.data_dir();
        let timeout = START_DEADLINE.as_secs().to_string();
        let output = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                timeout.as_ref(),
                "stop".as_ref(),
            ],
        );
        self.running = false;
        output
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of another database of this server, created empty, so tests
    /// sharing one server do not see each other's tables.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name {name:?}: lowercase letters, digits and '_' only"
        );
        let port = self.port.to_string();
        let output = self.run(
            "createdb",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                name.as_ref(),
            ],
        );
        assert!(
            output.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server as a crash would (no shutdown checkpoint); its data
    /// stays for [`PostgresServer::restart`].
    pub fn stop(&mut self) {
        if self.running {
            let output = self.stop_with("immediate");
            assert!(
                output.status.success(),
                "pg_ctl stop: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        assert!(!self.running, "PostgreSQL is still running");
        if let Err(why) = self.try_start() {
            panic!(
                "PostgreSQL did not start again on port {}: {why}",
                self.port
            );
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_with("immediate");
        }
    }
}
