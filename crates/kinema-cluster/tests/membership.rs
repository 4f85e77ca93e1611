//! Membership over real loopback UDP: real chitchat instances behind the
//! authenticated transport, several nodes in this one test process.
//!
//! Every wait is bounded by a generous deadline and fails the test when it
//! passes; timings are printed, never asserted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinema_cluster::{
    Cluster, ClusterConfig, ClusterKey, ClusterKeys, FiguresSource, GossipCounters, Health,
    MembershipView, NodeFigures, Refusal, Role,
};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(30);
const GOSSIP: Duration = Duration::from_millis(100);

fn keys(secret_byte: u8) -> ClusterKeys {
    ClusterKeys::new(ClusterKey::new(1, vec![secret_byte; 32]).unwrap(), None).unwrap()
}

fn config(name: &str, seeds: &[SocketAddr], keys: ClusterKeys) -> ClusterConfig {
    let mut config = ClusterConfig::new(
        name,
        "127.0.0.1:0".parse().unwrap(),
        keys,
        Role::Edge,
        format!("http://{name}.test:8080"),
    );
    config.seeds = seeds.iter().map(ToString::to_string).collect();
    config.gossip_interval = GOSSIP;
    config.region = format!("region-{name}");
    config.capacity_bps = 1_000_000 * name.len() as u64;
    config
}

struct Node {
    cluster: Cluster,
    figures: watch::Sender<NodeFigures>,
}

async fn start(config: ClusterConfig) -> Node {
    let (figures, receiver) = watch::channel(NodeFigures::default());
    let cluster = Cluster::start(config, FiguresSource::Watch(receiver))
        .await
        .unwrap();
    Node { cluster, figures }
}

async fn node(name: &str, seeds: &[SocketAddr]) -> Node {
    start(config(name, seeds, keys(7))).await
}

/// Polls `check` until it is true; panics with `what` after the deadline.
async fn wait_for<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DEADLINE,
            "waited {DEADLINE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Waits on the change notifications until `check` holds for a view.
async fn wait_for_view(
    what: &str,
    cluster: &Cluster,
    check: impl FnMut(&MembershipView) -> bool,
) -> MembershipView {
    let mut views = cluster.subscribe();
    match tokio::time::timeout(DEADLINE, views.wait_for(check)).await {
        Ok(Ok(view)) => view.clone(),
        Ok(Err(_)) => panic!("the view task stopped while waiting for {what}"),
        Err(_) => panic!("waited {DEADLINE:?} for {what}"),
    }
}

fn live_names(view: &MembershipView) -> Vec<String> {
    view.live
        .iter()
        .map(|member| member.node_id.to_string())
        .collect()
}

async fn converged(nodes: &[&Node], names: &[&str]) -> Duration {
    wait_for("every node to see every other", || async {
        for node in nodes {
            let members = node.cluster.members().await;
            let mut seen: Vec<&str> = members
                .iter()
                .filter(|member| member.is_usable())
                .map(|member| &*member.node_id)
                .collect();
            seen.sort_unstable();
            if seen != names {
                return false;
            }
        }
        true
    })
    .await
}

#[tokio::test]
async fn three_nodes_converge_and_see_each_others_state() {
    let a = node("a", &[]).await;
    // Every view a publishes while the others join: none may call a
    // joining node dead.
    let mut views = a.cluster.subscribe();
    let watcher = tokio::spawn(async move {
        let mut dead_seen = Vec::new();
        while views.changed().await.is_ok() {
            let view = views.borrow_and_update().clone();
            dead_seen.extend(
                view.dead
                    .iter()
                    .chain(&view.left)
                    .map(|m| m.node_id.to_string()),
            );
            if view.live.len() == 3 {
                break;
            }
        }
        dead_seen
    });
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    let c = node("c", &[a.cluster.gossip_addr()]).await;
    let took = converged(&[&a, &b, &c], &["a", "b", "c"]).await;
    println!("three nodes converged in {took:?}");
    let dead_seen = tokio::time::timeout(DEADLINE, watcher)
        .await
        .unwrap()
        .unwrap();
    assert!(
        dead_seen.is_empty(),
        "joining nodes shown dead or gone: {dead_seen:?}"
    );
    for node in [&a, &b, &c] {
        let view = node.cluster.view().await;
        assert!(view.dead.is_empty() && view.left.is_empty(), "{view:?}");
    }

    let seen_by_b = b.cluster.members().await;
    let c_at_b = seen_by_b
        .iter()
        .find(|member| &*member.node_id == "c")
        .unwrap();
    assert!(!c_at_b.is_self);
    assert_eq!(c_at_b.gossip_addr, c.cluster.gossip_addr());
    let info = c_at_b.state.as_ref().unwrap();
    assert_eq!(info.role, Role::Edge);
    assert_eq!(info.public_url, "http://c.test:8080");
    assert_eq!(info.region, "region-c");
    assert_eq!(info.capacity_bps, 1_000_000);
    assert_eq!(info.health, Health::Ok);
    assert!(
        seen_by_b
            .iter()
            .any(|member| member.is_self && &*member.node_id == "b")
    );
}

#[tokio::test]
async fn changed_figures_reach_the_others() {
    let a = node("a", &[]).await;
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    converged(&[&a, &b], &["a", "b"]).await;

    let sent = NodeFigures {
        egress_bps: 123_456_789,
        sessions: 42,
        load: 0.625,
    };
    a.figures.send(sent).unwrap();
    let took = wait_for("a's new figures at b", || async {
        b.cluster.members().await.iter().any(|member| {
            &*member.node_id == "a" && member.state.as_ref().is_ok_and(|info| info.figures == sent)
        })
    })
    .await;
    println!("changed figures reached the peer in {took:?}");
}

#[tokio::test]
async fn killed_node_is_marked_dead() {
    let a = node("a", &[]).await;
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    let c = node("c", &[a.cluster.gossip_addr()]).await;
    converged(&[&a, &b, &c], &["a", "b", "c"]).await;

    let killed_at = Instant::now();
    // No leave: its tasks are aborted and its socket closed, as in a crash.
    drop(c);
    let view = wait_for_view("c to be dead at a", &a.cluster, |view| {
        view.dead.iter().any(|member| &*member.node_id == "c")
    })
    .await;
    println!(
        "a crashed node was marked dead after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(live_names(&view), ["a", "b"]);
    assert!(view.left.is_empty(), "a crash is not a leave: {view:?}");
    wait_for_view("c to be dead at b", &b.cluster, |view| {
        view.dead.iter().any(|member| &*member.node_id == "c")
    })
    .await;
    assert_eq!(a.cluster.counters().refused_total(), 0);
}

#[tokio::test]
async fn leaving_node_is_seen_draining_before_it_disappears() {
    let a = node("a", &[]).await;
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    converged(&[&a, &b], &["a", "b"]).await;

    let mut views = a.cluster.subscribe();
    let left_at = Instant::now();
    let b_cluster = Arc::new(b.cluster);
    let leaving = tokio::spawn({
        let b_cluster = b_cluster.clone();
        async move { b_cluster.leave().await }
    });
    let draining = tokio::time::timeout(
        DEADLINE,
        views.wait_for(|view| {
            view.live
                .iter()
                .any(|m| &*m.node_id == "b" && m.health() == Some(Health::Draining))
        }),
    )
    .await
    .expect("b seen draining within the deadline")
    .unwrap()
    .clone();
    println!("a saw b draining after {:?}", left_at.elapsed());
    let b_at_a = draining.live.iter().find(|m| &*m.node_id == "b").unwrap();
    assert!(!b_at_a.is_usable());

    tokio::time::timeout(DEADLINE, leaving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // A second leave has nothing left to do, and the last view stays readable.
    b_cluster.leave().await.unwrap();
    assert!(b_cluster.members().await.iter().any(|m| m.is_self));
    let gone = wait_for_view("b to be gone from a's live members", &a.cluster, |view| {
        !view.live.iter().any(|m| &*m.node_id == "b")
    })
    .await;
    println!("b was gone from a's view after {:?}", left_at.elapsed());
    assert_eq!(live_names(&gone), ["a"]);
    assert!(
        gone.dead.is_empty(),
        "a clean leave is not a death: {gone:?}"
    );
    assert_eq!(gone.left.len(), 1);
    assert_eq!(&*gone.left[0].node_id, "b");
}

#[tokio::test]
async fn node_with_wrong_cluster_key_is_never_admitted() {
    let a = node("a", &[]).await;
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    // Same key id, another secret: every datagram fails its tag.
    let intruder = start(config("intruder", &[a.cluster.gossip_addr()], keys(8))).await;
    // And a key id `a` does not hold.
    let other_id = ClusterKeys::new(ClusterKey::new(9, vec![7; 32]).unwrap(), None).unwrap();
    let stranger = start(config("stranger", &[a.cluster.gossip_addr()], other_id)).await;

    converged(&[&a, &b], &["a", "b"]).await;
    let counters = a.cluster.counters();
    wait_for("a to refuse ten datagrams of each outsider", || async {
        counters.refused_count(Refusal::BadTag) >= 10
            && counters.refused_count(Refusal::UnknownKey) >= 10
    })
    .await;
    for insider in [&a, &b] {
        let view = insider.cluster.view().await;
        assert_eq!(live_names(&view), ["a", "b"]);
        assert!(view.dead.is_empty() && view.left.is_empty(), "{view:?}");
    }
    for outsider in [&intruder, &stranger] {
        let members = outsider.cluster.members().await;
        assert_eq!(members.len(), 1, "{members:?}");
        assert!(members[0].is_self);
    }
    assert_eq!(counters.refused_count(Refusal::Malformed), 0);
}

async fn send_raw(socket: &tokio::net::UdpSocket, to: SocketAddr, bytes: &[u8]) {
    socket.send_to(bytes, to).await.unwrap();
}

#[tokio::test]
async fn hostile_datagrams_are_refused_and_the_node_keeps_serving() {
    let mut small = config("a", &[], keys(7));
    small.max_datagram = 2_000;
    let a = start(small).await;
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    converged(&[&a, &b], &["a", "b"]).await;

    let to = a.cluster.gossip_addr();
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sealed = b"not a chitchat message at all".to_vec();
    keys(7).seal(&mut sealed);
    let random: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut random_with_our_key_id = random.clone();
    let key_id_at = random_with_our_key_id.len() - 33;
    random_with_our_key_id[key_id_at] = 1;
    send_raw(&raw, to, &random_with_our_key_id).await; // bad tag
    send_raw(&raw, to, &sealed[..sealed.len() - 1]).await; // truncated: bad tag
    send_raw(&raw, to, &sealed[..20]).await; // too short
    send_raw(&raw, to, &[]).await; // too short
    send_raw(&raw, to, &vec![0; 2_001]).await; // too large
    send_raw(&raw, to, &sealed).await; // authentic garbage: malformed

    let counters: Arc<GossipCounters> = a.cluster.counters();
    // The truncated datagram's key id is a byte of its tag, so it is refused
    // either for that unknown id or for its tag.
    let unauthentic =
        || counters.refused_count(Refusal::BadTag) + counters.refused_count(Refusal::UnknownKey);
    wait_for("a to count every hostile datagram", || async {
        unauthentic() >= 2
            && counters.refused_count(Refusal::TooShort) >= 2
            && counters.refused_count(Refusal::TooLarge) >= 1
            && counters.refused_count(Refusal::Malformed) >= 1
    })
    .await;
    assert_eq!(counters.refused_count(Refusal::Injected), 0);

    // Still serving: new figures from a reach b, and b's reach a.
    let sent = NodeFigures {
        egress_bps: 1,
        sessions: 2,
        load: 0.5,
    };
    a.figures.send(sent).unwrap();
    b.figures.send(sent).unwrap();
    for (reader, about) in [(&b, "a"), (&a, "b")] {
        wait_for("figures after the hostile datagrams", || async {
            reader.cluster.members().await.iter().any(|member| {
                &*member.node_id == about
                    && member.state.as_ref().is_ok_and(|info| info.figures == sent)
            })
        })
        .await;
    }
    // Exactly what was sent, nothing the peer's gossip added.
    assert_eq!(unauthentic(), 2);
    assert_eq!(counters.refused_count(Refusal::TooShort), 2);
    assert_eq!(counters.refused_count(Refusal::TooLarge), 1);
    assert_eq!(counters.refused_count(Refusal::Malformed), 1);
}

#[tokio::test]
async fn node_gossiping_malformed_state_is_shown_unusable() {
    use chitchat::{ChitchatConfig, ChitchatId, ProtocolVersion, spawn_chitchat};
    use kinema_cluster::transport::AuthenticatedUdpTransport;

    let a = node("a", &[]).await;
    let counters = Arc::new(GossipCounters::default());
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let listen = socket.local_addr().unwrap();
    let transport =
        AuthenticatedUdpTransport::new(keys(7), 65_507, counters).with_bound_socket(socket);
    let garbage = vec![
        ("role".to_string(), "cache".to_string()),
        ("url".to_string(), "http://g.test".to_string()),
        ("load".to_string(), "2.5".to_string()),
    ];
    let handle = spawn_chitchat(
        ChitchatConfig {
            chitchat_id: ChitchatId::new("garbage", 1, listen),
            cluster_id: "kinema".into(),
            gossip_interval: GOSSIP,
            listen_addr: listen,
            seed_nodes: vec![a.cluster.gossip_addr().to_string()],
            failure_detector_config: kinema_cluster::failure_detector(GOSSIP),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        },
        garbage,
        &transport,
    )
    .await
    .unwrap();

    let view = wait_for_view("the garbage node live at a", &a.cluster, |view| {
        view.live
            .iter()
            .any(|m| &*m.node_id == "garbage" && m.state.is_err())
    })
    .await;
    let garbage_at_a = view.live.iter().find(|m| &*m.node_id == "garbage").unwrap();
    assert!(!garbage_at_a.is_usable());
    assert_eq!(garbage_at_a.health(), None);
    let reason = garbage_at_a.state.as_ref().unwrap_err().to_string();
    assert!(reason.contains("role \"cache\""), "{reason}");
    let gauges = a.cluster.counters();
    wait_for("the unusable gauge", || async {
        gauges.unusable_members() == 1
    })
    .await;
    assert_eq!(gauges.live_members(), 2);
    assert_eq!(gauges.refused_total(), 0);
    handle.shutdown().await.unwrap();
}

fn key_pair(current: u8, accepted: u8) -> ClusterKeys {
    let key = |id: u8| ClusterKey::new(id, vec![id.wrapping_mul(31); 32]).unwrap();
    ClusterKeys::new(key(current), Some(key(accepted))).unwrap()
}

#[tokio::test]
async fn nodes_midway_through_a_key_rotation_still_converge() {
    // a still signs with key 1 and already accepts key 2; b signs with 2
    // and still accepts 1.
    let a = start(config("a", &[], key_pair(1, 2))).await;
    let b = start(config("b", &[a.cluster.gossip_addr()], key_pair(2, 1))).await;
    converged(&[&a, &b], &["a", "b"]).await;
    // And one that knows only key 2 hears b but refuses a's datagrams.
    let only_new = ClusterKeys::new(
        ClusterKey::new(2, vec![2u8.wrapping_mul(31); 32]).unwrap(),
        None,
    )
    .unwrap();
    let c = start(config("c", &[b.cluster.gossip_addr()], only_new)).await;
    let counters = c.cluster.counters();
    wait_for("c to refuse a datagram signed with key 1", || async {
        counters.refused_count(Refusal::UnknownKey) >= 1
    })
    .await;
    assert_eq!(counters.refused_count(Refusal::BadTag), 0);
}

#[tokio::test]
async fn node_of_another_cluster_name_is_not_admitted() {
    let a = node("a", &[]).await;
    let b = node("b", &[a.cluster.gossip_addr()]).await;
    let mut other = config("other", &[a.cluster.gossip_addr()], keys(7));
    other.cluster_name = "another-cluster".into();
    let other = start(other).await;
    converged(&[&a, &b], &["a", "b"]).await;
    // Its datagrams verify (same key) and chitchat answers them "wrong
    // cluster": wait until several have gone through both ways.
    let counters = other.cluster.counters();
    wait_for("a's answers to reach the other cluster's node", || async {
        counters.received() >= 5
    })
    .await;
    assert_eq!(live_names(&a.cluster.view().await), ["a", "b"]);
    assert_eq!(live_names(&other.cluster.view().await), ["other"]);
    assert_eq!(a.cluster.counters().refused_total(), 0);
}

#[tokio::test]
async fn polled_figures_reach_the_others() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let sessions = Arc::new(AtomicU64::new(0));
    let read = {
        let sessions = sessions.clone();
        move || NodeFigures {
            sessions: sessions.load(Ordering::Relaxed),
            ..NodeFigures::default()
        }
    };
    let a = Cluster::start(
        config("a", &[], keys(7)),
        FiguresSource::Poll(Box::new(read)),
    )
    .await
    .unwrap();
    let b = node("b", &[a.gossip_addr()]).await;
    sessions.store(17, Ordering::Relaxed);
    wait_for("a's polled sessions at b", || async {
        b.cluster.members().await.iter().any(|member| {
            &*member.node_id == "a"
                && member
                    .state
                    .as_ref()
                    .is_ok_and(|info| info.figures.sessions == 17)
        })
    })
    .await;
}
