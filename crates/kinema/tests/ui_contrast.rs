//! The web UI's colours meet WCAG 2.x AA contrast, checked in headless
//! Chromium against the real binary (web/tests/contrast.mjs): the
//! catalogue and watch pages (its settings menu open too) as a visitor,
//! the upload and admin pages signed in, at 1280×800 and 390×844, every visible text against its
//! background (4.5:1, 3:1 for large text) and every text field's boundary
//! (3:1), from the pages' computed styles; and no page is wider than a
//! 360 px screen. The formula's own check against hand-computed pairs is
//! `web/tests/contrast.test.mjs`, run here too. Screenshots go to
//! target/ui-screenshots/ui_contrast/.
//!
//! Needs what `scripts/install-deps` provides (node, Chromium, the built
//! web UI); a missing piece fails with the command that provides it.

use std::process::{Command, Stdio};

use serde_json::Value;

#[path = "support/players_support.rs"]
#[allow(dead_code, reason = "shared with players.rs, which uses all of it")]
mod players_support;

#[path = "support/ui_support.rs"]
#[allow(dead_code, reason = "shared with ui.rs, which uses all of it")]
mod ui_support;

use players_support::{Fixture, VIDEO_ID, repo_root, run_node, screenshot_dir};
use ui_support::{Synthetic, publish_synthetic};

fn kinema(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kinema");
    assert!(
        output.status.success(),
        "kinema {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn contrast_formula_matches_hand_computed_pairs() {
    let output = Command::new("node")
        .args(["--test", "tests/contrast.test.mjs"])
        .current_dir(repo_root().join("web"))
        .output()
        .expect("node runs (scripts/install-deps installs it)");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_page_meets_aa_contrast_at_both_sizes_and_fits_360_px() {
    // A real clip (it plays, with audio and subtitle menus), and a signed
    // synthetic video the admin pages list.
    let fixture = Fixture::new();
    publish_synthetic(
        &fixture.library(),
        &Synthetic {
            id: "vault",
            title: "The vault",
            published_at_unix: 1_700_000_000,
            duration_seconds: 42.0,
            signed: true,
        },
    );
    let tokens = fixture.dir.path().join("tokens.toml");
    let token = kinema(&[
        "tokens",
        "new",
        "--scope",
        "admin",
        "--name",
        "root",
        "--tokens",
        tokens.to_str().expect("utf-8 path"),
    ])
    .trim()
    .to_string();
    let keys = fixture.dir.path().join("keys.toml");
    kinema(&["keys", "new", "--keys", keys.to_str().expect("utf-8 path")]);
    let server = fixture.serve();

    let screenshots = screenshot_dir("ui_contrast");
    let output = run_node(
        "web/tests/contrast.mjs",
        &[
            "--base",
            &format!("http://{}", server.address),
            "--token",
            &token,
            "--video",
            VIDEO_ID,
            "--screenshots",
            screenshots.to_str().expect("utf-8 target path"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "contrast check failed ({}):\n{}\nserver log tail:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        server.log_tail()
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["self_check"], 4.48, "{report}");
    let pages = report["pages"].as_array().expect("pages");
    for page in [
        "catalogue",
        "watch",
        "watch-settings",
        "upload",
        "admin-jobs",
        "admin-videos",
        "admin-tokens",
        "admin-keys",
    ] {
        for size in ["1280x800", "390x844"] {
            let audit = pages
                .iter()
                .find(|entry| entry["page"] == page && entry["size"] == size)
                .unwrap_or_else(|| panic!("no audit of {page} at {size}: {report}"));
            assert_eq!(audit["offenders"], serde_json::json!([]), "{page} {size}");
            // Something was looked at: a page whose text the audit missed
            // would pass for a page with no shortfall.
            assert!(
                audit["checked"]
                    .as_u64()
                    .is_some_and(|checked| checked >= 5),
                "{page} {size}: {audit}"
            );
            let shot = screenshots.join(format!("contrast-{page}-{size}.png"));
            let bytes =
                std::fs::read(&shot).unwrap_or_else(|error| panic!("{}: {error}", shot.display()));
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                shot.display()
            );
        }
        let narrow = pages
            .iter()
            .find(|entry| entry["page"] == page && entry["size"] == "360x740")
            .unwrap_or_else(|| panic!("no 360 px check of {page}"));
        assert!(
            narrow["overflow"].as_i64().is_some_and(|px| px <= 0),
            "{narrow}"
        );
    }
    println!("contrast screenshots: {}", screenshots.display());
}
