//! Real players against the real binary: a clip made with ffmpeg is ingested
//! with `kinema ingest`, served with `kinema serve`, and played in headless
//! Chromium by hls.js and dash.js (web/tests/play.mjs), at the automatic
//! quality and pinned to the lowest rung; the web UI is walked through
//! (web/tests/ui.mjs): the library lists the video and its watch page plays
//! it under the page's own controls (keyboard seeking, the quality menu, a
//! phone-sized start rung), with screenshots in target/ui-screenshots/.
//!
//! Needs what `scripts/install-deps` provides: ffmpeg, node, Chromium at
//! /usr/bin/chromium and the built web UI (web/node_modules, web/dist). A
//! missing piece fails the test with the command that provides it, never
//! skips it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/shaped_link.rs"]
mod shaped_link;

const VIDEO_ID: &str = "clip";
/// Position each player must pass: far enough that playback is running,
/// not only started, with segments of the 8 s clip to spare.
const PLAY_SECONDS: f64 = 3.0;

/// The sidecar subtitles every ingested fixture carries: two cues whose
/// times the players' text tracks must show.
const SUBTITLES_SRT: &str =
    "1\n00:00:01,000 --> 00:00:02,500\nBonjour\n\n2\n00:00:04,000 --> 00:00:06,000\nAu revoir\n";

#[test]
fn hls_js_and_dash_js_play_at_auto_and_lowest_quality() {
    let fixture = Fixture::new();
    let server = fixture.serve();
    let lowest_height = fixture.lowest_video_height();

    // The French cases switch audio language while playing.
    let cases = [
        ("hls", "master.m3u8", false, None),
        ("hls", "master.m3u8", true, None),
        ("dash", "manifest.mpd", false, None),
        ("dash", "manifest.mpd", true, None),
        ("hls", "master.m3u8", false, Some("fr")),
        ("dash", "manifest.mpd", false, Some("fr")),
    ];
    // Every case runs even after one fails, so one run reports them all.
    let mut failures = Vec::new();
    for (player, file, lowest, language) in cases {
        let url = format!("http://{}/v/{VIDEO_ID}/{file}", server.address);
        let case = format!(
            "{player}{}{}",
            if lowest { " --lowest" } else { "" },
            language
                .map(|l| format!(" --audio-language {l}"))
                .unwrap_or_default()
        );
        let mut args = vec!["--player", player, "--url", &url, "--timeout", "90"];
        if lowest {
            args.push("--lowest");
        }
        if let Some(language) = language {
            args.extend(["--audio-language", language]);
        }
        let output = run_node("web/tests/play.mjs", &args);
        match check_play(&output, lowest.then_some(lowest_height), language) {
            Ok(summary) => eprintln!("{case}: {summary}"),
            Err(why) => failures.push(format!(
                "{case}: {why}\n  stdout: {}\n  stderr: {}",
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "players failed:\n{}\nserver log tail:\n{}",
        failures.join("\n"),
        server.log_tail()
    );
}

/// The French subtitles reach the browser's own text track through hls.js
/// (segmented WebVTT with X-TIMESTAMP-MAP) and dash.js (one WebVTT file),
/// each cue at the time the SRT gave it.
#[test]
fn hls_js_and_dash_js_show_subtitle_cues_at_their_times() {
    let fixture = Fixture::new();
    let server = fixture.serve();
    let mut failures = Vec::new();
    for (player, file) in [("hls", "master.m3u8"), ("dash", "manifest.mpd")] {
        let url = format!("http://{}/v/{VIDEO_ID}/{file}", server.address);
        let args = [
            "--player",
            player,
            "--url",
            &url,
            "--subtitles",
            "fr",
            "--timeout",
            "90",
        ];
        let output = run_node("web/tests/play.mjs", &args);
        if let Err(why) = check_play(&output, None, None) {
            failures.push(format!(
                "{player}: {why}\n  stdout: {}\n  stderr: {}",
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
            continue;
        }
        let report: Value = serde_json::from_str(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .unwrap_or("{}"),
        )
        .unwrap_or(Value::Null);
        let cues: Vec<(f64, f64, String)> = report["cues"]
            .as_array()
            .map(|cues| {
                cues.iter()
                    .map(|cue| {
                        (
                            cue["start"].as_f64().unwrap_or(-1.0),
                            cue["end"].as_f64().unwrap_or(-1.0),
                            cue["text"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (start, end, text) in [(1.0, 2.5, "Bonjour"), (4.0, 6.0, "Au revoir")] {
            // A cue split at a segment boundary may come as two; one
            // covering the start with the right text is what a viewer sees.
            let shown = cues.iter().any(|(s, e, t)| {
                t == text && (s - start).abs() < 0.1 && *e > start && *e <= end + 0.1
            });
            if !shown {
                failures.push(format!(
                    "{player}: no cue {text:?} at {start} s in {cues:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "subtitles failed:\n{}\nserver log tail:\n{}",
        failures.join("\n"),
        server.log_tail()
    );
}

/// A viewer whose last mile carries 250 kbit/s: the server sits in a network
/// namespace behind a veth shaped by `tc` tbf, and hls.js in Chromium plays
/// 24 s of a 30 s clip on its own (automatic quality) with no stall once
/// playback has started, because the lowest variant, audio included, fits.
#[test]
fn hls_js_plays_without_stalls_behind_a_250_kbit_link() {
    let fixture = Fixture::with_clip_of(30);
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .arg("ingest")
        .arg(fixture.clip())
        .arg("--library")
        .arg(fixture.library())
        .args(["--id", VIDEO_ID, "--title", "Thin link clip"]));
    let link = shaped_link::ShapedLink::new("250kbit");
    let server = fixture.serve_behind(&link);
    let url = format!("http://{}/v/{VIDEO_ID}/master.m3u8", server.address);
    let output = run_node(
        "web/tests/play.mjs",
        &[
            "--player",
            "hls",
            "--url",
            &url,
            "--seconds",
            "24",
            "--timeout",
            "150",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null);
    let summary = check_play(&output, None, None);
    assert!(
        summary.is_ok(),
        "hls.js behind 250 kbit/s: {}\n  stdout: {}\n  stderr: {}\nserver log tail:\n{}",
        summary.unwrap_err(),
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
        server.log_tail()
    );
    let stalls = report["stalls"].as_u64();
    assert_eq!(
        stalls,
        Some(0),
        "hls.js stalled behind 250 kbit/s ({} s waiting), playing {}p: {}",
        report["stalledSeconds"],
        report["heightsPlayed"],
        stdout.trim()
    );
    eprintln!(
        "behind 250 kbit/s: {}, rungs played {}",
        summary.unwrap(),
        report["heightsPlayed"]
    );
}

/// With `[ingest.ladder] av1 = true` the AV1 rungs sit beside the H.264
/// ones; Chromium decodes AV1, so hls.js and dash.js held on the lowest AV1
/// rung play it (and only it).
#[test]
fn hls_js_and_dash_js_play_the_av1_rungs() {
    let fixture = Fixture::without_videos();
    let config = fixture.dir.path().join("kinema.toml");
    std::fs::write(
        &config,
        "[ingest]\npreset = \"veryfast\"\nav1_preset = 12\n[ingest.ladder]\nav1 = true\n",
    )
    .expect("write the config");
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .arg("--config")
        .arg(&config)
        .arg("ingest")
        .arg(fixture.clip())
        .arg("--library")
        .arg(fixture.library())
        .args(["--id", VIDEO_ID]));
    let server = fixture.serve();
    let mut failures = Vec::new();
    for (player, file) in [("hls", "master.m3u8"), ("dash", "manifest.mpd")] {
        let url = format!("http://{}/v/{VIDEO_ID}/{file}", server.address);
        let args = [
            "--player",
            player,
            "--url",
            &url,
            "--codec",
            "av01",
            "--timeout",
            "90",
        ];
        let output = run_node("web/tests/play.mjs", &args);
        let report: Value = serde_json::from_str(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .unwrap_or("{}"),
        )
        .unwrap_or(Value::Null);
        if let Err(why) = check_play(&output, None, None) {
            failures.push(format!(
                "{player}: {why}\n  stdout: {}\n  stderr: {}",
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        } else if report["codecsPlayed"] != serde_json::json!(["av01"]) {
            failures.push(format!("{player}: played {}", report["codecsPlayed"]));
        }
    }
    assert!(
        failures.is_empty(),
        "AV1 playback failed:\n{}\nserver log tail:\n{}",
        failures.join("\n"),
        server.log_tail()
    );
}

/// The token sits in the path, so every relative URI in the
/// playlists resolves under the same `/s/{token}/` prefix and hls.js plays a
/// signed video from its signed master URL alone; without the token the
/// same player gets nothing.
#[test]
fn hls_js_plays_a_signed_video_from_its_signed_master_url_alone() {
    let fixture = Fixture::ingested(&["--access", "signed"]);
    let keys = fixture.dir.path().join("keys.toml");
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(["keys", "new", "--keys"])
        .arg(&keys));
    let server = fixture.serve();
    let base = format!("http://{}", server.address);
    let output = Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args([
            "sign",
            VIDEO_ID,
            "--ttl",
            "10m",
            "--base-url",
            &base,
            "--keys",
        ])
        .arg(&keys)
        .stdin(Stdio::null())
        .output()
        .expect("run kinema sign");
    assert!(
        output.status.success(),
        "kinema sign failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signed_url = String::from_utf8(output.stdout)
        .expect("utf-8 URL")
        .trim()
        .to_string();
    assert!(
        signed_url.starts_with(&format!("{base}/s/")),
        "{signed_url}"
    );

    let unsigned_master = format!("/v/{VIDEO_ID}/master.m3u8");
    assert_eq!(http_get_status(server.address, &unsigned_master), Some(403));

    let output = run_node(
        "web/tests/play.mjs",
        &["--player", "hls", "--url", &signed_url, "--timeout", "90"],
    );
    if let Err(why) = check_play(&output, None, None) {
        panic!(
            "hls.js did not play the signed URL: {why}\n  stdout: {}\n  stderr: {}\nserver log tail:\n{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim(),
            server.log_tail()
        );
    }
    let unsigned_url = format!("{base}{unsigned_master}");
    let output = run_node(
        "web/tests/play.mjs",
        &["--player", "hls", "--url", &unsigned_url, "--timeout", "30"],
    );
    assert!(
        !output.status.success(),
        "hls.js played a signed video without a token: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Length of the clip the web UI walks through: the keyboard seeks +10 s
/// and +5 s from where playback paused (about 2 s in), and the phone player
/// plays past its second segment, all within the video.
const WALK_CLIP_SECONDS: u32 = 24;

#[test]
fn web_ui_lists_the_video_and_plays_it() {
    let fixture = Fixture::ingested_of(WALK_CLIP_SECONDS, &[]);
    // A signed video beside it, which the watch page must call private.
    let private_id = "private-clip";
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .arg("ingest")
        .arg(fixture.clip())
        .arg("--library")
        .arg(fixture.library())
        .args(["--id", private_id, "--access", "signed"]));
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(["keys", "new", "--keys"])
        .arg(fixture.dir.path().join("keys.toml")));
    let token = fixture.admin_token();
    let server = fixture.serve();
    let base = format!("http://{}", server.address);
    let screenshots = screenshot_dir("web_ui_lists_the_video_and_plays_it");
    let output = run_node(
        "web/tests/ui.mjs",
        &[
            "--base",
            &base,
            "--video",
            VIDEO_ID,
            "--token",
            &token,
            "--audio",
            "French",
            "--subtitles",
            "French",
            "--private",
            private_id,
            "--screenshots",
            screenshots.to_str().expect("utf-8 target path"),
            "--timeout",
            "180",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "web UI walk failed ({}):\n  stdout: {}\n  stderr: {}\nserver log tail:\n{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
        server.log_tail()
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("ui.mjs prints one JSON line");
    let steps = report["steps"]
        .as_array()
        .expect("ui.mjs reports its steps");
    // Every step of the walk, in order; fewer would mean ui.mjs stopped
    // early yet said ok.
    assert_eq!(
        step_names(steps),
        [
            "open the library",
            "find video clip in the library",
            "open the watch page from the card",
            "play with hls.js",
            "show one set of controls",
            "seek with the keyboard",
            "pin the lowest rung from the quality menu",
            "show the stats overlay",
            "reach every control without scrolling at 1280x800",
            "choose French from the audio menu",
            "show French from the subtitle menu",
            "switch to dash.js with the protocol toggle",
            "show a trickplay thumbnail over the seek bar",
            "start hls.js below the top rung in a 390x844 phone player",
            "start dash.js below the top rung in a 390x844 phone player",
            "reach the settings in the phone player",
            "fit 360 px without sideways scrolling",
            "say plainly that a video does not exist",
            "say plainly that a video is private",
        ]
    );
    assert_eq!(steps[1]["title"], "Players test clip", "steps: {steps:?}");
    check_watch_page_steps(steps, fixture.lowest_video_height());
    // The audio menu offered the clip's three tracks by name (the two
    // English ones told apart) and French played.
    assert_eq!(
        step(steps, "choose French from the audio menu")["audio"],
        serde_json::json!(["English", "French", "English (2)"]),
        "steps: {steps:?}"
    );
    // The subtitle menu offered the French sidecar, and its cues showed.
    assert_eq!(
        step(steps, "show French from the subtitle menu")["subtitles"],
        serde_json::json!(["Off", "French"]),
        "steps: {steps:?}"
    );
    check_screenshots(&report, &screenshots);
}

#[test]
fn web_ui_unit_tests_pass() {
    let output = Command::new("node")
        .args([
            "--test",
            "web/tests/thumbnails.test.mjs",
            "web/tests/format.test.mjs",
        ])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run node (install Node.js, e.g. scripts/install-deps): {error}")
        });
    assert!(
        output.status.success(),
        "node --test failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn web_ui_uploads_a_video_then_plays_it() {
    let fixture = Fixture::with_clip_of(WALK_CLIP_SECONDS);
    let token = fixture.admin_token();
    let server = fixture.serve();
    let base = format!("http://{}", server.address);
    let clip = fixture.clip();
    let output = run_node(
        "web/tests/ui.mjs",
        &[
            "--base",
            &base,
            "--upload",
            clip.to_str().expect("utf-8 temporary path"),
            "--token",
            &token,
            "--timeout",
            "240",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "web UI upload walk failed ({}):\n  stdout: {}\n  stderr: {}\nserver log tail:\n{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
        server.log_tail()
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("ui.mjs prints one JSON line");
    let steps = report["steps"]
        .as_array()
        .expect("ui.mjs reports its steps");
    // Upload, then the walk without the audio, subtitle and private steps.
    assert_eq!(steps.len(), 17, "steps: {:?}", step_names(steps));
    let video = steps[1]["video"]
        .as_str()
        .expect("the upload names its video");
    assert!(
        fixture
            .library()
            .join(format!("videos/{video}/manifest.json"))
            .is_file(),
        "the uploaded video {video} is not published in the library"
    );
}

/// The step of ui.mjs's report named `name`; panics naming the steps there are.
fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|step| step["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in {:?}", step_names(steps)))
}

fn step_names(steps: &[Value]) -> Vec<&str> {
    steps
        .iter()
        .map(|step| step["step"].as_str().unwrap_or("?"))
        .collect()
}

/// Checks what the watch page's steps report, independently of ui.mjs's
/// own verdict: the keyboard moved the time by the keys' amounts, the
/// pinned rung is on screen, the phone player stayed below the top rung and
/// the stats overlay filled in.
fn check_watch_page_steps(steps: &[Value], lowest_height: u64) {
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
fn screenshot_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory holds tmp/")
        .join("ui-screenshots")
        .join(test)
}

/// Every screenshot ui.mjs names is a PNG in `dir`, and all the watch page's
/// sizes are there; prints where they are, to be looked at.
fn check_screenshots(report: &Value, dir: &Path) {
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
fn check_play(
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

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a web/tests script with node from the repository root.
fn run_node(script: &str, args: &[&str]) -> Output {
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
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// The clip ingested with `kinema ingest` as [`VIDEO_ID`].
    fn new() -> Self {
        Self::ingested(&[])
    }

    /// The clip ingested as [`VIDEO_ID`] with its French subtitles
    /// ([`SUBTITLES_SRT`]) and extra `kinema ingest` flags.
    fn ingested(flags: &[&str]) -> Self {
        Self::ingested_of(8, flags)
    }

    /// [`Fixture::ingested`] with a clip of `seconds`.
    fn ingested_of(seconds: u32, flags: &[&str]) -> Self {
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
    fn without_videos() -> Self {
        Self::with_clip_of(8)
    }

    /// A clip of `seconds` made, the library still empty.
    fn with_clip_of(seconds: u32) -> Self {
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

    fn clip(&self) -> PathBuf {
        self.dir.path().join("clip.mp4")
    }

    fn library(&self) -> PathBuf {
        self.dir.path().join("library")
    }

    /// Makes an admin API token (scope write: list, upload, delete) in the
    /// fixture's own token file and returns its secret.
    fn admin_token(&self) -> String {
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
    fn lowest_video_height(&self) -> u64 {
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
    fn serve(&self) -> Server {
        self.serve_with(Command::new(env!("CARGO_BIN_EXE_kinema")), "127.0.0.1")
    }

    /// Starts `kinema serve` inside `link`'s namespace, reached through it.
    fn serve_behind(&self, link: &shaped_link::ShapedLink) -> Server {
        self.serve_with(
            link.command(env!("CARGO_BIN_EXE_kinema")),
            &link.address().to_string(),
        )
    }

    /// Starts `kinema serve` with `command` (the binary, or a wrapper that
    /// runs it) on a port the kernel picks at `host`, and waits until
    /// /healthz answers.
    fn serve_with(&self, mut command: Command, host: &str) -> Server {
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
struct Server {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn log_tail(&self) -> String {
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
fn bound_address(line: &str) -> Option<SocketAddr> {
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
fn strip_ansi(line: &str) -> String {
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
fn http_get_status(address: SocketAddr, path: &str) -> Option<u16> {
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
fn run(command: &mut Command) {
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
