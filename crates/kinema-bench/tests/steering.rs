//! Viewers under content steering, over loopback: two test servers over
//! one library are the pathways `a` and `b`, and a control server serves a
//! steered master or MPD naming both and a steering manifest whose answers
//! the test scripts. A viewer follows a new priority keeping its rung, fails
//! over at once when its pathway's server dies (the same segment from the
//! next pathway, no viewer error, the failover stall reported), ignores
//! malformed steering with a counted warning, and a plain master plays as
//! it always did.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Faults, LADDER, Refusal, TestServer, config, library, play, serve};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kinema_bench::{BenchConfig, Bitrate};
use tokio::net::TcpListener;

/// The control server: the steered manifests and a scripted steering
/// endpoint (the n-th request gets the n-th body, the last one after; a
/// body `status 410` or `status 429 SECONDS` answers that status instead).
struct Control {
    address: std::net::SocketAddr,
    /// The query string of every steering request, in order.
    queries: Arc<Mutex<Vec<String>>>,
}

async fn control(master: String, mpd: String, steer: Vec<String>) -> Control {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let queries = Arc::new(Mutex::new(Vec::new()));
    let shared = (
        Arc::new(master),
        Arc::new(mpd),
        Arc::new(steer),
        queries.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (master, mpd, steer, queries) = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (master, mpd, steer, queries) =
                        (master.clone(), mpd.clone(), steer.clone(), queries.clone());
                    async move {
                        let (content_type, body) = match request.uri().path() {
                            "/master.m3u8" => ("application/vnd.apple.mpegurl", (*master).clone()),
                            "/manifest.mpd" => ("application/dash+xml", (*mpd).clone()),
                            "/steer" => {
                                let mut queries = queries.lock().unwrap();
                                queries.push(request.uri().query().unwrap_or("").to_string());
                                let n = (queries.len() - 1).min(steer.len() - 1);
                                // "410" or "429 SECONDS": that status instead.
                                if let Some(status) = steer[n].strip_prefix("status ") {
                                    let (code, retry_after) =
                                        status.split_once(' ').unwrap_or((status, ""));
                                    let mut response =
                                        Response::builder().status(code.parse::<u16>().unwrap());
                                    if !retry_after.is_empty() {
                                        response = response.header("retry-after", retry_after);
                                    }
                                    return Ok(response.body(Full::new(Bytes::new())).unwrap());
                                }
                                ("application/json", steer[n].clone())
                            }
                            _ => {
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(StatusCode::NOT_FOUND)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                );
                            }
                        };
                        Ok(Response::builder()
                            .header("content-type", content_type)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap())
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Control { address, queries }
}

fn rung(bitrate: u64) -> String {
    format!("r{}k", bitrate / 1000)
}

/// A master as a kinema edge writes one: a variant set per pathway with the
/// same `STABLE-VARIANT-ID`s, absolute URIs, steering from `/steer`.
fn steered_master(pathways: &[(&str, &TestServer)]) -> String {
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer?session=1\",PATHWAY-ID=\"{}\"\n",
        pathways[0].0
    );
    for (id, server) in pathways {
        for bitrate in LADDER {
            text.push_str(&format!(
                "#EXT-X-STREAM-INF:BANDWIDTH={bitrate},CODECS=\"avc1.64001f\",PATHWAY-ID=\"{id}\",STABLE-VARIANT-ID=\"{rung}\"\n{url}\n",
                rung = rung(bitrate),
                url = server.url(&format!("/v/clip/{}/index.m3u8", rung(bitrate))),
            ));
        }
    }
    text
}

/// An MPD as a kinema edge writes one: `ContentSteering` and a `BaseURL`
/// per service location at MPD level.
fn steered_mpd(pathways: &[(&str, &TestServer)]) -> String {
    let mut text = format!(
        "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" mediaPresentationDuration=\"PT20S\">\n  \
         <ContentSteering defaultServiceLocation=\"{}\" queryBeforeStart=\"true\">/steer?session=1&amp;proto=dash</ContentSteering>\n",
        pathways[0].0
    );
    for (id, server) in pathways {
        text.push_str(&format!(
            "  <BaseURL serviceLocation=\"{id}\">{}</BaseURL>\n",
            server.url("/v/clip/")
        ));
    }
    text.push_str("  <Period>\n    <AdaptationSet contentType=\"video\" mimeType=\"video/mp4\">\n");
    for bitrate in LADDER {
        let id = rung(bitrate);
        text.push_str(&format!(
            "      <Representation id=\"{id}\" codecs=\"avc1.64001f\" bandwidth=\"{bitrate}\">\n        \
             <SegmentTemplate timescale=\"1\" duration=\"1\" initialization=\"{id}/init.mp4\" media=\"{id}/$Number$.m4s\" startNumber=\"1\"/>\n      \
             </Representation>\n"
        ));
    }
    text.push_str("    </AdaptationSet>\n  </Period>\n</MPD>\n");
    text
}

fn steer_body(priority: &[&str], ttl: u32, next_session: u32) -> String {
    let quoted: Vec<String> = priority.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "{{\"VERSION\":1,\"TTL\":{ttl},\"RELOAD-URI\":\"/steer?session={next_session}\",\"PATHWAY-PRIORITY\":[{}]}}",
        quoted.join(",")
    )
}

fn pinned(url: String, viewers: u32, duration: Duration) -> BenchConfig {
    BenchConfig {
        viewers,
        bitrate: Some(Bitrate(LADDER[0])),
        speed: 4.0,
        duration,
        ..config(url)
    }
}

#[tokio::test]
async fn a_viewer_follows_a_new_priority_keeping_its_rung_and_position() {
    let library = library(1.0, 20).await;
    let a = serve(&library, Faults::default()).await;
    let b = serve(&library, Faults::default()).await;
    let pathways = [("a", &a), ("b", &b)];
    let control = control(
        steered_master(&pathways),
        String::new(),
        vec![steer_body(&["a", "b"], 1, 2), steer_body(&["b", "a"], 1, 3)],
    )
    .await;
    let report = play(pinned(
        format!("http://{}/master.m3u8", control.address),
        1,
        Duration::from_secs(4),
    ))
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert!(viewer.steered);
    assert_eq!(
        (viewer.http_errors, viewer.segments_failed),
        (0, 0),
        "{viewer:?}"
    );
    assert_eq!(viewer.pathway_switches_by_steering, 1, "{viewer:?}");
    assert_eq!(viewer.pathway_switches_by_failure, 0);
    // The rung stayed (one rung pinned, and no quality switch counted).
    assert_eq!(viewer.switches, 0);
    assert!(viewer.records.iter().all(|r| r.bitrate == LADDER[0]));
    let on = |server: &TestServer| viewer.pathways[&server.address.to_string()];
    assert!(
        on(&a).bytes > 0 && on(&b).bytes > 0,
        "{:?}",
        viewer.pathways
    );
    // Position kept: segment indices go on from where pathway a left off.
    let indices: Vec<u32> = viewer.records.iter().map(|r| r.index).collect();
    assert!(
        indices.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == 0),
        "{indices:?}"
    );

    let queries = control.queries.lock().unwrap().clone();
    assert!(queries.len() >= 3, "{queries:?}");
    assert!(
        queries[0].starts_with("session=1&_HLS_pathway=a"),
        "{queries:?}"
    );
    // Reloads go to RELOAD-URI, with the throughput hls.js would report.
    assert!(
        queries[1].starts_with("session=2&_HLS_pathway=a&_HLS_throughput="),
        "{queries:?}"
    );
    assert!(
        queries[2].starts_with("session=3&_HLS_pathway=b"),
        "{queries:?}"
    );

    let summary = &report.summary.steering;
    assert_eq!(summary.steered_viewers, 1);
    assert_eq!(summary.switches_by_steering, 1);
    assert!(summary.steering_requests >= 3);
    let table = kinema_bench::report::summary_table(&report);
    assert!(table.contains(&a.address.to_string()), "{table}");
}

/// Runs `viewers` on a steered `manifest` whose pathway `a` dies after a
/// few segments, and checks every viewer moved to `b` without a viewer
/// error and reported its failover stall.
async fn failover(dash: bool) {
    let viewers = 3;
    let library = library(1.0, 20).await;
    let a = serve(
        &library,
        Faults {
            die_after_segments: Some(4),
            ..Faults::default()
        },
    )
    .await;
    let b = serve(&library, Faults::default()).await;
    let pathways = [("a", &a), ("b", &b)];
    let control = control(
        steered_master(&pathways),
        steered_mpd(&pathways),
        vec![steer_body(&["a", "b"], 30, 2)],
    )
    .await;
    let manifest = if dash { "manifest.mpd" } else { "master.m3u8" };
    let report = play(pinned(
        format!("http://{}/{manifest}", control.address),
        viewers,
        Duration::from_secs(4),
    ))
    .await;
    assert!(a.died.is_cancelled(), "pathway a never died");
    let summary = &report.summary;
    assert_eq!(summary.viewers_failed, 0, "{:?}", summary.first_error);
    assert_eq!(summary.segments_failed, 0);
    assert_eq!(summary.steering.viewers_failed_over, viewers);
    for viewer in &report.viewers {
        assert!(viewer.steered);
        assert_eq!(viewer.pathway_switches_by_failure, 1, "{viewer:?}");
        let stall = viewer.failover_stall_seconds[0];
        assert!(stall.is_finite() && stall > 0.0, "{stall}");
        assert!(viewer.pathways[&b.address.to_string()].bytes > 0);
        // What failed is counted on the dead pathway.
        assert!(
            viewer.pathways[&a.address.to_string()].errors >= 1,
            "{:?}",
            viewer.pathways
        );
    }
    assert!(summary.steering.failover_stall_seconds.max > 0.0);
    let queries = control.queries.lock().unwrap().clone();
    let expected = if dash {
        "session=1&proto=dash&_DASH_pathway=%22a%22"
    } else {
        "session=1&_HLS_pathway=a"
    };
    assert!(queries[0].starts_with(expected), "{queries:?}");
    let table = kinema_bench::report::summary_table(&report);
    assert!(table.contains("failover"), "{table}");
}

#[tokio::test]
async fn hls_viewers_fail_over_when_their_pathway_dies() {
    failover(false).await;
}

#[tokio::test]
async fn dash_viewers_fail_over_when_their_service_location_dies() {
    failover(true).await;
}

#[tokio::test]
async fn a_5xx_after_the_retries_moves_the_viewer_to_the_next_pathway() {
    let library = library(1.0, 20).await;
    // Pathway a answers 503 (no Retry-After) for one segment, every time.
    let a = serve(
        &library,
        Faults {
            refusal: Some(Refusal {
                path: "r300k/3.m4s".into(),
                first: u32::MAX,
                after_serving: None,
                retry_after: None,
            }),
            ..Faults::default()
        },
    )
    .await;
    let b = serve(&library, Faults::default()).await;
    let pathways = [("a", &a), ("b", &b)];
    let control = control(
        steered_master(&pathways),
        String::new(),
        vec![steer_body(&["a", "b"], 30, 2)],
    )
    .await;
    let report = play(BenchConfig {
        retries: 2,
        ..pinned(
            format!("http://{}/master.m3u8", control.address),
            1,
            Duration::from_secs(3),
        )
    })
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert_eq!(viewer.segments_failed, 0, "{viewer:?}");
    // The server was there: its 503 was retried before the viewer moved.
    assert_eq!(viewer.retries, 2, "{viewer:?}");
    assert_eq!(viewer.error_kinds.get("http 503"), Some(&3));
    assert_eq!(viewer.pathway_switches_by_failure, 1);
    assert_eq!(viewer.failover_stall_seconds.len(), 1);
    // Segment 3 (index 2) came from b, and play went on in order.
    let indices: Vec<u32> = viewer.records.iter().map(|r| r.index).collect();
    assert_eq!(&indices[..4], &[0, 1, 2, 3], "{indices:?}");
    assert!(viewer.pathways[&b.address.to_string()].bytes > 0);
}

/// Plays 4 s against a steering server answering `steer` (TTL 1 s), and
/// returns the steering requests it got and the viewer's report.
async fn steering_answers(
    steer: Vec<String>,
) -> (Vec<String>, kinema_bench::metrics::ViewerReport) {
    let library = library(1.0, 20).await;
    let a = serve(&library, Faults::default()).await;
    let b = serve(&library, Faults::default()).await;
    let pathways = [("a", &a), ("b", &b)];
    let control = control(steered_master(&pathways), String::new(), steer).await;
    let report = play(pinned(
        format!("http://{}/master.m3u8", control.address),
        1,
        Duration::from_secs(4),
    ))
    .await;
    let queries = control.queries.lock().unwrap().clone();
    (queries, report.viewers[0].clone())
}

#[tokio::test]
async fn a_410_stops_steering_and_a_429_waits_its_retry_after() {
    // With a TTL of 1 s a 4 s run would reload about four times; after a
    // 410 the viewer never asks again, after a 429 not within its minute.
    for answer in ["status 410", "status 429 60"] {
        let (queries, viewer) =
            steering_answers(vec![steer_body(&["a", "b"], 1, 2), answer.into()]).await;
        assert_eq!(queries.len(), 2, "{answer}: {queries:?}");
        assert_eq!(viewer.steering_errors, 1, "{answer}");
        assert_eq!(viewer.fatal, None);
        assert_eq!(
            (viewer.segments_failed, viewer.http_errors),
            (0, 0),
            "{answer}"
        );
        assert!(viewer.segments > 4);
    }
    // Any other failure is tried again after a while, not at once and not
    // never: within 4 s at most the first two requests.
    let (queries, viewer) =
        steering_answers(vec![steer_body(&["a", "b"], 1, 2), "status 500".into()]).await;
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert_eq!(viewer.steering_errors, 1);
}

#[tokio::test]
async fn malformed_steering_is_a_counted_warning_and_play_goes_on() {
    let library = library(1.0, 20).await;
    let a = serve(&library, Faults::default()).await;
    let b = serve(&library, Faults::default()).await;
    let pathways = [("a", &a), ("b", &b)];
    let control = control(
        steered_master(&pathways),
        String::new(),
        vec!["{\"VERSION\":1,\"PATHWAY-PRIORITY\":\"b\"}".into()],
    )
    .await;
    let report = play(pinned(
        format!("http://{}/master.m3u8", control.address),
        1,
        Duration::from_secs(2),
    ))
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert!(viewer.steering_warnings >= 1, "{viewer:?}");
    assert!(viewer.segments > 0);
    assert_eq!(viewer.segments_failed, 0);
    // Still on the manifest's pathway: nothing was switched.
    assert_eq!(viewer.pathway_switches_by_steering, 0);
    assert!(!viewer.pathways.contains_key(&b.address.to_string()));
    assert!(
        report
            .summary
            .steering
            .first_warning
            .as_deref()
            .unwrap()
            .contains("steering manifest"),
        "{:?}",
        report.summary.steering.first_warning
    );
}

#[tokio::test]
async fn a_plain_master_plays_as_before_without_steering() {
    let library = library(1.0, 20).await;
    let server = serve(&library, Faults::default()).await;
    let report = play(pinned(
        server.url("/v/clip/master.m3u8"),
        1,
        Duration::from_secs(1),
    ))
    .await;
    let viewer = &report.viewers[0];
    assert_eq!(viewer.fatal, None);
    assert!(!viewer.steered);
    assert_eq!(viewer.steering_requests, 0);
    assert_eq!(viewer.steering_warnings, 0);
    assert_eq!(viewer.failover_stall_seconds, Vec::<f64>::new());
    let keys: Vec<&String> = viewer.pathways.keys().collect();
    assert_eq!(keys, [&server.address.to_string()]);
    assert_eq!(
        viewer.pathways[&server.address.to_string()].bytes,
        viewer.bytes
    );
    let table = kinema_bench::report::summary_table(&report);
    assert!(!table.contains("failover"), "{table}");
}
