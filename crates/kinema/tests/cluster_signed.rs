//! Signed URLs across a cluster, as a user runs it: one `kinema serve` and
//! three `kinema edge` nodes on 127.0.0.2, .3 and .4 (one port), every node
//! with the same key ring, and a viewer on 127.0.0.9 (or, to be refused,
//! 127.0.0.5), each connection bound to that source address.
//!
//! - the origin's stable URL of a signed video redirects with the token in
//!   the path, and the edge's steered master and MPD keep `/s/{token}/` in
//!   every pathway;
//! - a segment through an edge that fills from the video's parent edge,
//!   which fills from the origin, plays for a plain token and for one bound
//!   to the viewer's address (the parent and the origin see an edge, not
//!   the viewer: the edge that verified vouches with its node credential);
//! - a wrong address, an expired token, a token of another video and a
//!   forged signature are refused at the edge before any fill, and nothing
//!   a viewer sends (a forged or replayed credential, `Forwarded`,
//!   `X-Forwarded-For`) skips the address check, at an edge or the origin;
//! - `/steer/{id}` needs no token (see the README's access section);
//! - a token of the previous key verifies on every node while that key is
//!   in the ring; after the next rotation, written to the file and read by
//!   every node on SIGHUP, a token of the newest key plays and one of the
//!   retired key is refused on every node;
//! - after the viewer's edge is SIGKILLed, steering moves the session to
//!   another edge, where the same token plays on.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use kinema_auth::{Claims, KeyId, KeyRing, TokenScope};
use kinema_core::{AccessPolicy, VideoId};

#[path = "support/clip_library.rs"]
mod clip_library;
#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::*;

/// The viewer's address, the one bound tokens name.
const VIEWER: &str = "127.0.0.9";
/// Another client's address.
const STRANGER: &str = "127.0.0.5";
const HOSTS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const IDS: [&str; 3] = ["edge-a", "edge-b", "edge-c"];

/// `GET target` over HTTP/1.1 from `source` (a loopback address) to
/// `address`, with `extra` header lines.
fn get_from(source: &str, address: &str, target: &str, extra: &str) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let peer: SocketAddr = address.parse().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        socket.connect(peer).await.unwrap()
    });
    let mut stream: TcpStream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// The keys of the ring: `old`, made before the rotation, and `new`.
fn secret(fill: u8) -> Vec<u8> {
    vec![fill; 32]
}

fn ring_of(keys: &[(&str, u8, u64)]) -> KeyRing {
    let mut ring = KeyRing::empty();
    for (id, fill, age) in keys {
        let created = SystemTime::now() - Duration::from_secs(*age);
        ring.add_key(KeyId::new(*id).unwrap(), secret(*fill), created)
            .unwrap();
    }
    ring
}

fn token(ring: &KeyRing, video: &str, expires: SystemTime, client: Option<&str>) -> String {
    let mut claims = Claims::new(TokenScope::video(&VideoId::new(video).unwrap()), expires);
    if let Some(client) = client {
        claims = claims.client(client.parse().unwrap());
    }
    kinema_auth::sign(ring, &claims).unwrap()
}

fn library(dir: &Path) -> String {
    let library = dir.join("library");
    std::fs::create_dir_all(&library).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(clip_library::publish(
        &library,
        &dir.join("staging"),
        "clip",
        AccessPolicy::Signed,
    ));
    library.display().to_string()
}

/// A refusal answered by the node asked, by its filter: 403, the reason,
/// and no `Cache-Status` (nothing was looked up or fetched).
fn assert_refused(reply: &Reply, reason: &str, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.head);
    assert_eq!(
        reply.header("kinema-auth-error"),
        Some(reason),
        "{what}: {}",
        reply.head
    );
    assert!(
        reply.header("cache-status").is_none(),
        "{what}: {}",
        reply.head
    );
}

/// Every URI a steered master names (variant lines and `URI=` attributes).
fn master_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines() {
        if !line.starts_with('#') && !line.trim().is_empty() {
            uris.push(line.trim().to_owned());
        } else if let Some(start) = line.find("URI=\"") {
            let rest = &line[start + 5..];
            uris.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    uris
}

#[test]
fn signed_urls_play_through_parents_steering_and_failover() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_keys = key_file(dir.path());
    let library = library(dir.path());
    // The ring after a rotation: `old` still verifies, `new` signs.
    let full_ring = ring_of(&[("old", 1, 86_400), ("new", 2, 60)]);
    let keys = dir.path().join("keys.toml");
    full_ring.save(&keys).unwrap();
    let keys = keys.display().to_string();
    let old_ring = ring_of(&[("old", 1, 86_400)]);

    let origin_http = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library, "--listen", &origin_http])
            .args(["--keys", &keys])
            .args(["--web-root", "/nonexistent", "--access-log", "true"])
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &cluster_keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let joined = origin.wait_for_line(&["joined the cluster", "node=origin"]);
    let seed = gossip_address(&joined);
    origin.wait_for_line(&["origin serving"]);

    let port = shared_port();
    let addresses: Vec<String> = HOSTS.iter().map(|host| format!("{host}:{port}")).collect();
    let mut edges: Vec<Node> = IDS
        .iter()
        .zip(&addresses)
        .map(|(id, http)| {
            let cluster = Joined {
                seed: &seed,
                keys: &cluster_keys,
            };
            let origin = format!("http://{origin_http}");
            let public = format!("http://{http}");
            edge_with(
                dir.path(),
                id,
                http,
                &origin,
                &public,
                cluster,
                &["--keys", &keys],
            )
        })
        .collect();
    let pathways: HashMap<String, &str> = IDS.iter().map(|id| (pathway_of(id), *id)).collect();
    let address_of = |id: &str| addresses[IDS.iter().position(|each| *each == id).unwrap()].clone();
    let mut priority = Vec::new();
    for address in &addresses {
        priority = steer_until(address, "saw the whole cluster", |now| {
            now.len() == 4 && pathways.keys().all(|pathway| now.contains(pathway))
        });
    }
    // The video's placement head fills from the origin; the others from it.
    let head = pathways[&priority[0]];
    let children: Vec<&str> = IDS.iter().copied().filter(|id| *id != head).collect();
    println!("clip's parent edge: {head}; its children: {children:?}");

    let hour = SystemTime::now() + Duration::from_secs(3600);
    let plain = token(&full_ring, "clip", hour, None);
    let bound = token(&full_ring, "clip", hour, Some(&format!("{VIEWER}/32")));
    let origin_base = origin_http.as_str();

    // /steer/{id} needs no token: it names nodes, not media, and tells no
    // more than the refusal of the stable URL does (a signed video exists).
    assert_eq!(get(origin_base, "/steer/clip", "").status, 200);
    assert_eq!(get(origin_base, "/steer/nosuch", "").status, 404);
    let unsigned = get(origin_base, "/v/clip/master.m3u8", "");
    assert_eq!(unsigned.header("kinema-auth-error"), Some("missing_token"));
    assert_eq!(get(origin_base, "/v/nosuch/master.m3u8", "").status, 404);
    assert_eq!(get(&address_of(head), "/steer/clip", "").status, 200);

    // (1) The origin's stable URL: a 302 that keeps the token in the path.
    let start = get_from(
        VIEWER,
        origin_base,
        &format!("/s/{bound}/v/clip/master.m3u8"),
        "",
    );
    assert_eq!(start.status, 302, "{}", start.head);
    let location = start.header("location").unwrap().to_owned();
    let (viewer_edge, rest) = location
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();
    assert_eq!(format!("/{rest}"), format!("/s/{bound}/v/clip/master.m3u8"));
    let viewer_edge = viewer_edge.to_owned();
    let viewer_id = IDS[addresses.iter().position(|a| *a == viewer_edge).unwrap()];
    println!("the viewer was sent to {viewer_id}");

    // The steered master and MPD keep /s/{token}/ in every pathway.
    let master = get_from(VIEWER, &viewer_edge, &format!("/{rest}"), "");
    assert_eq!(master.status, 200, "{}", master.head);
    let text = master.text();
    assert!(text.contains("#EXT-X-CONTENT-STEERING:"), "{text}");
    let uris = master_uris(&text);
    let media: Vec<&String> = uris.iter().filter(|uri| !uri.contains("/steer/")).collect();
    assert!(media.len() >= 3, "{text}");
    for uri in &media {
        assert!(
            uri.contains(&format!("/s/{bound}/v/clip/")),
            "{uri} in:\n{text}"
        );
    }
    for host in HOSTS {
        assert!(
            media
                .iter()
                .any(|uri| uri.contains(&format!("//{host}:{port}/"))),
            "no pathway on {host}:\n{text}"
        );
    }
    let mpd = get_from(
        VIEWER,
        &viewer_edge,
        &format!("/s/{bound}/v/clip/manifest.mpd"),
        "",
    );
    assert_eq!(mpd.status, 200, "{}", mpd.head);
    let mpd = mpd.text();
    let base_urls: Vec<&str> = mpd
        .split("<BaseURL")
        .skip(1)
        .map(|part| &part[part.find('>').unwrap() + 1..part.find("</BaseURL>").unwrap()])
        .collect();
    assert!(base_urls.len() >= 3, "{mpd}");
    for base in &base_urls {
        assert!(
            base.contains(&format!("/s/{bound}/v/clip/")),
            "{base} in:\n{mpd}"
        );
    }

    // (1) Segments through a child edge: it fills from the parent edge,
    // the parent from the origin; for a bound token and a plain one.
    let fills_before: Vec<f64> = children
        .iter()
        .map(|id| edge_metric(&address_of(id), "kinema_edge_placement_parent_fills_total"))
        .collect();
    let guarded_before = edge_metric(&address_of(head), "kinema_edge_placement_hop_guarded_total");
    let cases = [
        (children[0], &bound, "v180/1.m4s", vec![1u8; 90_000]),
        (children[1], &plain, "v180/init.mp4", vec![1u8; 800]),
        (children[1], &bound, "v180/index.m3u8", Vec::new()),
    ];
    for (id, token, file, expected) in &cases {
        let target = format!("/s/{token}/v/clip/{file}");
        let reply = get_from(VIEWER, &address_of(id), &target, "");
        assert_eq!(reply.status, 200, "{id} {file}: {}", reply.head);
        if !expected.is_empty() {
            assert_eq!(&reply.body, expected, "{id} {file}");
        }
        // One origin fetch, from the parent (vouched for: the parent is
        // not the viewer the bound token names).
        origin.wait_for_line(&["kinema::access", &format!("path={target} "), "status=200"]);
        assert_eq!(origin.fetches_of(&target), 1, "{target}");
    }
    // The parent filled each from the origin for a child (through a kinema
    // node, so from the origin only).
    let guarded = edge_metric(&address_of(head), "kinema_edge_placement_hop_guarded_total");
    assert!(
        guarded >= guarded_before + 3.0,
        "{guarded_before} → {guarded}"
    );
    for (id, before) in children.iter().zip(&fills_before) {
        let after = edge_metric(&address_of(id), "kinema_edge_placement_parent_fills_total");
        assert!(after > *before, "{id} sent no fill to its parent");
        assert_eq!(
            edge_metric(
                &address_of(id),
                "kinema_edge_placement_parent_failures_total"
            ),
            0.0,
            "{id}"
        );
    }

    // (1) Refused at the edge, before any fill: a wrong address (also
    // with what a viewer might forge), an expired token, another video's
    // token, a forged signature.
    let child = address_of(children[0]);
    let now_seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let replayed = kinema_auth::credential(
        &full_ring,
        "GET",
        &format!("/s/{bound}/v/clip/v180/1.m4s"),
        SystemTime::now(),
    )
    .unwrap();
    let forged_headers = [
        String::new(),
        format!(
            "Kinema-Node-Credential: 1.new.{now_seconds}.{}\r\n",
            "A".repeat(43)
        ),
        // A real credential, made for another target.
        format!("Kinema-Node-Credential: {replayed}\r\n"),
        format!("Forwarded: for={VIEWER}\r\nX-Forwarded-For: {VIEWER}\r\n"),
    ];
    let mut refused_targets = Vec::new();
    for (n, extra) in forged_headers.iter().enumerate() {
        let target = format!("/s/{bound}/v/clip/v180/refused-{n}.m4s");
        refused_targets.push((target.clone(), true));
        for node in [child.as_str(), origin_base] {
            let reply = get_from(STRANGER, node, &target, extra);
            assert_refused(&reply, "address_mismatch", &format!("{node} {extra:?}"));
        }
    }
    let expired = token(
        &full_ring,
        "clip",
        SystemTime::now() - Duration::from_secs(120),
        None,
    );
    let other = token(&full_ring, "other", hour, None);
    let mut forged = plain.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (token, reason) in [
        (&expired, "expired"),
        (&other, "out_of_scope"),
        (&forged, "bad_signature"),
    ] {
        let target = format!("/s/{token}/v/clip/v180/refused-{reason}.m4s");
        assert_refused(&get_from(VIEWER, &child, &target, ""), reason, reason);
        refused_targets.push((target, false));
    }
    // The origin logged only its own refusals (a 403 each, asked
    // directly); a fill, from an edge or its parent, would be a second line.
    for (target, asked_directly) in &refused_targets {
        assert_eq!(
            origin.fetches_of(target),
            usize::from(*asked_directly),
            "{target}"
        );
    }

    // (4) A token of the previous key verifies on every node.
    let previous = token(&old_ring, "clip", hour, Some(&format!("{VIEWER}/32")));
    for node in addresses.iter().chain([&origin_http]) {
        let target = format!("/s/{previous}/v/clip/v180/2.m4s");
        let reply = get_from(VIEWER, node, &target, "");
        assert_eq!(reply.status, 200, "{node}: {}", reply.head);
        assert_eq!(reply.body, vec![2u8; 90_000], "{node}");
    }

    // (5) The next rotation, by SIGHUP: `newest` added and `old` retired
    // in the file, every node told to re-read it, no restart. A token of
    // `newest` then plays on every node, one of `old` is refused on every
    // node.
    ring_of(&[("new", 2, 60), ("newest", 3, 0)])
        .save(Path::new(&keys))
        .unwrap();
    for node in edges.iter().chain([&origin]) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &node.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let newest_ring = ring_of(&[("newest", 3, 0)]);
    let newest = token(&newest_ring, "clip", hour, Some(&format!("{VIEWER}/32")));
    let rotated_at = Instant::now();
    for node in addresses.iter().chain([&origin_http]) {
        let target = format!("/s/{newest}/v/clip/v180/2.m4s");
        loop {
            let reply = get_from(VIEWER, node, &target, "");
            if reply.status == 200 {
                assert_eq!(reply.body, vec![2u8; 90_000], "{node}");
                break;
            }
            assert!(
                rotated_at.elapsed() < DEADLINE,
                "{node} never took the new key: {}",
                reply.head
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let target = format!("/s/{previous}/v/clip/v180/2.m4s");
        assert_refused(&get_from(VIEWER, node, &target, ""), "unknown_key", node);
    }

    // (2) The viewer's edge dies: steering moves the session elsewhere and
    // the same token plays on there.
    let server_uri = text
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-CONTENT-STEERING:SERVER-URI=\""))
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .unwrap();
    let steer_path = match server_uri.strip_prefix("http://") {
        Some(absolute) => format!("/{}", absolute.split_once('/').unwrap().1),
        None => server_uri.clone(),
    };
    let killed = IDS.iter().position(|id| *id == viewer_id).unwrap();
    edges[killed].child.kill().unwrap();
    edges[killed].child.wait().unwrap();
    let survivor = address_of(IDS.iter().copied().find(|id| *id != viewer_id).unwrap());
    let killed_at = Instant::now();
    let next = loop {
        let reply = get_from(VIEWER, &survivor, &steer_path, "");
        if reply.status == 200 {
            let first = reply.json()["PATHWAY-PRIORITY"][0]
                .as_str()
                .unwrap()
                .to_owned();
            if pathways.get(&first).is_some_and(|id| *id != viewer_id) {
                break pathways[&first];
            }
        }
        assert!(
            killed_at.elapsed() < DEADLINE,
            "steering kept the dead edge"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "after {:?} the session moved to {next}",
        killed_at.elapsed()
    );
    let next_host = address_of(next);
    let segment = media
        .iter()
        .find(|uri| uri.contains(&format!("//{next_host}/")) && uri.ends_with("index.m3u8"))
        .unwrap_or_else(|| panic!("no pathway on {next_host} in:\n{text}"));
    let path = format!(
        "/{}",
        segment
            .strip_prefix("http://")
            .unwrap()
            .split_once('/')
            .unwrap()
            .1
    );
    let playlist = get_from(VIEWER, &next_host, &path, "");
    assert_eq!(playlist.status, 200, "{path}: {}", playlist.head);
    let segment = path.replace("index.m3u8", "1.m4s");
    let reply = get_from(VIEWER, &next_host, &segment, "");
    assert_eq!(reply.status, 200, "{segment}: {}", reply.head);
    assert_eq!(reply.body, vec![1u8; 90_000]);
    drop(edges);
}
