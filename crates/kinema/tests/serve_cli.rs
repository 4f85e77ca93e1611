//! `kinema serve` run as a user runs it: the real binary on port 0, settings
//! from flags, `KINEMA_*` variables and `kinema.toml`, and a SIGTERM that
//! must drain and exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn kinema() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    // Settings must come from each test alone.
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

/// Drops ANSI escape sequences, in case the log is coloured anyway.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `kinema serve` and returns it with the address it logged.
#[allow(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which signals and waits for it"
)]
fn start(command: &mut Command) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kinema runs");
    let stderr = child.stderr.take().unwrap();
    let (lines_sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(plain(&line)).is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kinema serve did not log its address within 30 s");
        };
        if line.contains("origin serving")
            && let Some(rest) = line.split("address=").nth(1)
        {
            let address: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            return (child, address.parse().unwrap(), lines);
        }
    }
}

fn get(address: SocketAddr, path: &str) -> String {
    get_with(address, path, "")
}

/// `GET path` with `headers` (each line ending in CRLF) added.
fn get_with(address: SocketAddr, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn empty_library(dir: &Path) -> String {
    let library = dir.join("library");
    std::fs::create_dir(&library).unwrap();
    library.display().to_string()
}

#[test]
fn serve_answers_then_drains_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let library = empty_library(dir.path());
    let (mut child, address, lines) = start(
        kinema()
            .args(["serve", "--library", &library, "--listen", "127.0.0.1:0"])
            .args(["--web-root", "/nonexistent"])
            .current_dir(dir.path()),
    );
    let health = get(address, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    let missing = get(address, "/v/nothing/master.m3u8");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // The access log line of that request.
    let logged = std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(10)).ok())
        .find(|line| line.contains("/v/nothing/master.m3u8"))
        .expect("an access log line");
    assert!(logged.contains("status=404"), "{logged}");
    terminate(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn settings_come_from_environment_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let library = empty_library(dir.path());
    std::fs::write(
        dir.path().join("kinema.toml"),
        format!(
            "[serve]\nlibrary = {library:?}\nweb_root = \"/nonexistent\"\naccess_log = false\n"
        ),
    )
    .unwrap();
    let (mut child, address, lines) = start(
        kinema()
            .args(["serve"])
            .env("KINEMA_LISTEN", "127.0.0.1:0")
            .env(
                "KINEMA_CORS_ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            )
            .current_dir(dir.path()),
    );
    let health = get(address, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The origins allowed come from the environment...
    let allowed = get_with(
        address,
        "/v/nothing/master.m3u8",
        "Origin: https://b.example\r\n",
    )
    .to_ascii_lowercase();
    assert!(
        allowed.contains("access-control-allow-origin: https://b.example"),
        "{allowed}"
    );
    let other = get_with(
        address,
        "/v/nothing/master.m3u8",
        "Origin: https://c.example\r\n",
    )
    .to_ascii_lowercase();
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    // ... and access_log = false from the file: nothing of those requests
    // is in the log the server wrote until it exited.
    terminate(&child);
    assert!(child.wait().unwrap().success());
    // Every line, up to the end of its stderr (the reader thread then
    // drops its sender).
    let logged: Vec<String> =
        std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(10)).ok()).collect();
    assert!(
        !logged.iter().any(|line| line.contains("/v/nothing")),
        "{logged:#?}"
    );
}

/// Writes `config` as `dir/kinema.toml`, runs `kinema serve` there, and
/// returns its stderr after checking that it refused to start.
fn serve_fails_with(dir: &Path, config: &str) -> String {
    std::fs::write(dir.join("kinema.toml"), config).unwrap();
    let output = kinema()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!output.status.success(), "serve started with {config}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let library = empty_library(dir.path());
    let stderr = serve_fails_with(
        dir.path(),
        &format!("[serve]\nlibrary = {library:?}\ncache_sise = \"1GiB\"\n"),
    );
    assert!(stderr.contains("cache_sise"), "{stderr}");
    // The upload API's jobs take the [ingest] section, so its errors stop
    // the server too, named by key.
    let stderr = serve_fails_with(
        dir.path(),
        &format!("[serve]\nlibrary = {library:?}\n[ingest]\nthreads = \"two\"\n"),
    );
    assert!(stderr.contains("[ingest] threads"), "{stderr}");
    let stderr = serve_fails_with(
        dir.path(),
        &format!("[serve]\nlibrary = {library:?}\n[ingest]\npreset = \"warp\"\n"),
    );
    assert!(stderr.contains("preset \"warp\""), "{stderr}");
    // Admission's limits: a bit rate needs a unit, a load share above 0.
    let stderr = serve_fails_with(
        dir.path(),
        &format!("[serve]\nlibrary = {library:?}\nmax_egress = \"fast\"\n"),
    );
    assert!(stderr.contains("bit rate \"fast\""), "{stderr}");
    let stderr = serve_fails_with(
        dir.path(),
        &format!("[serve]\nlibrary = {library:?}\nmax_load = 0\n"),
    );
    assert!(stderr.contains("max_load must be above 0"), "{stderr}");

    std::fs::remove_file(dir.path().join("kinema.toml")).unwrap();
    let output = kinema()
        .args(["serve", "--listen", "127.0.0.1:0", "--library"])
        .arg(dir.path().join("missing"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}
