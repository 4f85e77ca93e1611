//! The worker protocol over real HTTP (`/api/worker/…`) on an origin whose
//! queue the test holds: a worker token claims, heartbeats, publishes once
//! and completes; other tokens, a revoked one, stale leases, bad bodies and
//! wrong methods are refused with a clear JSON error.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, KeyRing, Scope};
use kinema_origin::worker_api::{JobObjectsLocation, WorkerApi};
use kinema_queue::{EmbeddedQueue, JobState, NewJob, Queue, QueueConfig, TaskSpec};
use serde_json::{Value, json};
use tokio::net::TcpStream;

struct Fixture {
    server: Server,
    queue: Arc<EmbeddedQueue>,
    worker: String,
    writer: String,
    admin: String,
    _files: tempfile::TempDir,
    _library: Library,
}

impl Fixture {
    async fn start(objects: Option<JobObjectsLocation>) -> Self {
        let library = Library::new().await;
        let files = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&files.path().join("keys.toml")).unwrap();
        let mut tokens = AdminTokens::empty();
        let now = SystemTime::now();
        let admin = tokens.issue("root", Scope::Admin, now).unwrap();
        let writer = tokens.issue("uploader", Scope::Write, now).unwrap();
        let worker = tokens.issue("encoder-1", Scope::Worker, now).unwrap();
        tokens.save(&files.path().join("tokens.toml")).unwrap();
        let mut config = config(&library);
        config.keys = files.path().join("keys.toml");
        config.tokens = files.path().join("tokens.toml");
        let queue = Arc::new(EmbeddedQueue::in_memory(QueueConfig { max_attempts: 2 }));
        let workspace = kinema_media::Workspace::open(files.path().join("ingest")).unwrap();
        let parts = kinema_origin::OriginParts::new(
            &config,
            library.store.clone(),
            workspace,
            kinema_http::Clock::system(),
        )
        .with_workers(WorkerApi::new(queue.clone(), objects));
        let server = Server::start_with(config, parts).await;
        Self {
            server,
            queue,
            worker,
            writer,
            admin,
            _files: files,
            _library: library,
        }
    }

    async fn call(
        &self,
        method: Method,
        target: &str,
        token: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let stream = TcpStream::connect(self.server.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header("host", "origin.test")
            .header("content-type", "application/json");
        if !token.is_empty() {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    async fn post(&self, target: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, target, token, body.to_string().as_bytes())
            .await
    }

    async fn enqueue(&self, id: &str) {
        self.queue
            .enqueue(NewJob {
                id: id.into(),
                source_key: format!("jobs/{id}/source"),
                settings: json!({"video_id": "clip-two", "title": "Two"}),
                tasks: vec![TaskSpec {
                    name: "encode".into(),
                    kind: "encode".into(),
                    payload: json!({}),
                    depends_on: Vec::new(),
                    weight_seconds: 4.0,
                }],
            })
            .await
            .unwrap();
    }
}

fn claim_body(wait_seconds: u64) -> Value {
    json!({"worker": "encoder-1", "kinds": ["encode"], "lease_seconds": 30, "wait_seconds": wait_seconds})
}

const LIBRARY: &str = "s3://media/lib";

fn location() -> Option<JobObjectsLocation> {
    Some(JobObjectsLocation {
        library: LIBRARY.into(),
    })
}

#[tokio::test]
async fn a_worker_claims_heartbeats_publishes_once_and_completes() {
    let fixture = Fixture::start(location()).await;
    let (status, _) = fixture
        .post("/api/worker/claim", &fixture.worker, claim_body(0))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "nothing queued yet");
    fixture.enqueue("j1").await;
    let (status, claimed) = fixture
        .post("/api/worker/claim", &fixture.worker, claim_body(0))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let task = &claimed["task"];
    assert_eq!(task["job_id"], "j1");
    assert_eq!(task["task"], "encode");
    assert_eq!(task["kind"], "encode");
    assert_eq!(task["attempt"], 1);
    assert_eq!(task["lease_seconds"], 30);
    assert_eq!(task["settings"]["video_id"], "clip-two");
    assert_eq!(
        task["objects"],
        json!({"library": LIBRARY, "job_prefix": "jobs/j1/", "source": "jobs/j1/source"})
    );
    let lease = task["lease_token"].as_str().unwrap().to_string();

    let (status, beat) = fixture
        .post(
            &format!("/api/worker/tasks/{lease}/heartbeat"),
            &fixture.worker,
            json!({"progress": 0.5}),
        )
        .await;
    assert_eq!(
        (status, beat),
        (StatusCode::OK, json!({"state": "continue"}))
    );
    let job = fixture.queue.job("j1").await.unwrap();
    assert_eq!(job.state, JobState::Running);
    assert!((job.progress - 0.5).abs() < 1e-9, "{}", job.progress);

    let (status, _) = fixture
        .post(
            &format!("/api/worker/tasks/{lease}/publish"),
            &fixture.worker,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, done) = fixture
        .post(
            &format!("/api/worker/tasks/{lease}/complete"),
            &fixture.worker,
            json!({"result": {"generation": 7}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done, json!({"job": {"id": "j1", "state": "done"}}));
    // The lease ended with the task: it names nothing any more.
    let (status, refused) = fixture
        .post(
            &format!("/api/worker/tasks/{lease}/heartbeat"),
            &fixture.worker,
            json!({"progress": 1.0}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("lease"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_cancel_is_heard_at_the_next_heartbeat_and_a_failure_is_recorded() {
    let fixture = Fixture::start(location()).await;
    fixture.enqueue("j2").await;
    fixture.enqueue("j3").await;
    let (_, first) = fixture
        .post("/api/worker/claim", &fixture.worker, claim_body(0))
        .await;
    let (_, second) = fixture
        .post("/api/worker/claim", &fixture.worker, claim_body(0))
        .await;
    let first_lease = first["task"]["lease_token"].as_str().unwrap().to_string();
    let second_lease = second["task"]["lease_token"].as_str().unwrap().to_string();
    assert_ne!(first_lease, second_lease);
    let cancelled_job = first["task"]["job_id"].as_str().unwrap().to_string();
    fixture.queue.cancel(&cancelled_job).await.unwrap();
    let (status, beat) = fixture
        .post(
            &format!("/api/worker/tasks/{first_lease}/heartbeat"),
            &fixture.worker,
            json!({"progress": 0.1}),
        )
        .await;
    assert_eq!(
        (status, beat),
        (StatusCode::OK, json!({"state": "cancelled"}))
    );

    let failed_job = second["task"]["job_id"].as_str().unwrap().to_string();
    let (status, failed) = fixture
        .post(
            &format!("/api/worker/tasks/{second_lease}/fail"),
            &fixture.worker,
            json!({"reason": "the source is not a video", "retryable": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["job"]["state"], "failed");
    let job = fixture.queue.job(&failed_job).await.unwrap();
    assert_eq!(job.error.as_deref(), Some("the source is not a video"));
}

#[tokio::test]
async fn only_worker_and_admin_tokens_pass_and_a_revoked_one_is_refused_at_once() {
    let fixture = Fixture::start(location()).await;
    let (status, body) = fixture.post("/api/worker/claim", "", claim_body(0)).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
    );
    let (status, body) = fixture
        .post("/api/worker/claim", &fixture.writer, claim_body(0))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "insufficient_scope"})
        )
    );
    let (status, _) = fixture
        .post("/api/worker/claim", &fixture.admin, claim_body(0))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A worker token opens nothing else of the API.
    for (method, target) in [
        (Method::GET, "/api/videos"),
        (Method::GET, "/api/jobs"),
        (Method::POST, "/api/videos?id=x"),
        (Method::DELETE, "/api/videos/clip"),
        (Method::GET, "/api/admin-tokens"),
        (Method::POST, "/api/tokens"),
    ] {
        let (status, body) = fixture
            .call(method.clone(), target, &fixture.worker, b"")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {target}: {body}");
    }
    let (status, _) = fixture
        .call(
            Method::DELETE,
            "/api/admin-tokens/encoder-1",
            &fixture.admin,
            b"",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = fixture
        .post("/api/worker/claim", &fixture.worker, claim_body(0))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let fixture = Fixture::start(location()).await;
    let worker = fixture.worker.clone();
    let cases: Vec<(Method, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/worker/claim",
            b"{".to_vec(),
            StatusCode::BAD_REQUEST,
            "not the expected JSON",
        ),
        (
            Method::POST,
            "/api/worker/claim",
            br#"{"worker": "a", "extra": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            Method::POST,
            "/api/worker/claim",
            br#"{"worker": "../a", "wait_seconds": 0}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "worker name",
        ),
        (
            Method::POST,
            "/api/worker/claim",
            br#"{"worker": "a", "lease_seconds": 0, "wait_seconds": 0}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "lease",
        ),
        (
            Method::POST,
            "/api/worker/claim",
            br#"{"worker": "a", "wait_seconds": 3600}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "wait_seconds",
        ),
        (
            Method::POST,
            "/api/worker/claim",
            vec![b' '; 40 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            Method::GET,
            "/api/worker/claim",
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST",
        ),
        (
            Method::POST,
            "/api/worker/tasks/nothex/heartbeat",
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "lease token",
        ),
        (
            Method::POST,
            "/api/worker/tasks/0123456789abcdef0123456789abcdef/heartbeat",
            br#"{"progress": 0.5}"#.to_vec(),
            StatusCode::CONFLICT,
            "lease",
        ),
        (
            Method::POST,
            "/api/worker/tasks/0123456789abcdef0123456789abcdef/heartbeat",
            br#"{"progress": 2}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "progress",
        ),
        (
            Method::POST,
            "/api/worker/tasks/0123456789abcdef0123456789abcdef/explode",
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "no task action",
        ),
        (
            Method::POST,
            "/api/worker/nothing",
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "no worker endpoint",
        ),
    ];
    for (method, target, body, expected, says) in cases {
        let (status, answer) = fixture.call(method.clone(), target, &worker, &body).await;
        assert_eq!(status, expected, "{method} {target}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {target}: {answer}");
    }
}

#[tokio::test]
async fn a_claim_waits_for_work_and_a_local_library_takes_no_workers() {
    let fixture = Fixture::start(location()).await;
    let waiting = {
        let worker = fixture.worker.clone();
        let addr = fixture.server.addr;
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let request = Request::post("/api/worker/claim")
                .header("host", "origin.test")
                .header("authorization", format!("Bearer {worker}"))
                .body(Full::new(Bytes::from(claim_body(20).to_string())))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        })
    };
    // Most likely the claim is waiting by now (if not, it finds the job at
    // once): a job enqueued now is its answer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fixture.enqueue("j4").await;
    let (status, claimed) = tokio::time::timeout(Duration::from_secs(25), waiting)
        .await
        .expect("the waiting claim is answered")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claimed["task"]["job_id"], "j4");

    let local = Fixture::start(None).await;
    let (status, body) = local
        .post("/api/worker/claim", &local.worker, claim_body(0))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("S3"), "{body}");
}
