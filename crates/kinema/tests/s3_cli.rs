//! The binary with a library in a real S3-protocol server (s3s-fs on
//! loopback): `kinema ingest` (real ffmpeg) and `kinema bench library`
//! publish into it, `kinema serve`
//! serves from it, keeps serving what it cached when the store goes down
//! (and answers what it has not with a 503, promptly, until the store is
//! back), and refuses to start
//! with a message naming the setting when the store refuses it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kinema_test_support::S3Server;

const BUCKET: &str = "media";
const LIBRARY: &str = "s3://media/lib";

/// `kinema` with the server's credentials in the standard AWS variables and
/// no setting inherited from the test's environment.
fn kinema(server: &S3Server) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .env("KINEMA_S3_ENDPOINT", server.endpoint());
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
fn start(command: &mut Command) -> (Child, SocketAddr) {
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
    let mut seen = Vec::new();
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kinema serve did not log its address within 30 s: {seen:#?}");
        };
        if line.contains("origin serving")
            && let Some(rest) = line.split("address=").nth(1)
        {
            let address: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            // Keep draining the log, so the server never blocks writing it.
            std::thread::spawn(move || while lines.recv().is_ok() {});
            return (child, address.parse().unwrap());
        }
        seen.push(line);
    }
}

/// The status line and headers, and the body's length.
fn get(address: SocketAddr, path: &str) -> (String, usize) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    (
        String::from_utf8_lossy(&response[..split]).into_owned(),
        response.len() - split - 4,
    )
}

fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_library_in_s3_is_published_served_and_survives_the_store_going_down() {
    let mut server = S3Server::start();
    server.create_bucket(BUCKET);
    let published = kinema(&server)
        .args([
            "bench",
            "library",
            "--library",
            LIBRARY,
            "--id",
            "synthetic",
        ])
        .args(["--bitrates", "1mbit", "--segment", "2s", "--segments", "4"])
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let manifest = server
        .bucket_dir(BUCKET)
        .join("lib/videos/synthetic/manifest.json");
    assert!(manifest.is_file(), "no {}", manifest.display());

    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = start(
        kinema(&server)
            .args(["serve", "--library", LIBRARY, "--listen", "127.0.0.1:0"])
            // Every request reads the manifest again: once the store is
            // down, each one meets it unavailable.
            .args(["--web-root", "/nonexistent", "--manifest-refresh", "1ms"])
            .current_dir(dir.path()),
    );
    let (head, _) = get(address, "/v/synthetic/master.m3u8");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // 1 Mbit/s × 2 s.
    let (head, length) = get(address, "/v/synthetic/r1000k/1.m4s");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(length, 250_000);

    server.stop();
    // What the origin holds is still served (the manifest last read and the
    // files it cached); what it never read is a 503 the player may retry,
    // not a hang or a 500.
    let (head, _) = get(address, "/v/synthetic/master.m3u8");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, length) = get(address, "/v/synthetic/r1000k/1.m4s");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(length, 250_000);
    let (head, _) = get(address, "/v/synthetic/r1000k/4.m4s");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");

    // Back: served again, with no restart of the origin.
    server.restart();
    let (head, length) = get(address, "/v/synthetic/r1000k/4.m4s");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(length, 250_000);
    terminate(&mut child);
}

/// Runs `kinema serve` with `args` in `dir` and returns its stderr after
/// checking that it refused to start.
fn serve_refuses(command: &mut Command, args: &[&str]) -> String {
    let output = command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--web-root",
            "/nonexistent",
        ])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "serve started: {stderr}");
    stderr
}

#[test]
fn serve_refuses_to_start_naming_the_setting_s3_refused() {
    let mut server = S3Server::start();
    server.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();

    let stderr = serve_refuses(
        kinema(&server)
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            .current_dir(dir.path()),
        &["--library", LIBRARY],
    );
    assert!(stderr.contains("AWS_SECRET_ACCESS_KEY"), "{stderr}");

    std::fs::write(
        dir.path().join("kinema.toml"),
        "[serve]\nlibrary = \"s3://absent/lib\"\n",
    )
    .unwrap();
    let stderr = serve_refuses(kinema(&server).current_dir(dir.path()), &[]);
    assert!(stderr.contains("library"), "{stderr}");
    assert!(stderr.contains("\"absent\" does not exist"), "{stderr}");
    std::fs::remove_file(dir.path().join("kinema.toml")).unwrap();

    let endpoint = server.endpoint();
    server.stop();
    let stderr = serve_refuses(
        kinema(&server).current_dir(dir.path()),
        &["--library", LIBRARY],
    );
    assert!(stderr.contains("s3_endpoint"), "{stderr}");
    assert!(stderr.contains(&endpoint), "{stderr}");
}

/// A 3 s 320x180 clip with a tone, made by ffmpeg.
fn clip(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=320x180:r=25:d=3")
        .args(["-f", "lavfi", "-i", "sine=d=3", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    path
}

#[test]
fn ingest_publishes_into_s3_and_a_store_that_is_down_publishes_nothing() {
    let mut server = S3Server::start();
    server.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let source = clip(dir.path());
    let workspace = dir.path().join("work");
    let ingest = |server: &S3Server| {
        kinema(server)
            .args(["ingest", "--library", LIBRARY, "--id", "clip", "--quiet"])
            .arg("--workspace")
            .arg(&workspace)
            .arg(&source)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let published = ingest(&server);
    let stdout = String::from_utf8_lossy(&published.stdout);
    assert!(
        published.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&published.stderr)
    );
    assert!(stdout.contains("published clip"), "{stdout}");
    let video = server.bucket_dir(BUCKET).join("lib/videos/clip");
    assert!(video.join("manifest.json").is_file());
    let generations: Vec<_> = std::fs::read_dir(&video)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with('g'))
        .collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
    assert!(generations[0].path().join("master.m3u8").is_file());
    // The staging directory went with the upload.
    let staging = workspace.join("staging");
    let leftovers = std::fs::read_dir(&staging)
        .map(Iterator::count)
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "{}", staging.display());

    server.stop();
    let refused = ingest(&server);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("s3_endpoint"), "{stderr}");
}

#[test]
fn credentials_come_from_a_profile_of_the_shared_credentials_file() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n\
             [media]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.access_key(),
            server.secret_key()
        ),
    )
    .unwrap();
    let publish = |profile: Option<&str>| {
        let mut command = kinema(&server);
        command
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", home.path())
            .args(["bench", "library", "--library", LIBRARY, "--segments", "1"]);
        if let Some(profile) = profile {
            command.env("AWS_PROFILE", profile);
        }
        command.output().unwrap()
    };
    let output = publish(Some("media"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The default profile's keys are wrong; a profile that is not there is
    // named.
    let stderr = String::from_utf8_lossy(&publish(None).stderr).into_owned();
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    let stderr = String::from_utf8_lossy(&publish(Some("absent")).stderr).into_owned();
    assert!(stderr.contains("no profile [absent]"), "{stderr}");
}
