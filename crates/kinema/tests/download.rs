//! Trick play and download as a user gets them: `kinema ingest --download
//! HEIGHT` on a clip made by real ffmpeg, then `kinema serve` on port 0:
//! `download.mp4` is listed in `manifest.json` and answers a Range request
//! with 206 and exactly those bytes as `video/mp4`; the I-frame playlists
//! are served as playlists; `--download off` writes no MP4.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The directory of the current generation of video `id` in `library`:
/// where its files are (`videos/{id}/g{N}/`).
fn generation_dir(library: &Path, id: &str) -> std::path::PathBuf {
    let id = kinema_core::VideoId::new(id).unwrap();
    let current =
        std::fs::read(library.join(kinema_store::layout::current_manifest_key(&id))).unwrap();
    let generation = kinema_core::Manifest::from_json(&current)
        .unwrap()
        .generation;
    library.join(kinema_store::layout::generation_prefix(&id, generation).trim_end_matches('/'))
}

/// A 3 s 320x180 clip with a tone, made by ffmpeg.
fn clip(dir: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=320x180:r=25:d=3")
        .args(["-f", "lavfi", "-i", "sine=d=3", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-c:a", "aac", "-shortest"])
        .arg(dir.join("clip.mp4"))
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
}

fn kinema(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    // Settings must come from each test alone.
    for (name, _) in std::env::vars() {
        if name.starts_with("KINEMA_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1").current_dir(dir);
    command
}

fn ingest(dir: &Path, args: &[&str]) -> Output {
    let output = kinema(dir)
        .args(["ingest", "clip.mp4", "--library", "library"])
        .args(["--preset", "ultrafast", "--quiet"])
        .args(args)
        .output()
        .expect("kinema runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `kinema serve` over `dir/library`, and the address it logged.
#[allow(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which kills and waits for it"
)]
fn serve(dir: &Path) -> (Child, SocketAddr) {
    let mut child = kinema(dir)
        .args(["serve", "--library", "library", "--listen", "127.0.0.1:0"])
        .args(["--web-root", "/nonexistent"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kinema runs");
    // A thread keeps reading the log (a closed pipe would fail the
    // server's writes) and sends the address once it is logged.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (address_sender, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if line.contains("origin serving")
                && let Some(rest) = line.split("address=").nth(1)
            {
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = address_sender.send(address);
            }
        }
    });
    if let Ok(address) = address.recv_timeout(Duration::from_secs(30)) {
        return (child, address.parse().unwrap());
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kinema serve logged no address within 30 s");
}

/// One HTTP/1.1 request: (head, body).
fn get(address: SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    (
        String::from_utf8_lossy(&response[..split]).to_lowercase(),
        response[split + 4..].to_vec(),
    )
}

#[test]
fn download_mp4_is_listed_and_served_with_range() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    clip(dir);
    ingest(dir, &["--download", "144"]);
    let video = generation_dir(&dir.join("library"), "clip");
    let manifest = std::fs::read_to_string(video.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"download.mp4\""), "{manifest}");
    let whole = std::fs::read(video.join("download.mp4")).unwrap();
    // The rung nearest 144 lines was remuxed.
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=height", "-of", "csv=p=0"])
        .arg(video.join("download.mp4"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "144");

    let (mut server, address) = serve(dir);
    let (head, body) = get(address, "/v/clip/download.mp4", "Range: bytes=100-1099\r\n");
    let (iframes_head, iframes) = get(address, "/v/clip/v144/iframes.m3u8", "");
    let (master_head, master) = get(address, "/v/clip/master.m3u8", "");
    let generation = video.file_name().unwrap().to_str().unwrap().to_owned();
    let _ = server.kill();
    let _ = server.wait();

    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(head.contains("content-type: video/mp4"), "{head}");
    assert!(
        head.contains(&format!("content-range: bytes 100-1099/{}", whole.len())),
        "{head}"
    );
    assert_eq!(body, whole[100..1100]);
    assert!(iframes_head.starts_with("http/1.1 200"), "{iframes_head}");
    assert!(
        iframes_head.contains("content-type: application/vnd.apple.mpegurl"),
        "{iframes_head}"
    );
    assert!(String::from_utf8_lossy(&iframes).contains("#EXT-X-I-FRAMES-ONLY"));
    assert!(master_head.starts_with("http/1.1 200"), "{master_head}");
    assert!(
        String::from_utf8_lossy(&master)
            .contains(&format!("URI=\"{generation}/v144/iframes.m3u8\"")),
        "{}",
        String::from_utf8_lossy(&master)
    );
}

#[test]
fn download_off_writes_no_mp4() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    clip(dir);
    ingest(dir, &["--download", "off"]);
    let video = generation_dir(&dir.join("library"), "clip");
    assert!(video.join("manifest.json").exists());
    assert!(!video.join("download.mp4").exists());
}

/// What `kinema ingest` prints is what plays: a public video's URLs, and
/// for a signed one (whose plain URLs answer 403) the command that makes a
/// signed URL instead.
#[test]
fn ingest_prints_urls_that_play_or_how_to_sign_them() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    clip(dir);
    let public = ingest(dir, &["--id", "open", "--download", "off"]);
    let public = String::from_utf8(public.stdout).unwrap();
    assert!(public.contains("HLS:  /v/open/master.m3u8"), "{public}");
    assert!(public.contains("DASH: /v/open/manifest.mpd"), "{public}");

    let signed = ingest(
        dir,
        &["--id", "closed", "--access", "signed", "--download", "off"],
    );
    let signed = String::from_utf8(signed.stdout).unwrap();
    assert!(!signed.contains("/v/closed/"), "{signed}");
    assert!(signed.contains("kinema sign closed"), "{signed}");
}
