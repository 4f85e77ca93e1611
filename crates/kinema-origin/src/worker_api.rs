//! The worker protocol: how `kinema worker` processes on other machines
//! pull ingest tasks from this server's queue, JSON over HTTP.
//!
//! ```text
//! POST /api/worker/claim                    {"worker", "kinds", "lease_seconds", "wait_seconds"}
//!                                           → 200 {"task": {…}} | 204 nothing to do within the wait
//! POST /api/worker/tasks/{lease}/heartbeat  {"progress": 0.0–1.0} → {"state": "continue"|"cancelled"}
//! POST /api/worker/tasks/{lease}/publish    → 204: this lease may publish the job's video
//! POST /api/worker/tasks/{lease}/complete   {"result": {…}} → {"job": {"id", "state"}}
//! POST /api/worker/tasks/{lease}/fail       {"reason", "retryable"} → {"job": {"id", "state"}}
//! ```
//!
//! `{lease}` is the claim's lease token: it names this lease of the task and
//! nothing after it, so a worker whose lease expired (its task is someone
//! else's now) is refused with 409 and stops. A claim waits up to
//! [`MAX_WAIT`] for a runnable task (a long poll, so idle workers ask
//! rarely and a new upload starts at once); the answer names the task (job,
//! name, kind, payload, attempt), the lease (token, seconds) and where the
//! job's objects live: the library's object store and the job's prefix in
//! it, `jobs/{job}/`, with the uploaded source at `jobs/{job}/source`.
//!
//! Every route needs a bearer token of scope `worker` (or `admin`): a
//! worker holds no database credentials and no token that could publish,
//! list or delete videos through this API. Bodies are bounded
//! ([`MAX_BODY_BYTES`]), every field is checked, and every refusal is
//! `{"error": "..."}` with a status saying whose fault it was.
//!
//! This module does not run tasks and does not know their kinds: the queue
//! ([`kinema_queue::Queue`]) holds the state, the workers do the work.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use kinema_auth::Scope;
use kinema_http::{RequestBody, ResponseBody, respond};
use kinema_queue::{ClaimRequest, Heartbeat, LeaseToken, Queue, QueueError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Access;
use crate::remote_ingest::RemoteIngest;

/// Every route of this module is below this path.
pub const PREFIX: &str = "/api/worker/";
/// Largest request body accepted, bytes (a task result is at most 16 KiB).
pub const MAX_BODY_BYTES: usize = 32 * 1024;
/// Longest a claim waits for a task to become runnable.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Lease a claim gets when it names none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How often a waiting claim asks the queue again.
const CLAIM_POLL: Duration = Duration::from_millis(250);

type HttpResponse = http::Response<ResponseBody>;

/// Where the library's job objects are, as a claim tells a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobObjectsLocation {
    /// The library, `s3://bucket/prefix`: a worker's store must be this one.
    pub library: String,
}

/// The worker routes of one server.
#[derive(Debug, Clone)]
pub struct WorkerApi {
    queue: Arc<dyn Queue>,
    /// `None` when the library is a local directory: workers elsewhere
    /// cannot reach its files, so claims are refused with the reason.
    objects: Option<JobObjectsLocation>,
    /// Uploads stored in the object store for workers, whose objects go
    /// when their job is done.
    uploads: Option<RemoteIngest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    worker: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    lease_seconds: Option<u64>,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    progress: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    result: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    reason: String,
    #[serde(default = "retryable_by_default")]
    retryable: bool,
}

fn retryable_by_default() -> bool {
    true
}

/// Whether `path` is one this module answers.
pub fn answers(path: &str) -> bool {
    path.starts_with(PREFIX) || path == PREFIX.trim_end_matches('/')
}

impl WorkerApi {
    pub fn new(queue: Arc<dyn Queue>, objects: Option<JobObjectsLocation>) -> Self {
        Self {
            queue,
            objects,
            uploads: None,
        }
    }

    /// Also takes uploads into the object store for workers
    /// (`POST /api/videos` streams there), whose objects this deletes once
    /// their job is done.
    pub fn with_uploads(mut self, uploads: RemoteIngest) -> Self {
        self.uploads = Some(uploads);
        self
    }

    pub(crate) fn uploads(&self) -> Option<&RemoteIngest> {
        self.uploads.as_ref()
    }

    /// Answers a request for a path [`answers`] accepts, after checking its
    /// token has scope `worker`.
    pub async fn answer(
        &self,
        access: &Access,
        request: http::Request<RequestBody>,
    ) -> HttpResponse {
        if let Err(refusal) = authorize_worker(access, request.headers()) {
            return *refusal;
        }
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let segments: Vec<&str> = path
            .strip_prefix(PREFIX)
            .unwrap_or("")
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        let known = matches!(segments.as_slice(), ["claim"] | ["tasks", _, _]);
        if known && parts.method != Method::POST {
            return method_not_allowed();
        }
        match segments.as_slice() {
            ["claim"] => match read_json::<ClaimBody>(body).await {
                Ok(claim) => self.claim(claim).await,
                Err(refusal) => *refusal,
            },
            ["tasks", lease, action] => {
                let Some(token) = LeaseToken::parse(lease) else {
                    return error(
                        StatusCode::NOT_FOUND,
                        "no such lease: a task is named by the lease token its claim answered",
                    );
                };
                self.task_action(&token, action, body).await
            }
            _ => error(
                StatusCode::NOT_FOUND,
                format!("no worker endpoint {} {path}", parts.method),
            ),
        }
    }

    async fn claim(&self, body: ClaimBody) -> HttpResponse {
        let Some(objects) = &self.objects else {
            return error(
                StatusCode::CONFLICT,
                "this server's library is a local directory, which workers on other machines \
                 cannot reach; serve a library in S3 (library = \"s3://bucket/prefix\") to use \
                 kinema worker",
            );
        };
        let lease = match body.lease_seconds {
            Some(seconds) => Duration::from_secs(seconds),
            None => DEFAULT_LEASE,
        };
        let wait = match body.wait_seconds {
            Some(seconds) if seconds > MAX_WAIT.as_secs() => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "wait_seconds {seconds} is longer than {}; ask again instead",
                        MAX_WAIT.as_secs()
                    ),
                );
            }
            Some(seconds) => Duration::from_secs(seconds),
            None => MAX_WAIT,
        };
        let request = ClaimRequest {
            worker: body.worker,
            lease,
            kinds: body.kinds,
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.queue.claim(&request).await {
                Ok(Some(claim)) => {
                    tracing::info!(
                        job = %claim.job_id,
                        task = %claim.task,
                        kind = %claim.kind,
                        worker = %request.worker,
                        attempt = claim.attempt,
                        "task claimed by a worker"
                    );
                    let job_prefix = format!("{}/{}/", kinema_store::s3::JOBS, claim.job_id);
                    return respond::json(
                        StatusCode::OK,
                        &json!({ "task": {
                            "job_id": claim.job_id,
                            "task": claim.task,
                            "kind": claim.kind,
                            "payload": claim.payload,
                            "settings": claim.settings,
                            "attempt": claim.attempt,
                            "lease_token": claim.token,
                            "lease_seconds": claim.lease.as_secs(),
                            "objects": {
                                "library": objects.library,
                                "job_prefix": job_prefix,
                                "source": claim.source_key,
                            },
                        }}),
                        HeaderMap::new(),
                    );
                }
                Ok(None) => {}
                Err(refused) => return queue_error(refused),
            }
            if tokio::time::Instant::now() + CLAIM_POLL > deadline {
                let mut response = http::Response::new(ResponseBody::Empty);
                *response.status_mut() = StatusCode::NO_CONTENT;
                return response;
            }
            tokio::time::sleep(CLAIM_POLL).await;
        }
    }

    async fn task_action(
        &self,
        token: &LeaseToken,
        action: &str,
        body: RequestBody,
    ) -> HttpResponse {
        match action {
            "heartbeat" => {
                let body = match read_json::<HeartbeatBody>(body).await {
                    Ok(body) => body,
                    Err(refusal) => return *refusal,
                };
                match self.queue.heartbeat(token, body.progress).await {
                    Ok(Heartbeat::Continue) => ok(json!({ "state": "continue" })),
                    Ok(Heartbeat::Cancelled) | Err(QueueError::Cancelled(_)) => {
                        ok(json!({ "state": "cancelled" }))
                    }
                    Err(refused) => queue_error(refused),
                }
            }
            "publish" => match self.queue.begin_publish(token).await {
                Ok(()) => {
                    let mut response = http::Response::new(ResponseBody::Empty);
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                Err(refused) => queue_error(refused),
            },
            "complete" => {
                let body = match read_json::<CompleteBody>(body).await {
                    Ok(body) => body,
                    Err(refusal) => return *refusal,
                };
                match self.queue.complete(token, body.result).await {
                    Ok(job) => {
                        if job.state == kinema_queue::JobState::Done
                            && let Some(uploads) = &self.uploads
                        {
                            // The video is published: its source is debris now.
                            if let Err(error) = uploads.objects().delete_job(&job.id).await {
                                tracing::warn!(job = %job.id, %error,
                                    "cannot delete a done job's objects; the next start will");
                            }
                        }
                        ok(json!({ "job": { "id": job.id, "state": job.state } }))
                    }
                    Err(refused) => queue_error(refused),
                }
            }
            "fail" => {
                let body = match read_json::<FailBody>(body).await {
                    Ok(body) => body,
                    Err(refusal) => return *refusal,
                };
                match self.queue.fail(token, &body.reason, body.retryable).await {
                    Ok(job) => ok(json!({ "job": { "id": job.id, "state": job.state } })),
                    Err(refused) => queue_error(refused),
                }
            }
            other => error(
                StatusCode::NOT_FOUND,
                format!("no task action {other:?}; use heartbeat, publish, complete or fail"),
            ),
        }
    }
}

fn authorize_worker(access: &Access, headers: &HeaderMap) -> Result<(), Box<HttpResponse>> {
    let scope = access.authorize_bearer(headers)?;
    if scope.allows(Scope::Worker) {
        return Ok(());
    }
    let mut response = respond::json(
        StatusCode::FORBIDDEN,
        &json!({"error": "insufficient_scope"}),
        HeaderMap::new(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"insufficient_scope\", scope=\"worker\""),
    );
    Err(Box::new(response))
}

/// Reads a bounded JSON body into `T`, refusing what is too large, not JSON
/// or not the expected shape, with the reason.
async fn read_json<T: serde::de::DeserializeOwned>(
    mut body: RequestBody,
) -> Result<T, Box<HttpResponse>> {
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "the body ended early")))?;
        if collected.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Box::new(too_large()));
        }
        collected.extend_from_slice(&chunk);
    }
    let bytes = if collected.is_empty() {
        b"{}".as_slice()
    } else {
        &collected[..]
    };
    serde_json::from_slice(bytes).map_err(|refused| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the body is not the expected JSON: {refused}"),
        ))
    })
}

fn queue_error(refused: QueueError) -> HttpResponse {
    let status = match &refused {
        QueueError::NotFound(_) => StatusCode::NOT_FOUND,
        QueueError::Invalid { .. } => StatusCode::BAD_REQUEST,
        QueueError::LeaseLost
        | QueueError::Cancelled(_)
        | QueueError::PublishTaken(_)
        | QueueError::WrongState { .. }
        | QueueError::AlreadyExists(_) => StatusCode::CONFLICT,
        QueueError::Backend(_) => {
            tracing::error!(error = %refused, "worker api: the queue failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the job queue is unavailable; try again",
            );
        }
    };
    error(status, refused.to_string())
}

fn ok(value: Value) -> HttpResponse {
    respond::json(StatusCode::OK, &value, HeaderMap::new())
}

fn too_large() -> HttpResponse {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

fn method_not_allowed() -> HttpResponse {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed; use POST",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    respond::json(
        status,
        &json!({ "error": message.into() }),
        HeaderMap::new(),
    )
}
