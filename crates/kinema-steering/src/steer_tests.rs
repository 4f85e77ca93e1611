use std::time::UNIX_EPOCH;

use kinema_cluster::ClusterKey;

use super::*;
use crate::rank::tests::{edge, node, placement_order};
use crate::rank::{NodeView, RankConfig};

const VIDEO: &str = "clip";
const NOW: u64 = 1_800_000_000;

fn keys() -> ClusterKeys {
    ClusterKeys::new(ClusterKey::new(3, vec![0x5a; 32]).unwrap(), None).unwrap()
}

fn steering() -> Steering {
    Steering::new(SteeringConfig::default(), keys())
}

fn snapshot_with(change: impl Fn(&mut NodeView)) -> Snapshot {
    let mut nodes: Vec<NodeView> = (1..=3).map(|i| edge(&format!("edge-{i}"))).collect();
    nodes.push(node("origin-9", Role::Origin, NodeStatus::Ok, 0.5, 40));
    for node in &mut nodes {
        change(node);
    }
    Snapshot::new(nodes)
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn decide(snapshot: &Snapshot, query: &str, now: u64) -> Decision {
    let video = VideoId::new(VIDEO).unwrap();
    steering().decide(&SteeringRequest {
        video: &video,
        snapshot,
        rate: 0.0,
        query: &SteeringQuery::parse(query),
        new_session: SessionId(0x77),
        now: at(now),
    })
}

/// The encoded state of a session on `node_id` issued at `issued`.
fn state_on(node_id: &str, issued: u64) -> String {
    SessionState {
        video: VideoId::new(VIDEO).unwrap(),
        session: SessionId(0x1234),
        pathway: PathwayId::of_node(node_id),
        issued_at: issued,
        expires_at: issued + 600,
    }
    .encode(&keys())
}

fn node_ids(decision: &Decision) -> Vec<&str> {
    decision
        .pathways
        .iter()
        .map(|p| p.node_id.as_str())
        .collect()
}

#[test]
fn a_new_session_follows_the_ranking_and_gets_a_state_for_its_first_pathway() {
    let order = placement_order(VIDEO);
    let decision = decide(&snapshot_with(|_| {}), "", NOW);
    assert_eq!(
        node_ids(&decision),
        [&order[0], &order[1], &order[2], "origin-9"]
    );
    assert_eq!(decision.session, SessionId(0x77));
    assert!(!decision.resumed);
    assert_eq!(
        (decision.reason, decision.miss),
        (Reason::Placement, Miss::None)
    );
    let state = decision.state.as_ref().unwrap();
    assert_eq!(state.pathway, PathwayId::of_node(&order[0]));
    assert_eq!((state.issued_at, state.expires_at), (NOW, NOW + 600));
    // The next steering request goes to the second pathway's node.
    assert_eq!(decision.steering_base(), Some(&edge(&order[1]).base_url));
}

#[test]
fn a_session_stays_on_its_healthy_pathway_even_off_the_head() {
    let order = placement_order(VIDEO);
    let query = format!("session={}", state_on(&order[2], NOW - 30));
    let decision = decide(&snapshot_with(|_| {}), &query, NOW);
    assert_eq!(
        node_ids(&decision),
        [&order[2], &order[0], &order[1], "origin-9"]
    );
    assert_eq!(decision.session, SessionId(0x1234));
    assert!(decision.resumed);
    assert_eq!(
        (decision.reason, decision.miss),
        (Reason::Sticky, Miss::None)
    );
    assert_eq!(decision.previous, Some(PathwayId::of_node(&order[2])));
    let record = decision.record();
    assert!(!record.moved());
    // The renewed state: same session and pathway, a fresh lifetime.
    let state = decision.state.unwrap();
    assert_eq!(
        (state.session, state.pathway),
        (SessionId(0x1234), PathwayId::of_node(&order[2]))
    );
    assert_eq!(state.expires_at, NOW + 600);
}

#[test]
fn a_session_on_a_dead_or_draining_node_moves_with_a_health_miss() {
    let order = placement_order(VIDEO);
    for status in [NodeStatus::Dead, NodeStatus::Draining] {
        let gone = order[0].clone();
        let snapshot = snapshot_with(|n| {
            if n.node_id == gone {
                n.status = status;
            }
        });
        let query = format!("session={}", state_on(&gone, NOW - 30));
        let decision = decide(&snapshot, &query, NOW);
        assert_eq!(node_ids(&decision), [&order[1], &order[2], "origin-9"]);
        assert_eq!(
            (decision.reason, decision.miss),
            (Reason::Health, Miss::Health)
        );
        assert_eq!(decision.session, SessionId(0x1234));
        assert!(decision.record().moved());
    }
    // A node no longer known at all (it left) is gone too.
    let query = format!("session={}", state_on("edge-7", NOW - 30));
    let decision = decide(&snapshot_with(|_| {}), &query, NOW);
    assert_eq!(
        (decision.reason, decision.miss),
        (Reason::Health, Miss::Health)
    );
}

#[test]
fn a_session_on_an_overloaded_node_moves_with_a_content_miss() {
    let order = placement_order(VIDEO);
    let busy = order[1].clone();
    let snapshot = snapshot_with(|n| {
        if n.node_id == busy {
            n.load = 0.97;
            n.sustained_load = 0.95;
        }
    });
    let query = format!("session={}", state_on(&busy, NOW - 30));
    let decision = decide(&snapshot, &query, NOW);
    assert_eq!(
        node_ids(&decision),
        [&order[0], &order[2], &order[1], "origin-9"]
    );
    assert_eq!(
        (decision.reason, decision.miss),
        (Reason::Load, Miss::Content)
    );
}

#[test]
fn a_spike_demotes_a_node_for_new_sessions_and_keeps_the_ones_it_serves() {
    let order = placement_order(VIDEO);
    let head = order[0].clone();
    // Overloaded this second, not for seconds.
    let snapshot = snapshot_with(|n| {
        if n.node_id == head {
            n.load = 1.0;
            n.sustained_load = 0.6;
        }
    });
    let query = format!("session={}", state_on(&head, NOW - 30));
    let renewed = decide(&snapshot, &query, NOW);
    assert_eq!(renewed.pathways[0].node_id, head);
    assert_eq!((renewed.reason, renewed.miss), (Reason::Sticky, Miss::None));
    let new = decide(&snapshot, "", NOW);
    assert_eq!(new.pathways[0].node_id, order[1]);
    assert_eq!(new.reason, Reason::Load);
}

#[test]
fn a_new_session_off_an_overloaded_head_is_a_content_miss() {
    let order = placement_order(VIDEO);
    let head = order[0].clone();
    let decision = decide(
        &snapshot_with(|n| {
            if n.node_id == head {
                n.load = 1.0;
            }
        }),
        "",
        NOW,
    );
    assert_eq!(decision.pathways[0].node_id, order[1]);
    assert_eq!(
        (decision.reason, decision.miss),
        (Reason::Load, Miss::Content)
    );
}

#[test]
fn expired_forged_or_garbled_states_start_new_sessions() {
    let order = placement_order(VIDEO);
    let other_keys = ClusterKeys::new(ClusterKey::new(3, vec![0x5b; 32]).unwrap(), None).unwrap();
    let forged = SessionState {
        video: VideoId::new(VIDEO).unwrap(),
        session: SessionId(0x1234),
        pathway: PathwayId::of_node(&order[2]),
        issued_at: NOW,
        expires_at: NOW + 600,
    }
    .encode(&other_keys);
    for query in [
        format!("session={}", state_on(&order[2], NOW - 600)),
        format!("session={forged}"),
        "session=garbage".to_owned(),
        format!("session={}", "A".repeat(5000)),
    ] {
        let decision = decide(&snapshot_with(|_| {}), &query, NOW);
        assert_eq!(decision.session, SessionId(0x77), "{query}");
        assert!(!decision.resumed);
        assert_eq!(decision.pathways[0].node_id, order[0]);
        assert_eq!(decision.reason, Reason::Placement);
    }
}

#[test]
fn a_new_session_stays_where_the_player_says_it_plays_if_that_node_is_fine() {
    let order = placement_order(VIDEO);
    let query = format!(
        "_HLS_pathway={}&_HLS_throughput=4000000",
        PathwayId::of_node(&order[1])
    );
    let decision = decide(&snapshot_with(|_| {}), &query, NOW);
    assert_eq!(decision.pathways[0].node_id, order[1]);
    assert_eq!(decision.reason, Reason::Sticky);
    assert!(!decision.resumed);
    assert_eq!(decision.previous, None);
    let record = decision.record();
    assert_eq!(record.reported, Some(PathwayId::of_node(&order[1])));
    assert_eq!(record.throughput_bps, Some(4_000_000));
}

#[test]
fn with_every_edge_down_a_session_goes_to_the_origin_and_stays_there() {
    let down = snapshot_with(|n| {
        if n.role == Role::Edge {
            n.status = NodeStatus::Dead;
        }
    });
    let order = placement_order(VIDEO);
    let query = format!("session={}", state_on(&order[0], NOW - 30));
    let decision = decide(&down, &query, NOW);
    assert_eq!(node_ids(&decision), ["origin-9"]);
    assert_eq!(
        (decision.reason, decision.miss),
        (Reason::OriginOnly, Miss::Health)
    );
    let query = format!("session={}", state_on("origin-9", NOW - 30));
    let decision = decide(&down, &query, NOW);
    assert_eq!(node_ids(&decision), ["origin-9"]);
    assert_eq!(decision.reason, Reason::OriginOnly);
    // When an edge is back, the session leaves the origin for it.
    let decision = decide(&snapshot_with(|_| {}), &query, NOW);
    assert_eq!(decision.pathways[0].node_id, order[0]);
    assert_eq!(decision.reason, Reason::Placement);
    assert!(decision.record().moved());
}

#[test]
fn nothing_to_serve_gives_no_manifest_rather_than_an_empty_one() {
    let decision = decide(&Snapshot::default(), "", NOW);
    assert!(decision.pathways.is_empty());
    assert!(decision.state.is_none());
    assert!(steering().manifest(&decision, Protocol::Hls).is_none());
    assert_eq!(decision.record().chosen, None);
}

fn hand_decision() -> Decision {
    let pathway = |id: &str, url: &str| Pathway {
        id: PathwayId::parse(id).unwrap(),
        node_id: format!("node-{id}"),
        role: Role::Edge,
        base_url: BaseUrl::new(url).unwrap(),
    };
    let video = VideoId::new(VIDEO).unwrap();
    Decision {
        video: video.clone(),
        session: SessionId(0x1234),
        resumed: false,
        reported: None,
        throughput_bps: None,
        pathways: vec![
            pathway("n00000000aa", "http://10.0.0.2:8080"),
            pathway("n00000000bb", "http://10.0.0.3:8080"),
        ],
        previous: None,
        reason: Reason::Placement,
        miss: Miss::None,
        state: Some(SessionState {
            video,
            session: SessionId(0x1234),
            pathway: PathwayId::parse("n00000000aa").unwrap(),
            issued_at: NOW,
            expires_at: NOW + 600,
        }),
    }
}

/// The manifest's bytes split around its signed state, which is checked by
/// verifying it rather than by spelling it out.
fn split_state(body: &[u8]) -> (String, String, String) {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let start = text.find("session=").unwrap() + "session=".len();
    let end = start + text[start..].find(['&', '"']).unwrap();
    (
        text[..start].to_owned(),
        text[start..end].to_owned(),
        text[end..].to_owned(),
    )
}

#[test]
fn hls_manifest_has_the_fields_of_the_specification() {
    let manifest = steering()
        .manifest(&hand_decision(), Protocol::Hls)
        .unwrap();
    assert_eq!(manifest.content_type, "application/json");
    let (before, state, after) = split_state(&manifest.body);
    assert_eq!(
        before,
        r#"{"VERSION":1,"TTL":10,"RELOAD-URI":"http://10.0.0.3:8080/steer/clip?session="#
    );
    assert_eq!(
        after,
        r#"","PATHWAY-PRIORITY":["n00000000aa","n00000000bb"]}"#
    );
    let video = VideoId::new(VIDEO).unwrap();
    let verified = SessionState::verify(&state, &keys(), &video, at(NOW + 1)).unwrap();
    assert_eq!(verified, hand_decision().state.unwrap());
}

#[test]
fn dash_manifest_names_the_priority_both_ways_and_marks_its_reload() {
    let manifest = steering()
        .manifest(&hand_decision(), Protocol::Dash)
        .unwrap();
    let (before, _, after) = split_state(&manifest.body);
    assert_eq!(
        before,
        r#"{"VERSION":1,"TTL":10,"RELOAD-URI":"http://10.0.0.3:8080/steer/clip?session="#
    );
    assert_eq!(
        after,
        r#"&proto=dash","PATHWAY-PRIORITY":["n00000000aa","n00000000bb"],"SERVICE-LOCATION-PRIORITY":["n00000000aa","n00000000bb"]}"#
    );
}

#[test]
fn ttl_and_lifetime_are_bounded() {
    let config = |ttl: u64, life: u64| {
        SteeringConfig::new(
            RankConfig::default(),
            Duration::from_secs(ttl),
            Duration::from_secs(life),
        )
    };
    assert!(config(10, 20).is_ok());
    assert!(config(30, 86_400).is_ok());
    assert!(config(9, 600).is_err());
    assert!(config(31, 600).is_err());
    assert!(config(10, 19).is_err());
    assert!(config(10, 86_401).is_err());
    assert!(
        SteeringConfig::new(
            RankConfig::default(),
            Duration::from_millis(10_500),
            Duration::from_secs(600)
        )
        .is_err()
    );
}

#[test]
fn queries_of_both_players_are_read() {
    let hls =
        SteeringQuery::parse("session=AB.CD&_HLS_pathway=n0123456789&_HLS_throughput=5000000");
    assert_eq!(
        hls,
        SteeringQuery {
            session: Some("AB.CD".into()),
            reported: PathwayId::parse("n0123456789"),
            throughput: Some(5_000_000),
            protocol: Some(Protocol::Hls),
        }
    );
    // dash.js: the service locations used since the last request, quoted
    // and comma-separated, the current one last; throughputs likewise.
    let dash = SteeringQuery::parse(
        "session=AB.CD&proto=dash&_DASH_pathway=%22n0000000001%2Cn0000000002%22&_DASH_throughput=1000%2C2000",
    );
    assert_eq!(dash.reported, PathwayId::parse("n0000000002"));
    assert_eq!(dash.throughput, Some(2000));
    assert_eq!(dash.protocol, Some(Protocol::Dash));
    // Before its first segment dash.js sends no pathway: proto tells.
    assert_eq!(
        SteeringQuery::parse("session=X&proto=dash").protocol,
        Some(Protocol::Dash)
    );
    assert_eq!(SteeringQuery::parse("").protocol, None);
    let odd = SteeringQuery::parse("_HLS_pathway=../../x&_HLS_throughput=-1&session=%ff&&=&x");
    // Malformed values are ignored, not errors; the parameter's name
    // alone still says an HLS player sent it.
    assert_eq!(
        odd,
        SteeringQuery {
            protocol: Some(Protocol::Hls),
            ..SteeringQuery::default()
        }
    );
    let long = format!("session=A&pad={}", "x".repeat(MAX_QUERY_LEN));
    assert_eq!(SteeringQuery::parse(&long), SteeringQuery::default());
}

#[test]
fn a_master_and_an_mpd_are_rewritten_for_a_decision_with_their_steering_urls() {
    let decision = hand_decision();
    let prefix = PathPrefix::new("/v/clip/").unwrap();
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ng1/v/index.m3u8\n";
    let text = steering()
        .rewrite_master(master, &decision, &prefix)
        .unwrap();
    let steering_line = text.lines().nth(1).unwrap();
    assert!(
        steering_line.starts_with(
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://10.0.0.3:8080/steer/clip?session="
        ),
        "{text}"
    );
    assert!(
        steering_line.ends_with("\",PATHWAY-ID=\"n00000000aa\""),
        "{text}"
    );
    assert!(
        text.contains("\nhttp://10.0.0.2:8080/v/clip/g1/v/index.m3u8\n"),
        "{text}"
    );
    let mpd = "<MPD><BaseURL>g1/</BaseURL><Period/></MPD>";
    let text = steering().rewrite_mpd(mpd, &decision, &prefix).unwrap();
    assert!(text.contains("&amp;proto=dash</ContentSteering>"), "{text}");
    assert!(
        text.contains(
            "<BaseURL serviceLocation=\"n00000000bb\">http://10.0.0.3:8080/v/clip/g1/</BaseURL>"
        ),
        "{text}"
    );
    let nothing = decide(&Snapshot::default(), "", NOW);
    assert!(
        steering()
            .rewrite_master(master, &nothing, &prefix)
            .is_err()
    );
}

#[test]
fn clients_without_steering_are_redirected_to_the_chosen_node() {
    let decision = hand_decision();
    assert_eq!(
        decision.redirect("/s/T/v/clip/master.m3u8?x=1").as_deref(),
        Some("http://10.0.0.2:8080/s/T/v/clip/master.m3u8?x=1")
    );
    assert_eq!(decision.redirect("master.m3u8"), None);
    assert_eq!(decision.redirect("/v/a\r\nSet-Cookie: x"), None);
    assert_eq!(
        decide(&Snapshot::default(), "", NOW).redirect("/v/clip/master.m3u8"),
        None
    );
}

#[test]
fn a_kept_pathway_beyond_the_ranking_bound_displaces_the_last_edge() {
    let order = placement_order(VIDEO);
    let config = SteeringConfig::new(
        RankConfig::new(kinema_placement::Placement::default(), 0.9, 2, 1).unwrap(),
        Duration::from_secs(10),
        Duration::from_secs(600),
    )
    .unwrap();
    let steering = Steering::new(config, keys());
    let video = VideoId::new(VIDEO).unwrap();
    let query = SteeringQuery::parse(&format!("session={}", state_on(&order[2], NOW - 30)));
    let decision = steering.decide(&SteeringRequest {
        video: &video,
        snapshot: &snapshot_with(|_| {}),
        rate: 0.0,
        query: &query,
        new_session: SessionId(0x77),
        now: at(NOW),
    });
    assert_eq!(node_ids(&decision), [&order[2], &order[0], "origin-9"]);
    assert_eq!(decision.reason, Reason::Sticky);
}

/// A small deterministic generator (xorshift64*), so the hostile-input test
/// below needs no dependency and fails the same way every run.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn hostile_queries_never_fail_a_decision_and_never_forge_a_session() {
    let order = placement_order(VIDEO);
    let snapshot = snapshot_with(|_| {});
    let valid = state_on(&order[2], NOW - 30);
    let alphabet: Vec<char> =
        "session=_HLS_pathway_DASH_throughputproto&%\"',.=-_n0123456789abcdefAZ é\u{0}"
            .chars()
            .collect();
    let mut random = Bytes(0x6b69_6e65_6d61);
    for round in 0..20_000 {
        let query: String = if round % 2 == 0 {
            let len = (random.next() % 300) as usize;
            (0..len)
                .map(|_| alphabet[(random.next() % alphabet.len() as u64) as usize])
                .collect()
        } else {
            // A valid state with one byte changed, cut, or extended.
            let mut bytes = valid.clone().into_bytes();
            let at = (random.next() % bytes.len() as u64) as usize;
            match random.next() % 3 {
                0 => bytes[at] = alphabet[(random.next() % 40) as usize] as u8,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, b'A'),
            }
            let text = String::from_utf8(bytes).unwrap();
            if text == valid {
                continue;
            }
            format!("session={text}")
        };
        let decision = decide(&snapshot, &query, NOW);
        assert_eq!(decision.pathways.len(), 4, "{query:?}");
        assert!(decision.state.is_some());
        if round % 2 == 1 {
            assert_eq!(decision.session, SessionId(0x77), "forged from {query:?}");
        }
        assert!(steering().manifest(&decision, Protocol::Hls).is_some());
    }
}
