//! What the UI tests (../ui.rs) need besides the player tests' fixture and
//! server: a library of synthetic videos whose titles, dates, durations and
//! policies the test chooses, and a plain HTTP/1.1 GET. Not tests themselves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// One synthetic video of a test library.
pub struct Synthetic<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub published_at_unix: u64,
    pub duration_seconds: f64,
    pub signed: bool,
}

/// Publishes `video` into `library` with `kinema bench library` (files of
/// exact sizes, not playable media, made in milliseconds), then gives its
/// manifests the chosen title, date, duration and policy.
pub fn publish_synthetic(library: &Path, video: &Synthetic) {
    let output = Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(["bench", "library", "--library"])
        .arg(library)
        .args([
            "--id",
            video.id,
            "--bitrates",
            "0.1mbit,0.3mbit",
            "--segments",
            "1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run kinema bench library");
    assert!(
        output.status.success(),
        "kinema bench library failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let video_dir = library.join("videos").join(video.id);
    let current = video_dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&current).expect("read manifest.json"))
            .expect("manifest.json is JSON");
    manifest["title"] = video.title.into();
    manifest["published_at_unix"] = video.published_at_unix.into();
    manifest["duration_seconds"] = video.duration_seconds.into();
    manifest["access"] = if video.signed { "signed" } else { "public" }.into();
    let generation = format!("g{}", manifest["generation"]);
    let text = serde_json::to_vec_pretty(&manifest).expect("serialise the manifest");
    // The generation's own copy too, so both say the same.
    for path in [current, video_dir.join(generation).join("manifest.json")] {
        std::fs::write(&path, &text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

/// A plain HTTP/1.1 GET (or `method`) of `path`, with a bearer token if
/// given: the status and the body.
pub fn http(address: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// GET `path` and parse the JSON body, asserting the status.
pub fn get_json(address: SocketAddr, path: &str, token: Option<&str>, status: u16) -> Value {
    let (got, body) = http(address, "GET", path, token);
    assert_eq!(got, status, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
}

/// The ids of a catalogue page, in order.
pub fn ids(page: &Value) -> Vec<String> {
    page["videos"]
        .as_array()
        .expect("a catalogue page lists videos")
        .iter()
        .map(|video| video["id"].as_str().expect("an id").to_string())
        .collect()
}
