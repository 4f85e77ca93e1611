//! The origin over real HTTP (HTTP/1.1 and HTTP/2 over loopback) on a
//! library of real CMAF files made with ffmpeg: routes, RFC 9110 semantics,
//! CORS, caching, prefetch, streaming, metrics and shutdown.

mod common;

use common::*;
use http::{Method, StatusCode};

const SEGMENT: &str = "/v/clip/v180/2.m4s";

fn etag_of(library_manifest: &kinema_core::Manifest, path: &str) -> String {
    library_manifest
        .file(&kinema_core::ObjectPath::new(path).unwrap())
        .unwrap()
        .etag()
}

#[tokio::test]
async fn get_and_head_serve_every_listed_file_with_its_headers() {
    let library = Library::new().await;
    let manifest = library.manifest().await;
    let server = Server::start(config(&library)).await;
    let cases = [
        // Playlists stay usable through an origin outage (stale-if-error);
        // media playlists also while a cache revalidates. The session
        // starters never are served stale while revalidating: admission
        // must see every session start.
        (
            "master.m3u8",
            "application/vnd.apple.mpegurl",
            "public, max-age=10, stale-if-error=86400",
        ),
        (
            "v180/index.m3u8",
            "application/vnd.apple.mpegurl",
            "public, max-age=10, stale-while-revalidate=60, stale-if-error=86400",
        ),
        (
            "manifest.mpd",
            "application/dash+xml",
            "public, max-age=10, stale-if-error=86400",
        ),
        (
            "v180/init.mp4",
            "video/mp4",
            "public, max-age=31536000, immutable",
        ),
        (
            "v180/1.m4s",
            "video/iso.segment",
            "public, max-age=31536000, immutable",
        ),
        (
            "v180/4.m4s",
            "video/iso.segment",
            "public, max-age=31536000, immutable",
        ),
        (
            "thumbs/poster.jpg",
            "image/jpeg",
            "public, max-age=31536000, immutable",
        ),
        (
            "thumbs/thumbs.vtt",
            "text/vtt",
            "public, max-age=31536000, immutable",
        ),
    ];
    // At the stable URLs every file names the current generation, whose
    // bytes change with a republish: revalidated like the master playlist,
    // never immutable. The generation's URLs are what the cases say.
    let stable = "public, max-age=10, stale-if-error=86400";
    let generation = manifest.generation;
    for protocol in PROTOCOLS {
        for (path, content_type, pinned_cache_control) in cases {
            let expected = library.read(path);
            for (target, cache_control, method) in [
                (format!("/v/clip/{path}"), stable, Method::GET),
                (format!("/v/clip/{path}"), stable, Method::HEAD),
                (
                    format!("/v/clip/g{generation}/{path}"),
                    pinned_cache_control,
                    Method::GET,
                ),
                (
                    format!("/v/clip/g{generation}/{path}"),
                    pinned_cache_control,
                    Method::HEAD,
                ),
            ] {
                let reply = send(&server, protocol, method.clone(), &target, &[]).await;
                let context = format!("{protocol:?} {method} {target}");
                assert_eq!(reply.status, StatusCode::OK, "{context}");
                assert_eq!(reply.header("content-type"), content_type, "{context}");
                assert_eq!(reply.header("cache-control"), cache_control, "{context}");
                assert_eq!(reply.header("accept-ranges"), "bytes", "{context}");
                assert_eq!(reply.header("etag"), etag_of(&manifest, path), "{context}");
                assert_eq!(
                    reply.header("last-modified"),
                    "Tue, 14 Nov 2023 22:13:20 GMT",
                    "{context}"
                );
                assert_eq!(
                    reply.header("content-length"),
                    expected.len().to_string(),
                    "{context}"
                );
                if method == Method::GET {
                    assert_eq!(reply.body, expected, "{context}");
                } else {
                    assert!(reply.body.is_empty(), "{context}");
                }
            }
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn single_open_ended_and_suffix_ranges_are_partial_content() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    let whole = library.read("v180/2.m4s");
    let length = whole.len();
    for protocol in PROTOCOLS {
        for (range, start, end) in [
            ("bytes=0-99", 0, 100),
            ("bytes=100-", 100, length),
            ("bytes=-500", length - 500, length),
            ("bytes=10-10", 10, 11),
            ("bytes=1000-99999999", 1000, length),
            ("bytes=-99999999", 0, length),
        ] {
            let reply = send(&server, protocol, Method::GET, SEGMENT, &[("range", range)]).await;
            assert_eq!(
                reply.status,
                StatusCode::PARTIAL_CONTENT,
                "{protocol:?} {range}"
            );
            assert_eq!(
                reply.header("content-range"),
                format!("bytes {start}-{}/{length}", end - 1)
            );
            assert_eq!(reply.header("content-length"), (end - start).to_string());
            assert_eq!(reply.header("content-type"), "video/iso.segment");
            assert_eq!(reply.body, whole[start..end], "{protocol:?} {range}");
        }
        // HEAD ignores Range (RFC 9110 §14.2: range handling is for GET).
        let reply = send(
            &server,
            protocol,
            Method::HEAD,
            SEGMENT,
            &[("range", "bytes=0-9")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-length"), length.to_string());
        // An invalid Range is ignored: the whole file.
        let reply = send(
            &server,
            protocol,
            Method::GET,
            SEGMENT,
            &[("range", "bytes=9-1")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, whole);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_the_length() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    let length = library.read("v180/2.m4s").len();
    for protocol in PROTOCOLS {
        for range in [format!("bytes={length}-"), "bytes=-0".to_string()] {
            let reply = send(
                &server,
                protocol,
                Method::GET,
                SEGMENT,
                &[("range", &range)],
            )
            .await;
            assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(reply.header("content-range"), format!("bytes */{length}"));
        }
    }
    server.stop().await.unwrap();
}

/// Splits a `multipart/byteranges` body into (Content-Range, content) parts.
fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart content type");
    let delimiter = format!("--{boundary}");
    let text = body.to_vec();
    let mut parts = Vec::new();
    let mut position = 0;
    let find = |from: usize, needle: &[u8]| {
        text[from..]
            .windows(needle.len())
            .position(|window| window == needle)
            .map(|offset| from + offset)
    };
    loop {
        let start = find(position, delimiter.as_bytes()).expect("delimiter");
        let after = start + delimiter.len();
        if text[after..].starts_with(b"--") {
            assert_eq!(&text[after..], b"--\r\n", "closing delimiter ends the body");
            break;
        }
        let headers_end = find(after, b"\r\n\r\n").unwrap();
        let headers = std::str::from_utf8(&text[after..headers_end]).unwrap();
        let content_range = headers
            .lines()
            .find_map(|line| line.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        let (first, last) = content_range
            .strip_prefix("bytes ")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
        let content_start = headers_end + 4;
        let content = text[content_start..content_start + (last - first + 1)].to_vec();
        assert!(headers.contains("Content-Type: video/iso.segment"));
        parts.push((content_range, content));
        position = content_start + (last - first + 1);
        assert_eq!(&text[position..position + 2], b"\r\n");
    }
    parts
}

#[tokio::test]
async fn several_ranges_are_multipart_byteranges_and_abuse_gets_the_whole_file() {
    let library = Library::new().await;
    let mut config = config(&library);
    config.max_cached_file_size = bytesize::ByteSize::kib(8);
    let streaming = Server::start(config).await;
    let cached = Server::start(common::config(&library)).await;
    let whole = library.read("v180/2.m4s");
    let length = whole.len();
    for server in [&cached, &streaming] {
        for protocol in PROTOCOLS {
            let reply = send(
                server,
                protocol,
                Method::GET,
                SEGMENT,
                &[("range", "bytes=0-9, 20000-20999,-5")],
            )
            .await;
            assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
            assert_eq!(reply.header("content-length"), reply.body.len().to_string());
            let parts = parse_multipart(reply.header("content-type"), &reply.body);
            assert_eq!(
                parts,
                vec![
                    (format!("bytes 0-9/{length}"), whole[0..10].to_vec()),
                    (
                        format!("bytes 20000-20999/{length}"),
                        whole[20000..21000].to_vec()
                    ),
                    (
                        format!("bytes {}-{}/{length}", length - 5, length - 1),
                        whole[length - 5..].to_vec()
                    ),
                ]
            );
            // Overlapping ranges and more than 16 ranges cannot amplify a
            // response: the whole file is sent once instead.
            let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
            for range in [
                "bytes=0-999,500-1499".to_string(),
                format!("bytes={}", many.join(",")),
            ] {
                let reply =
                    send(server, protocol, Method::GET, SEGMENT, &[("range", &range)]).await;
                assert_eq!(reply.status, StatusCode::OK, "{range}");
                assert_eq!(reply.body, whole);
            }
        }
    }
    cached.stop().await.unwrap();
    streaming.stop().await.unwrap();
}

#[tokio::test]
async fn if_range_honours_the_range_only_for_the_current_representation() {
    let library = Library::new().await;
    let manifest = library.manifest().await;
    let server = Server::start(config(&library)).await;
    let etag = etag_of(&manifest, "v180/2.m4s");
    let weak = format!("W/{etag}");
    for protocol in PROTOCOLS {
        for (if_range, expected) in [
            (etag.as_str(), StatusCode::PARTIAL_CONTENT),
            ("Tue, 14 Nov 2023 22:13:20 GMT", StatusCode::PARTIAL_CONTENT),
            ("\"0123456789abcdef0123456789abcdef\"", StatusCode::OK),
            (weak.as_str(), StatusCode::OK),
            ("Tue, 14 Nov 2023 22:13:21 GMT", StatusCode::OK),
        ] {
            let reply = send(
                &server,
                protocol,
                Method::GET,
                SEGMENT,
                &[("range", "bytes=0-9"), ("if-range", if_range)],
            )
            .await;
            assert_eq!(reply.status, expected, "{protocol:?} If-Range: {if_range}");
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn conditional_requests_answer_304_and_412() {
    let library = Library::new().await;
    let manifest = library.manifest().await;
    let server = Server::start(config(&library)).await;
    let etag = etag_of(&manifest, "v180/2.m4s");
    let last_modified = "Tue, 14 Nov 2023 22:13:20 GMT";
    let earlier = "Tue, 14 Nov 2023 22:13:19 GMT";
    let list = format!("\"other\", W/{etag}");
    for protocol in PROTOCOLS {
        for (headers, expected) in [
            (
                vec![("if-none-match", etag.as_str())],
                StatusCode::NOT_MODIFIED,
            ),
            (vec![("if-none-match", "*")], StatusCode::NOT_MODIFIED),
            (vec![("if-none-match", &list)], StatusCode::NOT_MODIFIED),
            (vec![("if-none-match", "\"other\"")], StatusCode::OK),
            (vec![("if-match", etag.as_str())], StatusCode::OK),
            (
                vec![("if-match", "\"other\"")],
                StatusCode::PRECONDITION_FAILED,
            ),
            (
                vec![("if-modified-since", last_modified)],
                StatusCode::NOT_MODIFIED,
            ),
            (vec![("if-modified-since", earlier)], StatusCode::OK),
            (
                vec![("if-unmodified-since", earlier)],
                StatusCode::PRECONDITION_FAILED,
            ),
            (vec![("if-unmodified-since", last_modified)], StatusCode::OK),
            // If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
            (
                vec![
                    ("if-none-match", "\"other\""),
                    ("if-modified-since", last_modified),
                ],
                StatusCode::OK,
            ),
        ] {
            let reply = send(&server, protocol, Method::GET, SEGMENT, &headers).await;
            assert_eq!(reply.status, expected, "{protocol:?} {headers:?}");
            if expected == StatusCode::NOT_MODIFIED {
                assert!(reply.body.is_empty());
                assert_eq!(reply.header("etag"), etag);
                // The stable URL's: the generation's own URL is immutable.
                assert_eq!(
                    reply.header("cache-control"),
                    "public, max-age=10, stale-if-error=86400"
                );
                assert_eq!(reply.header("access-control-allow-origin"), "*");
            }
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn cors_headers_and_preflight() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    for protocol in PROTOCOLS {
        let reply = send(
            &server,
            protocol,
            Method::GET,
            SEGMENT,
            &[("origin", "https://player.example")],
        )
        .await;
        assert_eq!(reply.header("access-control-allow-origin"), "*");
        assert!(
            reply
                .header("access-control-expose-headers")
                .contains("Content-Range")
        );
        let reply = send(
            &server,
            protocol,
            Method::OPTIONS,
            SEGMENT,
            &[
                ("origin", "https://player.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(reply.header("access-control-allow-origin"), "*");
        assert!(reply.header("access-control-allow-methods").contains("GET"));
        assert!(
            reply
                .header("access-control-allow-headers")
                .contains("Range")
        );
        assert!(
            reply
                .header("access-control-max-age")
                .parse::<u32>()
                .unwrap()
                > 0
        );
    }
    server.stop().await.unwrap();

    let mut restricted = config(&library);
    restricted.cors_allowed_origins = vec!["https://good.example".into()];
    let server = Server::start(restricted).await;
    for protocol in PROTOCOLS {
        let good = send(
            &server,
            protocol,
            Method::GET,
            SEGMENT,
            &[("origin", "https://good.example")],
        )
        .await;
        assert_eq!(
            good.header("access-control-allow-origin"),
            "https://good.example"
        );
        assert_eq!(good.header("vary"), "Origin");
        let evil = send(
            &server,
            protocol,
            Method::GET,
            SEGMENT,
            &[("origin", "https://evil.example")],
        )
        .await;
        assert_eq!(evil.status, StatusCode::OK);
        assert!(!evil.headers.contains_key("access-control-allow-origin"));
        let preflight = send(
            &server,
            protocol,
            Method::OPTIONS,
            SEGMENT,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
        assert!(
            !preflight
                .headers
                .contains_key("access-control-allow-origin")
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn other_methods_on_media_are_405_with_allow() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    for protocol in PROTOCOLS {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let reply = send(&server, protocol, method.clone(), SEGMENT, &[]).await;
            assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(reply.header("allow"), "GET, HEAD, OPTIONS");
        }
        let reply = send(&server, protocol, Method::OPTIONS, SEGMENT, &[]).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(reply.header("allow"), "GET, HEAD, OPTIONS");
        let reply = send(&server, protocol, Method::POST, "/healthz", &[]).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn traversal_attempts_never_reach_outside_the_library() {
    let library = Library::new().await;
    let outside = tempfile::tempdir().unwrap();
    let secret = b"TOP-SECRET-CONTENT";
    std::fs::write(outside.path().join("secret.m4s"), secret).unwrap();
    // A link planted in the library, pointing outside, not in the manifest.
    std::os::unix::fs::symlink(
        outside.path().join("secret.m4s"),
        library.file("v180/planted.m4s"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), library.file("outside")).unwrap();
    std::os::unix::fs::symlink(outside.path(), library.dir.path().join("videos/linked")).unwrap();
    // A listed file replaced by a link to the secret.
    std::fs::remove_file(library.file("v180/3.m4s")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.m4s"),
        library.file("v180/3.m4s"),
    )
    .unwrap();
    let server = Server::start(config(&library)).await;
    let secret_path = outside.path().join("secret.m4s");
    let absolute = format!("/v/clip/{}", secret_path.display());
    let encoded_absolute = format!(
        "/v/clip/%2F{}",
        secret_path
            .display()
            .to_string()
            .trim_start_matches('/')
            .replace('/', "%2F")
    );
    let overlong = format!("/v/clip/{}", "a/".repeat(200));
    let long_id = format!("/v/{}/master.m3u8", "a".repeat(100));
    let targets: Vec<String> = vec![
        "/v/clip/../../../../etc/passwd".into(),
        "/v/clip/v180/../../clip/master.m3u8".into(),
        "/v/clip/%2e%2e/%2e%2e/etc/passwd".into(),
        "/v/clip/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".into(),
        "/v/clip/..%2f..%2f..%2fetc%2fpasswd".into(),
        "/v/clip/..%5c..%5cetc%5cpasswd".into(),
        "/v/clip/v180%5c1.m4s".into(),
        "/v/clip/%252e%252e/%252e%252e/etc/passwd".into(),
        "/v/clip/%25252e%25252e/etc/passwd".into(),
        "/v/clip/master.m3u8%00.jpg".into(),
        "/v/clip/%00".into(),
        absolute,
        encoded_absolute,
        "/v/clip//etc/passwd".into(),
        "/v//etc/passwd".into(),
        "/v/../etc/passwd".into(),
        "/v/%2e%2e/etc/passwd".into(),
        "/v/clip/./master.m3u8".into(),
        "/v/clip/v180/./1.m4s".into(),
        "/v/clip/v180//1.m4s".into(),
        overlong,
        long_id,
        "/v/clip/manifest.json".into(),
        "/v/clip/v180/planted.m4s".into(),
        "/v/clip/outside/secret.m4s".into(),
        "/v/linked/secret.m4s".into(),
        "/v/clip/v180/3.m4s".into(),
        "/v/clip/%c0%ae%c0%ae/etc/passwd".into(),
        "/v/clip/%ff".into(),
        "/v/clip%2fmaster.m3u8".into(),
        "/v/clip/.%2e/.%2e/etc/passwd".into(),
        "/ui/../../etc/passwd".into(),
        "/ui/%2e%2e/%2e%2e/etc/passwd".into(),
    ];
    assert!(targets.len() >= 20);
    for protocol in PROTOCOLS {
        for target in &targets {
            let reply = send(&server, protocol, Method::GET, target, &[]).await;
            assert!(
                reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::NOT_FOUND,
                "{protocol:?} {target}: {}",
                reply.status
            );
            assert!(
                !reply.body.windows(secret.len()).any(|w| w == secret),
                "{target}"
            );
            assert!(!reply.body.starts_with(b"root:"), "{target}");
        }
    }
    // Bytes no URI type accepts, sent raw: backslashes, a raw NUL, spaces.
    for target in [
        &b"/v/clip/..\\..\\etc\\passwd"[..],
        b"/v/clip/master.m3u8\0",
        b"/v/clip/../master.m3u8 HTTP/1.1\r\nX: y",
    ] {
        let (status, response) = raw_http1(&server, target).await;
        assert!(status == 400 || status == 404, "{target:?}: {status}");
        assert!(!response.windows(secret.len()).any(|w| w == secret));
    }
    // The valid files are still served.
    assert_eq!(
        get(&server, Protocol::Http1, "/v/clip/master.m3u8")
            .await
            .status,
        StatusCode::OK
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_whose_size_differs_from_the_manifest_is_refused() {
    let library = Library::new().await;
    let truncated = library.read("v180/1.m4s");
    std::fs::write(
        library.file("v180/1.m4s"),
        &truncated[..truncated.len() / 2],
    )
    .unwrap();
    let mut grown = library.read("v180/4.m4s");
    grown.extend_from_slice(b"tail");
    std::fs::write(library.file("v180/4.m4s"), &grown).unwrap();
    let mut streaming = config(&library);
    streaming.max_cached_file_size = bytesize::ByteSize::kib(8);
    for config in [config(&library), streaming] {
        let server = Server::start(config).await;
        for protocol in PROTOCOLS {
            for target in ["/v/clip/v180/1.m4s", "/v/clip/v180/4.m4s"] {
                let reply = get(&server, protocol, target).await;
                assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{target}");
                assert!(reply.body.len() < 100);
            }
        }
        assert!(metric(&server, "kinema_origin_size_mismatches_total").await >= 4.0);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_listed_file_missing_from_the_store_is_404() {
    let library = Library::new().await;
    std::fs::remove_file(library.file("thumbs/poster.jpg")).unwrap();
    let server = Server::start(config(&library)).await;
    for protocol in PROTOCOLS {
        assert_eq!(
            get(&server, protocol, "/v/clip/thumbs/poster.jpg")
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn files_above_the_cache_limit_are_streamed_correctly() {
    let library = Library::new().await;
    let mut config = config(&library);
    config.max_cached_file_size = bytesize::ByteSize::kib(8);
    let server = Server::start(config).await;
    let whole = library.read("v180/2.m4s");
    for protocol in PROTOCOLS {
        let reply = get(&server, protocol, SEGMENT).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-length"), whole.len().to_string());
        assert_eq!(reply.body, whole);
        let reply = send(
            &server,
            protocol,
            Method::GET,
            SEGMENT,
            &[("range", "bytes=5000-70000")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(reply.body, whole[5000..70001]);
        let reply = send(&server, protocol, Method::HEAD, SEGMENT, &[]).await;
        assert_eq!(reply.header("content-length"), whole.len().to_string());
        assert!(reply.body.is_empty());
    }
    // Small files are still cached.
    get(&server, Protocol::Http1, "/v/clip/master.m3u8").await;
    get(&server, Protocol::Http1, "/v/clip/master.m3u8").await;
    assert!(metric(&server, "kinema_origin_streamed_files_total").await >= 4.0);
    assert!(metric(&server, "kinema_origin_cache_hits_total").await >= 1.0);
    // Only the playlist is held in memory; the streamed segment is not.
    let playlist = library.read("master.m3u8").len() as f64;
    assert_eq!(metric(&server, "kinema_origin_cache_entries").await, 1.0);
    let held = metric(&server, "kinema_origin_cache_bytes").await;
    assert!(held >= playlist && held < playlist + 1024.0, "{held}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_misses_for_one_file_make_one_store_read() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    let expected = library.read("v180/init.mp4");
    let requests = (0..32).map(|i| {
        let protocol = PROTOCOLS[i % 2];
        let server = &server;
        async move { get(server, protocol, "/v/clip/v180/init.mp4").await }
    });
    for reply in futures::future::join_all(requests).await {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, expected);
    }
    assert_eq!(
        metric(&server, "kinema_origin_store_reads_total").await,
        1.0
    );
    let hits = metric(&server, "kinema_origin_cache_hits_total").await;
    let misses = metric(&server, "kinema_origin_cache_misses_total").await;
    assert_eq!(hits + misses, 32.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn requesting_a_segment_prefetches_the_next() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    assert_eq!(
        get(&server, Protocol::Http1, "/v/clip/v180/1.m4s")
            .await
            .status,
        StatusCode::OK
    );
    eventually("segment 2 to be prefetched", async || {
        metric(&server, "kinema_origin_prefetches_total").await >= 1.0
    })
    .await;
    let reply = get(&server, Protocol::Http2, "/v/clip/v180/2.m4s").await;
    assert_eq!(reply.body, library.read("v180/2.m4s"));
    assert_eq!(
        metric(&server, "kinema_origin_prefetch_hits_total").await,
        1.0
    );
    // The last segment has no successor to prefetch; nothing breaks.
    assert_eq!(
        get(&server, Protocol::Http1, "/v/clip/v180/4.m4s")
            .await
            .status,
        StatusCode::OK
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unpublished_videos_disappear_and_republished_ones_return() {
    let library = Library::new().await;
    let mut config = config(&library);
    config.manifest_refresh = std::time::Duration::from_millis(50);
    let server = Server::start(config).await;
    assert_eq!(
        get(&server, Protocol::Http1, "/v/clip/master.m3u8")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&server, Protocol::Http1, "/v/other/master.m3u8")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    library
        .store
        .unpublish(&kinema_core::VideoId::new("clip").unwrap())
        .await
        .unwrap();
    eventually("the unpublished video to be gone", async || {
        get(&server, Protocol::Http1, "/v/clip/master.m3u8")
            .await
            .status
            == StatusCode::NOT_FOUND
    })
    .await;
    library.publish("clip").await;
    library.publish("other").await;
    eventually("the republished videos to be served", async || {
        get(&server, Protocol::Http2, "/v/clip/master.m3u8")
            .await
            .status
            == StatusCode::OK
            && get(&server, Protocol::Http2, "/v/other/v180/1.m4s")
                .await
                .status
                == StatusCode::OK
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_replaced_generation_is_served_at_its_own_urls_until_the_video_is_unpublished() {
    let library = Library::new().await;
    let old = library.manifest().await.generation;
    let mut config = config(&library);
    config.manifest_refresh = std::time::Duration::from_millis(50);
    let server = Server::start(config).await;
    let status = async |path: String| get(&server, Protocol::Http1, &path).await.status;
    assert_eq!(
        status(format!("/v/clip/g{old}/v180/1.m4s")).await,
        StatusCode::OK
    );

    let new = library.publish("clip").await.generation;
    assert!(new > old);
    // Both generations answer at their URLs: the old one for players that
    // loaded its playlists, from its own manifest copy.
    for generation in [old, new] {
        let reply = get(
            &server,
            Protocol::Http2,
            &format!("/v/clip/g{generation}/v180/2.m4s"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "g{generation}");
        assert_eq!(
            reply.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(reply.body.as_ref(), library.read("v180/2.m4s"));
    }
    // A generation that never was, or a name that is no generation, is
    // not found (the latter is no listed file).
    for path in [
        format!("/v/clip/g{}/v180/1.m4s", new + 1),
        "/v/clip/g0/v180/1.m4s".to_string(),
        format!("/v/clip/g0{old}/v180/1.m4s"),
        format!("/v/clip/g{old}/manifest.json"),
    ] {
        assert_eq!(status(path.clone()).await, StatusCode::NOT_FOUND, "{path}");
    }

    library
        .store
        .unpublish(&kinema_core::VideoId::new("clip").unwrap())
        .await
        .unwrap();
    eventually(
        "every generation of the unpublished video to be gone",
        async || {
            status(format!("/v/clip/g{old}/v180/1.m4s")).await == StatusCode::NOT_FOUND
                && status(format!("/v/clip/g{new}/v180/1.m4s")).await == StatusCode::NOT_FOUND
        },
    )
    .await;
    server.stop().await.unwrap();
}

/// Files this process holds open under `dir`, deleted ones included (the
/// kernel names them by their last path, with " (deleted)" after it).
fn open_files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[tokio::test]
async fn an_unpublished_video_s_files_are_closed_once_unused_for_cache_inactive() {
    let library = Library::new().await;
    let mut config = config(&library);
    config.manifest_refresh = std::time::Duration::from_millis(50);
    config.cache_inactive = std::time::Duration::from_millis(300);
    let server = Server::start(config).await;
    // The largest file is cached as a shared file, its published file open.
    let manifest = library.manifest().await;
    let largest = manifest.files.iter().max_by_key(|file| file.size).unwrap();
    let target = format!("/v/clip/{}", largest.path);
    assert_eq!(
        get(&server, Protocol::Http1, &target).await.status,
        StatusCode::OK
    );
    // Unpublishing moves the video into the library's trash, then deletes
    // it: look under the whole library.
    let library_dir = library.dir.path();
    assert!(
        open_files_under(library_dir) > 0,
        "{target} ({} bytes) is not held open",
        largest.size
    );
    library
        .store
        .unpublish(&kinema_core::VideoId::new("clip").unwrap())
        .await
        .unwrap();
    // Nothing touches the cache any more; its files are closed all the same.
    eventually("the unpublished video's files to be closed", async || {
        open_files_under(library_dir) == 0
    })
    .await;
    assert_eq!(
        get(&server, Protocol::Http1, &target).await.status,
        StatusCode::NOT_FOUND
    );
    server.stop().await.unwrap();
}

/// With room for one session (the fixture's one rendition is 620 kbit/s),
/// the second player to start is refused with 503 and Retry-After, while
/// the admitted one goes on being served; once the first session's
/// reservation lapses (nothing was measured meanwhile), a new one is
/// admitted again.
#[tokio::test]
async fn sessions_beyond_max_egress_are_refused_with_503_and_retry_after() {
    let library = Library::new().await;
    let mut config = config(&library);
    config.max_egress = Some(kinema_core::Bitrate(900_000));
    // Sessions from other networks, named through a trusted proxy: a
    // network starting a video again only replaces its own reservation.
    config.trusted_proxies = kinema_origin::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    let server = Server::start(config).await;
    let first = get(&server, Protocol::Http1, "/v/clip/master.m3u8").await;
    assert_eq!(first.status, StatusCode::OK);
    for (protocol, target, client) in [
        (Protocol::Http1, "/v/clip/master.m3u8", "192.0.2.1"),
        (Protocol::Http2, "/v/clip/manifest.mpd", "198.51.100.1"),
    ] {
        let refused = send(
            &server,
            protocol,
            Method::GET,
            target,
            &[("x-forwarded-for", client)],
        )
        .await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{target}");
        let retry_after: u64 = refused.header("retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(refused.header("cache-control"), "no-store");
        let body = String::from_utf8_lossy(&refused.body);
        assert!(body.contains("at capacity"), "{body}");
    }
    // Within a session, and for HEAD, nothing is refused.
    for target in [
        "/v/clip/v180/index.m3u8",
        "/v/clip/v180/init.mp4",
        "/v/clip/v180/1.m4s",
    ] {
        assert_eq!(
            get(&server, Protocol::Http1, target).await.status,
            StatusCode::OK,
            "{target}"
        );
    }
    let head = send(
        &server,
        Protocol::Http1,
        Method::HEAD,
        "/v/clip/master.m3u8",
        &[],
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        metric(&server, "kinema_origin_sessions_admitted_total").await,
        1.0
    );
    assert_eq!(
        metric(
            &server,
            "kinema_origin_sessions_refused_total{reason=\"egress\"}"
        )
        .await,
        2.0
    );
    eventually("a new session to be admitted", async || {
        get(&server, Protocol::Http2, "/v/clip/master.m3u8")
            .await
            .status
            == StatusCode::OK
    })
    .await;
    assert_eq!(
        metric(&server, "kinema_origin_sessions_admitted_total").await,
        2.0
    );
    server.stop().await.unwrap();
}

/// `max_load` 1 turns the load check off; 0 or below would refuse every
/// viewer and is a configuration error.
#[tokio::test]
async fn a_max_load_of_zero_is_a_clear_error() {
    let library = Library::new().await;
    let mut config = config(&library);
    config.max_load = 0.0;
    let error = Server::start(config)
        .await
        .stop()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("max_load"), "{error}");
}

#[tokio::test]
async fn healthz_metrics_api_and_unknown_routes() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    for protocol in PROTOCOLS {
        let reply = get(&server, protocol, "/healthz").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "ok\n");
        let reply = get(&server, protocol, "/api/videos").await;
        assert_eq!(reply.header("content-type"), "application/json");
        assert!(serde_json::from_slice::<serde_json::Value>(&reply.body).is_ok());
        assert_eq!(
            get(&server, protocol, "/nothing-here").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&server, protocol, "/v/clip").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&server, protocol, "/").await.status,
            StatusCode::NOT_FOUND
        );
    }
    get(&server, Protocol::Http1, SEGMENT).await;
    send(
        &server,
        Protocol::Http1,
        Method::GET,
        SEGMENT,
        &[("range", "bytes=0-0")],
    )
    .await;
    let reply = get(&server, Protocol::Http1, "/metrics").await;
    assert!(
        reply
            .header("content-type")
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for expected in [
        "kinema_origin_requests_total{route=\"segment\",status=\"2xx\"} 2",
        "kinema_origin_requests_total{route=\"healthz\",status=\"2xx\"} 2",
        "kinema_origin_requests_total{route=\"unknown\",status=\"4xx\"} 4",
        "kinema_origin_requests_total{route=\"ui\",status=\"4xx\"} 2",
        "kinema_origin_requests_total{route=\"api\",status=\"4xx\"} 2",
        "kinema_origin_request_duration_seconds_count",
        "kinema_origin_cache_bytes",
        "# EOF",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let segment_bytes = library.read("v180/2.m4s").len() as f64 + 1.0;
    assert_eq!(
        metric(
            &server,
            "kinema_origin_response_body_bytes_total{route=\"segment\"}"
        )
        .await,
        segment_bytes
    );
    // The scrape itself arrives on an open connection.
    assert!(metric(&server, "kinema_origin_open_connections").await >= 1.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn web_ui_serves_only_the_files_found_at_startup() {
    let library = Library::new().await;
    let web = tempfile::tempdir().unwrap();
    std::fs::create_dir(web.path().join("vendor")).unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>kinema</title>",
    )
    .unwrap();
    std::fs::write(web.path().join("vendor/hls.min.js"), "// hls").unwrap();
    let mut config = config(&library);
    config.web_root = web.path().to_path_buf();
    let server = Server::start(config).await;
    // Once the server answers, it has loaded the UI; a file added later is
    // not served.
    assert_eq!(
        get(&server, Protocol::Http1, "/healthz").await.status,
        StatusCode::OK
    );
    std::fs::write(web.path().join("late.js"), "// added after startup").unwrap();
    for protocol in PROTOCOLS {
        let index = get(&server, protocol, "/").await;
        assert_eq!(index.status, StatusCode::OK);
        assert_eq!(index.header("content-type"), "text/html; charset=utf-8");
        assert_eq!(index.body, "<!doctype html><title>kinema</title>");
        let script = get(&server, protocol, "/ui/vendor/hls.min.js").await;
        assert_eq!(
            script.header("content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(script.body, "// hls");
        let etag = script.header("etag").to_string();
        let revalidated = send(
            &server,
            protocol,
            Method::GET,
            "/ui/vendor/hls.min.js",
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
        assert_eq!(
            get(&server, protocol, "/ui/late.js").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&server, protocol, "/ui/vendor%2fhls.min.js")
                .await
                .status,
            StatusCode::BAD_REQUEST
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_and_run_returns_ok() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    let addr = server.addr;
    assert_eq!(
        get(&server, Protocol::Http2, "/healthz").await.status,
        StatusCode::OK
    );
    server.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_missing_library_is_a_clear_error() {
    let config = kinema_origin::Config::new("/nonexistent/kinema-library");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = kinema_origin::run(config, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/nonexistent/kinema-library") && error.contains("does not exist"),
        "{error}"
    );
}
