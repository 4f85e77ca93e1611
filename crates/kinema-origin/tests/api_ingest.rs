//! The ingest API over real HTTP: a video uploaded to `POST /api/videos`
//! becomes a job, the job reaches done, and real ffmpeg then decodes every
//! rendition of the HLS and DASH presentations served by this origin; bad
//! uploads fail with a reason and publish nothing; `DELETE` unpublishes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, KeyRing, Scope};
use serde_json::Value;
use tokio::net::TcpStream;

struct Api {
    server: Server,
    secret: String,
    _files: tempfile::TempDir,
    _library: Library,
}

impl Api {
    async fn start() -> Self {
        let library = Library::new().await;
        let files = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&files.path().join("keys.toml")).unwrap();
        let mut tokens = AdminTokens::empty();
        let secret = tokens
            .issue("uploader", Scope::Write, SystemTime::now())
            .unwrap();
        tokens.save(&files.path().join("tokens.toml")).unwrap();
        let mut config = config(&library);
        config.keys = files.path().join("keys.toml");
        config.tokens = files.path().join("tokens.toml");
        let server = Server::start(config).await;
        Self {
            server,
            secret,
            _files: files,
            _library: library,
        }
    }

    async fn call(
        &self,
        method: Method,
        target: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let stream = TcpStream::connect(self.server.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header("host", "origin.test")
            .header("authorization", format!("Bearer {}", self.secret))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not json: {body:?}"))
        };
        (status, value)
    }

    /// GET `target`: status, content type and body as text.
    async fn get_text(&self, target: &str) -> (StatusCode, String, String) {
        let stream = TcpStream::connect(self.server.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .uri(target)
            .header("host", "origin.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Polls a job until it leaves queued/running (two minutes at most).
    async fn finished_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self
                .call(Method::GET, &format!("/api/jobs/{id}"), "", vec![])
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let state = body["job"]["state"].as_str().unwrap().to_string();
            if state != "queued" && state != "running" {
                return body["job"].clone();
            }
            assert!(Instant::now() < deadline, "job stuck: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn clip() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=3"])
        .args(["-f", "lavfi", "-i", "sine=d=3"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// Decodes every stream at `url` with ffmpeg. The server runs on this
/// test's runtime, so ffmpeg is awaited, never waited for on the runtime's
/// only thread.
async fn assert_decodes_over_http(url: &str) {
    let output = tokio::process::Command::new("ffmpeg")
        .args([
            "-v", "error", "-nostdin", "-i", url, "-map", "0", "-f", "null", "-",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{url}: {stderr}"
    );
}

#[tokio::test]
async fn uploaded_video_is_ingested_served_and_deleted() {
    let api = Api::start().await;
    let (status, body) = api
        .call(
            Method::POST,
            "/api/videos?id=uploaded&title=My+upload",
            "video/mp4",
            clip(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job_id = body["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["location"], format!("/api/jobs/{job_id}"));
    let job = api.finished_job(&job_id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"]["percent"], 100.0);

    let (status, body) = api
        .call(Method::GET, "/api/videos/uploaded", "", vec![])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "My upload");
    assert_eq!(body["urls"]["hls"], "/v/uploaded/master.m3u8");
    // Every link it advertises resolves.
    let urls = body["urls"].as_object().unwrap();
    assert!(urls.len() >= 4, "{body}");
    for (name, url) in urls {
        let Some(url) = url.as_str() else { continue };
        let (status, _, _) = api.get_text(url).await;
        assert_eq!(status, StatusCode::OK, "urls.{name} = {url}");
    }
    let (_, list) = api.call(Method::GET, "/api/videos", "", vec![]).await;
    assert!(
        list["videos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "uploaded"),
        "{list}"
    );

    let base = format!("http://{}/v/uploaded", api.server.addr);
    assert_decodes_over_http(&format!("{base}/master.m3u8")).await;
    assert_decodes_over_http(&format!("{base}/manifest.mpd")).await;

    let (status, _) = api
        .call(Method::DELETE, "/api/videos/uploaded", "", vec![])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api
        .call(Method::GET, "/api/videos/uploaded", "", vec![])
        .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "video uploaded does not exist")
    );
}

#[tokio::test]
async fn an_upload_can_be_published_signed_and_a_bad_policy_is_refused() {
    let api = Api::start().await;
    let (status, body) = api
        .call(
            Method::POST,
            "/api/videos?id=private&access=secret",
            "video/mp4",
            clip(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("access:"),
        "{body}"
    );

    let (status, body) = api
        .call(
            Method::POST,
            "/api/videos?id=private&access=signed",
            "video/mp4",
            clip(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = api.finished_job(body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    let (status, body) = api
        .call(Method::GET, "/api/videos/private", "", vec![])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access"], "signed", "{body}");
    // Without a token the published video is closed to players.
    let (status, _) = api
        .call(Method::GET, "/v/private/master.m3u8", "", vec![])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn multipart_upload_of_a_text_file_fails_with_a_reason() {
    let api = Api::start().await;
    let boundary = "kinemaBoundary7";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nNotes\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\nthese are notes, not a video\r\n--{boundary}--\r\n"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/videos?id=notes",
            &format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job"]["title"], "Notes");
    let job = api.finished_job(body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .starts_with("source is not a video or audio file"),
        "{job}"
    );
    let (_, list) = api.call(Method::GET, "/api/videos", "", vec![]).await;
    assert!(
        !list["videos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "notes"),
        "{list}"
    );
    // A job that failed on bad input cannot be cancelled, and its source is
    // gone, so a retry says to upload again.
    let id = job["id"].as_str().unwrap();
    let (status, body) = api
        .call(Method::POST, &format!("/api/jobs/{id}/cancel"), "", vec![])
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .call(Method::POST, &format!("/api/jobs/{id}/retry"), "", vec![])
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");

    let (status, body) = api
        .call(Method::POST, "/api/videos", "video/mp4", vec![])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");
    let (status, _) = api.call(Method::PUT, "/api/videos", "", vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = api.call(Method::GET, "/api/jobs/j00", "", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The regression: an uploaded HLS playlist whose entry named a media file
/// elsewhere on the server was followed by ffmpeg, and that file was
/// published as a public video.
#[tokio::test]
async fn uploaded_playlist_naming_a_server_file_is_refused_and_nothing_published() {
    let api = Api::start().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("private.mp4");
    std::fs::write(&secret, clip()).unwrap();
    for (id, entry) in [
        ("lfi-url", format!("file://{}", secret.display())),
        ("lfi-path", secret.display().to_string()),
    ] {
        let playlist =
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\n{entry}\n#EXT-X-ENDLIST\n");
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/api/videos?id={id}"),
                "video/mp4",
                playlist.into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let job = api.finished_job(body["job"]["id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "failed", "{job}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains("it is a hls file"), "{job}");
        let (_, list) = api.call(Method::GET, "/api/videos", "", vec![]).await;
        assert!(
            !list["videos"]
                .as_array()
                .unwrap()
                .iter()
                .any(|video| video["id"] == id),
            "{list}"
        );
    }
}

/// The regression: a 300 MB multipart `title` was read into memory and
/// written into the job record and the manifest.
#[tokio::test]
async fn oversized_multipart_title_is_refused_naming_the_limit() {
    let api = Api::start().await;
    let boundary = "kinemaBoundary9";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\nnot read\r\n--{boundary}--\r\n",
        "t".repeat(5_000_000)
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/videos",
            &format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"],
        "malformed multipart/form-data body: the part \"title\" is larger than the limit of 4096 bytes"
    );
    // Within the bytes but over the characters: refused by the pipeline's rule.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/videos?title={}", "t".repeat(201)),
            "video/mp4",
            clip(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"],
        "the title is 201 characters long; the limit is 200"
    );
}

/// Multipart `subtitles:LANG` parts become subtitle renditions, served as
/// `text/vtt`; a part that is not a subtitle file fails the job with the
/// reason; a malformed part name is refused at once.
#[tokio::test]
async fn multipart_subtitles_parts_are_published_as_webvtt() {
    let api = Api::start().await;
    let boundary = "kinemaBoundary11";
    let part = |name: &str, file_name: &str, bytes: &[u8]| {
        let mut part = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\r\n"
        )
        .into_bytes();
        part.extend_from_slice(bytes);
        part.extend_from_slice(b"\r\n");
        part
    };
    let form = |parts: Vec<Vec<u8>>| {
        let mut body = parts.concat();
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    };
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let srt = b"1\n00:00:00,600 --> 00:00:01,400\nBonjour\n";
    let body = form(vec![
        part("subtitles:fr+forced", "signs.srt", srt),
        part("file", "clip.mp4", &clip()),
    ]);
    let (status, body) = api
        .call(Method::POST, "/api/videos?id=subbed", &content_type, body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = api.finished_job(body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["skipped_subtitles"], serde_json::json!([]), "{job}");
    let (status, _, master) = api.get_text("/v/subbed/master.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        master.contains("GROUP-ID=\"subs\",NAME=\"French (forced)\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,FORCED=YES,URI=\"g"),
        "{master}"
    );
    // The playlist points into its generation, which serves the track.
    let uri = master
        .split("FORCED=YES,URI=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let (generation, rest) = uri.split_once('/').unwrap();
    assert!(
        kinema_store::layout::parse_generation_dir(generation).is_some(),
        "{uri}"
    );
    assert_eq!(rest, "sub0/index.m3u8");
    let (status, _, _) = api.get_text(&format!("/v/subbed/{uri}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, content_type_of_vtt, segment) = api.get_text("/v/subbed/sub0/1.vtt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type_of_vtt, "text/vtt");
    assert!(
        segment.ends_with("\n00:00:00.600 --> 00:00:01.400\nBonjour\n"),
        "{segment}"
    );

    // A playlist sent as subtitles: the job fails, saying why.
    let playlist =
        b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n";
    let body = form(vec![
        part("subtitles:en", "evil.srt", playlist),
        part("file", "clip.mp4", &clip()),
    ]);
    let (status, body) = api
        .call(Method::POST, "/api/videos?id=hostile", &content_type, body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = api.finished_job(body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with("subtitle file is refused: the en subtitles "),
        "{error}"
    );
    assert!(error.ends_with(": it is a hls file; only SubRip (.srt), ASS/SSA (.ass, .ssa) and WebVTT (.vtt) files are accepted"), "{error}");

    let body = form(vec![
        part("subtitles:english", "a.srt", srt),
        part("file", "clip.mp4", b"x"),
    ]);
    let (status, body) = api
        .call(Method::POST, "/api/videos?id=named", &content_type, body)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the part \"subtitles:english\" must be named subtitles:LANG"),
        "{body}"
    );
}
