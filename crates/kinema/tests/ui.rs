//! The web UI's public side against the real binary: the public catalogue
//! endpoint (`GET /api/catalogue`) over plain HTTP — paging, sorting,
//! search, private videos for admins only, refusals — and, in headless
//! Chromium (web/tests/catalogue.mjs, web/tests/upload.mjs), the catalogue
//! page, the watch page of a public and of a signed video, a share link
//! opened in a fresh browser, the empty library, and uploads by drag and
//! drop that survive a reload. Screenshots go to target/ui-screenshots/.
//!
//! Needs what `scripts/install-deps` provides (ffmpeg, node, Chromium, the
//! built web UI); a missing piece fails with the command that provides it.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/players_support.rs"]
#[allow(dead_code, reason = "shared with players.rs, which uses all of it")]
mod players_support;

#[path = "support/ui_support.rs"]
mod ui_support;

use players_support::{Fixture, VIDEO_ID, run, run_node, screenshot_dir};
use ui_support::{Synthetic, get_json, http, ids, publish_synthetic};

/// A fixture whose library holds no video yet, and no clip (no ffmpeg run).
fn empty_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(dir.path().join("library")).expect("library directory");
    Fixture { dir }
}

const BASE_TIME: u64 = 1_700_000_000;

/// Video `n` (1..=30) of the catalogue test: every third an "Ocean", the
/// rest "Mountain"; published a minute apart in order, lasting 10 s more
/// per step down (so the longest is the oldest); 7 and 14 signed.
fn video_of(n: u64) -> (String, String, u64, f64, bool) {
    let title = if n.is_multiple_of(3) {
        format!("Ocean {n:02}")
    } else {
        format!("Mountain {n:02}")
    };
    (
        format!("video-{n:02}"),
        title,
        BASE_TIME + n * 60,
        (31 - n) as f64 * 10.0,
        n == 7 || n == 14,
    )
}

#[test]
fn catalogue_endpoint_pages_sorts_searches_hides_private_and_refuses_bad_queries() {
    let fixture = empty_fixture();
    for n in 1..=30 {
        let (id, title, published_at_unix, duration_seconds, signed) = video_of(n);
        publish_synthetic(
            &fixture.library(),
            &Synthetic {
                id: &id,
                title: &title,
                published_at_unix,
                duration_seconds,
                signed,
            },
        );
    }
    let token = fixture.admin_token();
    let server = fixture.serve();
    let address = server.address;
    let names = |numbers: &[u64]| -> Vec<String> {
        numbers.iter().map(|n| format!("video-{n:02}")).collect()
    };

    // Anonymous, newest first, 24 a page: the 28 public videos.
    let first = get_json(address, "/api/catalogue", None, 200);
    assert_eq!(first["total"], 28);
    assert_eq!(first["pages"], 2);
    assert_eq!(first["per_page"], 24);
    let newest: Vec<u64> = (1..=30).rev().filter(|n| *n != 7 && *n != 14).collect();
    assert_eq!(ids(&first), names(&newest[..24]));
    let second = get_json(address, "/api/catalogue?page=2", None, 200);
    assert_eq!(ids(&second), names(&newest[24..]));
    assert_eq!(ids(&second), names(&[4, 3, 2, 1]));
    let past_the_end = get_json(address, "/api/catalogue?page=3", None, 200);
    assert_eq!(ids(&past_the_end), Vec::<String>::new());
    assert_eq!(past_the_end["total"], 28);

    // What one entry says.
    let video = &first["videos"][0];
    assert_eq!(video["title"], "Ocean 30");
    assert_eq!(video["duration_seconds"], 10.0);
    assert_eq!(video["published_at_unix"], BASE_TIME + 30 * 60);
    assert_eq!(video["published_at"], "2023-11-14T22:43:20Z");
    assert_eq!(video["private"], false);
    assert_eq!(
        video["ladder"],
        serde_json::json!([
            {"width": null, "height": null, "bitrate": 300_000},
            {"width": null, "height": null, "bitrate": 100_000},
        ])
    );
    // bench library writes no poster.
    assert_eq!(video["poster"], Value::Null);

    // Search is a case-insensitive substring of the title; sort by title.
    let oceans = get_json(address, "/api/catalogue?q=OCEAN&sort=title", None, 200);
    assert_eq!(oceans["total"], 10);
    assert_eq!(ids(&oceans), names(&[3, 6, 9, 12, 15, 18, 21, 24, 27, 30]));
    let one = get_json(address, "/api/catalogue?q=mountain+13", None, 200);
    assert_eq!(ids(&one), names(&[13]));
    let none = get_json(address, "/api/catalogue?q=desert", None, 200);
    assert_eq!(none["total"], 0);
    assert_eq!(none["pages"], 0);

    // Longest first, 5 a page.
    let longest = get_json(
        address,
        "/api/catalogue?sort=duration&per_page=5&page=2",
        None,
        200,
    );
    assert_eq!(ids(&longest), names(&[6, 8, 9, 10, 11]));

    // A signed video is listed only to an admin, marked private, no poster.
    let admin = get_json(address, "/api/catalogue?per_page=100", Some(&token), 200);
    assert_eq!(admin["total"], 30);
    let private: Vec<&Value> = admin["videos"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|video| video["private"] == true)
        .collect();
    assert_eq!(private.len(), 2, "{admin}");
    assert_eq!(private[0]["id"], "video-14");
    assert_eq!(private[1]["id"], "video-07");
    assert_eq!(private[0]["poster"], Value::Null);

    // Refusals, each saying what is allowed.
    for (path, says) in [
        (
            "/api/catalogue?sort=views",
            "unknown sort \"views\"; use one of newest, title, duration",
        ),
        (
            "/api/catalogue?per_page=500",
            "per_page must be a whole number from 1 to 100",
        ),
        (
            "/api/catalogue?page=0",
            "page must be a whole number from 1 to 1000000",
        ),
        ("/api/catalogue?limit=3", "unknown parameter \"limit\""),
    ] {
        let refused = get_json(address, path, None, 400);
        let error = refused["error"].as_str().expect("an error sentence");
        assert!(error.contains(says), "{path}: {error}");
    }
    let long_search = format!("/api/catalogue?q={}", "a".repeat(300));
    let refused = get_json(address, &long_search, None, 400);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("q is longer than 200 characters"),
        "{refused}"
    );
    let long_query = format!("/api/catalogue?q=a&{}", "x=1&".repeat(400));
    let refused = get_json(address, &long_query, None, 400);
    assert!(
        refused["error"].as_str().unwrap().contains("1024 bytes"),
        "{refused}"
    );
    // A wrong token is refused, not quietly treated as anonymous.
    let (status, _) = http(address, "GET", "/api/catalogue", Some("not-a-token"));
    assert_eq!(status, 401);
    let (status, _) = http(address, "POST", "/api/catalogue", None);
    assert_eq!(status, 405);
    // Every other /api path still needs a token.
    let (status, _) = http(address, "GET", "/api/videos", None);
    assert_eq!(status, 401);

    // A video published while the server runs is listed without a restart.
    publish_synthetic(
        &fixture.library(),
        &Synthetic {
            id: "late-arrival",
            title: "Late arrival",
            published_at_unix: BASE_TIME + 10_000,
            duration_seconds: 5.0,
            signed: false,
        },
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get_json(address, "/api/catalogue?per_page=1", None, 200);
        if page["total"] == 29 {
            assert_eq!(ids(&page), ["late-arrival"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new video was not listed within 30 s: {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn uploads_without_an_id_are_named_after_their_title() {
    let fixture = Fixture::with_clip_of(2);
    let token = fixture.admin_token();
    let server = fixture.serve();
    let clip = std::fs::read(fixture.clip()).expect("read the clip");
    let mut ids_given = Vec::new();
    // The same title twice, then a file name without a title field.
    for (title, file_name) in [
        (Some("Crème brûlée: a how-to!"), "clip.mp4"),
        (Some("Crème brûlée: a how-to!"), "clip.mp4"),
        (None, "My_Holiday-2024.final.mp4"),
    ] {
        let boundary = "kinemaboundary7";
        let mut body = Vec::new();
        if let Some(title) = title {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: video/mp4\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&clip);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let response = ureq_like_post(
            server.address,
            "/api/videos",
            &token,
            &format!("multipart/form-data; boundary={boundary}"),
            &body,
        );
        assert_eq!(response.0, 202, "{}", response.1);
        let accepted: Value = serde_json::from_str(&response.1).expect("JSON");
        ids_given.push((
            accepted["job"]["video_id"].as_str().unwrap().to_string(),
            accepted["job"]["title"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        ids_given,
        [
            (
                "creme-brulee-a-how-to".to_string(),
                "Crème brûlée: a how-to!".to_string()
            ),
            (
                "creme-brulee-a-how-to-2".to_string(),
                "Crème brûlée: a how-to!".to_string()
            ),
            (
                "my-holiday-2024-final".to_string(),
                "My Holiday 2024 final".to_string()
            ),
        ]
    );
    // An explicit id keeps its own rules.
    let (status, body) = ureq_like_post(
        server.address,
        "/api/videos?id=bad%20id",
        &token,
        "video/mp4",
        &clip,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("may only contain"), "{body}");
}

/// A POST with a body over plain HTTP/1.1: status and body.
fn ureq_like_post(
    address: std::net::SocketAddr,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send head");
    stream.write_all(body).expect("send body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// Runs a web/tests script and returns its report, failing with its output
/// and the server's log when it did not succeed.
fn report_of(output: &Output, server_log: &str) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser walk failed ({}):\n  stdout: {}\n  stderr: {}\nserver log tail:\n{server_log}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
    );
    serde_json::from_str(stdout.trim()).expect("the script prints one JSON line")
}

fn step_names(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("the script reports its steps")
        .iter()
        .map(|step| step["step"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Every PNG the script names exists in `dir`, with `names` among them.
fn check_screenshots(report: &Value, dir: &std::path::Path, names: &[&str]) {
    for name in names {
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        assert!(
            report["screenshots"].as_array().is_some_and(|listed| listed
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.ends_with(name)))),
            "{name} not listed by the script"
        );
    }
    println!("web UI screenshots: {}", dir.display());
}

#[test]
fn visitors_browse_search_and_play_public_videos_and_admins_play_and_share_signed_ones() {
    let fixture = Fixture::ingested_of(8, &[]);
    let private_id = "private-clip";
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .arg("ingest")
        .arg(fixture.clip())
        .arg("--library")
        .arg(fixture.library())
        .args([
            "--id",
            private_id,
            "--title",
            "Private rehearsal",
            "--access",
            "signed",
        ]));
    run(Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(["keys", "new", "--keys"])
        .arg(fixture.dir.path().join("keys.toml")));
    let token = fixture.admin_token();
    let server = fixture.serve();
    let empty = empty_fixture();
    let empty_server = empty.serve();
    let screenshots = screenshot_dir("ui_catalogue_and_watch");
    let output = run_node(
        "web/tests/catalogue.mjs",
        &[
            "--base",
            &format!("http://{}", server.address),
            "--public",
            VIDEO_ID,
            "--private",
            private_id,
            "--token",
            &token,
            "--search",
            "PLAYERS test",
            "--empty-base",
            &format!("http://{}", empty_server.address),
            "--screenshots",
            screenshots.to_str().expect("utf-8 target path"),
            "--timeout",
            "240",
        ],
    );
    let report = report_of(&output, &server.log_tail());
    assert_eq!(
        step_names(&report),
        [
            "browse the catalogue anonymously",
            "label every control and show keyboard focus",
            "search the catalogue for \"PLAYERS test\"",
            "play a public video from its card",
            "fit phone screens without sideways scrolling",
            "say plainly that a signed video is private",
            "sign an open tab in with a #token= link",
            "list the signed video, marked private, to a signed-in admin",
            "play the signed video signed in",
            "make a share link of the signed video",
            "play the share link in a fresh browser",
            "a share link past its lifetime says it expired",
            "show how to add a video when the library is empty",
        ]
    );
    let steps = &report["steps"];
    // What each page showed, checked here against the fixture.
    assert_eq!(steps[0]["listed"], serde_json::json!([VIDEO_ID]));
    assert_eq!(steps[0]["title"], "Players test clip");
    assert_eq!(steps[0]["duration"], "0:08");
    assert_eq!(steps[0]["privateBadges"], serde_json::json!([]));
    assert_eq!(
        steps[2]["said"],
        "No video title contains “no title has this”."
    );
    assert_eq!(steps[3]["watchTitle"], "Players test clip");
    assert_eq!(
        steps[3]["share"],
        format!("http://{}/?v={VIDEO_ID}", server.address)
    );
    assert_eq!(steps[7]["privateBadges"], serde_json::json!([private_id]));
    let mut listed: Vec<&str> = steps[7]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, [VIDEO_ID, private_id]);
    let share = steps[9]["shareLink"].as_str().expect("a share link");
    assert!(
        share.starts_with(&format!("http://{}/?v={private_id}&s=", server.address)),
        "{share}"
    );
    assert!(
        steps[9]["shareStatus"]
            .as_str()
            .is_some_and(|status| status.starts_with("Anyone with this link can watch until")),
        "{}",
        steps[9]
    );
    assert_eq!(
        steps[11]["expiredSays"],
        "This link has expired. Ask for a new one."
    );
    assert_eq!(report["foreign"], serde_json::json!([]));
    check_screenshots(
        &report,
        &screenshots,
        &[
            "catalogue-1280x800.png",
            "catalogue-390x844.png",
            "watch-1280x800.png",
            "watch-390x844.png",
            "catalogue-admin-1280x800.png",
            "watch-share-1280x800.png",
            "catalogue-empty-1280x800.png",
        ],
    );
}

#[test]
fn two_files_dropped_on_the_upload_page_publish_and_survive_a_reload() {
    let fixture = Fixture::with_clip_of(20);
    let token = fixture.admin_token();
    let server = fixture.serve();
    let first = fixture.dir.path().join("first-clip.mp4");
    let second = fixture.dir.path().join("Second Clip.mp4");
    for copy in [&first, &second] {
        std::fs::copy(fixture.clip(), copy).expect("copy the clip");
    }
    let screenshots = screenshot_dir("ui_upload");
    let files = format!("{},{}", first.display(), second.display());
    // Long enough that its encode is still running when it is cancelled,
    // and large enough that its upload takes seconds over the throttled link.
    let long = fixture.dir.path().join("long-clip.mp4");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=180",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M"])
        .arg(&long));
    let bad = fixture.dir.path().join("notes.txt");
    std::fs::write(&bad, "these are notes, not a video\n".repeat(100)).expect("write notes");
    let output = run_node(
        "web/tests/upload.mjs",
        &[
            "--base",
            &format!("http://{}", server.address),
            "--token",
            &token,
            "--files",
            &files,
            "--bad",
            bad.to_str().expect("utf-8 temporary path"),
            "--cancel",
            long.to_str().expect("utf-8 temporary path"),
            "--screenshots",
            screenshots.to_str().expect("utf-8 target path"),
            "--timeout",
            "400",
        ],
    );
    let report = report_of(&output, &server.log_tail());
    assert_eq!(
        step_names(&report),
        [
            "open the upload page",
            "drop 2 files on the drop zone",
            "reload while processing",
            "see every job published",
            "summarise a failed upload in one sentence",
            "cancel an upload while it uploads",
            "cancel an upload while it is processed",
        ]
    );
    // Mid-upload the card said how far, how fast and how long.
    let progress = report["steps"][5]["progress"].as_str().expect("progress");
    assert!(
        progress.starts_with("Uploading ")
            && progress.contains(" of ")
            && progress.contains("/s · "),
        "{progress}"
    );
    // The upload cancelled made no job; the one cancelled while processed
    // is cancelled on the server, and published nothing.
    let jobs = get_json(server.address, "/api/jobs", Some(&token), 200);
    let long_jobs: Vec<&Value> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|job| job["title"] == "long clip")
        .collect();
    assert_eq!(long_jobs.len(), 1, "{jobs}");
    assert_eq!(long_jobs[0]["id"], report["steps"][6]["job"]);
    assert_eq!(long_jobs[0]["state"], "cancelled");
    assert!(!fixture.library().join("videos/long-clip").exists());
    // One sentence, its details folded away, no server path anywhere.
    let failed = &report["steps"][4];
    let sentence = failed["sentence"].as_str().expect("a sentence");
    assert!(
        sentence.starts_with("Processing failed: ")
            && sentence.contains("not a video")
            && sentence.ends_with('.')
            && !sentence.contains("workspace"),
        "{sentence}"
    );
    assert!(!sentence.contains('\n'), "{sentence}");
    assert_eq!(failed["details"]["open"], false, "{failed}");
    let details = failed["details"]["text"].as_str().expect("details");
    for text in [sentence, details] {
        assert!(
            !text.contains(&*fixture.dir.path().to_string_lossy()) && !text.contains(" /"),
            "a server path in {text:?}"
        );
    }
    let jobs_of = |step: usize| -> Vec<String> {
        let mut jobs: Vec<String> = report["steps"][step]["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .map(|card| card["job"].as_str().expect("a job id").to_string())
            .collect();
        jobs.sort_unstable();
        jobs
    };
    // The reloaded page follows the very jobs the drop started.
    assert_eq!(jobs_of(1).len(), 2);
    assert_eq!(jobs_of(2), jobs_of(1));
    assert_eq!(jobs_of(3), jobs_of(1));
    // Named after the files, and published.
    let mut videos: Vec<&str> = report["steps"][3]["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|card| card["video"].as_str().expect("a watch link"))
        .collect();
    videos.sort_unstable();
    assert_eq!(videos, ["first-clip", "second-clip"]);
    for video in videos {
        assert!(
            fixture
                .library()
                .join(format!("videos/{video}/manifest.json"))
                .is_file(),
            "{video} is not published"
        );
    }
    check_screenshots(
        &report,
        &screenshots,
        &[
            "upload-1280x800.png",
            "upload-processing-1280x800.png",
            "upload-done-1280x800.png",
            "upload-390x844.png",
            "upload-failed-1280x800.png",
            "upload-uploading-1280x800.png",
        ],
    );
}

#[test]
fn upload_page_unit_tests_pass() {
    let output = Command::new("node")
        .args(["--test", "web/tests/upload.test.mjs"])
        .current_dir(players_support::repo_root())
        .stdin(std::process::Stdio::null())
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
