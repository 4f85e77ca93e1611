//! The ingest job queue: jobs made of tasks that workers claim under a
//! lease, behind one interface ([`Queue`]) with two backends.
//!
//! A **job** is one video ingest: an id, the object key of its source, its
//! settings (a small JSON value the ingest side owns), and its **tasks**. A
//! task has a kind string the workers know how to run (`encode` for today's
//! whole-video encode; `chunk`, `audio`, `assemble` for a chunked one), a
//! small JSON payload, a weight in media seconds (progress is the weighted
//! sum over tasks) and dependencies on earlier tasks of its job: a task is
//! runnable once every task it depends on is done.
//!
//! A worker **claims** one runnable task for a lease of N seconds and gets a
//! [`LeaseToken`]: a fencing token that every later call about that task
//! must present. **Heartbeats** extend the lease and report progress, and
//! answer [`Heartbeat::Cancelled`] once the job was cancelled, so a worker
//! stops within one heartbeat. A lease that expires makes the task
//! claimable again (a dead worker's task is redone elsewhere) and the old
//! token stale: its heartbeat, complete and fail are refused with
//! [`QueueError::LeaseLost`], so a worker that was merely slow can never
//! complete a task someone else now holds. Every claim counts an attempt;
//! a task that fails, or whose lease expires, [`QueueConfig::max_attempts`]
//! times ends failed and takes its job with it, with the reason.
//!
//! **Publish once:** the worker of a job's final task calls
//! [`Queue::begin_publish`] right before it publishes. It succeeds for one
//! lease only per run of the job; a second holder of the task (the first's
//! lease expired) is refused, so the video is never published twice.
//!
//! Backends: [`EmbeddedQueue`] keeps jobs in memory and, with a directory,
//! one JSON file per job (the single-node default: no database);
//! [`PostgresQueue`] keeps them in PostgreSQL, claims with
//! `FOR UPDATE SKIP LOCKED` and times leases by the database's clock.
//! This crate runs no ffmpeg and knows nothing of media: kinds, payloads and
//! settings are opaque to it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod embedded;
mod model;
mod postgres;

pub use embedded::EmbeddedQueue;
pub use postgres::{PostgresConfig, PostgresQueue, redacted_url};

/// Longest job id, task name, kind or worker name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Most tasks one job may have (a ten-hour film in 10 s chunks fits).
pub const MAX_TASKS_PER_JOB: usize = 4096;
/// Largest task payload or task result, as JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// Largest job settings, as JSON text.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;
/// Longest source object key, in bytes.
pub const MAX_SOURCE_KEY_BYTES: usize = 1024;
/// Failure reasons are cut to this many bytes (never refused: a worker's
/// report of why it failed must not itself fail).
pub const MAX_REASON_BYTES: usize = 4096;
/// Shortest lease a claim may ask for.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// Longest lease a claim may ask for: a worker that dies holding one
/// delays its task this long at most.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Most jobs one listing returns.
pub const MAX_LIST: usize = 1000;

/// What can go wrong; each variant is something a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job {0} does not exist")]
    NotFound(String),
    #[error("job {0} already exists; choose another id")]
    AlreadyExists(String),
    #[error("job {id} is {state}; only {allowed} jobs can be {action}")]
    WrongState {
        id: String,
        state: JobState,
        allowed: &'static str,
        action: &'static str,
    },
    /// The token is unknown, its lease expired, or the task moved on: the
    /// worker must stop and drop its work (someone else may redo it).
    #[error("the lease is no longer held (it expired or the task was taken over); stop this task")]
    LeaseLost,
    /// The job was cancelled while the worker held the task.
    #[error("job {0} was cancelled; stop this task")]
    Cancelled(String),
    /// Another lease of the job's final task already began the publish.
    #[error("job {0} is already being published by another lease; stop this task")]
    PublishTaken(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// The backend (database, disk) failed; retrying may succeed.
    #[error("queue backend: {0}")]
    Backend(String),
}

/// A job's state. `Queued` until a task of it is claimed, `Running` while
/// work is under way, then one of the three ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's state. A `Queued` task is runnable once its dependencies are
/// done; a `Running` one whose lease expired is runnable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "done" => TaskState::Done,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            _ => return None,
        })
    }
}

/// A task of a new job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique within the job (`encode`, `chunk-3`, `audio`, `assemble`).
    pub name: String,
    /// What a worker runs (`encode`, `chunk`, `audio`, `assemble`).
    pub kind: String,
    /// Kind-specific parameters, e.g. `{"index": 3, "start": 36.0, "end": 48.0}`.
    pub payload: serde_json::Value,
    /// Names of tasks listed before this one that must be done first.
    pub depends_on: Vec<String>,
    /// The task's share of the job's progress: media seconds it covers.
    pub weight_seconds: f64,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// `[A-Za-z0-9_-]`, at most [`MAX_NAME_BYTES`]; unique.
    pub id: String,
    /// The object key (or, on a single node, the path) of the source.
    pub source_key: String,
    /// What the ingest side needs to run the job (title, access, …).
    pub settings: serde_json::Value,
    /// At least one; dependencies point to earlier tasks only, so a job's
    /// tasks can never wait on each other in a cycle.
    pub tasks: Vec<TaskSpec>,
}

/// A claim: one worker asks for one runnable task.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    pub worker: String,
    /// How long the task is the worker's without a heartbeat.
    pub lease: Duration,
    /// The kinds this worker runs; empty for any.
    pub kinds: Vec<String>,
}

/// A fencing token: names one lease of one task, and nothing after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(String);

impl LeaseToken {
    fn generate() -> Self {
        use rand::Rng;
        let bits: u128 = rand::thread_rng().r#gen();
        Self(format!("{bits:032x}"))
    }

    /// A token as a worker sent it back; `None` unless it has the shape of
    /// one this crate made.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A claimed task: what the worker runs, and the token to report with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub token: LeaseToken,
    pub job_id: String,
    pub source_key: String,
    pub settings: serde_json::Value,
    pub task: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// This claim's attempt, counting from 1.
    pub attempt: u32,
    pub lease: Duration,
}

/// A heartbeat's answer to a worker that still holds its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Heartbeat {
    /// The lease is extended: carry on.
    Continue,
    /// The job was cancelled: stop now and report nothing more.
    Cancelled,
}

/// One task as the status of its job shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub name: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub depends_on: Vec<String>,
    pub weight_seconds: f64,
    pub state: TaskState,
    pub attempts: u32,
    /// 0.0 to 1.0, as last reported.
    pub progress: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the worker handed in with complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// A job with its tasks and its overall progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub source_key: String,
    pub settings: serde_json::Value,
    pub state: JobState,
    /// 0.0 to 1.0: done tasks count whole, running ones by their reported
    /// progress, each weighted by its media seconds.
    pub progress: f64,
    /// The most attempts any of its tasks took.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at_unix: u64,
    pub updated_at_unix: u64,
    pub tasks: Vec<TaskStatus>,
}

/// Settings shared by the backends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    /// Claims of one task (failures and expired leases alike) before it
    /// and its job end failed.
    pub max_attempts: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_attempts: 3 }
    }
}

/// The queue, whichever backend holds it. Every method is one atomic step:
/// two callers never see a task claimed twice, a job done twice or a
/// progress figure from a stale lease.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Adds a job with its tasks, queued.
    async fn enqueue(&self, job: NewJob) -> Result<JobStatus, QueueError>;

    /// The first runnable task (oldest job first, then task order), leased
    /// to `request.worker`; `None` when nothing is runnable now.
    async fn claim(&self, request: &ClaimRequest) -> Result<Option<Claim>, QueueError>;

    /// Extends the lease by its length and records `progress` (0.0 to 1.0)
    /// of the task. `LeaseLost` when the lease is no longer held.
    async fn heartbeat(&self, token: &LeaseToken, progress: f64) -> Result<Heartbeat, QueueError>;

    /// Marks the start of the job's publish by this lease; refused with
    /// `PublishTaken` when another lease of the job already began one.
    async fn begin_publish(&self, token: &LeaseToken) -> Result<(), QueueError>;

    /// The task is done, with a small result for the tasks after it; the
    /// job is done when its last task is.
    async fn complete(
        &self,
        token: &LeaseToken,
        result: serde_json::Value,
    ) -> Result<JobStatus, QueueError>;

    /// The attempt failed: the task is runnable again, or, at the last
    /// attempt or when the failure is not `retryable` (a bad source fails
    /// the same way every time), failed with its job, with `reason`.
    async fn fail(
        &self,
        token: &LeaseToken,
        reason: &str,
        retryable: bool,
    ) -> Result<JobStatus, QueueError>;

    /// Cancels a queued or running job: its unclaimed tasks never run,
    /// its running ones hear of it at their next heartbeat.
    async fn cancel(&self, job_id: &str) -> Result<JobStatus, QueueError>;

    /// Queues a failed or cancelled job again: its tasks that were not done
    /// start over with fresh attempts; the done ones stay done.
    async fn retry(&self, job_id: &str) -> Result<JobStatus, QueueError>;

    async fn job(&self, job_id: &str) -> Result<JobStatus, QueueError>;

    /// Up to `limit` (at most [`MAX_LIST`]) jobs, newest first.
    async fn jobs(&self, limit: usize) -> Result<Vec<JobStatus>, QueueError>;
}

pub use model::validate_job;
