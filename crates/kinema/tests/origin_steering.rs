//! The origin's steering part, in process: an origin built from parts
//! with a `SteeringService` over a membership view the test writes, served
//! on loopback. What is redirected and what is not (signed URLs keep their
//! token, kinema nodes and generation URLs get the stored file), what
//! `/steer/{id}` answers (no token needed, 404 only for an unknown id, 503
//! when nothing serves), and that an origin without the part has neither.

#[path = "support/clip_library.rs"]
mod clip_library;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clip_library::{GENERATION, MASTER};
use kinema_auth::{Claims, KeyRing, TokenScope};
use kinema_cluster::{
    ClusterKey, ClusterKeys, Health, Member, MembershipView, NodeFigures, NodeInfo, Role,
};
use kinema_core::{AccessPolicy, VideoId};
use kinema_steering::{Steering, SteeringConfig, SteeringService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const EDGE: &str = "http://127.0.0.2:9100";

fn member(id: &str, role: Role, url: &str, health: Health, is_self: bool) -> Member {
    Member {
        node_id: id.into(),
        generation: 1,
        gossip_addr: "127.0.0.1:7000".parse().unwrap(),
        is_self,
        state: Ok(NodeInfo {
            role,
            public_url: url.into(),
            region: "here".into(),
            capacity_bps: 1_000_000_000,
            figures: NodeFigures::default(),
            health,
        }),
    }
}

fn view(edge: Option<Health>) -> MembershipView {
    let mut live = vec![member(
        "origin",
        Role::Origin,
        "http://127.0.0.1:9000",
        Health::Ok,
        true,
    )];
    if let Some(health) = edge {
        live.push(member("edge-a", Role::Edge, EDGE, health, false));
    }
    MembershipView {
        live,
        ..MembershipView::default()
    }
}

/// A library with `clip` (public) and `secret` (signed), its key ring, and
/// an origin over them.
struct Origin {
    dir: tempfile::TempDir,
    ring: KeyRing,
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), kinema_origin::Error>>,
}

impl Origin {
    async fn start(membership: Option<watch::Receiver<MembershipView>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("library");
        std::fs::create_dir_all(&library).unwrap();
        for (id, access) in [
            ("clip", AccessPolicy::Public),
            ("secret", AccessPolicy::Signed),
        ] {
            let staging = dir.path().join(format!("staging-{id}"));
            clip_library::publish(&library, &staging, id, access).await;
        }
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&dir.path().join("keys.toml")).unwrap();
        let mut config = kinema_origin::Config::new(&library);
        config.web_root = "/nonexistent/kinema-web".into();
        config.keys = dir.path().join("keys.toml");
        config.tokens = dir.path().join("tokens.toml");
        let store = kinema_store::open(&kinema_store::StoreConfig::directory(&library))
            .await
            .unwrap();
        let workspace = kinema_media::Workspace::open(dir.path().join("work")).unwrap();
        let clock = kinema_http::Clock::system();
        let mut parts = kinema_origin::OriginParts::new(&config, store, workspace, clock.clone());
        if let Some(membership) = membership {
            let keys = ClusterKeys::new(ClusterKey::new(1, vec![3; 32]).unwrap(), None).unwrap();
            let steering = Steering::new(SteeringConfig::default(), keys);
            parts =
                parts.with_steering(Arc::new(SteeringService::new(steering, membership, clock)));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kinema_origin::run_with(
            config,
            parts,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            dir,
            ring,
            address,
            stop: Some(stop),
            task,
        }
    }

    fn token(&self, video: &str) -> String {
        let claims = Claims::new(
            TokenScope::video(&VideoId::new(video).unwrap()),
            SystemTime::now() + Duration::from_secs(600),
        );
        kinema_auth::sign(&self.ring, &claims).unwrap()
    }

    async fn request(&self, method: &str, target: &str, extra: &str) -> Reply {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: origin.test\r\n{extra}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .expect("the origin answers")
            .unwrap();
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        Reply {
            status: head[9..12].parse().unwrap(),
            head,
            body: raw[split + 4..].to_vec(),
        }
    }

    async fn get(&self, target: &str) -> Reply {
        self.request("GET", target, "").await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
        drop(self.dir);
    }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

#[tokio::test]
async fn an_origin_without_steering_has_no_steering_url_and_redirects_nothing() {
    let origin = Origin::start(None).await;
    let steer = origin.get("/steer/clip").await;
    assert_eq!(steer.status, 404, "{}", steer.head);
    let master = origin.get("/v/clip/master.m3u8").await;
    assert_eq!(master.status, 200, "{}", master.head);
    assert_eq!(master.body, MASTER.as_bytes());
    origin.stop().await;
}

#[tokio::test]
async fn viewers_first_requests_go_to_the_edge_and_everything_else_is_served() {
    let (_membership, receiver) = watch::channel(view(Some(Health::Ok)));
    let origin = Origin::start(Some(receiver)).await;

    for (method, target) in [
        ("GET", "/v/clip/master.m3u8"),
        ("HEAD", "/v/clip/master.m3u8"),
        ("GET", "/v/clip/manifest.mpd?t=5"),
    ] {
        let reply = origin.request(method, target, "").await;
        assert_eq!(reply.status, 302, "{method} {target}: {}", reply.head);
        assert_eq!(reply.header("location"), Some(&*format!("{EDGE}{target}")));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert!(reply.body.is_empty());
    }
    // A signed URL keeps its token on the edge, which verifies it there.
    let token = origin.token("secret");
    let signed = origin
        .get(&format!("/s/{token}/v/secret/master.m3u8"))
        .await;
    assert_eq!(signed.status, 302, "{}", signed.head);
    assert_eq!(
        signed.header("location"),
        Some(&*format!("{EDGE}/s/{token}/v/secret/master.m3u8"))
    );
    // Without its token a signed video is refused here, not redirected.
    let unsigned = origin.get("/v/secret/master.m3u8").await;
    assert!(
        unsigned.status == 401 || unsigned.status == 403,
        "{}",
        unsigned.head
    );
    // Through a kinema node (among other proxies), by generation, and
    // anything but a session's first file: the stored bytes.
    let through = origin
        .request(
            "GET",
            "/v/clip/master.m3u8",
            "Via: 1.0 corporate-proxy, 1.1 kinema\r\n",
        )
        .await;
    assert_eq!(through.status, 200, "{}", through.head);
    assert_eq!(through.body, MASTER.as_bytes());
    for target in [
        format!("/v/clip/g{GENERATION}/master.m3u8"),
        format!("/v/clip/g{GENERATION}/manifest.mpd"),
        "/v/clip/v180/index.m3u8".to_owned(),
        "/v/clip/v180/1.m4s".to_owned(),
    ] {
        let direct = origin.get(&target).await;
        assert_eq!(direct.status, 200, "{target}: {}", direct.head);
    }
    // Another proxy's Via is no kinema node.
    let proxied = origin
        .request("GET", "/v/clip/master.m3u8", "Via: 1.1 varnish\r\n")
        .await;
    assert_eq!(proxied.status, 302, "{}", proxied.head);

    // /steer/{id}: no token even for a signed video; 404 for an unknown id.
    for id in ["clip", "secret"] {
        let steer = origin.get(&format!("/steer/{id}")).await;
        assert_eq!(steer.status, 200, "{id}: {}", steer.head);
        assert_eq!(steer.header("content-type"), Some("application/json"));
        assert_eq!(steer.header("cache-control"), Some("no-store"));
        let manifest: serde_json::Value = serde_json::from_slice(&steer.body).unwrap();
        assert_eq!(manifest["VERSION"], 1);
        assert_eq!(manifest["PATHWAY-PRIORITY"].as_array().unwrap().len(), 2);
    }
    for unknown in ["/steer/nothing", "/steer/", "/steer/..%2f"] {
        let reply = origin.get(unknown).await;
        assert_eq!(reply.status, 404, "{unknown}: {}", reply.head);
    }
    let head = origin.request("HEAD", "/steer/clip", "").await;
    assert_eq!(head.status, 200, "{}", head.head);
    assert!(head.body.is_empty());
    let post = origin.request("POST", "/steer/clip", "").await;
    assert_eq!(post.status, 405, "{}", post.head);
    let preflight = origin
        .request(
            "OPTIONS",
            "/steer/clip",
            "Origin: https://player.test\r\nAccess-Control-Request-Method: GET\r\n",
        )
        .await;
    assert_eq!(preflight.status, 204, "{}", preflight.head);
    assert!(preflight.header("access-control-allow-methods").is_some());

    let metrics = String::from_utf8(origin.get("/metrics").await.body).unwrap();
    let redirects = metrics
        .lines()
        .find_map(|line| line.strip_prefix("kinema_origin_steering_redirects_total "))
        .unwrap_or_else(|| panic!("no redirect count in:\n{metrics}"));
    // Three above, the signed master, and the one through another proxy.
    assert_eq!(redirects, "5");
    origin.stop().await;
}

#[tokio::test]
async fn steering_follows_the_view_and_answers_503_when_nothing_serves() {
    let (membership, receiver) = watch::channel(view(Some(Health::Ok)));
    let origin = Origin::start(Some(receiver)).await;
    assert_eq!(origin.get("/v/clip/master.m3u8").await.status, 302);

    // A draining edge takes no new viewers: the origin serves them.
    membership.send_replace(view(Some(Health::Draining)));
    let master = origin.get("/v/clip/master.m3u8").await;
    assert_eq!(master.status, 200, "{}", master.head);
    let steer = origin.get("/steer/clip").await;
    assert_eq!(steer.status, 200, "{}", steer.head);

    // No node at all: steering cannot answer a list, the origin serves.
    membership.send_replace(MembershipView::default());
    let steer = origin.get("/steer/clip").await;
    assert_eq!(steer.status, 503, "{}", steer.head);
    assert!(steer.header("retry-after").is_some(), "{}", steer.head);
    assert_eq!(steer.header("cache-control"), Some("no-store"));
    assert_eq!(origin.get("/v/clip/master.m3u8").await.status, 200);
    origin.stop().await;
}
