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

use std::process::{Command, Stdio};

use kinema_test_support::shaped_link;
use serde_json::Value;

#[path = "support/players_support.rs"]
mod players_support;

use players_support::*;

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
/// The page and its scripts come from a second server over loopback, as a
/// site's pages come from elsewhere than its media: 1.4 MB of player
/// scripts through the thin link took most of a minute and, crowding it,
/// starved the page's own small script until its connection was reset.
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
    let pages = fixture.serve();
    let url = format!("http://{}/v/{VIDEO_ID}/master.m3u8", server.address);
    let page = format!("http://{}/ui/test-player.html", pages.address);
    let output = run_node(
        "web/tests/play.mjs",
        &[
            "--player",
            "hls",
            "--url",
            &url,
            "--page",
            &page,
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
