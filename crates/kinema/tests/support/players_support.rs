//! What the player tests (../players.rs) share: a library with an ingested
//! clip ([`Fixture`]), a running `kinema serve` ([`Server`]), the node
//! scripts of web/tests run from the repository root, and the checks of
//! what those scripts report, made independently of their own verdicts.
//! Not tests themselves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use kinema_test_support::shaped_link;

pub const VIDEO_ID: &str = "clip";
/// Position each player must pass: far enough that playback is running,
/// not only started, with segments of the 8 s clip to spare.
pub const PLAY_SECONDS: f64 = 3.0;

/// The sidecar subtitles every ingested fixture carries: two cues whose
/// times the players' text tracks must show.
pub const SUBTITLES_SRT: &str =
    "1\n00:00:01,000 --> 00:00:02,500\nBonjour\n\n2\n00:00:04,000 --> 00:00:06,000\nAu revoir\n";

/// The step of ui.mjs's report named `name`; panics naming the steps there are.
pub fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|step| step["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in {:?}", step_names(steps)))
}

pub fn step_names(steps: &[Value]) -> Vec<&str> {
    steps
        .iter()
        .map(|step| step["step"].as_str().unwrap_or("?"))
        .collect()
}

/// Checks what the watch page's steps report, independently of ui.mjs's
/// own verdict: the keyboard moved the time by the keys' amounts, the
/// pinned rung is on screen, the phone player stayed below the top rung and
/// the stats overlay filled in.
pub fn check_watch_page_steps(steps: &[Value], lowest_height: u64) {
    let times: Vec<f64> = step(steps, "seek with the keyboard")["times"]
        .as_array()
        .expect("the keyboard step reports the times it saw")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let moves: Vec<f64> = times
        .windows(2)
        .map(|pair| ((pair[1] - pair[0]) * 10.0).round() / 10.0)
        .collect();
    // l, ArrowRight, j, ArrowLeft: the clip is long enough for none to clamp.
    assert_eq!(moves, [10.0, 5.0, -10.0, -5.0], "times seen: {times:?}");

    let pinned = step(steps, "pin the lowest rung from the quality menu");
    let on_screen = pinned["onScreen"]
        .as_str()
        .expect("the picture size decoded");
    assert!(
        on_screen.ends_with(&format!("x{lowest_height}")),
        "pinned the lowest rung ({lowest_height}p in manifest.json) but {on_screen} is on screen"
    );
    assert_eq!(pinned["badge"], format!("{lowest_height}p"));

    for engine in ["hls.js", "dash.js"] {
        let phone = step(
            steps,
            &format!("start {engine} below the top rung in a 390x844 phone player"),
        );
        let top = phone["top"].as_u64().expect("the top rung");
        let pictures = phone["pictures"].as_array().expect("the pictures shown");
        assert!(!pictures.is_empty(), "phone: {phone}");
        for picture in pictures {
            let height: u64 = picture
                .as_str()
                .and_then(|size| size.split('x').nth(1))
                .and_then(|height| height.parse().ok())
                .unwrap_or_else(|| panic!("picture size {picture}"));
            assert!(
                height < top,
                "the phone player showed {picture}, the top rung: {phone}"
            );
        }
    }

    let stats = step(steps, "show the stats overlay")["stats"]
        .as_array()
        .expect("the stats overlay's values")
        .clone();
    assert_eq!(stats.len(), 6, "stats: {stats:?}");
    assert!(
        stats
            .iter()
            .all(|value| value.as_str().is_some_and(|text| text != "—")),
        "stats: {stats:?}"
    );
}

/// Where a test's screenshots go: target/ui-screenshots/TEST. Not emptied
/// first: another run of the same test may be writing there (a stale file
/// cannot pass for a new one, as ui.mjs lists only what it wrote).
pub fn screenshot_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory holds tmp/")
        .join("ui-screenshots")
        .join(test)
}

/// Every screenshot ui.mjs names is a PNG in `dir`, and all the watch page's
/// sizes are there; prints where they are, to be looked at.
pub fn check_screenshots(report: &Value, dir: &Path) {
    let paths: Vec<PathBuf> = report["screenshots"]
        .as_array()
        .expect("ui.mjs lists its screenshots")
        .iter()
        .map(|path| repo_root().join(path.as_str().expect("a path")))
        .collect();
    for name in [
        "library-1280x800.png",
        "watch-1280x800.png",
        "watch-settings-1280x800.png",
        "watch-390x844.png",
        "watch-settings-390x844.png",
        "library-360x740.png",
    ] {
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        assert!(
            paths.iter().any(|listed| listed.ends_with(name)),
            "{name} not listed: {paths:?}"
        );
    }
    println!("web UI screenshots: {}", dir.display());
}

/// Parses play.mjs's JSON line and checks what it claims, independently of
/// its own verdict; returns a one-line summary.
pub fn check_play(
    output: &Output,
    lowest_height: Option<u64>,
    audio_language: Option<&str>,
) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().ok_or("play.mjs printed nothing")?;
    let report: Value = serde_json::from_str(line)
        .map_err(|error| format!("play.mjs output is not JSON: {error}"))?;
    if !output.status.success() || report["ok"] != true {
        return Err(format!("play.mjs failed ({})", output.status));
    }
    let errors = report["errors"].as_array().map_or(0, Vec::len);
    if errors != 0 {
        return Err(format!("{errors} player errors reported"));
    }
    let current_time = report["currentTime"].as_f64().unwrap_or(0.0);
    if current_time <= PLAY_SECONDS {
        return Err(format!(
            "currentTime {current_time} did not pass {PLAY_SECONDS}"
        ));
    }
    let height = report["height"].as_u64();
    if let Some(expected) = lowest_height {
        let played: Vec<u64> = report["heightsPlayed"]
            .as_array()
            .map(|heights| heights.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if height != Some(expected) || played.iter().any(|&h| h != expected) {
            return Err(format!(
                "asked for the lowest rung, {expected}p in manifest.json, but played {played:?}"
            ));
        }
    }
    if let Some(language) = audio_language {
        // The fixture's three tracks, in the source's order; the 5.1 one
        // offered as its stereo downmix (its AC-3 is not playable here).
        let offered: Vec<&str> = report["audioTracks"]
            .as_array()
            .map(|tracks| {
                tracks
                    .iter()
                    .filter_map(|t| t["language"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if offered != ["en", "fr", "en"] {
            return Err(format!(
                "audio tracks offered: {offered:?}, expected en, fr, en"
            ));
        }
        if report["audioLanguage"] != language {
            return Err(format!(
                "asked for audio in {language}, playing {}",
                report["audioLanguage"]
            ));
        }
    }
    Ok(format!(
        "{} reached {current_time:.2} s at {}p",
        report["engine"].as_str().unwrap_or("?"),
        height.unwrap_or(0)
    ))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a web/tests script with node from the repository root.
pub fn run_node(script: &str, args: &[&str]) -> Output {
    let root = repo_root();
    for (needed, provider) in [
        (
            "web/node_modules/playwright-core",
            "scripts/install-deps (npm ci in web/)",
        ),
        (
            "web/dist/test-player.html",
            "scripts/install-deps (npm run build in web/)",
        ),
    ] {
        assert!(
            root.join(needed).exists(),
            "{needed} is missing; run {provider}"
        );
    }
    Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run node (install Node.js, e.g. scripts/install-deps): {error}")
        })
}

/// A library holding one ingested clip, in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// The clip ingested with `kinema ingest` as [`VIDEO_ID`].
    pub fn new() -> Self {
        Self::ingested(&[])
    }

    /// The clip ingested as [`VIDEO_ID`] with its French subtitles
    /// ([`SUBTITLES_SRT`]) and extra `kinema ingest` flags.
    pub fn ingested(flags: &[&str]) -> Self {
        Self::ingested_of(8, flags)
    }

    /// [`Fixture::ingested`] with a clip of `seconds`.
    pub fn ingested_of(seconds: u32, flags: &[&str]) -> Self {
        let fixture = Self::with_clip_of(seconds);
        let subtitles = fixture.dir.path().join("clip.fr.srt");
        std::fs::write(&subtitles, SUBTITLES_SRT).expect("write the subtitles");
        run(Command::new(env!("CARGO_BIN_EXE_kinema"))
            .arg("ingest")
            .arg(fixture.clip())
            .arg("--library")
            .arg(fixture.library())
            .args(["--id", VIDEO_ID, "--title", "Players test clip"])
            .arg("--subtitles")
            .arg(format!("fr={}", subtitles.display()))
            .args(flags));
        fixture
    }

    /// The clip made, the library still empty.
    pub fn without_videos() -> Self {
        Self::with_clip_of(8)
    }

    /// A clip of `seconds` made, the library still empty.
    pub fn with_clip_of(seconds: u32) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clip = dir.path().join("clip.mp4");
        // kinema serve wants an existing library; ingest makes its own.
        std::fs::create_dir(dir.path().join("library")).expect("library directory");
        // 8 s of moving test pattern (by default): long enough to pass 3 s
        // of playback with segments to spare, small enough to encode
        // quickly. 16:9,
        // whose 426x240 rung does not keep the exact aspect ratio of the
        // source: the ladder must still package and play. Three audio
        // tracks: English (default) and French stereo, and English 5.1,
        // whose AC-3 rendition Chromium cannot decode and must be skipped.
        run(Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size=640x360:rate=25:duration={seconds}"),
            ])
            .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}")])
            .args(["-f", "lavfi", "-i", &format!("sine=frequency=660:duration={seconds}")])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("aevalsrc=sin(440*2*PI*t)|sin(550*2*PI*t)|sin(660*2*PI*t)|0.1*sin(55*2*PI*t)|sin(330*2*PI*t)|sin(770*2*PI*t):c=5.1:d={seconds}"),
            ])
            .args(["-map", "0", "-map", "1", "-map", "2", "-map", "3"])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ])
            .args(["-c:a", "aac", "-shortest"])
            .args(["-metadata:s:a:0", "language=eng"])
            .args(["-metadata:s:a:1", "language=fre"])
            .args(["-metadata:s:a:2", "language=eng", "-metadata:s:a:2", "title=English 5.1"])
            .args(["-disposition:a:0", "default", "-disposition:a:1", "0", "-disposition:a:2", "0"])
            .arg(&clip));
        Self { dir }
    }

    pub fn clip(&self) -> PathBuf {
        self.dir.path().join("clip.mp4")
    }

    pub fn library(&self) -> PathBuf {
        self.dir.path().join("library")
    }

    /// Makes an admin API token (scope write: list, upload, delete) in the
    /// fixture's own token file and returns its secret.
    pub fn admin_token(&self) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_kinema"))
            .args(["tokens", "new", "--scope", "write", "--tokens"])
            .arg(self.dir.path().join("tokens.toml"))
            .stdin(Stdio::null())
            .output()
            .expect("run kinema tokens new");
        assert!(
            output.status.success(),
            "kinema tokens new failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let secret = String::from_utf8(output.stdout).expect("utf-8 secret");
        secret.trim().to_string()
    }

    /// The smallest video rendition the ingest published, per manifest.json.
    pub fn lowest_video_height(&self) -> u64 {
        let path = self
            .library()
            .join(format!("videos/{VIDEO_ID}/manifest.json"));
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display())),
        )
        .expect("manifest.json is JSON");
        manifest["renditions"]
            .as_array()
            .expect("manifest lists renditions")
            .iter()
            .filter(|rendition| rendition["kind"] == "video")
            .filter_map(|rendition| rendition["height"].as_u64())
            .min()
            .expect("manifest has a video rendition")
    }

    /// Starts `kinema serve` on a loopback port the kernel picks and waits
    /// until /healthz answers.
    pub fn serve(&self) -> Server {
        self.serve_with(Command::new(env!("CARGO_BIN_EXE_kinema")), "127.0.0.1")
    }

    /// Starts `kinema serve` inside `link`'s namespace, reached through it.
    pub fn serve_behind(&self, link: &shaped_link::ShapedLink) -> Server {
        self.serve_with(
            link.command(env!("CARGO_BIN_EXE_kinema")),
            &link.address().to_string(),
        )
    }

    /// Starts `kinema serve` with `command` (the binary, or a wrapper that
    /// runs it) on a port the kernel picks at `host`, and waits until
    /// /healthz answers.
    pub fn serve_with(&self, mut command: Command, host: &str) -> Server {
        let mut child = command
            .arg("serve")
            .arg("--library")
            .arg(self.library())
            .args(["--listen", &format!("{host}:0")])
            .arg("--web-root")
            .arg(repo_root().join("web/dist"))
            // The fixture's own access files, never the working directory's.
            .arg("--tokens")
            .arg(self.dir.path().join("tokens.toml"))
            .arg("--keys")
            .arg(self.dir.path().join("keys.toml"))
            // Signer and verifier share one clock here: a token's lifetime
            // ends when it says, give or take a second.
            .args(["--auth-skew", "1s"])
            // Plain log lines, so the address can be read from them.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kinema serve");
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let log_writer = Arc::clone(&log);
        // Drains the log for the server's whole life (a full pipe would
        // block it) and hands over the first bound address it names.
        std::thread::spawn(move || {
            let mut address_sender = Some(address_sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = bound_address(&line)
                    && let Some(sender) = address_sender.take()
                {
                    let _ = sender.send(address);
                }
                log_writer.lock().expect("log lock").push(line);
            }
        });
        let mut server = Server {
            child,
            address: "0.0.0.0:0".parse().expect("placeholder address"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        server.address = match address_receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address,
            Err(_) => panic!(
                "kinema serve named no listening address within 30 s; log:\n{}",
                server.log_tail()
            ),
        };
        loop {
            if http_get_status(server.address, "/healthz") == Some(200) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "kinema serve exited ({status}); log:\n{}",
                    server.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kinema serve did not answer /healthz within 30 s; log:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running `kinema serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log[log.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the server's "origin serving address=IP:PORT" log line,
/// if this is it.
pub fn bound_address(line: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    if !line.contains("origin serving") {
        return None;
    }
    let rest = line.split("address=").nth(1)?;
    rest.split(|c: char| c.is_whitespace() || c == ',')
        .next()?
        .parse()
        .ok()
}

/// The text of a log line without terminal colour codes (`ESC [ … m`), in
/// case the logger colours it anyway.
pub fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for code in chars.by_ref() {
                if code.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Status code of a plain HTTP/1.1 GET, or None if the server is not
/// answering (yet).
pub fn http_get_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Runs a setup command; a failure panics with its output.
pub fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
