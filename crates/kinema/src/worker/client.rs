//! The worker's side of the worker protocol (`kinema_origin::worker_api`):
//! claim, heartbeat, publish, complete and fail, JSON over HTTP with the
//! worker's bearer token. Every call has a timeout and every answer a size
//! bound; a refusal of the token itself is its own error, so the worker can
//! stop instead of asking again.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use object_store_reqwest as reqwest;
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest answer read from the server, bytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Every call but a claim's long poll must be answered within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a claim asks the server to wait for a task.
pub const CLAIM_WAIT: Duration = Duration::from_secs(20);

/// A claimed task, as the server describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ClaimedTask {
    pub job_id: String,
    pub task: String,
    pub kind: String,
    /// Kind-specific parameters (a chunk's index); `encode` has none.
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub settings: Value,
    pub attempt: u32,
    pub lease_token: String,
    pub lease_seconds: u64,
    pub objects: TaskObjects,
}

/// Where a task's inputs and outputs live in the object store.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskObjects {
    /// The server's library, `s3://bucket/prefix`.
    pub library: String,
    /// `jobs/{job}/`: the job's own objects.
    pub job_prefix: String,
    /// The uploaded source's key, below `job_prefix`.
    pub source: String,
}

/// What a heartbeat answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Continue,
    Cancelled,
    /// The lease is no longer this worker's: stop and report nothing.
    LeaseLost,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// 401 or 403: the token is unknown, revoked, or not a worker's.
    #[error(
        "the server refused the worker token ({status}: {message}); it was revoked or is not a \
         worker token: make one with `kinema tokens new --scope worker`"
    )]
    Refused { status: u16, message: String },
    /// 409: the lease was lost, the job cancelled or its publish taken.
    #[error("{0}")]
    Conflict(String),
    /// Anything else: the server is unreachable, overloaded or failing.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The protocol client of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerClient {
    http: reqwest::Client,
    /// The server's base URL, without a trailing slash.
    server: String,
    token: String,
}

impl WorkerClient {
    pub fn new(server: &str, token: String) -> Result<Self> {
        let server = server.trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            anyhow::bail!("server {server:?} must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            server,
            token,
        })
    }

    /// POSTs `body` to `/api/worker/{path}` and returns the status and the
    /// JSON answer (`Null` when empty).
    async fn call(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(u16, Value), CallError> {
        let url = format!("{}/api/worker/{path}", self.server);
        let mut response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading the answer to POST {url}"))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(anyhow!(
                    "the answer to POST {url} is larger than {MAX_ANSWER_BYTES} bytes"
                )
                .into());
            }
            bytes.extend_from_slice(&chunk);
        }
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the answer to POST {url} ({status}) is not JSON: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )
            })?
        };
        let message = || {
            value["error"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string)
        };
        match status {
            200..=299 => Ok((status, value)),
            401 | 403 => Err(CallError::Refused {
                status,
                message: message(),
            }),
            409 => Err(CallError::Conflict(message())),
            _ => Err(anyhow!("POST {url}: {status}: {}", message()).into()),
        }
    }

    /// Asks for a task of `kinds` (any when empty), waiting up to
    /// [`CLAIM_WAIT`]; `None` when there was none.
    pub async fn claim(
        &self,
        worker: &str,
        kinds: &[&str],
        lease: Duration,
    ) -> Result<Option<ClaimedTask>, CallError> {
        let body = json!({
            "worker": worker,
            "kinds": kinds,
            "lease_seconds": lease.as_secs(),
            "wait_seconds": CLAIM_WAIT.as_secs(),
        });
        let (status, value) = self.call("claim", &body, CLAIM_WAIT + CALL_TIMEOUT).await?;
        if status == 204 {
            return Ok(None);
        }
        let task = serde_json::from_value(value["task"].clone())
            .context("the claim's answer does not describe a task")?;
        Ok(Some(task))
    }

    pub async fn heartbeat(&self, lease: &str, progress: f64) -> Result<Beat, CallError> {
        let body = json!({ "progress": progress.clamp(0.0, 1.0) });
        match self
            .call(&format!("tasks/{lease}/heartbeat"), &body, CALL_TIMEOUT)
            .await
        {
            Ok((_, value)) if value["state"] == "cancelled" => Ok(Beat::Cancelled),
            Ok(_) => Ok(Beat::Continue),
            Err(CallError::Conflict(_)) => Ok(Beat::LeaseLost),
            Err(error) => Err(error),
        }
    }

    /// Asks whether this lease may publish the job's video (once per job).
    pub async fn begin_publish(&self, lease: &str) -> Result<(), CallError> {
        self.call(&format!("tasks/{lease}/publish"), &json!({}), CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    pub async fn complete(&self, lease: &str, result: Value) -> Result<(), CallError> {
        self.call(
            &format!("tasks/{lease}/complete"),
            &json!({ "result": result }),
            CALL_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    pub async fn fail(&self, lease: &str, reason: &str, retryable: bool) -> Result<(), CallError> {
        // The server cuts reasons to 4 KiB; send no more than it keeps.
        let mut end = reason.len().min(4096);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.call(
            &format!("tasks/{lease}/fail"),
            &json!({ "reason": &reason[..end], "retryable": retryable }),
            CALL_TIMEOUT,
        )
        .await
        .map(|_| ())
    }
}
