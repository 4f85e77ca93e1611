//! `kinema edge` as a user starts it: settings from its flags, its
//! `KINEMA_*` variables and the `[edge]` section of `kinema.toml`, a flag
//! over the environment over the file. Which of three listen addresses
//! answers shows which source won; the origin (a closed loopback port) comes
//! from the file throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn edge(dir: &Path, flags: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("edge")
        .args(flags)
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Whether `address` answers `GET /metrics` (the edge's own page) with 200.
fn answers(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

/// Starts the edge and returns the one of `candidates` it listens on (the
/// first to answer within a bounded wait), after stopping it.
fn listening_on(mut command: Command, candidates: &[SocketAddr]) -> SocketAddr {
    let mut child: Child = command.spawn().expect("kinema runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        if let Some(address) = candidates.iter().copied().find(|a| answers(*a)) {
            break Some(address);
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    found.unwrap_or_else(|| {
        panic!(
            "the edge never answered on {candidates:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_config_file() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let [from_file, from_env, from_flag] = [free_address(), free_address(), free_address()];
    let candidates = [from_file, from_env, from_flag];
    std::fs::write(
        dir.join("kinema.toml"),
        format!("[edge]\norigin = [\"http://127.0.0.1:1\"]\nlisten = \"{from_file}\"\n"),
    )
    .unwrap();

    assert_eq!(listening_on(edge(dir, &[], &[]), &candidates), from_file);
    let env = [("KINEMA_EDGE_LISTEN", from_env.to_string())];
    assert_eq!(listening_on(edge(dir, &[], &env), &candidates), from_env);
    let flag = ["--listen", &from_flag.to_string()];
    assert_eq!(listening_on(edge(dir, &flag, &env), &candidates), from_flag);

    // The file named by KINEMA_CONFIG, from another directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = [(
        "KINEMA_CONFIG",
        dir.join("kinema.toml").display().to_string(),
    )];
    assert_eq!(
        listening_on(edge(elsewhere.path(), &[], &config), &candidates),
        from_file
    );
}

#[test]
fn a_bad_setting_is_refused_naming_where_it_came_from() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(
        dir.join("kinema.toml"),
        "[edge]\norigin = [\"http://127.0.0.1:1\"]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let output = edge(
        dir,
        &[],
        &[("KINEMA_PREFETCH_SEGMENTS", "many".to_string())],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("KINEMA_PREFETCH_SEGMENTS"), "{error}");

    std::fs::write(
        dir.join("kinema.toml"),
        "[edge]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let output = edge(dir, &[], &[]).output().unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("--origin"), "{error}");
}
