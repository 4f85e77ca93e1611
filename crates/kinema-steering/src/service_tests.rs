use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use kinema_cluster::{ClusterKey, ClusterKeys, Health, Member, NodeFigures, NodeInfo, Role};

use super::*;
use crate::pathway::PathwayId;
use crate::steer::SteeringConfig;

fn member(id: &str, role: Role, url: &str, is_self: bool) -> Member {
    let gossip_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    Member {
        node_id: id.into(),
        generation: 1,
        gossip_addr,
        is_self,
        state: Ok(NodeInfo {
            role,
            public_url: url.into(),
            region: "here".into(),
            capacity_bps: 1_000_000_000,
            figures: NodeFigures::default(),
            health: Health::Ok,
        }),
    }
}

fn origin_alone() -> MembershipView {
    MembershipView {
        live: vec![member(
            "origin",
            Role::Origin,
            "http://127.0.0.1:8080",
            true,
        )],
        ..MembershipView::default()
    }
}

fn with_edge(view: &MembershipView, id: &str, url: &str) -> MembershipView {
    let mut view = view.clone();
    view.live.push(member(id, Role::Edge, url, false));
    view
}

const NOW: Duration = Duration::from_secs(1_800_000_000);

/// A clock reading `NOW` plus the milliseconds stored in the counter.
fn stepped_clock() -> (Arc<AtomicU64>, Clock) {
    let millis = Arc::new(AtomicU64::new(0));
    let clock = Clock::from_fn({
        let millis = millis.clone();
        move || SystemTime::UNIX_EPOCH + NOW + Duration::from_millis(millis.load(Relaxed))
    });
    (millis, clock)
}

fn service(view: MembershipView) -> (watch::Sender<MembershipView>, SteeringService) {
    service_at(view, Clock::from_fn(|| SystemTime::UNIX_EPOCH + NOW))
}

fn service_at(
    view: MembershipView,
    clock: Clock,
) -> (watch::Sender<MembershipView>, SteeringService) {
    let keys = ClusterKeys::new(ClusterKey::new(1, vec![9; 32]).unwrap(), None).unwrap();
    let (sender, receiver) = watch::channel(view);
    let service = SteeringService::new(
        Steering::new(SteeringConfig::default(), keys),
        receiver,
        clock,
    );
    (sender, service)
}

fn clip() -> VideoId {
    VideoId::new("clip").unwrap()
}

fn body(response: &Response<ResponseBody>) -> serde_json::Value {
    match response.body() {
        ResponseBody::Full(bytes) => serde_json::from_slice(bytes).unwrap(),
        _ => panic!("a steering answer is one buffer"),
    }
}

fn header(response: &Response<ResponseBody>, name: http::header::HeaderName) -> &str {
    response.headers()[name].to_str().unwrap()
}

#[test]
fn the_snapshot_is_rebuilt_when_the_view_changes_and_only_then() {
    let (sender, service) = service(origin_alone());
    let first = service.snapshot();
    assert_eq!(first.nodes().len(), 1);
    service.steer(&clip(), "");
    assert!(
        Arc::ptr_eq(&first, &service.snapshot()),
        "no change, no rebuild"
    );
    sender.send_replace(with_edge(
        &origin_alone(),
        "edge-a",
        "http://127.0.0.2:8080",
    ));
    let second = service.snapshot();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.nodes().len(), 2);
    assert!(Arc::ptr_eq(&second, &service.snapshot()));
    // The next answer names the edge first.
    let manifest = body(&service.steer(&clip(), ""));
    let edge = PathwayId::of_node("edge-a");
    assert_eq!(manifest["PATHWAY-PRIORITY"][0], edge.as_str());
}

#[test]
fn figures_membership_does_not_signal_are_seen_once_the_snapshot_is_stale() {
    let (millis, clock) = stepped_clock();
    let (sender, service) = service_at(
        with_edge(&origin_alone(), "edge-a", "http://127.0.0.2:8080"),
        clock,
    );
    let first = service.snapshot();
    let edge_load = |snapshot: &Snapshot| {
        snapshot
            .nodes()
            .iter()
            .find(|node| node.node_id == "edge-a")
            .map(|node| node.load)
    };
    assert_eq!(edge_load(&first), Some(0.0));
    // Membership updates figures in place without a signal.
    sender.send_if_modified(|view| {
        if let Ok(info) = &mut view.live[1].state {
            info.figures.load = 0.95;
        }
        false
    });
    millis.store(499, Relaxed);
    assert!(Arc::ptr_eq(&first, &service.snapshot()), "still fresh");
    millis.store(500, Relaxed);
    let refreshed = service.snapshot();
    assert_eq!(edge_load(&refreshed), Some(0.95));
    // A clock that went back rebuilds too, rather than never again.
    millis.store(100, Relaxed);
    assert!(!Arc::ptr_eq(&refreshed, &service.snapshot()));
}

#[test]
fn a_cluster_gone_keeps_the_last_view() {
    let (sender, service) = service(with_edge(
        &origin_alone(),
        "edge-a",
        "http://127.0.0.2:8080",
    ));
    drop(sender);
    assert_eq!(service.snapshot().nodes().len(), 2);
    assert_eq!(service.steer(&clip(), "").status(), StatusCode::OK);
}

#[test]
fn a_steering_answer_is_json_never_stored_and_readable_cross_origin() {
    let (_sender, service) = service(with_edge(
        &origin_alone(),
        "edge-a",
        "http://127.0.0.2:8080",
    ));
    let response = service.steer(&clip(), "");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "application/json");
    assert_eq!(header(&response, CACHE_CONTROL), "no-store");
    assert_eq!(header(&response, ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let manifest = body(&response);
    assert_eq!(manifest["VERSION"], 1);
    assert_eq!(manifest["TTL"], 10);
    assert!(manifest.get("SERVICE-LOCATION-PRIORITY").is_none());
    let reload = manifest["RELOAD-URI"].as_str().unwrap();
    assert!(reload.contains("/steer/clip?session="), "{reload}");
    let dash = body(&service.steer(&clip(), "proto=dash"));
    assert!(dash.get("SERVICE-LOCATION-PRIORITY").is_some());
    assert!(
        dash["RELOAD-URI"]
            .as_str()
            .unwrap()
            .ends_with("&proto=dash")
    );
}

#[test]
fn nothing_serving_is_a_503_with_retry_after() {
    let (_sender, service) = service(MembershipView::default());
    let response = service.steer(&clip(), "");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, RETRY_AFTER), "5");
    assert_eq!(header(&response, CACHE_CONTROL), "no-store");
    assert!(service.redirect(&clip(), "/v/clip/master.m3u8").is_none());
    assert_eq!(service.served.unserved.load(Relaxed), 1);
}

#[test]
fn a_redirect_goes_to_the_chosen_edge_and_never_to_this_node() {
    let (sender, service) = service(origin_alone());
    // Only this origin serves: no redirect.
    assert!(service.redirect(&clip(), "/v/clip/master.m3u8").is_none());
    sender.send_replace(with_edge(
        &origin_alone(),
        "edge-a",
        "http://127.0.0.2:8080",
    ));
    let response = service
        .redirect(&clip(), "/s/TOKEN/v/clip/master.m3u8?x=1")
        .expect("an edge serves");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        header(&response, LOCATION),
        "http://127.0.0.2:8080/s/TOKEN/v/clip/master.m3u8?x=1"
    );
    assert_eq!(header(&response, CACHE_CONTROL), "no-store");
    assert_eq!(service.redirects(), 1);
    // A path that cannot be a Location is not redirected.
    assert!(service.redirect(&clip(), "v/clip/master.m3u8").is_none());
}

#[test]
fn a_master_is_rewritten_or_left_to_be_served_as_stored() {
    let (_sender, service) = service(with_edge(
        &origin_alone(),
        "edge-a",
        "http://127.0.0.2:8080",
    ));
    let stored = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\ng1/v360/index.m3u8\n";
    let rewritten = service
        .rewrite(ManifestKind::Master, &clip(), "/v/clip/master.m3u8", stored)
        .expect("rewritten");
    let text = std::str::from_utf8(&rewritten).unwrap();
    assert!(
        text.contains("#EXT-X-CONTENT-STEERING:SERVER-URI="),
        "{text}"
    );
    assert!(
        text.contains("http://127.0.0.2:8080/v/clip/g1/v360/index.m3u8"),
        "{text}"
    );
    let absolute = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://elsewhere/x.m3u8\n";
    assert!(
        service
            .rewrite(
                ManifestKind::Master,
                &clip(),
                "/v/clip/master.m3u8",
                absolute
            )
            .is_none()
    );
    assert!(
        service
            .rewrite(
                ManifestKind::Mpd,
                &clip(),
                "/v/clip/manifest.mpd",
                b"\xff\xfe"
            )
            .is_none()
    );
}

#[test]
fn the_rate_map_stays_bounded_under_a_scan_of_made_up_ids() {
    let mut rates = RateMap::default();
    let hot = VideoId::new("hot").unwrap();
    let start = Duration::from_secs(1_000);
    for _ in 0..50 {
        rates.observe(&hot, start);
    }
    for n in 0..(3 * MAX_TRACKED_VIDEOS) {
        let id = VideoId::new(format!("made-up-{n}")).unwrap();
        let now = start + Duration::from_millis(n as u64);
        rates.observe(&id, now);
        assert!(rates.len() <= MAX_TRACKED_VIDEOS, "{} meters", rates.len());
    }
    let later = start + Duration::from_millis(3 * MAX_TRACKED_VIDEOS as u64);
    // The watched video outlived ids seen once.
    assert!(rates.rate(&hot, later) > 0.1, "{}", rates.rate(&hot, later));
}

#[test]
fn service_counters_render_in_a_registry() {
    let (_sender, service) = service(with_edge(
        &origin_alone(),
        "edge-a",
        "http://127.0.0.2:8080",
    ));
    service.steer(&clip(), "");
    service.redirect(&clip(), "/v/clip/master.m3u8");
    let mut registry = Registry::with_prefix("kinema_origin");
    service.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "kinema_origin_steering_redirects_total 1\n",
        "kinema_origin_steering_manifests_total 1\n",
        "kinema_origin_steering_decisions_total{reason=\"placement\"} 2\n",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

/// The origin (this node) and three edges, `edge-1`..`edge-3` at
/// 127.0.0.2..4, none publishing any session.
fn origin_and_three_edges() -> MembershipView {
    (1..=3).fold(origin_alone(), |view, i| {
        with_edge(
            &view,
            &format!("edge-{i}"),
            &format!("http://127.0.0.{}:8080", i + 1),
        )
    })
}

/// The node a redirect of `service` sends a new viewer of the clip to.
fn redirected_to(service: &SteeringService) -> String {
    let response = service
        .redirect(&clip(), "/v/clip/master.m3u8")
        .expect("an edge serves");
    let location = header(&response, LOCATION);
    let host = location.split('/').nth(2).unwrap();
    let last: u8 = host
        .split(':')
        .next()
        .unwrap()
        .rsplit('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    format!("edge-{}", last - 1)
}

#[test]
fn a_crowd_starting_before_any_load_is_published_is_placed_within_the_bound() {
    let (millis, clock) = stepped_clock();
    let (_sender, service) = service_at(origin_and_three_edges(), clock);
    let order = crate::rank::tests::placement_order("clip");
    let mut placed: HashMap<String, u64> = HashMap::new();
    for _ in 0..30 {
        *placed.entry(redirected_to(&service)).or_default() += 1;
    }
    // Bounded loads over the sessions placed so far: the last of 30 saw
    // L = 29, a bound of ⌈1.25 × 30 / 3⌉ = 13, so no edge took more.
    assert!(placed.values().all(|&count| count <= 13), "{placed:?}");
    assert_eq!(placed.values().sum::<u64>(), 30);
    assert_eq!(placed.len(), 3, "{placed:?}");
    // Once the window has passed without any node publishing them, the
    // placed sessions no longer count: the next goes to the head again. By
    // then the crowd's rate has fallen back to one node's too: 30 starts
    // at once read 30 × ln 2 / 20 s = 1.04/s (k = 2) on the short
    // half-life, and 15 s later, with this start and the next counted,
    // (30 × 2^-0.75 + 2) × ln 2 / 20 s = 0.69/s (k = 1).
    let later = Duration::from_secs(15);
    assert!(later >= RECENT_WINDOW);
    millis.store(later.as_millis() as u64, Relaxed);
    assert_eq!(redirected_to(&service), order[0]);
    // … and counts at once: the one after it does not.
    let next = redirected_to(&service);
    assert_ne!(next, order[0]);
}

#[test]
fn a_master_fetched_at_an_edge_keeps_the_viewer_on_that_edge() {
    // This node is an edge that is not the clip's head.
    let order = crate::rank::tests::placement_order("clip");
    let here = order[1].clone();
    let mut view = origin_and_three_edges();
    for member in &mut view.live {
        member.is_self = *member.node_id == *here;
    }
    let (_sender, service) = service(view);
    let stored = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\ng1/v360/index.m3u8\n";
    for _ in 0..3 {
        let rewritten = service
            .rewrite(ManifestKind::Master, &clip(), "/v/clip/master.m3u8", stored)
            .expect("rewritten");
        let text = std::str::from_utf8(&rewritten).unwrap();
        let steering = text
            .lines()
            .find(|line| line.starts_with("#EXT-X-CONTENT-STEERING:"))
            .unwrap();
        assert!(
            steering.ends_with(&format!("PATHWAY-ID=\"{}\"", PathwayId::of_node(&here))),
            "{text}"
        );
    }
    // A new session asking for steering here is not kept: it has not
    // chosen this node; the head of the order is first.
    let manifest = body(&service.steer(&clip(), ""));
    assert_eq!(
        manifest["PATHWAY-PRIORITY"][0],
        PathwayId::of_node(&order[0]).as_str()
    );
}

#[test]
fn a_reload_is_ranked_alike_here_and_on_a_node_that_placed_nothing() {
    let (_here_sender, here) = service(origin_and_three_edges());
    let (_other_sender, other) = service(origin_and_three_edges());
    let first = body(&here.steer(&clip(), ""));
    let reload = first["RELOAD-URI"].as_str().unwrap();
    let query = reload.split_once('?').unwrap().1.to_owned();
    // Five more new sessions here. By hand: placed against the loads with
    // the earlier ones added, the six go to the first, second, first,
    // second, first and second edge of the order (bounds 1, 1, 2, 2, 3, 3),
    // so with them counted both are at the bound of L = 6, ⌈1.25 × 7 / 3⌉ =
    // 3, and the third edge is not: a reload ranked over them here would
    // put the third edge second.
    for _ in 0..5 {
        here.steer(&clip(), "");
    }
    let order = crate::rank::tests::placement_order("clip");
    let expected: Vec<String> = order
        .iter()
        .map(|node| PathwayId::of_node(node).as_str().to_owned())
        .chain([PathwayId::of_node("origin").as_str().to_owned()])
        .collect();
    let priority = |service: &SteeringService| -> Vec<String> {
        body(&service.steer(&clip(), &query))["PATHWAY-PRIORITY"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(priority(&other), expected);
    assert_eq!(priority(&here), expected);
}

#[test]
fn a_session_leaves_its_edge_once_the_edge_has_been_overloaded_for_seconds() {
    let (millis, clock) = stepped_clock();
    let (sender, service) = service_at(origin_and_three_edges(), clock);
    let first = body(&service.steer(&clip(), ""));
    let on = first["PATHWAY-PRIORITY"][0].as_str().unwrap().to_owned();
    let reload = first["RELOAD-URI"].as_str().unwrap();
    let query = reload.split_once('?').unwrap().1.to_owned();
    // From now on the session's edge publishes a full load each second,
    // without a membership signal.
    sender.send_if_modified(|view| {
        for member in &mut view.live {
            if PathwayId::of_node(&member.node_id).as_str() == on
                && let Ok(info) = &mut member.state
            {
                info.figures.load = 1.0;
            }
        }
        false
    });
    let renewed_on = || -> String {
        body(&service.steer(&clip(), &query))["PATHWAY-PRIORITY"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A reload each second. By hand: the sustained load after s seconds at
    // 1 from 0 is 1 - 2^(-s/3): 0.875 after 9 s, 0.9008 after 10, the
    // first above the threshold of 0.9.
    for second in 1..=9 {
        millis.store(second * 1000, Relaxed);
        assert_eq!(renewed_on(), on, "after {second} s");
    }
    millis.store(10_000, Relaxed);
    assert_ne!(renewed_on(), on);
    // A new session avoided the edge from the first second on.
    assert_ne!(
        body(&service.steer(&clip(), ""))["PATHWAY-PRIORITY"][0]
            .as_str()
            .unwrap(),
        on
    );
}
