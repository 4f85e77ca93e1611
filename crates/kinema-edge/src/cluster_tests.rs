//! The placement selector over a made-up membership view: one head per
//! video that fills from the origins while the others fill from it, the hop
//! guard, membership changes and failed parents.

use super::*;

use kinema_cluster::{Health, Member, NodeFigures, NodeInfo};

use crate::upstream::HealthChecks;

const ORIGIN: &str = "origin:8080";

fn member(id: &str, role: Role, health: Health, self_id: &str) -> Member {
    Member {
        node_id: id.into(),
        generation: 1,
        gossip_addr: "127.0.0.1:7000".parse().unwrap(),
        is_self: id == self_id,
        state: Ok(NodeInfo {
            role,
            public_url: format!("http://{id}:8081"),
            region: "default".into(),
            capacity_bps: 1_000_000_000,
            figures: NodeFigures::default(),
            health,
        }),
    }
}

/// A view of the edges `edges` (ok) and `draining`, plus an origin.
fn view(edges: &[&str], draining: &[&str], self_id: &str) -> MembershipView {
    let mut live: Vec<Member> = edges
        .iter()
        .map(|id| member(id, Role::Edge, Health::Ok, self_id))
        .chain(
            draining
                .iter()
                .map(|id| member(id, Role::Edge, Health::Draining, self_id)),
        )
        .collect();
    live.push(member("origin", Role::Origin, Health::Ok, self_id));
    MembershipView {
        live,
        ..MembershipView::default()
    }
}

fn selector(
    self_id: &str,
    view: MembershipView,
) -> (PlacementUpstreams, watch::Sender<MembershipView>) {
    let (sender, receiver) = watch::channel(view);
    let origins = RoundRobin::new(
        &[format!("http://{ORIGIN}")],
        HealthChecks {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
        },
    )
    .unwrap();
    (
        PlacementUpstreams::new(origins, self_id, receiver).unwrap(),
        sender,
    )
}

fn chosen(selector: &PlacementUpstreams, path: &str, through_kinema: bool) -> Vec<String> {
    let request = UpstreamRequest {
        through_kinema,
        ..UpstreamRequest::new(path, path)
    };
    selector
        .select(&request)
        .iter()
        .map(|upstream| upstream.authority().to_string())
        .collect()
}

const EDGES: [&str; 3] = ["a", "b", "c"];

fn videos() -> Vec<String> {
    (0..60).map(|n| format!("video-{n}")).collect()
}

#[test]
fn each_video_has_one_head_that_fills_from_the_origin_and_the_others_fill_from_it() {
    let selectors: Vec<_> = EDGES
        .iter()
        .map(|id| selector(id, view(&EDGES, &[], id)))
        .collect();
    let mut heads = HashMap::new();
    for video in videos() {
        let path = format!("/v/{video}/360p/1.m4s");
        let mut from_origin = Vec::new();
        let mut parents = Vec::new();
        for (id, (selector, _)) in EDGES.iter().zip(&selectors) {
            let upstreams = chosen(selector, &path, false);
            // The origin is always last, as the failover.
            assert_eq!(upstreams.last().map(String::as_str), Some(ORIGIN));
            match upstreams.len() {
                1 => from_origin.push(*id),
                2 => parents.push(upstreams[0].clone()),
                _ => panic!("{upstreams:?}"),
            }
            // Never itself.
            assert_ne!(upstreams[0], format!("{id}:8081"));
        }
        assert_eq!(from_origin.len(), 1, "{video}: one head, {from_origin:?}");
        let head = format!("{}:8081", from_origin[0]);
        assert_eq!(parents, [head.clone(), head.clone()], "{video}");
        *heads.entry(head).or_insert(0) += 1;
    }
    // Sixty videos spread over the three edges (equal weights).
    assert_eq!(heads.len(), 3, "{heads:?}");
}

#[test]
fn through_a_kinema_node_or_without_a_video_only_the_origins() {
    let (selector, _) = selector("a", view(&EDGES, &[], "a"));
    let parented = videos()
        .into_iter()
        .map(|video| format!("/v/{video}/master.m3u8"))
        .find(|path| chosen(&selector, path, false).len() == 2)
        .expect("some video whose head is another edge");
    assert_eq!(chosen(&selector, &parented, true), [ORIGIN]);
    // Signed targets name their video too.
    let signed = parented.replace("/v/", "/s/token/v/");
    assert_eq!(chosen(&selector, &signed, false).len(), 2);
    assert_eq!(chosen(&selector, "/healthz", false), [ORIGIN]);
    assert_eq!(chosen(&selector, "/v/not%20an%20id/1.m4s", false), [ORIGIN]);
}

#[test]
fn a_lone_edge_and_a_draining_one_fill_from_the_origin() {
    let (alone, _) = selector("a", view(&["a"], &["b", "c"], "a"));
    for video in videos() {
        assert_eq!(
            chosen(&alone, &format!("/v/{video}/1.m4s"), false),
            [ORIGIN]
        );
    }
    // A draining edge takes no fills: every video's parent is the one
    // healthy edge, and the draining one fills from it.
    let (draining, _) = selector("b", view(&["a"], &["b", "c"], "b"));
    for video in videos() {
        assert_eq!(
            chosen(&draining, &format!("/v/{video}/1.m4s"), false),
            ["a:8081", ORIGIN]
        );
    }
}

#[test]
fn a_dead_head_is_replaced_when_the_view_changes() {
    let (selector, sender) = selector("a", view(&EDGES, &[], "a"));
    let (path, head) = videos()
        .into_iter()
        .map(|video| format!("/v/{video}/1.m4s"))
        .find_map(|path| {
            let upstreams = chosen(&selector, &path, false);
            (upstreams.len() == 2).then(|| (path, upstreams[0].clone()))
        })
        .unwrap();
    let dead = head.trim_end_matches(":8081");
    let rest: Vec<&str> = EDGES.iter().copied().filter(|id| *id != dead).collect();
    sender.send_replace(view(&rest, &[], "a"));
    let upstreams = chosen(&selector, &path, false);
    assert!(!upstreams.contains(&head), "{upstreams:?}");
    assert_eq!(upstreams.last().map(String::as_str), Some(ORIGIN));
}

#[test]
fn a_failed_parent_is_skipped_and_an_origin_failure_is_the_round_robins() {
    let (selector, _) = selector("a", view(&EDGES, &[], "a"));
    let path = videos()
        .into_iter()
        .map(|video| format!("/v/{video}/1.m4s"))
        .find(|path| chosen(&selector, path, false).len() == 2)
        .unwrap();
    let parent = selector.select(&UpstreamRequest::new(&path, &path))[0].clone();
    assert!(parent.is_peer());
    selector.report_failure(&parent, UpstreamFailure::Connect);
    assert_eq!(chosen(&selector, &path, false), [ORIGIN]);
    // The origins' health is untouched by a parent's failure.
    assert_eq!(selector.healthy_count(), 1);
    let origin = Upstream::parse(&format!("http://{ORIGIN}")).unwrap();
    selector.report_failure(&origin, UpstreamFailure::Connect);
    assert_eq!(selector.healthy_count(), 0);
}
