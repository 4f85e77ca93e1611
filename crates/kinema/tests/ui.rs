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

use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/shaped_link.rs"]
#[allow(dead_code, reason = "shared with players.rs, which uses all of it")]
mod shaped_link;

#[path = "support/players_support.rs"]
#[allow(dead_code, reason = "shared with players.rs, which uses all of it")]
mod players_support;

#[path = "support/ui_support.rs"]
mod ui_support;

use players_support::Fixture;
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
