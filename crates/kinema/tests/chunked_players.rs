//! Real players across the seams of a chunked encode: the players' test
//! clip (24 s here) is encoded in 6 s chunks, each chunk a separate call
//! into its own directory, its audio once, and assembled into the library;
//! `kinema serve` serves it, and hls.js and dash.js in headless Chromium
//! play it from the start across the chunk boundaries at 6 s and 12 s
//! (web/tests/chunked_play.mjs) at the automatic quality and pinned to the
//! lowest rung, with no stall, no error, no seek and one buffered range.
//!
//! Needs what `scripts/install-deps` provides (ffmpeg, node, Chromium, the
//! built web UI); a missing piece fails the test, never skips it.

use std::path::Path;

use kinema_core::ladder::LadderConfig;
use kinema_core::{AccessPolicy, VideoId};
use kinema_media::IngestConfig;
use kinema_media::chunked::{self, AssembleRequest, ChunkConfig};
use kinema_store::LocalStore;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[path = "support/players_support.rs"]
#[allow(dead_code, reason = "shared with players.rs, which uses all of it")]
mod players_support;

use players_support::*;

/// Copies every file under `from` into `to` (what a worker does when it
/// fetches a task's outputs into the assembling machine's scratch).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Encodes the fixture's clip chunked into its library as [`VIDEO_ID`].
async fn ingest_chunked(fixture: &Fixture) {
    let config = IngestConfig {
        ladder: LadderConfig {
            segment_seconds: 2,
            ..LadderConfig::default()
        },
        chunked: ChunkConfig { chunk_seconds: 6 },
        ..IngestConfig::default()
    };
    let plan = chunked::probe_and_plan(&config, &fixture.clip(), &[])
        .await
        .unwrap();
    assert_eq!(plan.chunks.len(), 4, "24 s in 6 s chunks");
    let scratch = tempfile::tempdir().unwrap();
    let staging = scratch.path().join("staging");
    let cancel = CancellationToken::new();
    for index in 0..plan.chunks.len() {
        let out = scratch.path().join(format!("chunk{index}"));
        chunked::run_chunk(
            &config,
            &plan,
            index,
            &fixture.clip(),
            &out,
            &cancel,
            &|_| {},
        )
        .await
        .unwrap_or_else(|error| panic!("chunk {index}: {error}"));
        copy_tree(&out, &staging);
    }
    let audio = scratch.path().join("audio");
    chunked::run_audio(&config, &plan, &fixture.clip(), &audio, &cancel, &|_| {})
        .await
        .unwrap();
    copy_tree(&audio, &staging);
    let store = LocalStore::open(fixture.library()).unwrap();
    let request = AssembleRequest {
        id: VideoId::new(VIDEO_ID).unwrap(),
        title: "Chunked clip".to_string(),
        access: AccessPolicy::Public,
    };
    chunked::assemble(&store, &config, &plan, &staging, &request, &cancel, &|_| {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_and_dash_js_play_across_chunk_boundaries() {
    let fixture = Fixture::with_clip_of(24);
    ingest_chunked(&fixture).await;
    let server = fixture.serve();
    let mut failures = Vec::new();
    for (player, file, lowest) in [
        ("hls", "master.m3u8", false),
        ("hls", "master.m3u8", true),
        ("dash", "manifest.mpd", false),
        ("dash", "manifest.mpd", true),
    ] {
        let url = format!("http://{}/v/{VIDEO_ID}/{file}", server.address);
        let mut args = vec![
            "--player",
            player,
            "--url",
            &url,
            "--boundaries",
            "6,12",
            "--timeout",
            "90",
        ];
        if lowest {
            args.push("--lowest");
        }
        let case = format!("{player}{}", if lowest { " --lowest" } else { "" });
        let output = tokio::task::block_in_place(|| run_node("web/tests/chunked_play.mjs", &args));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value =
            serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null);
        // The script's verdict, and what it reports checked here too.
        let played = output.status.success()
            && report["ok"] == true
            && report["errors"].as_array().is_some_and(Vec::is_empty)
            && report["stalls"] == 0
            && report["seeks"] == 0
            && report["currentTime"].as_f64().unwrap_or(0.0) > 13.0;
        if played {
            eprintln!(
                "{case}: reached {:.2} s, buffered {}, heights {}",
                report["currentTime"].as_f64().unwrap_or(0.0),
                report["buffered"],
                report["heightsPlayed"]
            );
        } else {
            failures.push(format!(
                "{case}:\n  stdout: {}\n  stderr: {}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "players stumbled on a chunk boundary:\n{}\nserver log tail:\n{}",
        failures.join("\n"),
        server.log_tail()
    );
}
