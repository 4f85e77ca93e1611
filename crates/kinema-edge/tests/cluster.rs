//! An edge built with a cluster part, over a made-up membership view: a
//! miss goes to the video's placement parent before the origin, a request
//! through a kinema node and a failing parent go to the origin, and a
//! viewer's master is answered steered while a kinema node gets the stored
//! file. Real HTTP to the edge and to scripted upstreams.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::scripted::{Origin, Reply, ok};
use common::{Edge, get, request};
use http::StatusCode;
use kinema_cluster::{
    ClusterKey, ClusterKeys, GossipCounters, Health, Member, MembershipView, NodeFigures, NodeInfo,
    Role,
};
use kinema_edge::ClusterPart;
use kinema_edge::cluster::PlacementUpstreams;
use kinema_edge::upstream::{HealthChecks, RoundRobin};
use kinema_steering::{Steering, SteeringConfig, SteeringService};
use tokio::sync::watch;

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
    #EXT-X-STREAM-INF:BANDWIDTH=700000,RESOLUTION=320x180,CODECS=\"avc1.42c00c\"\n\
    v180/index.m3u8\n";

fn member(id: &str, role: Role, url: &str) -> Member {
    Member {
        node_id: id.into(),
        generation: 1,
        gossip_addr: "127.0.0.1:7000".parse().unwrap(),
        is_self: id == "self",
        state: Ok(NodeInfo {
            role,
            public_url: url.into(),
            region: "default".into(),
            capacity_bps: 1_000_000_000,
            figures: NodeFigures::default(),
            health: Health::Ok,
        }),
    }
}

/// This edge (`self`), an edge `peer` at `peer_url` when given, and the
/// origin.
fn view(peer_url: Option<&str>, origin_url: &str) -> MembershipView {
    let mut live = vec![
        member("origin", Role::Origin, origin_url),
        member("self", Role::Edge, "http://127.0.0.9:8081"),
    ];
    if let Some(url) = peer_url {
        live.push(member("peer", Role::Edge, url));
    }
    MembershipView {
        live,
        ..MembershipView::default()
    }
}

fn config(origin: &Origin) -> kinema_edge::Config {
    kinema_edge::Config {
        origin: vec![origin.url()],
        prefetch_segments: 0,
        origin_timeout: Duration::from_secs(5),
        ..kinema_edge::Config::default()
    }
}

/// An edge in a cluster whose membership is `view`.
async fn cluster_edge(config: kinema_edge::Config, view: MembershipView) -> Edge {
    // A view whose sender is gone stays as it was: a fixed membership.
    let (_, receiver) = watch::channel(view);
    edge_watching(config, receiver, "self").await
}

/// An edge in a cluster as `node_id`, whose membership is what `receiver`
/// says.
async fn edge_watching(
    config: kinema_edge::Config,
    receiver: watch::Receiver<MembershipView>,
    node_id: &str,
) -> Edge {
    let keys = ClusterKeys::new(ClusterKey::new(1, vec![7; 32]).unwrap(), None).unwrap();
    let steering = SteeringService::new(
        Steering::new(SteeringConfig::default(), keys),
        receiver.clone(),
        kinema_http::Clock::system(),
    );
    let part = ClusterPart {
        steering: Arc::new(steering),
        gossip: Arc::new(GossipCounters::default()),
    };
    let parts = kinema_edge::EdgeParts::open(&config)
        .await
        .unwrap()
        .with_cluster(&config, node_id, receiver, part)
        .unwrap();
    Edge::spawn(|listener, shutdown| kinema_edge::run_with(config, parts, listener, shutdown)).await
}

/// A video whose placement parent, for `self` in `view`, is `peer`.
fn video_led_by_peer(view: &MembershipView) -> String {
    let origins = RoundRobin::new(
        &["http://127.0.0.1:1".to_string()],
        HealthChecks {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
        },
    )
    .unwrap();
    let selector =
        PlacementUpstreams::new(origins, "self", watch::channel(view.clone()).1).unwrap();
    (0..100)
        .map(|n| format!("video-{n}"))
        .find(|video| selector.parent(video).is_some())
        .expect("the peer leads some of a hundred videos")
}

fn segment_or(path: &str, special: &[(&str, Reply)]) -> Reply {
    special
        .iter()
        .find(|(part, _)| path.contains(part))
        .map_or_else(
            || ok(&[("cache-control", "max-age=600")], "from-parent"),
            |(_, reply)| reply.clone(),
        )
}

#[tokio::test]
async fn a_miss_is_filled_from_the_parent_and_through_a_kinema_node_from_the_origin() {
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "from-origin")).await;
    let parent = Origin::start(|request, _| segment_or(request.uri().path(), &[])).await;
    let view = view(Some(&parent.url()), &origin.url());
    let video = video_led_by_peer(&view);
    let edge = cluster_edge(config(&origin), view).await;

    let first = format!("/v/{video}/v180/1.m4s");
    let (status, _, body) = get(edge.address, &first, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"from-parent");
    assert_eq!((parent.count(&first), origin.count(&first)), (1, 0));
    // The parent is told the fill comes through a kinema node.
    let via = parent.last_headers(&first);
    assert_eq!(via["via"], "1.1 kinema");

    // The hop guard: through a kinema node, never to another edge.
    let second = format!("/v/{video}/v180/2.m4s");
    let (status, _, body) = get(edge.address, &second, &[("via", "1.1 kinema")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"from-origin");
    assert_eq!((parent.count(&second), origin.count(&second)), (0, 1));
    // No video named: the origin.
    let (_, _, body) = get(edge.address, "/robots.txt", &[]).await;
    assert_eq!(&body[..], b"from-origin");
    assert_eq!(parent.count("/robots.txt"), 0);
    edge.stop().await;
}

#[tokio::test]
async fn a_failing_parent_gives_way_to_the_origin_within_the_request() {
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "from-origin")).await;
    let parent = Origin::start(|request, _| {
        segment_or(
            request.uri().path(),
            &[
                (
                    "busy",
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        vec![("retry-after", "5".to_string())],
                        "busy".into(),
                    ),
                ),
                (
                    "broken",
                    (StatusCode::INTERNAL_SERVER_ERROR, vec![], "broken".into()),
                ),
            ],
        )
    })
    .await;
    let view = view(Some(&parent.url()), &origin.url());
    let video = video_led_by_peer(&view);
    let edge = cluster_edge(config(&origin), view).await;

    // A refusal that names a time is passed on, as the origin's would be.
    let busy = format!("/v/{video}/v180/busy.m4s");
    let (status, headers, _) = get(edge.address, &busy, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(origin.count(&busy), 0);
    // A 5xx without one: the origin, in the same request.
    let broken = format!("/v/{video}/v180/broken.m4s");
    let (status, _, body) = get(edge.address, &broken, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"from-origin");
    assert_eq!((parent.count(&broken), origin.count(&broken)), (1, 1));
    // And the parent is skipped for a while.
    let next = format!("/v/{video}/v180/3.m4s");
    let (_, _, body) = get(edge.address, &next, &[]).await;
    assert_eq!(&body[..], b"from-origin");
    assert_eq!(parent.count(&next), 0);
    edge.stop().await;
}

#[tokio::test]
async fn a_parent_that_refuses_connections_gives_way_to_the_origin() {
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "from-origin")).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let view = view(Some(&dead), &origin.url());
    let video = video_led_by_peer(&view);
    let edge = cluster_edge(config(&origin), view).await;
    let (status, _, body) = get(edge.address, &format!("/v/{video}/v180/1.m4s"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"from-origin");
    assert_eq!(edge.metric("kinema_edge_origin_retries_total").await, 1);
    edge.stop().await;
}

fn master_origin(request: &hyper::Request<hyper::body::Incoming>) -> Reply {
    let path = request.uri().path();
    if path.ends_with("master.m3u8") {
        ok(
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"stored\""),
                ("content-type", "application/vnd.apple.mpegurl"),
            ],
            MASTER,
        )
    } else {
        ok(&[("cache-control", "max-age=60")], "#EXTM3U\n")
    }
}

#[tokio::test]
async fn a_viewers_master_is_steered_and_a_kinema_node_gets_the_stored_file() {
    let origin = Origin::start(|request, _| master_origin(request)).await;
    let edge = cluster_edge(config(&origin), view(None, &origin.url())).await;

    let (status, headers, body) = get(edge.address, "/v/clip/master.m3u8", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(!headers.contains_key("etag"), "{headers:?}");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("#EXT-X-CONTENT-STEERING:SERVER-URI=\""),
        "{text}"
    );
    assert!(
        text.contains("http://127.0.0.9:8081/v/clip/v180/index.m3u8"),
        "{text}"
    );
    // The viewer's validator names the stored file: still a steered 200.
    let (status, _, body) = get(
        edge.address,
        "/v/clip/master.m3u8",
        &[("if-none-match", "\"stored\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("EXT-X-CONTENT-STEERING"));
    let (status, headers, body) =
        request(edge.address, "HEAD", "/v/clip/master.m3u8", &[], b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(body.is_empty());
    // A kinema node gets the stored file, its validator and all; and the
    // stored file was fetched once.
    let (status, headers, body) = get(
        edge.address,
        "/v/clip/master.m3u8",
        &[("via", "1.1 kinema")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], MASTER.as_bytes());
    assert_eq!(headers["etag"], "\"stored\"");
    assert_eq!(origin.count("/v/clip/master.m3u8"), 1);
    // Generation URLs and media playlists are never rewritten.
    for path in ["/v/clip/g1/master.m3u8", "/v/clip/v180/index.m3u8"] {
        let (_, headers, body) = get(edge.address, path, &[]).await;
        assert_ne!(headers["cache-control"], "no-store", "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains("STEERING"),
            "{path}"
        );
    }

    // /steer/{id}: any well-formed id; a malformed one is no video.
    let (status, headers, body) = get(edge.address, "/steer/clip", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["VERSION"], 1);
    assert_eq!(
        get(edge.address, "/steer/no.such", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, headers, _) = request(edge.address, "POST", "/steer/clip", &[], b"").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    assert_eq!(origin.count("/steer/clip"), 0);

    // /metrics: sessions (two viewer GETs), membership and steering.
    assert_eq!(edge.metric("kinema_edge_sessions_started_total").await, 2);
    assert_eq!(edge.metric("kinema_edge_cluster_live_members").await, 0);
    assert!(edge.metric("kinema_edge_steering_rewrites_total").await >= 3);
    edge.stop().await;
}

#[tokio::test]
async fn without_a_cluster_part_masters_are_stored_files_and_steer_is_proxied() {
    let origin = Origin::start(|request, _| master_origin(request)).await;
    let edge = Edge::start(config(&origin)).await;
    let (status, headers, body) = get(edge.address, "/v/clip/master.m3u8", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], MASTER.as_bytes());
    assert_eq!(headers["etag"], "\"stored\"");
    get(edge.address, "/steer/clip", &[]).await;
    assert_eq!(origin.count("/steer/clip"), 1);
    // Sessions are counted all the same (they are a single edge's figure too).
    assert_eq!(edge.metric("kinema_edge_sessions_started_total").await, 1);
    edge.stop().await;
}

#[tokio::test]
async fn two_edges_that_each_take_the_other_for_the_parent_do_not_wait_for_each_other() {
    // Views that disagree, as while one edge drains: each sees only the
    // other as a usable edge, so each fills from the other.
    let origin = Origin::start(|_, _| ok(&[("cache-control", "max-age=600")], "from-origin")).await;
    let config = kinema_edge::Config {
        // Far beyond the test's wait: a fill cycle would not end by itself.
        origin_timeout: Duration::from_secs(120),
        ..config(&origin)
    };
    let (to_a, a_view) = watch::channel(MembershipView::default());
    let (to_b, b_view) = watch::channel(MembershipView::default());
    let edge_a = edge_watching(config.clone(), a_view, "a").await;
    let edge_b = edge_watching(config, b_view, "b").await;
    let only = |id: &str, edge: &Edge| MembershipView {
        live: vec![Member {
            is_self: false,
            ..member(id, Role::Edge, &edge.url())
        }],
        ..MembershipView::default()
    };
    to_a.send_replace(only("b", &edge_b));
    to_b.send_replace(only("a", &edge_a));

    // Both edges miss the same object while the origin holds its answers
    // (which fill reaches the other edge first is the scheduler's; the
    // coalescing rule itself is checked in the edge's unit tests).
    origin.hold();
    let path = "/v/clip/v180/1.m4s";
    let (a, b) = (edge_a.address, edge_b.address);
    let from_a = tokio::spawn(async move { get(a, path, &[]).await });
    let from_b = tokio::spawn(async move { get(b, path, &[]).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while origin.count(path) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edges never asked the origin: {} requests",
            origin.count(path)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    origin.release();
    for viewer in [from_a, from_b] {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), viewer)
            .await
            .expect("no fill waits for the other edge's")
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"from-origin");
    }
    edge_a.stop().await;
    edge_b.stop().await;
}
