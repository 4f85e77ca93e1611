//! The cluster's headline, with real players: hls.js in headless Chromium
//! plays a steered stream from one of three `kinema edge` nodes (127.0.0.2,
//! .3 and .4, one port) in front of `kinema serve`, the edge its fragments
//! come from is SIGKILLed mid-playback, and playback goes on from another
//! pathway (web/tests/failover.mjs, with a 4 s buffer so that going on needs
//! fragments fetched after the kill); then dash.js does the same on the two
//! edges left.
//!
//! Needs what `scripts/install-deps` provides: ffmpeg, node, Chromium at
//! /usr/bin/chromium and the built web UI (web/node_modules, web/dist). A
//! missing piece fails the test with the command that provides it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::*;

/// Seconds of the clip: the kill at 3 s plus 10 s of playback after it,
/// with segments to spare.
const CLIP_SECONDS: u32 = 24;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A library holding `clip`, a moving test pattern with a tone, ingested
/// with `kinema ingest` (real media: the player decodes it).
fn library(dir: &Path) -> PathBuf {
    let clip = dir.join("clip.mp4");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=640x360:rate=25:duration={CLIP_SECONDS}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:duration={CLIP_SECONDS}"),
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&clip));
    let library = dir.join("library");
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .arg("ingest")
        .arg(&clip)
        .arg("--library")
        .arg(&library)
        .args(["--id", "clip", "--title", "Cluster failover clip"]));
    library
}

#[test]
fn hls_js_and_dash_js_play_on_when_the_edge_they_play_from_is_killed() {
    let root = repo_root();
    for (needed, provider) in [
        (
            "web/node_modules/playwright-core",
            "scripts/install-deps (npm ci in web/)",
        ),
        (
            "web/dist/vendor/hls.min.js",
            "scripts/install-deps (npm run build in web/)",
        ),
    ] {
        assert!(
            root.join(needed).exists(),
            "{needed} is missing; run {provider}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let library = library(dir.path());

    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let origin = Node::start(
        kinema()
            .args(["serve", "--listen", &origin_http])
            .arg("--library")
            .arg(&library)
            .arg("--web-root")
            .arg(root.join("web/dist"))
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let joined = origin.wait_for_line(&["joined the cluster", "node=origin"]);
    let seed = gossip_address(&joined);
    origin.wait_for_line(&["origin serving"]);

    let port = shared_port();
    let ids = ["edge-a", "edge-b", "edge-c"];
    let addresses: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|host| format!("{host}:{port}"))
        .collect();
    let edges: Vec<Node> = ids
        .iter()
        .zip(&addresses)
        .map(|(id, http)| edge(dir.path(), id, http, &origin_http, &seed, &keys))
        .collect();
    let pathways: Vec<String> = ids.iter().map(|id| pathway_of(id)).collect();
    for address in &addresses {
        steer_until(address, "saw the whole cluster", |now| {
            now.len() == 4 && pathways.iter().all(|pathway| now.contains(pathway))
        });
    }

    // hls.js first, then dash.js on the edges left.
    let mut alive: Vec<(String, u32)> = addresses
        .iter()
        .zip(&edges)
        .map(|(address, edge)| (address.clone(), edge.child.id()))
        .collect();
    for (player, file) in [("hls", "master.m3u8"), ("dash", "manifest.mpd")] {
        let url = format!("http://{}/v/clip/{file}", alive[0].0);
        let report = play_and_kill(&root, player, &url, &alive);
        let killed = report["killed"].as_str().unwrap().to_owned();
        alive.retain(|(address, _)| *address != killed);
        // The next run starts once the others have dropped the killed edge.
        let gone = pathways[addresses.iter().position(|a| *a == killed).unwrap()].clone();
        for (address, _) in &alive {
            steer_until(address, "dropped the killed edge", |now| {
                !now.contains(&gone)
            });
        }
    }
    drop(edges);
}

/// Runs web/tests/failover.mjs with `player` on `url`, the edges `alive`
/// (address, pid) killable; checks and returns its report.
fn play_and_kill(
    root: &Path,
    player: &str,
    url: &str,
    alive: &[(String, u32)],
) -> serde_json::Value {
    let kill: Vec<String> = alive
        .iter()
        .map(|(address, pid)| format!("{address}={pid}"))
        .collect();
    let output = Command::new("node")
        .arg("web/tests/failover.mjs")
        .args(["--player", player, "--url", url])
        .args(["--kill", &kill.join(",")])
        .args(["--kill-at", "3", "--after", "10", "--buffer", "4"])
        .args(["--timeout", "120"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("node runs (install Node.js, e.g. scripts/install-deps)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("failover.mjs {player}: {stdout}");
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|error| panic!("no JSON report ({error}): {stdout}\n{stderr}"));
    assert!(output.status.success(), "{player}: {stdout}\n{stderr}");
    // Checked here too, not only by the script's verdict.
    let killed_at = report["killedAt"].as_f64().unwrap();
    let reached = report["currentTime"].as_f64().unwrap();
    assert!(reached > killed_at + 10.0, "{report}");
    let killed = report["killed"].as_str().unwrap();
    let after: Vec<&str> = report["hostsAfterKill"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|host| host.as_str())
        .collect();
    assert!(!after.is_empty() && !after.contains(&killed), "{report}");
    assert_eq!(
        report["fatal"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    println!(
        "{player}: killed {killed} at {killed_at:.1} s (buffered to {:.1} s); playback reached {reached:.1} s, {} s of wall time after the kill, fragments then from {after:?}, {} stall(s)",
        report["bufferedAtKill"].as_f64().unwrap_or(0.0),
        report["wallSecondsToGoOn"],
        report["stalls"]
    );
    report
}
