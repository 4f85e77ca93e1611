//! The web UI's admin pages against the real binary, in headless Chromium
//! (web/tests/admin.mjs): an admin cancels a running job and retries it,
//! reads a failed job's one sentence, edits a video's title and
//! description and sees them in the public catalogue and on the watch page,
//! makes the video signed (its segment URL from before then needs a token,
//! as does the new generation's) and public again, and reads the one
//! sentence a failed change shows,
//! creates an API token (which works) and revokes it (which then does not),
//! creates a signing key and retires the old one. What the browser did is checked
//! again here through the API, the CLI and the files. Screenshots of every
//! admin page at 1280×800 and 390×844 go to target/ui-screenshots/.
//!
//! Needs what `scripts/install-deps` provides (ffmpeg, node, Chromium, the
//! built web UI); a missing piece fails with the command that provides it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/players_support.rs"]
#[allow(dead_code, reason = "shared with players.rs, which uses all of it")]
mod players_support;

#[path = "support/ui_support.rs"]
#[allow(dead_code, reason = "shared with ui.rs, which uses all of it")]
mod ui_support;

use players_support::{Fixture, run, run_node, screenshot_dir};
use ui_support::{Synthetic, get_json, publish_synthetic};

const EDITED_TITLE: &str = "Edited in the admin pages";

/// Runs `kinema ARGS` and returns its standard output.
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

/// Uploads `body` as a raw `POST /api/videos?title=…` and returns its job id.
fn upload(address: std::net::SocketAddr, token: &str, title: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "POST /api/videos?title={title} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send head");
    stream.write_all(body).expect("send body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 202"), "upload refused: {text}");
    let answer: Value = serde_json::from_str(body).expect("JSON");
    answer["job"]["id"].as_str().expect("a job id").to_string()
}

/// The job's state, once it is one of `states` (within 60 s).
fn wait_for_job(address: std::net::SocketAddr, token: &str, job: &str, states: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get_json(address, &format!("/api/jobs/{job}"), Some(token), 200);
        let state = answer["job"]["state"].as_str().unwrap_or("").to_string();
        if states.contains(&state.as_str()) {
            return answer["job"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "job {job} is {state}, not one of {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in {report}"))
}

#[test]
fn admins_cancel_and_retry_jobs_edit_titles_and_manage_tokens_and_keys() {
    let fixture = Fixture {
        dir: tempfile::tempdir().expect("temporary directory"),
    };
    std::fs::create_dir(fixture.library()).expect("library directory");
    publish_synthetic(
        &fixture.library(),
        &Synthetic {
            id: "harbour",
            title: "Harbour at dusk",
            published_at_unix: 1_700_000_000,
            duration_seconds: 42.0,
            signed: false,
        },
    );
    let tokens = fixture.dir.path().join("tokens.toml");
    let keys = fixture.dir.path().join("keys.toml");
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
    kinema(&["keys", "new", "--keys", keys.to_str().expect("utf-8 path")]);
    let server = fixture.serve();
    let address = server.address;

    // A text file, whose job fails; then a long source (jobs run one at a
    // time), so its job is still running when it is cancelled, and
    // retried, in the browser.
    let failed = upload(
        address,
        &token,
        "Notes",
        "these are notes, not a video\n".repeat(100).as_bytes(),
    );
    wait_for_job(address, &token, &failed, &["failed"]);
    let long = fixture.dir.path().join("long.mp4");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=300",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M"])
        .arg(&long));
    let running = upload(
        address,
        &token,
        "Long+clip",
        &std::fs::read(&long).expect("read the clip"),
    );
    wait_for_job(address, &token, &running, &["queued", "running"]);

    let screenshots = screenshot_dir("ui_admin");
    let output = run_node(
        "web/tests/admin.mjs",
        &[
            "--base",
            &format!("http://{address}"),
            "--token",
            &token,
            "--running",
            &running,
            "--failed",
            &failed,
            "--video",
            "harbour",
            "--title",
            EDITED_TITLE,
            "--screenshots",
            screenshots.to_str().expect("utf-8 target path"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser walk failed ({}):\n  stdout: {}\n  stderr: {}\nserver log tail:\n{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
        server.log_tail()
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");

    // Jobs: cancelled, then retried, as the server says too.
    let cancel = step(&report, "cancel the running job");
    assert_eq!(cancel["after"], "cancelled", "{cancel}");
    let retry = step(&report, "retry the cancelled job");
    assert!(
        ["queued", "running", "done"].contains(&retry["after"].as_str().unwrap_or("")),
        "{retry}"
    );
    let job = get_json(address, &format!("/api/jobs/{running}"), Some(&token), 200);
    assert!(
        ["queued", "running", "done"].contains(&job["job"]["state"].as_str().unwrap_or("")),
        "the job runs again: {job}"
    );
    let failure = step(&report, "read the failed job's failure");
    let sentence = failure["sentence"].as_str().expect("a sentence");
    assert!(
        sentence.starts_with("Failed: ") && !sentence.contains('\n') && !sentence.contains('/'),
        "{sentence:?}"
    );
    assert_eq!(failure["details_open_at_first"], false);
    let details = failure["details"].as_str().expect("details");
    assert!(!details.trim().is_empty());
    assert!(
        !details.contains(fixture.dir.path().to_str().expect("utf-8 path")),
        "a server path in {details:?}"
    );

    // The edited title and description, in the public catalogue and the API.
    let edit = step(&report, "edit the title and description");
    assert_eq!(
        edit["description"],
        "Filmed for the admin test.\nA second line."
    );
    assert_eq!(
        step(&report, "the catalogue shows the new title")["title"],
        EDITED_TITLE
    );
    let replace = step(&report, "replace starts an upload from the video");
    assert!(
        replace["note"]
            .as_str()
            .is_some_and(|note| note.starts_with(&format!("Replacing “{EDITED_TITLE}”"))),
        "{replace}"
    );
    assert_eq!(replace["access"], "public");
    assert_eq!(
        replace["description"],
        "Filmed for the admin test.\nA second line."
    );
    assert_eq!(
        step(&report, "the watch page shows the title and description")["description"],
        "Filmed for the admin test.\nA second line."
    );
    let catalogue = get_json(address, "/api/catalogue?q=edited", None, 200);
    assert_eq!(catalogue["total"], 1, "{catalogue}");
    assert_eq!(catalogue["videos"][0]["id"], "harbour");
    assert_eq!(
        catalogue["videos"][0]["description"],
        "Filmed for the admin test.\nA second line."
    );

    // Signed: the segment URL that played publicly before no longer does,
    // nor does the new generation's or the stable master; public again: the
    // newest generation plays for anyone, and so does the first (published
    // public), but not the one published signed.
    let signed = step(&report, "make the video signed");
    assert_eq!(signed["state_before"], "public", "{signed}");
    assert_eq!(signed["badge"], "signed (private)", "{signed}");
    assert_eq!(signed["public_status_before"], 200, "{signed}");
    assert_eq!(signed["public_status_after"], 403, "{signed}");
    assert_eq!(signed["signed_segment_status"], 403, "{signed}");
    assert_eq!(signed["master_status_after"], 403, "{signed}");
    assert!(
        signed["question"]
            .as_str()
            .is_some_and(|question| question.contains("Its links stop working")),
        "{signed}"
    );
    let failed_change = step(&report, "a failed change says why in one sentence");
    assert_eq!(
        failed_change["message"],
        format!(
            "The access of “{EDITED_TITLE}” could not be changed: the library's store is unavailable; try again shortly."
        )
    );
    assert_eq!(failed_change["access"], "signed", "unchanged on failure");
    let public = step(&report, "make the video public again");
    assert_eq!(public["public_status"], 200, "{public}");
    assert_eq!(public["signed_segment_status"], 403, "{public}");
    assert_eq!(public["first_segment_status"], 200, "{public}");
    let generation_of = |segment: &Value| {
        segment
            .as_str()
            .expect("a segment path")
            .split('/')
            .nth(3)
            .expect("g{N}")
            .to_string()
    };
    let generations = [
        generation_of(&signed["segment"]),
        generation_of(&signed["signed_segment"]),
        generation_of(&public["segment"]),
    ];
    assert!(
        generations[0] != generations[1]
            && generations[1] != generations[2]
            && generations[0] != generations[2],
        "each change is a new generation: {generations:?}"
    );
    let video = get_json(address, "/api/videos/harbour", Some(&token), 200);
    assert_eq!(video["access"], "public", "{video}");
    assert_eq!(
        video["title"], EDITED_TITLE,
        "the edited title survives both changes"
    );

    // The token worked, then did not; the tokens file no longer has it.
    let created = step(&report, "create a token");
    assert_eq!(created["scope"], "read");
    assert_eq!(created["status_with_it"], 200);
    assert_eq!(step(&report, "revoke the token")["status_with_it"], 401);
    let listed = kinema(&["tokens", "list", "--tokens", tokens.to_str().unwrap()]);
    assert!(
        listed.contains("root") && !listed.contains("browser-made"),
        "{listed}"
    );

    // The old key is retired and a new one signs; no secret reached the page.
    let keys_step = step(&report, "create a key and retire the old one");
    let retired = keys_step["retired"].as_str().expect("a key id");
    let states = keys_step["states"].as_array().expect("states");
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states
            .iter()
            .any(|pair| pair[0] == retired && pair[1] == "retired")
    );
    assert!(
        states
            .iter()
            .any(|pair| pair[0] != retired && pair[1] == "signing")
    );
    let ring = std::fs::read_to_string(&keys).expect("read the key ring");
    let page_text = keys_step["page_text"].as_str().expect("page text");
    for secret in ring
        .lines()
        .filter_map(|line| line.strip_prefix("secret = \""))
        .map(|rest| rest.trim_end_matches('"'))
    {
        assert!(!page_text.contains(secret), "a key's secret on the page");
    }
    let listed = kinema(&["keys", "list", "--keys", keys.to_str().unwrap()]);
    let retired_line = listed
        .lines()
        .find(|line| line.starts_with(retired))
        .unwrap_or_else(|| panic!("{retired} not in {listed}"));
    assert!(retired_line.ends_with("retired"), "{listed}");

    // Nothing wider than a phone's screen.
    let phone = step(&report, "the admin pages on a phone");
    for (tab, overflow) in phone["overflow"].as_object().expect("overflow") {
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{tab} overflows by {overflow} px"
        );
    }
    let listed: Vec<&str> = report["screenshots"]
        .as_array()
        .expect("screenshots")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tab in ["jobs", "videos", "tokens", "keys"] {
        for size in ["1280x800", "390x844"] {
            let name = format!("admin-{tab}-{size}.png");
            let bytes = std::fs::read(screenshots.join(&name))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}");
            assert!(
                listed.iter().any(|path| path.ends_with(&name)),
                "{name}: {listed:?}"
            );
        }
    }
    println!("admin screenshots: {}", screenshots.display());
}
